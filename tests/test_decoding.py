"""Joint decoding: incremental (KV-cached) decoding equals a full recompute; sampling; stopping."""

from __future__ import annotations

import pytest
import torch
from helpers import micro_config, random_batch

from drvoice_lab import DrVoiceModel
from drvoice_lab.inference import SamplingConfig, filter_logits, generate_joint, sample


def build(k=5, seed=0, **overrides) -> DrVoiceModel:
    torch.manual_seed(seed)
    return DrVoiceModel(micro_config(k, **overrides)).eval()


@pytest.mark.parametrize("k", [1, 2, 3, 5, 7])
def test_incremental_decoding_equals_full_recompute(k):
    model = build(k)
    prompt_positions = 4
    text, speech = random_batch(model.config, 2, prompt_positions)
    out = generate_joint(model, text, speech, max_new_positions=7, keep_logits=True)
    steps = out.steps
    assert out.text_ids.shape == (2, steps) and out.speech_ids.shape == (2, steps * k)

    with torch.no_grad():
        full = model(torch.cat([text, out.text_ids], 1), torch.cat([speech, out.speech_ids], 1))
    p = prompt_positions
    incremental_text = torch.stack(out.text_logits, 1)  # (B, T, V_text)
    incremental_speech = torch.stack(out.speech_logits, 1)  # (B, T*k, V_s)
    torch.testing.assert_close(
        full.text_logits[:, p - 1 : p - 1 + steps], incremental_text, rtol=1e-4, atol=1e-4
    )
    torch.testing.assert_close(
        full.speech_logits[:, (p - 1) * k : (p - 1 + steps) * k],
        incremental_speech,
        rtol=1e-4,
        atol=1e-4,
    )
    # Greedy: each emitted token is the argmax of the recomputed logits (unless forced to pad).
    cfg = model.config
    recomputed = full.text_logits[:, p - 1 : p - 1 + steps].argmax(-1)
    free = out.text_ids != cfg.text_pad_token_id
    assert torch.equal(recomputed[free], out.text_ids[free])


def test_prompt_whose_speech_is_not_a_multiple_of_k():
    model = build(5)
    text, speech = random_batch(model.config, 1, 3, 13)
    out = generate_joint(model, text, speech, max_new_positions=3, keep_logits=True)
    with torch.no_grad():
        aligned = model.align_channels(text, speech)
        full = model(
            torch.cat([aligned.text_ids, out.text_ids], 1),
            torch.cat([aligned.speech_ids, out.speech_ids], 1),
        )
    torch.testing.assert_close(
        full.speech_logits[:, 10:25], torch.stack(out.speech_logits, 1), rtol=1e-4, atol=1e-4
    )


def _force(model, text_token=None, speech_token=None):
    """Bias the heads so that greedy decoding emits the given tokens."""
    with torch.no_grad():
        if text_token is not None:
            bias = torch.zeros(model.config.text_vocab_size)
            bias[text_token] = 1e4
            model.backbone.lm_head.bias = torch.nn.Parameter(bias)
        if speech_token is not None:
            bias = torch.zeros(model.config.speech_vocab_size)
            bias[speech_token] = 1e4
            model.srh.register_forward_hook(lambda module, args, logits: logits + bias)


def test_stops_when_both_channels_have_ended():
    model = build(5)
    cfg = model.config
    _force(model, text_token=cfg.text_eos_token_id)
    text, speech = random_batch(cfg, 1, 3)
    # Text ends at once; speech runs on until the cap because nothing makes it emit eos.
    out = generate_joint(model, text, speech, max_new_positions=6)
    assert out.steps == 6
    assert out.text_ids[0, 0].item() == cfg.text_eos_token_id
    assert (out.text_ids[0, 1:] == cfg.text_pad_token_id).all()
    assert out.text == [[]]
    # Text-only mode: the speech channel is pad from the start, so one step ends the turn.
    out = generate_joint(model, text, speech, max_new_positions=6, generate_speech=False)
    assert out.steps == 1
    assert (out.speech_ids == cfg.speech_pad_token_id).all()


def test_speech_eos_pads_the_rest_of_the_stream():
    model = build(5)
    cfg = model.config
    _force(model, text_token=cfg.text_eos_token_id, speech_token=cfg.speech_eos_token_id)
    text, speech = random_batch(cfg, 2, 3)
    out = generate_joint(model, text, speech, max_new_positions=6)
    assert out.steps == 1
    assert out.speech_ids[:, 0].tolist() == [cfg.speech_eos_token_id] * 2
    assert (out.speech_ids[:, 1:] == cfg.speech_pad_token_id).all()
    assert out.speech == [[], []]


def test_sampling_is_reproducible_and_respects_filters():
    model = build(5)
    text, speech = random_batch(model.config, 1, 3)
    hot = SamplingConfig(temperature=1.5, top_k=5, top_p=0.9)
    runs = [
        generate_joint(
            model,
            text,
            speech,
            max_new_positions=5,
            text_sampling=hot,
            speech_sampling=hot,
            generator=torch.Generator().manual_seed(7),
        )
        for _ in range(2)
    ]
    assert torch.equal(runs[0].speech_ids, runs[1].speech_ids)
    greedy = generate_joint(model, text, speech, max_new_positions=5)
    assert not torch.equal(runs[0].speech_ids, greedy.speech_ids)


def test_filter_logits_top_k_and_top_p():
    logits = torch.tensor([[4.0, 3.0, 2.0, 1.0, 0.0]])
    kept = torch.isfinite(filter_logits(logits, top_k=2))
    assert kept.tolist() == [[True, True, False, False, False]]
    probs = logits.softmax(-1)[0]  # 0.64, 0.24, 0.09, ...
    kept = torch.isfinite(filter_logits(logits, top_p=float(probs[0]) + 0.01))
    assert kept.tolist() == [[True, True, False, False, False]]
    kept = torch.isfinite(filter_logits(logits, top_p=0.5))
    assert kept.tolist() == [[True, False, False, False, False]]
    draws = {
        sample(logits, SamplingConfig(1.0, top_k=2), torch.Generator().manual_seed(s)).item()
        for s in range(50)
    }
    assert draws == {0, 1}


@pytest.mark.parametrize("bad", [dict(top_k=-1), dict(top_p=0.0), dict(top_p=1.5)])
def test_bad_sampling_settings(bad):
    with pytest.raises(ValueError):
        SamplingConfig(temperature=1.0, **bad)


def test_a_reused_prompt_prefix_decodes_as_a_full_prefill():
    """The system message's states are computed once per mode (``PromptPrefix``); a turn that
    starts with them prefills only its own positions and decodes the same (greedy), spoken or
    typed, first turn or later; the logits agree to float rounding."""
    import numpy as np

    from drvoice_lab.data.com import TurnInput
    from drvoice_lab.data.voices import ASSISTANT_VOICE
    from drvoice_lab.inference.decoding import iter_joint
    from drvoice_lab.inference.pipeline import VoiceChat
    from drvoice_lab.model_folder import tiny_checkpoint

    chat = VoiceChat.from_checkpoint(tiny_checkpoint())
    plain = chat.fork()
    plain.prefix = lambda mode: None  # every prompt prefilled whole
    wav = ASSISTANT_VOICE.synthesize("Which day comes after Monday?")
    turns = [dict(audio=wav, sample_rate=16_000, mode="S2M"),
             dict(text="What is two plus three?", mode="T2M"),
             dict(audio=wav, sample_rate=16_000, mode="S2T")]  # fmt: skip
    reused, full = chat.fork(), plain.fork()
    for turn in turns:  # one conversation: later prompts hold the earlier turns
        a, b = reused.respond(**turn), full.respond(**turn)
        assert a.text == b.text and a.speech_ids.tolist() == b.speech_ids.tolist()
    assert set(chat.prefixes) == {"S2M", "T2M", "S2T"}

    # logits of the first steps, prompt of a typed question
    typed = TurnInput("What is two plus three?", "", mode="T2M", answer_speech=np.zeros(0, int))
    example, batch = chat.fork()._prompt(typed, None, 20)
    p, k = example.prompt_positions, chat.config.group_size
    args = (chat.model, batch["text_ids"][:, :p], batch["speech_ids"][:, : p * k])
    with_prefix = list(iter_joint(*args, max_new_positions=3, keep_logits=True,
                                  prefix=chat.prefix("T2M")))  # fmt: skip
    without = list(iter_joint(*args, max_new_positions=3, keep_logits=True))
    assert with_prefix[0].reused_positions == chat.prefix("T2M").text_ids.shape[1] > 10
    assert without[0].reused_positions == 0
    for x, y in zip(with_prefix, without, strict=True):
        torch.testing.assert_close(x.text_logits, y.text_logits, atol=1e-4, rtol=1e-4)
        for s, t in zip(x.speech_logits, y.speech_logits, strict=True):
            torch.testing.assert_close(s, t, atol=1e-4, rtol=1e-4)
