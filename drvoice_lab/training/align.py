"""Speech-adapter alignment: CTC from the adapter's user-speech features to the words.

A backbone trained from scratch learns to *read* spoken input slowly: through the LLM's loss
alone, the randomly initialised adapter gets a weak, indirect signal, and a small model first
learns the question templates and only much later the content words. Real-scale DrVoice starts
from encoders and LLMs that already agree; on the embedded default a short CTC stage plays that
role: a linear CTC head over the adapter's 25 Hz features (``SpeechAdapter.features_25hz``)
is trained to emit the transcript's text tokens, which makes those features word-discriminative
before the backbone ever sees them. The head is thrown away afterwards.

``EmbeddingCTCAligner`` goes one step further, at 5 Hz: its "head" is the backbone's own input
embeddings, so each user-speech position learns to feed the backbone what the text token
spoken there would (about 0.7 tokens per position on the default corpus, so CTC fits). A
backbone that has learnt to answer typed questions can then read spoken ones with little
further training.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from drvoice_lab.modeling.grouping import SpeechAdapter

if TYPE_CHECKING:
    from drvoice_lab.modeling import DrVoiceModel


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
        return _best_path(best, lengths, self.blank)


def _best_path(best: torch.Tensor, lengths: torch.Tensor, blank: int) -> list[list[int]]:
    """(B, T) argmax ids -> per row, the first ``lengths`` merged and without blanks."""
    out = []
    for row, n in zip(best.tolist(), lengths.tolist(), strict=True):
        ids, prev = [], None
        for t in row[:n]:
            if t != prev and t != blank:
                ids.append(t)
            prev = t
        out.append(ids)
    return out


class EmbeddingCTCAligner(nn.Module):
    """CTC at 5 Hz from the backbone inputs at user-speech positions to the text tokens' inputs.

    A text position feeds the backbone ``E[t] + G(pad)`` (token embedding + grouped silence); a
    user-speech position feeds ``E[pad] + A(frames)`` (the adapter's grouped output). Logits are
    scaled cosines between the latter and every ``E[t] + G(pad)``; CTC's blank is the plain pad
    position ``E[pad] + G(pad)``. Cosines are taken about the mean text input, which every
    target shares (``G(pad)`` is in all of them) and which would otherwise make them all alike.
    A second term keeps the speech inputs at the RMS of the text inputs, which cosines leave
    free. The pad token is masked out of the targets (its input *is* the blank). Only the
    adapter (and the scale) train: the targets are a frozen copy of what the backbone reads.
    """

    def __init__(self, model: DrVoiceModel, norm_weight: float = 1.0) -> None:
        super().__init__()
        cfg = model.config
        self.adapter = model.adapter
        self.norm_weight = norm_weight
        with torch.no_grad():
            silence = torch.full((1, cfg.group_size), cfg.speech_pad_token_id)
            g_pad = model.grouping.group_tokens(silence, model.speech_embedding)[0, 0]  # (D,)
            embeddings = model.get_input_embeddings().weight.detach()  # (V, D)
            e_pad = embeddings[cfg.text_pad_token_id].clone()  # (D,)
            text_inputs = embeddings + g_pad  # (V, D): row t = a text position holding t
            blank = (e_pad + g_pad)[None]  # (1, D)
            center = text_inputs.mean(0)  # (D,)
        self.blank = embeddings.shape[0]
        targets = F.normalize(torch.cat([text_inputs, blank]) - center, dim=-1)  # (V+1, D)
        self.register_buffer("targets", targets)
        # the pad token's text input *is* the blank: only the blank may stand for silence
        never = torch.zeros(self.blank + 1)
        never[cfg.text_pad_token_id] = -1e4
        self.register_buffer("never", never)
        self.register_buffer("center", center)
        self.register_buffer("e_pad", e_pad)
        self.register_buffer("target_rms", text_inputs.pow(2).mean(-1).sqrt().mean())
        self.log_scale = nn.Parameter(torch.tensor(3.0))  # cosine -> logit scale, starts ~20

    def forward(self, frames, frame_lengths, targets, target_lengths) -> torch.Tensor:
        return self.loss(frames, frame_lengths, targets, target_lengths)

    def inputs(self, frames, frame_lengths) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, F, d_enc) -> backbone inputs at the user positions (B, M, D), valid (B, M)."""
        grouped, valid = self.adapter(frames, frame_lengths)  # (B, M, D), (B, M)
        return grouped + self.e_pad, valid

    def log_probs(self, x: torch.Tensor) -> torch.Tensor:
        """(B, M, D) backbone inputs -> (B, M, V+1) CTC log-probabilities."""
        cosines = F.normalize(x - self.center, dim=-1) @ self.targets.T  # (B, M, V+1)
        return (cosines * self.log_scale.exp() + self.never).log_softmax(-1)

    def loss(self, frames, frame_lengths, targets, target_lengths) -> torch.Tensor:
        """Mean CTC loss per target token + the RMS-matching term."""
        x, valid = self.inputs(frames, frame_lengths)
        ctc = F.ctc_loss(
            self.log_probs(x).transpose(0, 1).float(),  # (M, B, V+1)
            targets,
            valid.sum(1),
            target_lengths,
            blank=self.blank,
            reduction="mean",
            zero_infinity=True,
        )
        rms = x.pow(2).mean(-1).sqrt()[valid]  # (valid positions,)
        return ctc + self.norm_weight * (rms / self.target_rms - 1).pow(2).mean()

    @torch.no_grad()
    def greedy(self, frames: torch.Tensor, frame_lengths: torch.Tensor) -> list[list[int]]:
        """Best-path decoding at 5 Hz: the token each user position most looks like."""
        x, valid = self.inputs(frames, frame_lengths)
        return _best_path(self.log_probs(x).argmax(-1), valid.sum(1), self.blank)
