"""Scheduled sampling for the speech channel: train on inputs that hold the model's own slips.

In training every speech token fed back (to the grouping G and to the SRH) is the reference;
in greedy decoding it is whatever the model said, so one wrong token leads it somewhere it never
trained (exposure bias). Parallel scheduled sampling (Duckworth et al., 2019) closes part of
that gap at the cost of one extra forward pass: a teacher-forced pass without gradients gives
the model's greedy prediction for every speech token, and a random ``fraction`` of the
reference input tokens is replaced by those predictions before the training pass. The labels
stay the reference. Unlike random noise (``speech_noise``), the replaced tokens are the errors
the model actually makes.
"""

from __future__ import annotations

import torch

from drvoice_lab.modeling.drvoice import IGNORE_INDEX, greedy_speech


@torch.no_grad()
def with_own_speech(
    model, batch: dict[str, torch.Tensor], fraction: float, generator: torch.Generator
) -> dict[str, torch.Tensor]:
    """``batch`` with a ``fraction`` of its labelled input speech tokens (codebook ids) replaced
    by the model's own greedy predictions of them; ``batch`` itself is left unchanged."""
    cfg = model.config
    k = cfg.group_size
    labels = batch["speech_labels"][:, k:]  # (B, (N-1)*k): what the SRH predicts
    spoken = (labels != IGNORE_INDEX) & (labels < cfg.speech_codebook_size)
    if not spoken.any():
        return batch  # text-out rows only: no speech is fed back
    own = greedy_speech(model, batch)  # (B, (N-1)*k)
    pick = spoken & (torch.rand(spoken.shape, generator=generator) < fraction).to(spoken.device)
    speech_ids = batch["speech_ids"].clone()  # (B, N*k)
    speech_ids[:, k:] = torch.where(pick, own, speech_ids[:, k:])
    return {**batch, "speech_ids": speech_ids}
