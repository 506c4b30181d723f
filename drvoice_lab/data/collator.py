"""Batch formatted dialogues into model inputs.

Right-pads every channel to the longest example (text with the text pad, speech with the
pad/silence token, labels with -100, attention mask 0) and packs each row's user speech: the
encoder frames of each spoken turn are zero-padded to a multiple of ``2k`` frames (one 5 Hz
position each) before the turns are joined, so the j-th grouped frame lands on the j-th
marked user position of that row.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from drvoice_lab.config import DrVoiceConfig
from drvoice_lab.data.com import Example
from drvoice_lab.modeling.drvoice import IGNORE_INDEX


class DrVoiceCollator:
    def __init__(self, config: DrVoiceConfig, text_pad_id: int | None = None) -> None:
        self.k = config.group_size
        self.frames_per_position = config.frames_per_position
        self.text_pad = config.text_pad_token_id if text_pad_id is None else text_pad_id
        self.speech_pad = config.speech_pad_token_id
        self.encoder_dim = config.encoder_hidden_size

    def __call__(
        self,
        examples: Sequence[Example],
        user_features: Sequence[Sequence[np.ndarray | torch.Tensor]] | None = None,
    ) -> dict[str, torch.Tensor]:
        """``user_features[i]``: example i's (F_j, d_enc) encoder frames, one per spoken turn."""
        n = max(ex.num_positions for ex in examples)
        batch = {
            "text_ids": self._stack([ex.text_ids for ex in examples], n, self.text_pad),
            "text_labels": self._stack([ex.text_labels for ex in examples], n, IGNORE_INDEX),
            "speech_ids": self._stack(
                [ex.speech_ids for ex in examples], n * self.k, self.speech_pad
            ),
            "speech_labels": self._stack(
                [ex.speech_labels for ex in examples], n * self.k, IGNORE_INDEX
            ),
            "attention_mask": self._stack(
                [np.ones(ex.num_positions, np.int64) for ex in examples], n, 0
            ),
        }
        if any(ex.user_position_mask.any() for ex in examples):
            if user_features is None:
                raise ValueError("examples with spoken user turns need their user_features")
            batch["user_position_mask"] = self._stack(
                [ex.user_position_mask for ex in examples], n, False
            ).bool()
            batch["user_features"], batch["user_feature_lengths"] = self._pack_features(
                examples, user_features
            )
        return batch

    @staticmethod
    def _stack(rows: list[np.ndarray], length: int, value) -> torch.Tensor:
        out = np.full((len(rows), length), value, dtype=np.asarray(rows[0]).dtype)
        for i, row in enumerate(rows):
            out[i, : len(row)] = row
        return torch.from_numpy(out)

    def _pack_features(self, examples, user_features) -> tuple[torch.Tensor, torch.Tensor]:
        rows = []
        for ex, feats in zip(examples, user_features, strict=True):
            if len(feats) != len(ex.user_frames):
                raise ValueError(
                    f"example has {len(ex.user_frames)} spoken turns but "
                    f"{len(feats)} feature arrays were given"
                )
            parts = []
            for frames, f in zip(ex.user_frames, feats, strict=True):
                f = torch.as_tensor(np.asarray(f), dtype=torch.float32)  # (F_j, d_enc)
                if f.shape[0] != frames:
                    raise ValueError(
                        f"turn was formatted for {frames} frames, features have {f.shape[0]}"
                    )
                pad = -frames % self.frames_per_position
                parts.append(torch.nn.functional.pad(f, (0, 0, 0, pad)))
            rows.append(torch.cat(parts) if parts else torch.zeros(0, self.encoder_dim))
        lengths = torch.tensor([r.shape[0] for r in rows], dtype=torch.long)
        packed = torch.zeros(len(rows), int(lengths.max()), self.encoder_dim)  # (B, F, d_enc)
        for i, r in enumerate(rows):
            packed[i, : r.shape[0]] = r
        return packed, lengths
