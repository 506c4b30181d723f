"""The project's default speech tokenizer: a 25 Hz mel codec fitted on its own audio.

``MelCodecTokenizer`` is the embedded default, fitted by the project on its hibari-voice audio
(``drvoice_lab.codec.fitting.fit_default_tokenizer``):

- encode: 80-bin log-mel (n_fft 400, hop 10 ms), 4 frames stacked per token (40 ms), nearest
  centroid of a k-means codebook -> one id in ``0 .. vocab_size-1`` per token;
- decode: a small trained conv net (``decoder``) maps each token and its neighbours (bounded
  left and right context) to 4 log-mel frames, non-negative least squares turns mel into linear
  magnitudes (``features``), and a streaming Griffin-Lim (``vocoder``) turns those into a
  waveform.

Streaming: decoding is causal up to ``lookahead_tokens`` future tokens, so ``decode_stream``
(or ``stream().push/flush``) yields audio chunk by chunk whose concatenation equals ``decode``
exactly: every step runs in the same order on the same numbers whatever the chunking.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict
from functools import cached_property
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from drvoice_lab.codec.config import MelCodecConfig
from drvoice_lab.codec.decoder import TokenToMelNumpy
from drvoice_lab.codec.features import log_mel, mel_filters, mel_to_magnitudes, spread_matrix
from drvoice_lab.codec.interface import SpeechTokenizer, check_wav
from drvoice_lab.codec.vocoder import StreamingGriffinLim

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT = "drvoice-mel-codec"


class MelCodecTokenizer(SpeechTokenizer):
    """k-means over 4 stacked log-mel frames; trained conv token->mel; streaming Griffin-Lim."""

    def __init__(self, config: MelCodecConfig, weights: dict[str, np.ndarray]):
        self.config = config
        self.vocab_size = config.vocab_size
        self.sample_rate = self.input_rate = config.sample_rate
        self.weights = weights
        self.net = TokenToMelNumpy(config, weights)
        self.codebook = weights["codebook"].astype(np.float32)  # (K, k * n_mels) raw log-mel
        self.filters = mel_filters(config)  # (bins, n_mels)
        self.info: dict = {}

    @property
    def lookahead_tokens(self) -> int:
        """Future tokens needed before a token's audio is final (streaming latency)."""
        return self.config.lookahead_tokens

    # -- encode

    def features(self, wav16k: np.ndarray) -> np.ndarray:
        """(samples,) -> (T, k * n_mels) stacked log-mel, T = ceil(samples / 640)."""
        wav = check_wav(wav16k)
        n = self.num_tokens(len(wav))
        wav = np.pad(wav, (0, n * self.samples_per_token - len(wav)))
        mel = log_mel(wav, self.config, self.filters)  # (T * k, n_mels)
        return mel.reshape(n, self.config.token_dim)  # (T, k * n_mels)

    def encode(self, wav16k: np.ndarray) -> np.ndarray:
        return nearest(self.features(wav16k), self.codebook)

    # -- decode

    def token_mel(self, ids: np.ndarray) -> np.ndarray:
        """(T,) ids -> (T * k, n_mels) float32 log-mel frames."""
        ids = self.check_ids(ids)
        if len(ids) == 0:
            return np.zeros((0, self.config.n_mels), dtype=np.float32)
        return self.net(ids).reshape(-1, self.config.n_mels)

    @cached_property
    def _spread(self) -> np.ndarray:
        return spread_matrix(self.filters)  # (n_mels, bins)

    def magnitudes(self, mel: np.ndarray, iters: int = 5) -> np.ndarray:
        """(frames, n_mels) log-mel -> (frames, bins) non-negative linear magnitudes."""
        return mel_to_magnitudes(mel, self.filters, self._spread, iters)

    def vocoder(self) -> StreamingGriffinLim:
        c = self.config
        return StreamingGriffinLim(
            c.n_fft, c.hop_length, c.frames_per_token, c.gl_lookahead_frames, c.gl_iters,
            c.gl_momentum,
        )  # fmt: skip

    def decode(self, ids: np.ndarray) -> np.ndarray:
        mel = self.token_mel(ids)  # (T * k, n_mels)
        return self.vocoder().push(self.magnitudes(mel), final=True)

    def stream(self) -> DecodeStream:
        """A fresh incremental decoder: ``push(ids)`` as they are generated, then ``flush()``."""
        return DecodeStream(self)

    def decode_stream(
        self, ids: np.ndarray, chunk_tokens: int = 15, lookahead: int | None = None
    ) -> Iterator[np.ndarray]:
        """Yield the audio of ``chunk_tokens`` tokens at a time, each chunk produced as soon
        as ``lookahead`` (default: the minimum, ``lookahead_tokens``) more tokens are known."""
        ids = self.check_ids(ids)
        lookahead = self.lookahead_tokens if lookahead is None else lookahead
        if chunk_tokens < 1:
            raise ValueError(f"chunk_tokens must be >= 1, got {chunk_tokens}")
        if lookahead < self.lookahead_tokens:
            raise ValueError(
                f"this detokenizer needs lookahead >= {self.lookahead_tokens} tokens for its "
                f"chunks to equal one-shot decoding, got {lookahead}"
            )
        stream, pending, fed, done = self.stream(), np.zeros(0, np.float32), 0, 0
        per_token = self.samples_per_token
        for end in range(chunk_tokens, len(ids) + chunk_tokens, chunk_tokens):
            end = min(end, len(ids))
            known = min(len(ids), end + lookahead)  # the tokens generated by now
            parts = [pending, stream.push(ids[fed:known])]
            if known == len(ids):
                parts.append(stream.flush())
            fed, audio = known, np.concatenate(parts)
            take = (end - done) * per_token
            assert len(audio) >= take, "look-ahead too short for a final chunk"
            yield audio[:take]
            pending, done = audio[take:], end

    # -- save / load

    def save(self, directory: str | Path) -> Path:
        """Write config.json + model.safetensors (no pickles)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in self.weights.items()}
        save_file(tensors, directory / WEIGHTS_NAME, metadata={"format": FORMAT})
        data = {"format": FORMAT, "config": asdict(self.config), "info": self.info}
        (directory / CONFIG_NAME).write_text(json.dumps(data, indent=2) + "\n")
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> MelCodecTokenizer:
        directory = Path(directory)
        config_path, weights_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
        if not config_path.exists() or not weights_path.exists():
            raise FileNotFoundError(
                f"{directory} holds no mel codec ({CONFIG_NAME} + {WEIGHTS_NAME}); fit one with "
                "drvoice_lab.codec.fitting.fit_default_tokenizer"
            )
        data = json.loads(config_path.read_text())
        if data.get("format") != FORMAT:
            raise ValueError(f"{config_path} is not a {FORMAT} config")
        tok = cls(MelCodecConfig.from_dict(data["config"]), load_file(weights_path))
        tok.info = data.get("info", {})
        return tok


class DecodeStream:
    """Incremental decoding: feed ids as they are generated, get final audio back."""

    def __init__(self, tokenizer: MelCodecTokenizer):
        self.tok = tokenizer
        self.ids = np.zeros(0, dtype=np.int64)
        self.mel_tokens = 0  # tokens whose mel went to the vocoder
        self.vocoder = tokenizer.vocoder()

    def push(self, ids: np.ndarray) -> np.ndarray:
        """Add ids; return the audio that no future token can change any more."""
        self.ids = np.concatenate([self.ids, self.tok.check_ids(ids)])
        ready = len(self.ids) - self.tok.config.right_context
        return self._feed(ready, final=False)

    def flush(self) -> np.ndarray:
        """End of the token stream: return the rest of the audio."""
        return self._feed(len(self.ids), final=True)

    def _feed(self, ready: int, final: bool) -> np.ndarray:
        cfg = self.tok.config
        mag = np.zeros((0, cfg.n_fft // 2 + 1))
        if ready > self.mel_tokens:
            start = max(0, self.mel_tokens - cfg.left_context)
            stop = min(len(self.ids), ready + cfg.right_context)
            mel = self.tok.token_mel(self.ids[start:stop])  # (frames, n_mels)
            k = cfg.frames_per_token
            mel = mel[(self.mel_tokens - start) * k : (ready - start) * k]
            mag = self.tok.magnitudes(mel)
            self.mel_tokens = ready
        return self.vocoder.push(mag, final=final)


def nearest(x: np.ndarray, codebook: np.ndarray, batch: int = 8192) -> np.ndarray:
    """(N, D), (K, D) -> (N,) int64 index of the nearest centroid (squared L2)."""
    c_sq = (codebook.astype(np.float64) ** 2).sum(1)  # (K,)
    out = [np.zeros(0, dtype=np.int64)]
    for start in range(0, len(x), batch):
        xb = x[start : start + batch].astype(np.float64)
        out.append((c_sq[None] - 2 * xb @ codebook.T.astype(np.float64)).argmin(1))
    return np.concatenate(out).astype(np.int64)
