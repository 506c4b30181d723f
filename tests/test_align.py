"""Adapter alignment objectives (drvoice_lab.training.align) on a toy speech signal."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers import micro_config

from drvoice_lab.modeling import DrVoiceModel
from drvoice_lab.training.align import EmbeddingCTCAligner

WORDS = list(range(10, 18))  # the toy language's token ids (micro vocabulary: 64)


def toy_utterances(n: int, model: DrVoiceModel, generator: torch.Generator):
    """Each word fills one 5 Hz position (10 encoder frames) with its own noisy pattern, and
    a silent position sometimes follows it: (frames (B, F, d), lengths (B,), targets (B, L),
    target lengths (B,))."""
    cfg, d_enc = model.config, model.config.encoder_hidden_size
    patterns = torch.randn(len(WORDS) + 1, d_enc, generator=torch.Generator().manual_seed(7))
    per_position = model.adapter.pool * cfg.group_size
    rows, targets = [], []
    for _ in range(n):
        words = torch.randint(len(WORDS), (4,), generator=generator)
        slots = []
        for w in words.tolist():
            if slots and slots[-1] == w:
                slots.append(len(WORDS))  # a pause between a repeated word (CTC needs it)
            slots.append(w)
            if torch.rand((), generator=generator) < 0.4:
                slots.append(len(WORDS))  # silence
        frames = patterns[slots].repeat_interleave(per_position, 0)  # (F, d)
        rows.append(frames + 0.3 * torch.randn(frames.shape, generator=generator))
        targets.append(torch.tensor([WORDS[w] for w in words.tolist()]))
    lengths = torch.tensor([len(r) for r in rows])
    return (
        torch.nn.utils.rnn.pad_sequence(rows, batch_first=True),
        lengths,
        torch.stack(targets),
        torch.full((n,), 4),
    )


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    model = DrVoiceModel(micro_config())
    aligner = EmbeddingCTCAligner(model)
    optimizer = torch.optim.Adam(aligner.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(1)
    first = None
    for _ in range(150):
        loss = aligner(*toy_utterances(16, model, generator))
        first = float(loss.detach()) if first is None else first
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model, aligner, first, float(loss.detach())


def test_embedding_ctc_makes_speech_positions_read_like_their_words(trained):
    model, aligner, first, last = trained
    assert last < 0.05 * first
    frames, lengths, targets, _ = toy_utterances(32, model, torch.Generator().manual_seed(99))
    decoded = aligner.greedy(frames, lengths)
    assert sum(d == t.tolist() for d, t in zip(decoded, targets, strict=True)) >= 30

    # What the backbone would read at a word's position is closest to that word's text input.
    x, valid = aligner.inputs(frames, lengths)  # (B, M, D)
    first_word = x[:, 0]  # every utterance starts with a word
    text_inputs = aligner.targets[: aligner.blank]  # (V, D), unit rows
    nearest = (F.normalize(first_word - aligner.center, dim=-1) @ text_inputs.T).argmax(-1)
    assert torch.equal(nearest, targets[:, 0])
    # ... and as loud as a text position.
    rms = x[valid].pow(2).mean(-1).sqrt()
    assert torch.allclose(rms.mean(), aligner.target_rms, rtol=0.1)


def test_embedding_ctc_trains_only_the_adapter(trained):
    model, aligner, *_ = trained
    trainable = {n for n, p in aligner.named_parameters() if p.requires_grad}
    adapter = {f"adapter.{n}" for n, _ in model.adapter.named_parameters()}
    assert trainable == {"log_scale"} | adapter  # the targets are buffers: a frozen copy
