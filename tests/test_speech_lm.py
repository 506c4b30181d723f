"""The SRH as a speech LM (``objective: speech_lm``) and the SRH's unit-length input."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers import micro_config

from drvoice_lab.modeling import DrVoiceModel
from drvoice_lab.training.speech_lm import AnswerBatches, SpeechLM


def toy_speech(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Token streams that go up by one (mod 20) from a random start, of random lengths:
    predictable from the previous token alone. (tokens (B, L) padded with 0, lengths (B,))."""
    lengths = torch.randint(6, 15, (n,), generator=generator)
    starts = torch.randint(0, 20, (n,), generator=generator)
    tokens = torch.zeros(n, int(lengths.max()), dtype=torch.long)
    for i, (start, length) in enumerate(zip(starts.tolist(), lengths.tolist(), strict=True)):
        tokens[i, :length] = (start + torch.arange(length)) % 20
    return tokens, lengths


def test_speech_lm_scores_each_next_token_then_eos():
    torch.manual_seed(0)
    model = DrVoiceModel(micro_config()).eval()
    lm = SpeechLM(model.srh, model.config.speech_eos_token_id)
    tokens, lengths = toy_speech(3, torch.Generator().manual_seed(1))
    loss = lm(tokens, lengths)
    per_row = []  # the same, one unpadded row at a time with the EOS appended by hand
    for row, length in zip(tokens, lengths.tolist(), strict=True):
        ids = torch.cat([row[:length], torch.tensor([model.config.speech_eos_token_id])])
        states = model.srh.states(model.srh.speech_embedding(ids[None, :-1]))
        per_row.append(F.cross_entropy(model.srh.logits(states)[0], ids[1:], reduction="sum"))
    torch.testing.assert_close(loss, torch.stack(per_row).sum() / lengths.sum())


def test_speech_lm_learns_the_stream_and_touches_only_the_srh():
    torch.manual_seed(0)
    model = DrVoiceModel(micro_config())
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    lm = SpeechLM(model.srh, model.config.speech_eos_token_id)
    optimizer = torch.optim.Adam(lm.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(2)
    losses = []
    for _ in range(80):
        loss = lm(*toy_speech(16, generator))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    assert losses[-1] < 0.25 * losses[0]
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert moved and all(n.startswith("srh.") for n in moved)


def test_answer_batches_are_deterministic_and_shard_by_rank():
    class Features:
        def answer_tokens(self, rel):
            return torch.arange(int(rel[1:]) + 1).numpy()

    class Turn:
        def __init__(self, audio):
            self.assistant_audio = audio

    class Dialogue:
        def __init__(self, audio):
            self.turns = [Turn(audio)]

    dialogues = [Dialogue(f"a{i}") for i in range(10)] + [Dialogue("a3")]  # a repeated answer
    batches = AnswerBatches(dialogues, Features(), seed=0)
    assert len(batches.items) == 10
    tokens, lengths = batches.batch(5, 4)
    again, _ = batches.batch(5, 4)
    assert torch.equal(tokens, again) and tokens.shape[0] == 4
    halves = [batches.batch(5, 4, rank, 2)[1] for rank in (0, 1)]
    assert sorted(torch.cat(halves).tolist()) == sorted(lengths.tolist())


@pytest.mark.parametrize("scale", [1.0, 50.0])
def test_unit_input_srh_reads_the_direction_of_h(scale):
    """With ``srh_unit_input`` a long h (a pretrained LLM's last states) reaches the SRH as
    a short one does: W_p h / |h|; without it, 50x longer states give 50x larger sub-states."""
    torch.manual_seed(0)
    unit = DrVoiceModel(micro_config(srh_unit_input=True)).eval()
    plain = DrVoiceModel(micro_config()).eval()
    plain.load_state_dict(unit.state_dict())
    h = torch.randn(2, 3, unit.config.hidden_size)
    with torch.no_grad():
        torch.testing.assert_close(unit.srh.substates(scale * h), unit.srh.substates(h))
        ratio = plain.srh.substates(scale * h).norm() / plain.srh.substates(h).norm()
    assert ratio == pytest.approx(scale, rel=0.05)  # the bias keeps it from being exact
