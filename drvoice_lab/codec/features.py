"""Log-mel features of the mel codec, and their inverse (log-mel -> linear magnitudes).

Both sides are plain numpy and frame by frame, so they stream: a frame's result never depends
on how many frames are computed with it (see ``rowwise_matmul``).
"""

from __future__ import annotations

import numpy as np

from drvoice_lab.codec.config import MelCodecConfig


def hann(n: int) -> np.ndarray:
    """Periodic Hann window (as torch.hann_window)."""
    return np.hanning(n + 1)[:-1]


def mel_filters(cfg: MelCodecConfig) -> np.ndarray:
    """(n_fft//2+1, n_mels) Slaney mel filterbank (as Whisper's)."""
    from transformers.audio_utils import mel_filter_bank

    return mel_filter_bank(
        num_frequency_bins=cfg.n_fft // 2 + 1,
        num_mel_filters=cfg.n_mels,
        min_frequency=0.0,
        max_frequency=cfg.sample_rate / 2,
        sampling_rate=cfg.sample_rate,
        norm="slaney",
        mel_scale="slaney",
    )


def log_mel(wav: np.ndarray, cfg: MelCodecConfig, filters: np.ndarray) -> np.ndarray:
    """(samples,) with samples % hop == 0 -> (samples // hop, n_mels) float32 log-mel.

    Magnitude (not power) mel; frame f is centred on sample f * hop (zero-padded ends).
    """
    pad = cfg.n_fft // 2
    x = np.pad(np.asarray(wav, dtype=np.float64), (pad, pad))
    frames = np.lib.stride_tricks.sliding_window_view(x, cfg.n_fft)[:: cfg.hop_length]
    frames = frames[: len(wav) // cfg.hop_length]  # (frames, n_fft)
    spec = np.abs(np.fft.rfft(frames * hann(cfg.n_fft), axis=-1))  # (frames, bins)
    return np.log(np.maximum(spec @ filters, cfg.log_floor)).astype(np.float32)


def rowwise_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b where each output row depends only on its input row, bit for bit.

    BLAS rounds a row differently depending on how many rows it is given (~1e-6 in float32),
    and Griffin-Lim phase retrieval is chaotic enough to turn such noise into audible-level
    differences, so chunked decoding would drift from one-shot decoding. numpy's einsum
    (without BLAS) sums each row in a fixed order; it is ~5x slower, which is affordable here.
    """
    return np.einsum("tk,kn->tn", a, b, optimize=False)


def spread_matrix(filters: np.ndarray) -> np.ndarray:
    """(n_mels, bins): each bin takes the weighted mean of its bands' average magnitude."""
    fb = filters.astype(np.float64)  # (bins, n_mels)
    rows = np.maximum(fb.sum(1, keepdims=True), 1e-12)  # (bins, 1)
    return (fb / fb.sum(0, keepdims=True) / rows).T


def mel_to_magnitudes(
    mel: np.ndarray, filters: np.ndarray, spread: np.ndarray, iters: int = 5
) -> np.ndarray:
    """(frames, n_mels) log-mel -> (frames, bins) non-negative linear magnitudes.

    Start from spreading each band's mean over its bins (``spread_matrix``), then a few
    multiplicative non-negative least-squares updates (Lee & Seung) towards
    ``x @ filters = mel``. A pseudo-inverse blows up on quantised mels.
    """
    fb = filters.astype(np.float64)  # (bins, n_mels)
    target = np.exp(mel.astype(np.float64))  # (frames, n_mels)
    x = rowwise_matmul(target, spread)  # (frames, bins)
    numer = rowwise_matmul(target, fb.T)
    for _ in range(iters):
        x *= numer / np.maximum(rowwise_matmul(rowwise_matmul(x, fb), fb.T), 1e-12)
    return x
