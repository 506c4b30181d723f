"""Speech-adapter alignment: CTC from the adapter's 25 Hz user-speech features to the words.

A backbone trained from scratch learns to *read* spoken input slowly: through the LLM's loss
alone, the randomly initialised adapter gets a weak, indirect signal, and a small model first
learns the question templates and only much later the content words. Real-scale DrVoice starts
from encoders and LLMs that already agree; on the embedded default a short CTC stage plays that
role: a linear CTC head over the adapter's 25 Hz features (``SpeechAdapter.features_25hz``)
is trained to emit the transcript's text tokens, which makes those features word-discriminative
before the backbone ever sees them. The head is thrown away afterwards.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from drvoice_lab.modeling.grouping import SpeechAdapter


class CTCAligner(nn.Module):
    """Adapter (shared with the model) + a linear CTC head over text tokens (+ blank)."""

    def __init__(self, adapter: SpeechAdapter, text_vocab_size: int) -> None:
        super().__init__()
        self.adapter = adapter
        width = adapter.to_25hz[-1].out_features
        self.blank = text_vocab_size
        self.head = nn.Linear(width, text_vocab_size + 1)

    def forward(self, frames, frame_lengths, targets, target_lengths) -> torch.Tensor:
        return self.loss(frames, frame_lengths, targets, target_lengths)

    def log_probs(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, F, d_enc) 50 Hz frames -> (B, T25, V+1) CTC log-probabilities."""
        return self.head(self.adapter.features_25hz(frames)).log_softmax(-1)

    def loss(
        self,
        frames: torch.Tensor,
        frame_lengths: torch.Tensor,
        targets: torch.Tensor,
        target_lengths: torch.Tensor,
    ) -> torch.Tensor:
        """Mean CTC loss per target token. ``targets`` (B, L) padded, ``*_lengths`` (B,)."""
        log_probs = self.log_probs(frames).transpose(0, 1)  # (T25, B, V+1)
        input_lengths = torch.div(frame_lengths + self.adapter.pool - 1, self.adapter.pool,
                                  rounding_mode="floor")  # fmt: skip
        return F.ctc_loss(
            log_probs.float(),
            targets,
            input_lengths,
            target_lengths,
            blank=self.blank,
            reduction="mean",
            zero_infinity=True,
        )

    @torch.no_grad()
    def greedy(self, frames: torch.Tensor, frame_lengths: torch.Tensor) -> list[list[int]]:
        """Best-path decoding: argmax per 25 Hz frame, repeats merged, blanks dropped."""
        best = self.log_probs(frames).argmax(-1)  # (B, T25)
        lengths = torch.div(frame_lengths + self.adapter.pool - 1, self.adapter.pool,
                            rounding_mode="floor")  # fmt: skip
        out = []
        for row, n in zip(best.tolist(), lengths.tolist(), strict=True):
            ids, prev = [], None
            for t in row[:n]:
                if t != prev and t != self.blank:
                    ids.append(t)
                prev = t
            out.append(ids)
        return out
