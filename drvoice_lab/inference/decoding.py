"""Joint decoding: every backbone step emits one text token and k speech tokens (25 Hz).

Both the backbone and the SRH keep a KV cache, so each step costs one backbone position and
k SRH sub-positions. The SRH cache covers the whole 25 Hz stream, prompt included (it is
teacher-forced over the prompt's groups), exactly as in training - which is what makes
incremental decoding equal a full recompute.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from transformers import DynamicCache

from drvoice_lab.inference.sampling import SamplingConfig, sample
from drvoice_lab.modeling.drvoice import DrVoiceModel


@dataclass
class JointOutput:
    """Generated channels. ``text_ids`` (B, T) and ``speech_ids`` (B, T*k) hold every step,
    eos and filler pads included; ``text`` / ``speech`` are per-row lists cut at eos (text
    pads removed; speech pads kept, since they stand for silence)."""

    text_ids: torch.Tensor
    speech_ids: torch.Tensor
    text: list[list[int]]
    speech: list[list[int]]
    steps: int
    text_logits: list[torch.Tensor] = field(default_factory=list)  # T x (B, V_text)
    speech_logits: list[torch.Tensor] = field(default_factory=list)  # T*k x (B, V_s)


@dataclass
class JointStep:
    """One decoding step (one 5 Hz position): its text token and its k speech tokens, whether
    each channel has ended (per row), and how long the step's backbone and SRH work took."""

    text: torch.Tensor  # (B,)
    speech: torch.Tensor  # (B, k)
    text_done: torch.Tensor  # (B,) bool
    speech_done: torch.Tensor  # (B,) bool
    seconds: dict[str, float]  # "backbone" (prefill on step 0), "srh" (incl. "srh_prefill")
    text_logits: torch.Tensor | None = None  # (B, V_text) when keep_logits
    speech_logits: list[torch.Tensor] = field(default_factory=list)  # k x (B, V_s)
    reused_positions: int = 0  # prompt positions taken from a PromptPrefix, not prefilled


@dataclass
class PromptPrefix:
    """The first P positions shared by every prompt of one CoM mode (``com.shared_prefix``),
    run once: the backbone's and the SRH's KV caches over them, copied into each turn that
    starts with them, so a turn's prefill runs only its own positions. Text-only positions
    (speech channel pad), so the SRH's cache covers their groups with pad as previous tokens."""

    text_ids: torch.Tensor  # (1, P)
    backbone: DynamicCache
    srh: DynamicCache


@torch.no_grad()
def prefill_prefix(model: DrVoiceModel, text_ids: torch.Tensor) -> PromptPrefix:
    """Run the (1, P) prefix through the backbone and its groups 1..P through the SRH."""
    model.eval()
    prompt = model.align_channels(text_ids)  # speech: pad
    backbone = DynamicCache(config=model.backbone.config)
    srh = DynamicCache(config=model.srh.transformer.config)
    hidden, _ = model.run_backbone(
        model.embed_inputs(prompt.text_ids, prompt.speech_ids), cache=backbone
    )
    pads = prompt.speech_ids  # (1, P*k): the previous tokens of groups 1..P, all pad
    model.srh(model.srh.substates(hidden), pads, cache=srh)  # (1, P, D) -> P*k sub-positions
    return PromptPrefix(text_ids.clone(), backbone, srh)


def _reusable(model, prefix: PromptPrefix | None, prompt, user_position_mask) -> int:
    """P when the prompt starts with ``prefix`` (one row, speech pad over it and the position
    after, no user speech in it) and goes on for at least two positions; else 0."""
    if prefix is None or prompt.text_ids.shape[0] != 1:
        return 0
    p, n, k = prefix.text_ids.shape[1], prompt.text_ids.shape[1], model.config.group_size
    if n < p + 2 or not torch.equal(prompt.text_ids[:, :p], prefix.text_ids):
        return 0
    if not bool((prompt.speech_ids[:, : (p + 1) * k] == model.config.speech_pad_token_id).all()):
        return 0
    if user_position_mask is not None and bool(user_position_mask[:, :p].any()):
        return 0
    return p


@torch.no_grad()
def iter_joint(
    model: DrVoiceModel,
    text_ids: torch.Tensor,
    speech_ids: torch.Tensor | None = None,
    *,
    user_features: torch.Tensor | None = None,
    user_feature_lengths: torch.Tensor | None = None,
    user_position_mask: torch.Tensor | None = None,
    max_new_positions: int = 200,
    text_sampling: SamplingConfig = SamplingConfig(),
    speech_sampling: SamplingConfig = SamplingConfig(),
    generate_speech: bool = True,
    generator: torch.Generator | None = None,
    keep_logits: bool = False,
    prefix: PromptPrefix | None = None,
) -> Iterator[JointStep]:
    """Continue a prompt (rows of equal length, no padding), yielding each step as soon as it
    is decoded, until both channels end or ``max_new_positions`` steps. Closing the generator
    (or just not asking for more) cancels the turn.

    The text channel ends at ``text_eos`` (then emits ``text_pad``); the speech channel ends at
    ``speech_eos`` (then emits pad/silence). With ``generate_speech=False`` (text-only modes
    such as S2T/T2T) the speech channel is pad from the start and the SRH is skipped.
    ``prefix``: the states of the prompt's first positions, computed before (``prefill_prefix``);
    used when the prompt starts with them, so that only the rest is prefilled.
    """
    cfg = model.config
    k = cfg.group_size
    model.eval()
    clock = time.perf_counter()
    prompt = model.align_channels(text_ids, speech_ids)
    b, n = prompt.text_ids.shape
    if user_position_mask is not None and user_position_mask.shape[1] < n:
        pad = user_position_mask.new_zeros((b, n - user_position_mask.shape[1]))
        user_position_mask = torch.cat([user_position_mask, pad], dim=1)
    start = _reusable(model, prefix, prompt, user_position_mask)  # positions already run
    if start:
        backbone_cache, srh_cache = copy.deepcopy(prefix.backbone), copy.deepcopy(prefix.srh)
    else:
        backbone_cache = DynamicCache(config=model.backbone.config)
        srh_cache = DynamicCache(config=model.srh.transformer.config)

    # Prefill: the prompt (from ``start``) through the backbone, then its groups start+1..n-1
    # through the SRH (groups 1..start are in the prefix's SRH cache).
    inputs = model.embed_inputs(
        prompt.text_ids, prompt.speech_ids, user_features, user_feature_lengths, user_position_mask
    )
    hidden, logits = model.run_backbone(inputs[:, start:], cache=backbone_cache)  # (B, n-start, ·)
    backbone_seconds = time.perf_counter() - clock
    clock = time.perf_counter()
    if generate_speech and n - start > 1:
        model.srh(
            model.srh.substates(hidden[:, :-1]),
            prompt.speech_ids[:, (start + 1) * k - 1 : -1],
            cache=srh_cache,
        )
    srh_prefill = time.perf_counter() - clock
    last_hidden, text_logits = hidden[:, -1:], logits[:, -1]  # (B, 1, D), (B, V)
    prev_speech = prompt.speech_ids[:, -1]  # (B,)

    device = text_ids.device
    text_done = torch.zeros(b, dtype=torch.bool, device=device)
    speech_done = torch.full((b,), not generate_speech, dtype=torch.bool, device=device)
    for _ in range(max_new_positions):
        clock = time.perf_counter()
        token = sample(text_logits, text_sampling, generator)
        token = torch.where(text_done, cfg.text_pad_token_id, token)  # (B,)
        text_done = text_done | (token == cfg.text_eos_token_id)

        group, kept_speech = [], []
        if generate_speech:
            substates = model.srh.substates(last_hidden)  # (B, k, d_s)
            for j in range(k):
                speech_logits = model.srh(
                    substates[:, j : j + 1], prev_speech[:, None], cache=srh_cache
                )[:, -1]  # (B, V_s)
                if keep_logits:
                    kept_speech.append(speech_logits)
                prev_speech = sample(speech_logits, speech_sampling, generator)
                prev_speech = torch.where(speech_done, cfg.speech_pad_token_id, prev_speech)
                speech_done = speech_done | (prev_speech == cfg.speech_eos_token_id)
                group.append(prev_speech)
        else:
            group = [torch.full_like(token, cfg.speech_pad_token_id)] * k
        group_ids = torch.stack(group, dim=1)  # (B, k)
        srh_seconds = time.perf_counter() - clock + srh_prefill
        yield JointStep(
            token,
            group_ids,
            text_done,
            speech_done,
            {"backbone": backbone_seconds, "srh": srh_seconds, "srh_prefill": srh_prefill},
            text_logits if keep_logits else None,
            kept_speech,
            start,
        )
        if bool((text_done & speech_done).all()):
            return
        clock, srh_prefill = time.perf_counter(), 0.0
        inputs = model.embed_inputs(token[:, None], group_ids)  # (B, 1, D)
        hidden, logits = model.run_backbone(inputs, cache=backbone_cache)
        last_hidden, text_logits = hidden[:, -1:], logits[:, -1]
        backbone_seconds = time.perf_counter() - clock


def generate_joint(model: DrVoiceModel, text_ids: torch.Tensor, *args, **kwargs) -> JointOutput:
    """Run :func:`iter_joint` to the end and collect both channels (same arguments)."""
    cfg = model.config
    steps = list(iter_joint(model, text_ids, *args, **kwargs))
    if not steps:
        raise ValueError("max_new_positions must be >= 1")
    text_out = torch.stack([s.text for s in steps], dim=1)  # (B, T)
    speech_out = torch.cat([s.speech for s in steps], dim=1)  # (B, T*k)
    return JointOutput(
        text_ids=text_out,
        speech_ids=speech_out,
        text=[_cut(row, cfg.text_eos_token_id, drop=cfg.text_pad_token_id) for row in text_out],
        speech=[_cut(row, cfg.speech_eos_token_id) for row in speech_out],
        steps=len(steps),
        text_logits=[s.text_logits for s in steps if s.text_logits is not None],
        speech_logits=[logit for s in steps for logit in s.speech_logits],
    )


def _cut(row: torch.Tensor, eos: int, drop: int | None = None) -> list[int]:
    tokens = []
    for t in row.tolist():
        if t == eos:
            break
        if t != drop:
            tokens.append(t)
    return tokens
