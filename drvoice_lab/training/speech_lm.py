"""The SRH as a language model of the assistant's 25 Hz speech tokens (``objective: speech_lm``).

The Speech Refined Head predicts each 25 Hz token from a sub-state of the LLM (what to say)
and the previous token (how speech goes on). The second half needs no LLM: trained alone on
the assistant's token sequences, with the sub-states left out, the SRH learns the speech
stream's own statistics at a tenth of a full step's cost (the 30 frozen layers of SmolLM2 are
never run). Measured on the open corpus (docs/journal.md): a full SRH step with the LLM takes
4.3 s; this one 0.4 s.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from drvoice_lab.modeling.srh import SpeechRefinedHead


class SpeechLM(nn.Module):
    """The SRH (shared with the model) predicting token t+1 from tokens <= t, then EOS."""

    def __init__(self, srh: SpeechRefinedHead, eos_token_id: int) -> None:
        super().__init__()
        self.srh, self.eos = srh, eos_token_id

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy per predicted token; ``tokens`` (B, L) padded, ``lengths`` (B,)."""
        b = tokens.shape[0]
        ids = torch.cat([tokens, tokens.new_zeros(b, 1)], dim=1)  # room for EOS
        ids[torch.arange(b), lengths] = self.eos
        positions = torch.arange(ids.shape[1], device=ids.device)
        mask = positions[None, :] <= lengths[:, None]  # (B, L+1): tokens and EOS
        inputs = self.srh.speech_embedding(ids[:, :-1])  # (B, L, d_s): no sub-state term
        states = self.srh.states(inputs, mask[:, :-1].long())  # (B, L, d_s)
        labels = ids[:, 1:].masked_fill(~mask[:, 1:], -100)  # (B, L)
        logits = self.srh.logits(states)  # (B, L, V_s)
        return F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)


class AnswerBatches:
    """Deterministic batches of the assistant's speech tokens from one split's distinct
    answers (same position -> same batch, shardable), as ``UtteranceBatches`` does for the
    users' speech."""

    def __init__(self, dialogues, features, seed: int = 0) -> None:
        self.items = sorted({t.assistant_audio for d in dialogues for t in d.turns})
        self.features, self.seed = features, seed

    def batch(self, index: int, batch_size: int, rank: int = 0, num_processes: int = 1):
        """Global batch ``index``: this rank's share as (tokens (B, L), lengths (B,))."""
        order = np.random.default_rng([self.seed, 3, index]).choice(
            len(self.items), size=min(batch_size, len(self.items)), replace=False
        )
        seqs = [torch.from_numpy(self.features.answer_tokens(self.items[i])) for i in order]
        seqs = seqs[rank::num_processes]
        return (
            torch.nn.utils.rnn.pad_sequence(seqs, batch_first=True),
            torch.tensor([len(s) for s in seqs]),
        )
