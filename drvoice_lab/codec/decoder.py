"""The token -> mel net of the default codec, in numpy (inference).

Inference is plain numpy: on a busy 2-core machine torch's OpenMP workers spin-wait for a
descheduled peer and small ops get tens of times slower. The torch twin, used for fitting, is
``decoder_training.TokenToMel`` (same weight names).
"""

from __future__ import annotations

import numpy as np

from drvoice_lab.codec.config import MelCodecConfig
from drvoice_lab.codec.features import rowwise_matmul


class TokenToMelNumpy:
    """ids (T,) -> stacked log-mel (T, k * n_mels): centroid + a learned correction.

    Embedding + projected centroid -> residual conv blocks (LayerNorm, conv k, SiLU, conv 1)
    -> LayerNorm -> linear. The first ``centered_layers`` convs see kernel//2 future tokens,
    the others are causal. Every product goes through ``rowwise_matmul``, so a token's output
    is bit-identical whatever window it is computed in (which chunked decoding relies on).
    """

    def __init__(self, cfg: MelCodecConfig, weights: dict[str, np.ndarray]):
        self.cfg = cfg
        self.w = {k: v.astype(np.float32) for k, v in weights.items()}
        for i in range(cfg.layers):  # conv weights (C_out, C_in, k) -> (k * C_in, C_out)
            conv = self.w[f"blocks.{i}.conv.weight"]
            self.w[f"blocks.{i}.conv.matrix"] = conv.transpose(2, 1, 0).reshape(-1, len(conv))

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        w, cfg, k = self.w, self.cfg, self.cfg.kernel_size
        base = w["codebook"][ids]  # (T, D)
        x = w["embed.weight"][ids] + _linear((base - w["mean"]) / w["std"], w, "codebook_in")
        for i in range(cfg.layers):
            right = k // 2 if i < cfg.centered_layers else 0
            h = np.pad(_layer_norm(x, w, f"blocks.{i}.norm"), ((k - 1 - right, right), (0, 0)))
            h = np.concatenate([h[j : j + len(x)] for j in range(k)], axis=1)  # (T, k * C)
            h = _silu(rowwise_matmul(h, w[f"blocks.{i}.conv.matrix"]) + w[f"blocks.{i}.conv.bias"])
            x = x + rowwise_matmul(h, w[f"blocks.{i}.mix.weight"][:, :, 0].T)
            x = x + w[f"blocks.{i}.mix.bias"]
        return base + _linear(_layer_norm(x, w, "norm"), w, "out") * w["std"]  # (T, D)


def _linear(x: np.ndarray, w: dict, name: str) -> np.ndarray:
    return rowwise_matmul(x, w[f"{name}.weight"].T) + w[f"{name}.bias"]


def _layer_norm(x: np.ndarray, w: dict, name: str, eps: float = 1e-5) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w[f"{name}.weight"] + w[f"{name}.bias"]


def _silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))
