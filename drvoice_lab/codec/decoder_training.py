"""Training the codec's token -> mel net: its torch twin, the L1 loop, and its error report.

``TokenToMel`` has the same weight names as the numpy net that decodes
(``decoder.TokenToMelNumpy``), so its ``numpy_weights`` are what a fitted codec saves.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from drvoice_lab.codec.config import MelCodecConfig
from drvoice_lab.codec.mel_codec import MelCodecTokenizer


class ConvBlock(nn.Module):
    """Residual block: LayerNorm -> pad (left, right) -> conv k -> SiLU -> conv 1."""

    def __init__(self, channels: int, kernel_size: int, right: int):
        super().__init__()
        self.left, self.right = kernel_size - 1 - right, right
        self.norm = nn.LayerNorm(channels)  # over channels, per time step
        self.conv = nn.Conv1d(channels, channels, kernel_size)
        self.mix = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T)
        h = self.norm(x.transpose(1, 2)).transpose(1, 2)
        h = nn.functional.pad(h, (self.left, self.right))
        return x + self.mix(nn.functional.silu(self.conv(h)))


class TokenToMel(nn.Module):
    """ids (B, T) -> stacked log-mel (B, T, k * n_mels): centroid + learned correction.

    The torch twin of ``decoder.TokenToMelNumpy`` (same weight names). Each output
    sees ``cfg.left_context`` past and ``cfg.right_context`` future tokens, no more.
    """

    def __init__(self, cfg: MelCodecConfig):
        super().__init__()
        half = cfg.kernel_size // 2
        self.embed = nn.Embedding(cfg.vocab_size, cfg.channels)
        self.codebook_in = nn.Linear(cfg.token_dim, cfg.channels)
        self.blocks = nn.ModuleList(
            ConvBlock(cfg.channels, cfg.kernel_size, half if i < cfg.centered_layers else 0)
            for i in range(cfg.layers)
        )
        self.norm = nn.LayerNorm(cfg.channels)
        self.out = nn.Linear(cfg.channels, cfg.token_dim)
        nn.init.normal_(self.embed.weight, std=0.02)
        nn.init.zeros_(self.out.weight)  # starts as plain centroid lookup
        nn.init.zeros_(self.out.bias)
        # k-means centroids (raw log-mel) and per-dimension statistics of the features
        self.register_buffer("codebook", torch.zeros(cfg.vocab_size, cfg.token_dim))
        self.register_buffer("mean", torch.zeros(cfg.token_dim))
        self.register_buffer("std", torch.ones(cfg.token_dim))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        base = self.codebook[ids]  # (B, T, D)
        x = self.embed(ids) + self.codebook_in((base - self.mean) / self.std)  # (B, T, C)
        x = x.transpose(1, 2)  # (B, C, T)
        for block in self.blocks:
            x = block(x)
        x = self.norm(x.transpose(1, 2))  # (B, T, C)
        return base + self.out(x) * self.std  # (B, T, D)

    def numpy_weights(self) -> dict[str, np.ndarray]:
        return {k: v.detach().numpy().copy() for k, v in self.state_dict().items()}


def train_decoder(
    net: TokenToMel,
    ids: Sequence[np.ndarray],
    feats: Sequence[np.ndarray],
    steps: int = 1500,
    batch: int = 32,
    window: int = 64,
    lr: float = 2e-3,
    seed: int = 0,
    progress: bool = True,
) -> list[float]:
    """Fit ``net`` (ids -> stacked log-mel) with L1 on random windows. Returns the losses."""
    gen = np.random.default_rng(seed)
    torch.manual_seed(seed)
    lengths = np.array([len(i) for i in ids])
    ids_all = np.concatenate(ids)
    feats_all = np.concatenate(feats)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps, pct_start=0.05)
    losses = []
    net.train()
    bar = tqdm(range(steps), desc="token->mel decoder", disable=not progress)
    for _ in bar:
        x, y = _batch(gen, ids_all, feats_all, starts, lengths, batch, window)
        loss = (net(x) - y).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        bar.set_postfix(l1=f"{np.mean(losses[-50:]):.3f}")
    net.eval()
    return losses


def _batch(gen, ids_all, feats_all, starts, lengths, batch, window):
    """Random windows of ``window`` tokens (whole utterance when shorter, padded by repeat)."""
    utt = gen.integers(len(lengths), size=batch)
    offs = starts[utt] + gen.integers(np.maximum(lengths[utt] - window, 0) + 1)  # (B,)
    last = starts[utt] + lengths[utt] - 1
    idx = np.minimum(offs[:, None] + np.arange(window), last[:, None])  # (B, W)
    return torch.from_numpy(ids_all[idx]), torch.from_numpy(feats_all[idx])  # (B, W), (B, W, D)


def decoder_error(tok: MelCodecTokenizer, ids: Sequence[np.ndarray], feats) -> dict[str, float]:
    """Mean absolute log-mel error of centroid lookup and of the trained decoder."""
    cent, net = [], []
    for i, f in zip(ids, feats, strict=True):
        cent.append(np.abs(tok.codebook[i] - f).mean())
        net.append(np.abs(tok.token_mel(i).reshape(f.shape) - f).mean())
    return {"centroid_l1": float(np.mean(cent)), "decoder_l1": float(np.mean(net))}
