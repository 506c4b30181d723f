"""The 25 Hz speech tokenizer interface and the project's default mel codec.

A speech tokenizer turns 16 kHz audio into 25 discrete tokens per second and back into audio.
``SpeechTokenizer`` is the interface; ``MelCodecTokenizer`` is the embedded default, fitted by
the project on its own hibari-voice audio (``codec_training.fit_default_tokenizer``):

- encode: 80-bin log-mel (n_fft 400, hop 10 ms), 4 frames stacked per token (40 ms), nearest
  centroid of a k-means codebook -> one id in ``0 .. vocab_size-1`` per token;
- decode: a small trained conv net maps each token and its neighbours (bounded left and right
  context) to 4 log-mel frames, non-negative least squares turns mel into linear magnitudes,
  and a streaming Griffin-Lim (RTISI-LA: frames are committed one token at a time after
  iterating over a short look-ahead) turns those into a waveform.

Inference is plain numpy: on a busy 2-core machine torch's OpenMP workers spin-wait for a
descheduled peer and small ops get tens of times slower. The torch twin of the net, used for
fitting, lives in ``codec_training``.

Token count: ``encode`` returns exactly ``ceil(len(wav) / 640)`` ids (``ceil(seconds * 25)``;
the last token is zero-padded), and ``decode`` returns ``len(ids) * 640`` samples at 16 kHz.

Streaming: decoding is causal up to ``lookahead_tokens`` future tokens, so ``decode_stream``
(or ``stream().push/flush``) yields audio chunk by chunk whose concatenation equals ``decode``
exactly: every step runs in the same order on the same numbers whatever the chunking.
"""

from __future__ import annotations

import hashlib
import json
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, fields
from functools import cached_property
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from drvoice_lab.paths import ASSETS_DIR

DEFAULT_DIR = ASSETS_DIR / "speech_tokenizer"
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT = "drvoice-mel-codec"


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


# --------------------------------------------------------------------------- config


@dataclass
class MelCodecConfig:
    """Everything that defines a mel codec besides its tensors (saved as config.json)."""

    vocab_size: int = 1024
    sample_rate: int = 16_000
    n_fft: int = 400
    hop_length: int = 160  # 10 ms
    n_mels: int = 80
    frames_per_token: int = 4  # 4 x 10 ms = one 25 Hz token
    log_floor: float = 1e-5  # log(max(mel, floor))
    # token -> mel decoder
    channels: int = 256
    layers: int = 4
    kernel_size: int = 3
    centered_layers: int = 1  # the first layers see kernel//2 future tokens, the rest are causal
    # streaming Griffin-Lim
    gl_iters: int = 8  # per token; every frame is iterated in two consecutive tokens
    gl_lookahead_frames: int = 4
    gl_momentum: float = 0.99  # fast Griffin-Lim (Perraudin et al. 2013)

    @property
    def token_dim(self) -> int:
        return self.n_mels * self.frames_per_token

    @property
    def right_context(self) -> int:
        """Future tokens one token's mel depends on."""
        return self.centered_layers * (self.kernel_size // 2)

    @property
    def left_context(self) -> int:
        """Past tokens one token's mel depends on."""
        half = self.kernel_size // 2
        return self.centered_layers * half + (self.layers - self.centered_layers) * 2 * half

    @property
    def lookahead_tokens(self) -> int:
        """Future tokens needed before the audio of a token is final: the next token (its first
        frames overlap this one's last samples), the vocoder's look-ahead, the net's context."""
        k = self.frames_per_token
        return 1 + (k - 1 + self.gl_lookahead_frames) // k + self.right_context

    @classmethod
    def from_dict(cls, data: dict) -> MelCodecConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


# --------------------------------------------------------------------------- features


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


def hann(n: int) -> np.ndarray:
    """Periodic Hann window (as torch.hann_window)."""
    return np.hanning(n + 1)[:-1]


def nearest(x: np.ndarray, codebook: np.ndarray, batch: int = 8192) -> np.ndarray:
    """(N, D), (K, D) -> (N,) int64 index of the nearest centroid (squared L2)."""
    c_sq = (codebook.astype(np.float64) ** 2).sum(1)  # (K,)
    out = [np.zeros(0, dtype=np.int64)]
    for start in range(0, len(x), batch):
        xb = x[start : start + batch].astype(np.float64)
        out.append((c_sq[None] - 2 * xb @ codebook.T.astype(np.float64)).argmin(1))
    return np.concatenate(out).astype(np.int64)


# --------------------------------------------------------------------------- decoder net


class TokenToMelNumpy:
    """ids (T,) -> stacked log-mel (T, k * n_mels): centroid + a learned correction.

    Numpy twin of ``codec_training.TokenToMel`` (same weight names): embedding + projected
    centroid -> residual conv blocks (LayerNorm, conv k, SiLU, conv 1) -> LayerNorm -> linear.
    The first ``centered_layers`` convs see kernel//2 future tokens, the others are causal.
    Every product goes through ``rowwise_matmul``, so a token's output is bit-identical
    whatever window it is computed in (which chunked decoding relies on).
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


def rowwise_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b where each output row depends only on its input row, bit for bit.

    BLAS rounds a row differently depending on how many rows it is given (~1e-6 in float32),
    and Griffin-Lim phase retrieval is chaotic enough to turn such noise into audible-level
    differences, so chunked decoding would drift from one-shot decoding. numpy's einsum
    (without BLAS) sums each row in a fixed order; it is ~5x slower, which is affordable here.
    """
    return np.einsum("tk,kn->tn", a, b, optimize=False)


def _linear(x: np.ndarray, w: dict, name: str) -> np.ndarray:
    return rowwise_matmul(x, w[f"{name}.weight"].T) + w[f"{name}.bias"]


def _layer_norm(x: np.ndarray, w: dict, name: str, eps: float = 1e-5) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w[f"{name}.weight"] + w[f"{name}.bias"]


def _silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


# --------------------------------------------------------------------------- vocoder


class StreamingGriffinLim:
    """Magnitude frames -> waveform, one token (``block`` frames) at a time (RTISI-LA).

    Before a block of frames is committed, it and ``lookahead`` further frames get ``iters``
    fast Griffin-Lim iterations (momentum) against the already committed signal; a frame
    entering the look-ahead starts from the phase of the partial reconstruction. The steps
    happen in the same order whatever the push sizes, so the output never depends on how the
    frames arrive, and a sample depends only on past frames and ``block + lookahead`` ahead.

    Buffers are indexed by sample + n_fft // 2, so frame f's window starts at f * hop.
    """

    def __init__(
        self, n_fft: int, hop: int, block: int, lookahead: int, iters: int, momentum: float = 0.0
    ):
        self.n_fft, self.hop, self.block = n_fft, hop, block
        self.lookahead, self.iters, self.momentum = lookahead, iters, momentum
        self.window = hann(n_fft)
        self.overlap = -(-n_fft // hop) - 1  # frames on each side whose windows overlap
        self.mag = np.zeros((0, n_fft // 2 + 1))  # (frames, bins): every frame pushed so far
        self.phase = np.zeros((0, n_fft // 2 + 1), dtype=np.complex128)  # unit phasors
        self.num = np.zeros(n_fft)  # overlap-add of the committed frames
        self.den = np.zeros(n_fft)  # window sum of squares of all pushed frames
        self.started = 0  # frames that have an initial phase
        self.committed = 0  # frames added to ``num``
        self.emitted = 0  # samples returned
        self._dens: dict[tuple[int, int], np.ndarray] = {}  # local window sums, by geometry

    def push(self, mag: np.ndarray, final: bool = False) -> np.ndarray:
        """Add (frames, bins) magnitudes; return the samples no later frame can change."""
        self._append(np.asarray(mag, dtype=np.float64))
        total = len(self.mag)
        while self.committed < total:
            end = min(self.committed + self.block, total)
            if end + self.lookahead > total and not final:
                break
            self._commit(self.committed, end)
        done = total * self.hop if final else self.committed * self.hop - self.n_fft // 2
        return self._emit(max(done, self.emitted))

    def _append(self, mag: np.ndarray) -> None:
        start = len(self.mag)
        self.mag = np.concatenate([self.mag, mag])
        self.phase = np.concatenate([self.phase, np.zeros(mag.shape, dtype=np.complex128)])
        size = len(self.mag) * self.hop + self.n_fft
        self.num = np.pad(self.num, (0, size - len(self.num)))
        self.den = np.pad(self.den, (0, size - len(self.den)))
        for f in range(start, len(self.mag)):
            self.den[f * self.hop : f * self.hop + self.n_fft] += self.window**2

    def _commit(self, a: int, b: int) -> None:
        """Start new look-ahead frames, iterate frames a .. b+lookahead, commit a .. b-1."""
        c = min(b + self.lookahead, len(self.mag))
        if self.started < c:  # phase of the partial reconstruction (zero where there is none)
            spec = self._projector(self.started, c)()
            mag = np.abs(spec)
            self.phase[self.started : c] = np.where(mag > 1e-9, spec / np.maximum(mag, 1e-9), 1)
            self.started = c
        project, previous = self._projector(a, c), None
        for _ in range(self.iters):
            spec = project()  # (c - a, bins)
            if self.momentum and previous is not None:
                spec, previous = spec + self.momentum * (spec - previous), spec
            else:
                previous = spec
            self.phase[a:c] = spec / np.maximum(np.abs(spec), 1e-9)
        frames = self._synth(a, b)  # (b - a, n_fft)
        for i, f in enumerate(range(a, b)):
            self.num[f * self.hop : f * self.hop + self.n_fft] += frames[i]
        self.committed = b

    def _projector(self, a: int, c: int) -> Callable[[], np.ndarray]:
        """A function giving the spectra (c - a, bins) of frames a .. c-1 of the current
        estimate: committed frames + started frames below c, over their window sum of squares."""
        live = max(a - self.overlap, self.committed)  # first frame not yet in num
        start, stop = live * self.hop, (c - 1) * self.hop + self.n_fft  # samples covered
        offsets = np.arange(self.n_fft)
        ola_index = ((np.arange(live, c) - live) * self.hop)[:, None] + offsets  # (c-live, n_fft)
        frame_index = ((np.arange(a, c) - live) * self.hop)[:, None] + offsets  # (c-a, n_fft)
        weight = self.window / np.maximum(self._local_den(live, c)[frame_index], 1e-8)
        base = self.num[start:stop][frame_index] * weight  # committed part of each frame

        def project() -> np.ndarray:
            ola = np.bincount(ola_index.ravel(), self._synth(live, c).ravel(), stop - start)
            return np.fft.rfft(ola[frame_index] * weight + base, axis=-1)

        return project

    def _local_den(self, live: int, c: int) -> np.ndarray:
        """Window sum of squares over samples live*hop .. of frames up to c-1 only."""
        first = max(live - self.overlap, 0)
        key = (live - first, c - live)
        if key not in self._dens:
            den = np.zeros((c - first - 1) * self.hop + self.n_fft)
            for f in range(c - first):
                den[f * self.hop : f * self.hop + self.n_fft] += self.window**2
            self._dens[key] = den[(live - first) * self.hop :]
        return self._dens[key]

    def _synth(self, a: int, b: int) -> np.ndarray:
        """(b - a, n_fft) windowed time frames from magnitudes and current phases."""
        return np.fft.irfft(self.mag[a:b] * self.phase[a:b], n=self.n_fft, axis=-1) * self.window

    def _emit(self, upto: int) -> np.ndarray:
        span = slice(self.emitted + self.n_fft // 2, upto + self.n_fft // 2)
        out = self.num[span] / np.maximum(self.den[span], 1e-8)
        self.emitted = upto
        return out.astype(np.float32)


# --------------------------------------------------------------------------- default codec


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
        """(n_mels, bins): each bin takes the weighted mean of its bands' average magnitude."""
        fb = self.filters.astype(np.float64)  # (bins, n_mels)
        rows = np.maximum(fb.sum(1, keepdims=True), 1e-12)  # (bins, 1)
        return (fb / fb.sum(0, keepdims=True) / rows).T

    def magnitudes(self, mel: np.ndarray, iters: int = 5) -> np.ndarray:
        """(frames, n_mels) log-mel -> (frames, bins) non-negative linear magnitudes.

        Start from spreading each band's mean over its bins, then a few multiplicative
        non-negative least-squares updates (Lee & Seung) towards ``x @ filters = mel``.
        Frame by frame, so streaming-safe; a pseudo-inverse blows up on quantised mels.
        """
        fb = self.filters.astype(np.float64)  # (bins, n_mels)
        target = np.exp(mel.astype(np.float64))  # (frames, n_mels)
        x = rowwise_matmul(target, self._spread)  # (frames, bins)
        numer = rowwise_matmul(target, fb.T)
        for _ in range(iters):
            x *= numer / np.maximum(rowwise_matmul(rowwise_matmul(x, fb), fb.T), 1e-12)
        return x

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
                "drvoice_lab.audio.codec_training.fit_default_tokenizer"
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


# --------------------------------------------------------------------------- loading


def load_speech_tokenizer(name: str | Path | None = None) -> SpeechTokenizer:
    """The default tokenizer (``None`` or ``"default"``), a fitted codec directory, or
    ``"cosyvoice2"`` / ``"cosyvoice2:/path/to/CosyVoice2-0.5B"`` (needs those packages)."""
    if name is None or str(name) == "default":
        return MelCodecTokenizer.load(DEFAULT_DIR)
    text = str(name)
    if text == "cosyvoice2" or text.startswith("cosyvoice2:"):
        from drvoice_lab.audio.cosyvoice import CosyVoice2Tokenizer

        return CosyVoice2Tokenizer(text.partition(":")[2] or None)
    if Path(text).is_dir():
        return MelCodecTokenizer.load(text)
    raise ValueError(
        f"unknown speech tokenizer {text!r}: use 'default', 'cosyvoice2[:DIR]' or a directory "
        "holding a fitted codec"
    )


def speech_tokenizer_fingerprint(name: str | Path | None = None) -> str | None:
    """sha256 of a fitted codec's weights (the default one for ``None``/``"default"``), so a
    model can check it is decoded by the tokenizer it was trained with; None for external
    tokenizers (CosyVoice2), whose identity is their name."""
    text = "default" if name is None else str(name)
    folder = DEFAULT_DIR if text == "default" else Path(text)
    weights = folder / "model.safetensors"
    if not weights.is_file():
        return None
    return hashlib.sha256(weights.read_bytes()).hexdigest()


def seconds_to_tokens(seconds: float) -> int:
    """ceil(seconds * 25): the number of tokens for a duration."""
    return math.ceil(round(seconds * SpeechTokenizer.token_rate, 9))
