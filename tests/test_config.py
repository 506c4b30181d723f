"""DrVoiceConfig: presets, validation messages, serialisation, Auto registration."""

import pytest
from transformers import AutoConfig

from drvoice_lab import DrVoiceConfig, preset_names


def test_presets_exist_and_describe_the_paper_shapes():
    assert preset_names() == ["7b", "small", "smol", "tiny"]
    seven = DrVoiceConfig.from_preset("7b")
    assert seven.group_size == 5 and seven.grouping_mode == "concat"
    assert seven.speech_codebook_size == 6561 and seven.speech_vocab_size == 6564
    assert seven.hidden_size == 3584 and seven.speech_embed_dim == 896
    assert seven.encoder_hidden_size == 1280 and seven.encoder_config.num_mel_bins == 128
    assert seven.srh_config.num_hidden_layers == 24
    assert DrVoiceConfig.from_preset("small").hidden_size == 1536
    tiny = DrVoiceConfig.from_preset("tiny")
    assert tiny.position_rate == 5.0 and tiny.encoder_hidden_size == 384


def test_overrides_and_round_trip(tmp_path):
    config = DrVoiceConfig.from_preset(
        "tiny", group_size=2, grouping_mode="mean", text_loss_weight=0.3
    )
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, DrVoiceConfig)
    assert (loaded.group_size, loaded.grouping_mode, loaded.text_loss_weight) == (2, "mean", 0.3)
    assert loaded.backbone_config.hidden_size == config.backbone_config.hidden_size
    assert loaded.srh_config.vocab_size == config.speech_vocab_size
    assert loaded.position_rate == 12.5


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(group_size=0), "group_size"),
        (dict(group_size=-3), "group_size"),
        (dict(group_size=2.5), "group_size"),
        (dict(grouping_mode="sum"), "grouping_mode"),
        (dict(speech_pad_token_id=10), "collides with a codebook token"),
        (dict(speech_vocab_size=1025), "outside the speech vocabulary"),
        (dict(speech_eos_token_id=1024), "distinct"),
        (dict(text_eos_token_id=5000), "text vocabulary"),
        (dict(text_pad_token_id=1, text_eos_token_id=1), "must differ"),
        (
            dict(srh_config=dict(model_type="qwen2", hidden_size=100, num_attention_heads=3)),
            "srh_config: hidden_size 100 is not divisible",
        ),
        (dict(encoder_frame_rate=40), "encoder_frame_rate"),
        (dict(speech_loss_weight=-1.0), "speech_loss_weight"),
    ],
)
def test_bad_configuration_says_what_to_fix(overrides, message):
    with pytest.raises(ValueError, match=message):
        DrVoiceConfig.from_preset("tiny", **overrides)


def test_unknown_preset():
    with pytest.raises(ValueError, match="unknown preset 'huge'.*tiny"):
        DrVoiceConfig.from_preset("huge")
