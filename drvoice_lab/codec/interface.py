"""The 25 Hz speech tokenizer contract, which the default codec and the CosyVoice2 adapter keep.

A speech tokenizer turns 16 kHz audio into 25 discrete tokens per second and back into audio.
Token count: ``encode`` returns exactly ``ceil(len(wav) / 640)`` ids (``ceil(seconds * 25)``;
the last token is zero-padded), and ``decode`` returns ``len(ids) * samples_per_token``
samples at ``sample_rate``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator

import numpy as np


class SpeechTokenizer(ABC):
    """Audio (16 kHz mono float32) <-> 25 Hz discrete speech tokens."""

    token_rate: int = 25
    vocab_size: int  # ids are 0 .. vocab_size - 1
    sample_rate: int  # of decoded audio
    input_rate: int = 16_000  # of audio given to encode

    @property
    def samples_per_token(self) -> int:
        """Decoded samples per token (sample_rate / 25)."""
        return self.sample_rate // self.token_rate

    def num_tokens(self, num_samples: int) -> int:
        """Tokens ``encode`` returns for ``num_samples`` input samples: ceil(seconds * 25)."""
        per_token = self.input_rate // self.token_rate
        return -(-int(num_samples) // per_token)

    @abstractmethod
    def encode(self, wav16k: np.ndarray) -> np.ndarray:
        """(samples,) float32 at 16 kHz -> (ceil(seconds * 25),) int64 ids."""

    @abstractmethod
    def decode(self, ids: np.ndarray) -> np.ndarray:
        """(T,) ids -> (T * samples_per_token,) float32 waveform at ``sample_rate``."""

    def decode_stream(
        self, ids: np.ndarray, chunk_tokens: int = 15, lookahead: int | None = None
    ) -> Iterator[np.ndarray]:
        """Yield the waveform of ``chunk_tokens`` tokens at a time.

        This fallback decodes everything at once and slices it; streaming implementations
        override it and emit a chunk as soon as ``lookahead`` further tokens are known.
        """
        if chunk_tokens < 1:
            raise ValueError(f"chunk_tokens must be >= 1, got {chunk_tokens}")
        wav = self.decode(ids)
        step = chunk_tokens * self.samples_per_token
        for start in range(0, len(wav), step):
            yield wav[start : start + step]

    def check_ids(self, ids: np.ndarray | Iterable[int]) -> np.ndarray:
        """Validate ids (array, list, or CPU torch tensor): 1-D integers in range -> int64."""
        if isinstance(ids, np.ndarray):
            arr = ids
        else:  # a list, or a torch tensor on any device
            arr = np.asarray(ids.tolist() if hasattr(ids, "tolist") else list(ids))
        if arr.size == 0:
            return np.zeros(0, dtype=np.int64)
        if arr.ndim != 1:
            raise ValueError(f"speech ids must be 1-D, got shape {arr.shape}")
        if not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"speech ids must be integers, got dtype {arr.dtype}")
        low, high = int(arr.min()), int(arr.max())
        if low < 0 or high >= self.vocab_size:
            raise ValueError(
                f"speech ids must lie in 0..{self.vocab_size - 1}, got values in {low}..{high}"
            )
        return arr.astype(np.int64)


def check_wav(wav16k: np.ndarray) -> np.ndarray:
    """Validate an encode input: 1-D finite float samples. Returns float32."""
    wav = np.asarray(wav16k)
    if wav.ndim != 1:
        raise ValueError(
            f"encode needs mono (samples,) audio at 16 kHz, got shape {wav.shape}; "
            "use drvoice_lab.audio.load_audio to read, mix down and resample"
        )
    if not np.issubdtype(wav.dtype, np.floating):
        raise ValueError(f"encode needs float samples in [-1, 1], got dtype {wav.dtype}")
    if not np.isfinite(wav).all():
        raise ValueError("the audio contains NaN or infinite samples")
    return wav.astype(np.float32, copy=False)


def seconds_to_tokens(seconds: float) -> int:
    """ceil(seconds * 25): the number of tokens for a duration."""
    return math.ceil(round(seconds * SpeechTokenizer.token_rate, 9))
