"""The DrVoice model core: shapes, grouping, causality, losses, save/load, pretrained parts."""

from __future__ import annotations

import pytest
import torch
from helpers import micro_config, random_batch
from transformers import AutoModel, AutoModelForCausalLM, Qwen2Config

from drvoice_lab import DrVoiceConfig, DrVoiceModel
from drvoice_lab.modeling import IGNORE_INDEX, SpeechAdapter

KS = [1, 2, 3, 5, 7]
MODES = ["concat", "mean"]


def build(k=5, mode="concat", seed=0, **overrides) -> DrVoiceModel:
    torch.manual_seed(seed)
    return DrVoiceModel(micro_config(k, mode, **overrides)).eval()


@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("speech_extra", [0, 1, -1])
def test_shapes_for_every_k_and_mode(k, mode, speech_extra):
    model = build(k, mode)
    positions = 6
    speech_len = max(1, positions * k + speech_extra)  # not always a multiple of k
    text, speech = random_batch(model.config, 3, positions, speech_len)
    out = model(text, speech, text_labels=text, speech_labels=speech)
    n = max(positions, -(-speech_len // k))
    assert out.text_logits.shape == (3, n, model.config.text_vocab_size)
    assert out.speech_logits.shape == (3, (n - 1) * k, model.config.speech_vocab_size)
    assert out.hidden_states.shape == (3, n, model.config.hidden_size)
    for loss in (out.loss, out.text_loss, out.speech_loss):
        assert loss.ndim == 0 and torch.isfinite(loss)
    assert torch.allclose(out.loss, out.text_loss + out.speech_loss)


@pytest.mark.parametrize("mode", MODES)
def test_grouping_matches_its_equation(mode):
    """g = W_g concat(e_1..e_k) (paper) or W_g mean(e_1..e_k) (released code)."""
    model = build(3, mode)
    emb = torch.randn(2, 12, model.config.speech_embed_dim)
    got = model.grouping(emb)  # (2, 4, D)
    w, b = model.grouping.proj.weight, model.grouping.proj.bias
    for n in range(4):
        chunk = emb[:, 3 * n : 3 * n + 3]
        x = chunk.flatten(1) if mode == "concat" else chunk.mean(1)
        torch.testing.assert_close(got[:, n], x @ w.T + b)


def test_shorter_channel_is_padded_with_pad_tokens():
    model = build(5)
    cfg = model.config
    text = torch.tensor([[5, 6]])
    speech = torch.arange(12)[None] % cfg.speech_codebook_size  # 12 tokens -> 3 positions
    ch = model.align_channels(text, speech, text_labels=text, speech_labels=speech)
    assert ch.text_ids.tolist() == [[5, 6, cfg.text_pad_token_id]]
    assert ch.speech_ids.shape == (1, 15)
    assert ch.speech_ids[0, 12:].tolist() == [cfg.speech_pad_token_id] * 3
    assert ch.speech_labels[0, 12:].tolist() == [IGNORE_INDEX] * 3
    assert ch.text_labels[0, 2].item() == IGNORE_INDEX
    long_text = torch.arange(2, 6)[None]
    ch = model.align_channels(long_text, speech[:, :3])
    assert ch.speech_ids.shape == (1, 20)
    assert (ch.speech_ids[0, 3:] == cfg.speech_pad_token_id).all()


def test_attention_mask_must_cover_aligned_positions():
    model = build(5)
    text, speech = random_batch(model.config, 1, 2, 15)
    with pytest.raises(ValueError, match="attention_mask"):
        model(text, speech, attention_mask=torch.ones(1, 2))


def test_backbone_is_causal_over_positions():
    model = build(5)
    text, speech = random_batch(model.config, 1, 8)
    base = model(text, speech)
    p = 5
    text2, speech2 = text.clone(), speech.clone()
    text2[0, p] = (text2[0, p] + 1) % model.config.text_vocab_size
    speech2[0, p * 5 : (p + 1) * 5] = (speech2[0, p * 5 : (p + 1) * 5] + 1) % 29
    changed = model(text2, speech2)
    torch.testing.assert_close(changed.text_logits[:, :p], base.text_logits[:, :p], rtol=0, atol=0)
    assert not torch.allclose(changed.text_logits[:, p], base.text_logits[:, p])


@pytest.mark.parametrize("k", [2, 5])
def test_srh_is_causal_over_25hz_sub_positions(k):
    """speech_logits[:, j] scores speech_ids[:, k+j]; changing token m moves only rows >= m-k+1."""
    model = build(k)
    text, speech = random_batch(model.config, 1, 6)
    base = model(text, speech).speech_logits
    for m in (k + 1, 3 * k - 1, 4 * k):
        changed_ids = speech.clone()
        changed_ids[0, m] = (changed_ids[0, m] + 7) % model.config.speech_codebook_size
        changed = model(text, changed_ids).speech_logits
        first_affected = m - k + 1
        torch.testing.assert_close(
            changed[:, :first_affected], base[:, :first_affected], rtol=0, atol=0
        )
        assert not torch.allclose(changed[:, first_affected], base[:, first_affected])


def test_srh_sees_previous_tokens_within_a_group():
    """Within one group the SRH is autoregressive: token j conditions token j+1."""
    model = build(5)
    text, speech = random_batch(model.config, 1, 4)
    base = model(text, speech).speech_logits
    changed_ids = speech.clone()
    changed_ids[0, 6] = (changed_ids[0, 6] + 3) % 29  # group 1, sub-position 1
    changed = model(text, changed_ids).speech_logits
    # row 2 scores speech_ids[7] (same group, later sub-position): it must react.
    assert not torch.allclose(changed[:, 2], base[:, 2])


def test_parallel_heads_ablation_predicts_a_group_from_the_hidden_state_alone(tmp_path):
    """speech_head="parallel" (the paper's "without SRH"): no SRH layers, and changing a
    previous speech token leaves the later sub-positions' logits of that group untouched;
    it saves, loads and decodes like the SRH model."""
    from drvoice_lab.inference.decoding import generate_joint

    model = build(5, speech_head="parallel")
    assert len(model.srh.transformer.layers) == 0
    assert build(5).srh.transformer.layers  # the default keeps its transformer
    text, speech = random_batch(model.config, 1, 4)
    base = model(text, speech).speech_logits
    changed_ids = speech.clone()
    changed_ids[0, 6] = (changed_ids[0, 6] + 3) % 29  # group 1, sub-position 1
    changed = model(text, changed_ids).speech_logits
    torch.testing.assert_close(changed[:, :5], base[:, :5], rtol=0, atol=0)  # same group 1
    model.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert loaded.config.speech_head == "parallel"
    torch.testing.assert_close(loaded(text, speech).speech_logits, base, rtol=0, atol=0)
    out = generate_joint(loaded, text[:, :2], speech[:, :10], max_new_positions=3)
    assert out.speech_ids.shape == (1, 15)
    with pytest.raises(ValueError, match="speech_head"):
        micro_config(5, speech_head="mlp")


def test_labels_mask_losses():
    model = build(5)
    text, speech = random_batch(model.config, 2, 5)
    ignore_all = torch.full_like(speech, IGNORE_INDEX)
    out = model(text, speech, text_labels=text, speech_labels=ignore_all)
    assert out.speech_loss.item() == 0.0
    torch.testing.assert_close(out.loss, out.text_loss)
    partial = speech.clone()
    partial[:, :15] = IGNORE_INDEX
    logits = model(text, speech).speech_logits
    expected = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), partial[:, 5:].reshape(-1), ignore_index=IGNORE_INDEX
    )
    got = model(text, speech, speech_labels=partial).speech_loss
    torch.testing.assert_close(got, expected)


def test_loss_weights_lambda_mu():
    model = build(5, text_loss_weight=0.5, speech_loss_weight=2.0)
    text, speech = random_batch(model.config, 2, 5)
    out = model(text, speech, text_labels=text, speech_labels=speech)
    torch.testing.assert_close(out.loss, 0.5 * out.text_loss + 2.0 * out.speech_loss)


def test_user_speech_enters_through_the_adapter():
    model = build(5)
    cfg = model.config
    frames = 47  # 50 Hz frames, not a multiple of 2k = 10
    m = cfg.user_positions(frames)
    assert m == 5
    text = torch.full((2, 1 + m + 3), cfg.text_pad_token_id)
    mask = torch.zeros_like(text, dtype=torch.bool)
    mask[:, 1 : 1 + m] = True
    feats = torch.randn(2, frames, cfg.encoder_hidden_size)
    a = model(text, user_features=feats, user_position_mask=mask)
    feats2 = feats.clone()
    feats2[:, 30:] += 1.0  # frames 30.. fall into user position 3 (frames 30..39) and later
    b = model(text, user_features=feats2, user_position_mask=mask)
    torch.testing.assert_close(a.text_logits[:, :4], b.text_logits[:, :4], rtol=0, atol=0)
    assert not torch.allclose(a.text_logits[:, 4], b.text_logits[:, 4])
    # Rows with fewer real frames: the mask must agree with the lengths.
    lengths = torch.tensor([47, 20])
    with pytest.raises(ValueError, match="user_position_mask"):
        model(text, user_features=feats, user_feature_lengths=lengths, user_position_mask=mask)
    mask2 = mask.clone()
    mask2[1, 3:] = False
    model(text, user_features=feats, user_feature_lengths=lengths, user_position_mask=mask2)


def test_adapter_pools_50hz_to_25hz_then_groups():
    adapter = SpeechAdapter(encoder_dim=8, adapter_dim=6, hidden_size=10, k=3)
    feats = torch.randn(2, 13, 8)
    assert adapter.features_25hz(feats).shape == (2, 7, 6)
    grouped, valid = adapter(feats, torch.tensor([13, 6]))
    assert grouped.shape == (2, 3, 10)
    assert valid.tolist() == [[True, True, True], [True, False, False]]


def test_adapter_output_norm_puts_user_speech_at_text_embedding_scale(tmp_path):
    model = build(5, adapter_output_norm=True)
    init = model.config.backbone_config.initializer_range
    grouped, valid = model.adapter(100 * torch.randn(2, 30, 24), torch.tensor([30, 30]))
    rms = grouped[valid].pow(2).mean(-1).sqrt()  # per position
    torch.testing.assert_close(rms, torch.full_like(rms, init), rtol=1e-3, atol=1e-6)
    model.save_pretrained(tmp_path)
    assert DrVoiceModel.from_pretrained(tmp_path).adapter.output_norm is not None
    assert build(5).adapter.output_norm is None  # off by default: older checkpoints still load


def test_tiny_model_overfits_one_batch():
    """Random init scores ln(V) (~4.2 text, ~3.5 speech); a model that can learn the task
    memorises one fixed batch of two sequences to well under 0.1 nats per token."""
    torch.manual_seed(0)
    model = DrVoiceModel(micro_config(5)).train()
    text, speech = random_batch(model.config, 2, 6)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        out = model(text, speech, text_labels=text, speech_labels=speech)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    assert out.text_loss.item() < 0.1, out.text_loss.item()
    assert out.speech_loss.item() < 0.1, out.speech_loss.item()


@pytest.mark.parametrize("tie", [True, False])
def test_save_pretrained_round_trip(tmp_path, tie):
    model = build(3, tie_srh_embeddings=tie)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    assert not list(tmp_path.glob("*.bin"))
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, DrVoiceModel)
    assert loaded.config.group_size == 3
    text, speech = random_batch(model.config, 2, 5, 13)
    a, b = model(text, speech), loaded(text, speech)
    torch.testing.assert_close(a.text_logits, b.text_logits, rtol=0, atol=0)
    torch.testing.assert_close(a.speech_logits, b.speech_logits, rtol=0, atol=0)
    if tie:
        assert loaded.srh.speech_head is None
    else:
        torch.testing.assert_close(loaded.srh.speech_head.weight, model.srh.speech_head.weight)


def _save_qwen(path, hidden=32, vocab=64):
    torch.manual_seed(1)
    cfg = Qwen2Config(
        hidden_size=hidden,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=48,
        vocab_size=vocab,
    )
    lm = AutoModelForCausalLM.from_config(cfg)
    lm.save_pretrained(path)
    return lm


def test_backbone_loads_from_a_local_pretrained_path(tmp_path):
    lm = _save_qwen(tmp_path / "lm")
    cfg = micro_config(5)
    model = DrVoiceModel.from_parts(cfg, backbone=str(tmp_path / "lm")).eval()
    torch.testing.assert_close(
        model.get_input_embeddings().weight, lm.get_input_embeddings().weight
    )
    assert model.config.backbone_config.num_hidden_layers == 1
    text, speech = random_batch(model.config, 1, 4)
    inputs = model.embed_inputs(text, speech)
    expected = lm(inputs_embeds=inputs).logits
    torch.testing.assert_close(model(text, speech).text_logits, expected)


def test_backbone_width_mismatch_is_a_clear_error(tmp_path):
    _save_qwen(tmp_path / "lm", hidden=48)
    with pytest.raises(ValueError, match="width mismatch.*32.*48"):
        DrVoiceModel.from_parts(micro_config(5), backbone=str(tmp_path / "lm"))


def test_srh_loads_from_a_pretrained_decoder(tmp_path):
    torch.manual_seed(2)
    srh_cfg = Qwen2Config(
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        intermediate_size=32,
        vocab_size=50,
    )
    AutoModel.from_config(srh_cfg).save_pretrained(tmp_path / "srh")
    model = DrVoiceModel.from_parts(micro_config(5), srh=str(tmp_path / "srh"))
    assert model.speech_embedding.num_embeddings == model.config.speech_vocab_size
    assert model.config.srh_config.num_hidden_layers == 1


def test_presets_build_and_tiny_fits_the_budget():
    from drvoice_lab.modeling.summary import parameter_report

    tiny = parameter_report(DrVoiceConfig.from_preset("tiny"))
    assert tiny["trainable_total"] <= 20_000_000
    seven = parameter_report(DrVoiceConfig.from_preset("7b"))
    assert 7.55e9 < seven["backbone_total"] < 7.7e9  # Qwen2.5-7B: 7.62 B
    assert 0.6e9 < seven["speech_encoder (frozen)"] < 0.65e9  # Whisper-large-v3 encoder
    small = parameter_report(DrVoiceConfig.from_preset("small"))
    assert 1.5e9 < small["backbone_total"] < 1.6e9  # Qwen2.5-1.5B: 1.54 B
    for report in (tiny, small, seven):
        parts = sum(v for key, v in report.items() if "total" not in key and "encoder" not in key)
        assert parts == report["trainable_total"]


def test_rows_without_speech_labels_skip_the_srh_with_the_same_loss():
    """A batch mixing speech-out and text-only rows: the SRH runs on speech rows only, and
    loss and gradients equal those of the speech rows' own batch."""
    torch.manual_seed(0)
    config = micro_config(k=5)
    model = DrVoiceModel(config)
    text = torch.randint(2, config.text_vocab_size, (3, 6))
    speech = torch.randint(0, config.speech_codebook_size, (3, 30))
    labels = speech.clone()
    labels[1] = IGNORE_INDEX  # row 1: a text-only mode
    mixed = model(text, speech, text_labels=text, speech_labels=labels)
    assert mixed.speech_logits.shape[0] == 2
    mixed.speech_loss.backward()
    grads = {n: p.grad.clone() for n, p in model.srh.named_parameters() if p.grad is not None}
    model.zero_grad()
    keep = torch.tensor([0, 2])
    alone = model(text[keep], speech[keep], text_labels=text[keep], speech_labels=labels[keep])
    alone.speech_loss.backward()
    torch.testing.assert_close(mixed.speech_loss, alone.speech_loss)
    for name, p in model.srh.named_parameters():
        if name in grads:
            torch.testing.assert_close(grads[name], p.grad, msg=name)
