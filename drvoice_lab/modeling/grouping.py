"""Dual resolution: 25 Hz speech <-> 5 Hz backbone positions.

* ``SpeechGrouping`` turns k consecutive speech-token embeddings into one backbone input
  (paper: ``g = W_g . concat(e_1..e_k)``; released code: ``g = W_g . mean(e_1..e_k)``).
* ``SpeechAdapter`` brings continuous user speech (Whisper encoder frames, 50 Hz) to 25 Hz
  features and groups them the same way, so user speech occupies 5 Hz positions too.
"""

from __future__ import annotations

import torch
from torch import nn


def pad_to_multiple(x: torch.Tensor, k: int, value: float | int, dim: int = 1) -> torch.Tensor:
    """Right-pad ``x`` along ``dim`` so its length is a multiple of ``k``."""
    missing = -x.shape[dim] % k
    if missing == 0:
        return x
    pad_shape = list(x.shape)
    pad_shape[dim] = missing
    pad = x.new_full(pad_shape, value)
    return torch.cat([x, pad], dim=dim)


class SpeechGrouping(nn.Module):
    """k embeddings of width d_s -> one backbone input of width D."""

    def __init__(self, k: int, embed_dim: int, hidden_size: int, mode: str = "concat") -> None:
        super().__init__()
        self.k = k
        self.mode = mode
        in_features = k * embed_dim if mode == "concat" else embed_dim
        self.proj = nn.Linear(in_features, hidden_size)  # W_g

    def forward(self, embeds: torch.Tensor) -> torch.Tensor:
        """(B, N*k, d_s) -> (B, N, D). The length must already be a multiple of k."""
        b, t, d = embeds.shape
        if t % self.k:
            raise ValueError(f"grouping needs a length that is a multiple of k={self.k}, got {t}")
        groups = embeds.view(b, t // self.k, self.k, d)  # (B, N, k, d_s)
        if self.mode == "concat":
            pooled = groups.reshape(b, t // self.k, self.k * d)  # (B, N, k*d_s)
        else:
            pooled = groups.mean(dim=2)  # (B, N, d_s)
        return self.proj(pooled)  # (B, N, D)

    def group_tokens(
        self, ids: torch.Tensor, embedding: nn.Embedding, fused: bool = False
    ) -> torch.Tensor:
        """(B, N*k) speech ids -> (B, N, D): embed with ``embedding``, then group.

        ``fused`` gathers the embeddings inside the grouping GEMM (``drvoice_kernels``), so the
        (B, N, k*d_s) concat never exists; layers wrapped by adapters (e.g. LoRA) keep the
        plain path, which the fused op would bypass.
        """
        if not (fused and type(self.proj) is nn.Linear and type(embedding) is nn.Embedding):
            return self(embedding(ids))  # (B, N, D)
        if ids.shape[1] % self.k:
            raise ValueError(
                f"grouping needs a length that is a multiple of k={self.k}, got {ids.shape[1]}"
            )
        from drvoice_kernels import fused_grouping

        return fused_grouping(
            ids,
            embedding.weight,
            self.proj.weight,
            self.proj.bias,
            self.k,
            mode=self.mode,
            padding_idx=embedding.padding_idx,
        )


class SpeechAdapter(nn.Module):
    """Whisper encoder frames (50 Hz) -> 25 Hz features -> grouped 5 Hz backbone inputs."""

    def __init__(
        self,
        encoder_dim: int,
        adapter_dim: int,
        hidden_size: int,
        k: int,
        pool: int = 2,
        mode: str = "concat",
        output_norm: bool = False,
    ) -> None:
        super().__init__()
        self.pool = pool  # 50 Hz / 25 Hz
        self.to_25hz = nn.Sequential(
            nn.Linear(pool * encoder_dim, adapter_dim),
            nn.GELU(),
            nn.Linear(adapter_dim, adapter_dim),
        )
        self.grouping = SpeechGrouping(k, adapter_dim, hidden_size, mode)
        # Without it the grouped speech can grow to ~200x the norm of the text embeddings it
        # is summed with; the backbone's layers then barely change those positions.
        self.output_norm = nn.RMSNorm(hidden_size, eps=1e-6) if output_norm else None

    def features_25hz(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, F, d_enc) at 50 Hz -> (B, ceil(F/2), d_a) at 25 Hz (zero-padded tail)."""
        frames = pad_to_multiple(frames, self.pool, 0.0)
        b, f, d = frames.shape
        stacked = frames.reshape(b, f // self.pool, self.pool * d)  # (B, F/2, 2*d_enc)
        return self.to_25hz(stacked)  # (B, T25, d_a)

    def forward(
        self, frames: torch.Tensor, frame_lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, F, d_enc) -> grouped (B, M, D) and a validity mask (B, M).

        ``frame_lengths`` (B,) counts real 50 Hz frames per row; a 5 Hz position is valid when
        it holds at least one real frame.
        """
        b, f, _ = frames.shape
        if frame_lengths is None:
            frame_lengths = torch.full((b,), f, dtype=torch.long, device=frames.device)
        x25 = self.features_25hz(frames)  # (B, T25, d_a)
        k = self.grouping.k
        x25 = pad_to_multiple(x25, k, 0.0)  # (B, M*k, d_a)
        grouped = self.grouping(x25)  # (B, M, D)
        if self.output_norm is not None:
            grouped = self.output_norm(grouped)  # RMS = the learned gain, like text embeddings
        frames_per_position = self.pool * k
        valid_positions = torch.div(
            frame_lengths + frames_per_position - 1, frames_per_position, rounding_mode="floor"
        )
        mask = (
            torch.arange(grouped.shape[1], device=frames.device)[None, :] < valid_positions[:, None]
        )
        return grouped, mask
