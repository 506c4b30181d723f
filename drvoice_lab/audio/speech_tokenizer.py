"""The 25 Hz speech tokenizer interface and the project's default mel codec.

A speech tokenizer turns 16 kHz audio into 25 discrete tokens per second and back into audio.
``SpeechTokenizer`` is the interface; ``MelCodecTokenizer`` is the embedded default, fitted by
the project on its own hibari-voice audio (``codec_training.fit_default_tokenizer``):

- encode: 80-bin log-mel (n_fft 400, hop 10 ms), 4 frames stacked per token (40 ms), nearest
  centroid of a k-means codebook -> one id in ``0 .. vocab_size-1`` per token;
- decode: a small trained conv net maps each token and its neighbours (bounded left and right
  context) to 4 log-mel frames, then a streaming Griffin-Lim (RTISI-LA: frames are committed one
  token at a time after iterating over a short look-ahead) turns the mel into a waveform.

Token count: ``encode`` returns exactly ``ceil(len(wav) / 640)`` ids (``ceil(seconds * 25)``;
the last token is zero-padded), and ``decode`` returns ``len(ids) * 640`` samples at 16 kHz.

Streaming: decoding is causal up to ``lookahead_tokens`` future tokens, so ``decode_stream``
(or ``stream().push/flush``) yields audio chunk by chunk whose concatenation equals ``decode``
up to float rounding of the conv net on different window lengths (~1e-6).
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, fields
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

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
        wav = self.decode(ids)
        step = chunk_tokens * self.samples_per_token
        for start in range(0, len(wav), step):
            yield wav[start : start + step]

    def check_ids(self, ids: np.ndarray | Iterable[int]) -> np.ndarray:
        """Validate ids: 1-D integers in range. Returns an int64 array."""
        arr = np.asarray(ids)
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
    gl_iters: int = 8
    gl_lookahead_frames: int = 4
    gl_momentum: float = 0.0

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
        """Future tokens needed before the audio of a token is final."""
        return 1 + (self.frames_per_token - 1 + self.gl_lookahead_frames) // 4 + self.right_context

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
    ).astype(np.float32)


def log_mel(wav: np.ndarray, cfg: MelCodecConfig, filters: np.ndarray) -> np.ndarray:
    """(samples,) with samples % hop == 0 -> (samples // hop, n_mels) log-mel magnitudes.

    Frame f is centred on sample f * hop (zero-padded at both ends).
    """
    x = torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32))
    spec = torch.stft(
        x,
        cfg.n_fft,
        cfg.hop_length,
        window=torch.hann_window(cfg.n_fft),
        center=True,
        pad_mode="constant",
        return_complex=True,
    ).abs()  # (F, frames + 1)
    mel = torch.from_numpy(filters).T @ spec[:, :-1]  # (n_mels, frames)
    return torch.log(mel.clamp_min(cfg.log_floor)).T.contiguous().numpy()


def stack_frames(mel: np.ndarray, frames_per_token: int) -> np.ndarray:
    """(T * k, n_mels) -> (T, k * n_mels)."""
    return mel.reshape(mel.shape[0] // frames_per_token, -1)


# --------------------------------------------------------------------------- decoder net


class ConvBlock(nn.Module):
    """Residual block: pad (left, right) -> conv k -> GELU -> conv 1."""

    def __init__(self, channels: int, kernel_size: int, right: int):
        super().__init__()
        self.left, self.right = kernel_size - 1 - right, right
        self.norm = nn.LayerNorm(channels)  # over channels, per time step
        self.conv = nn.Conv1d(channels, channels, kernel_size)
        self.mix = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T)
        h = self.norm(x.transpose(1, 2)).transpose(1, 2)
        h = nn.functional.pad(h, (self.left, self.right))
        return x + self.mix(nn.functional.gelu(self.conv(h)))


class TokenToMel(nn.Module):
    """ids (B, T) -> stacked log-mel (B, T, k * n_mels): centroid + learned correction.

    Each output sees ``left_context`` past and ``right_context`` future tokens, no more.
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
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        # k-means centroids (raw log-mel) and their per-dimension statistics
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


# --------------------------------------------------------------------------- vocoder


class StreamingGriffinLim:
    """Magnitude frames -> waveform, one token (``block`` frames) at a time (RTISI-LA).

    Before a block of frames is committed, it and ``lookahead`` further frames get ``iters``
    (fast) Griffin-Lim iterations against the already committed signal; a frame entering the
    look-ahead starts from the phase of the partial reconstruction. Everything happens in the
    same order whatever the push sizes, so the output never depends on chunking, and a sample
    depends on past frames and at most ``block + lookahead`` frames ahead.

    Signals are held as rows of ``hop`` samples; frame f covers rows f .. f + R - 1
    (R = ceil(n_fft / hop)), i.e. samples f * hop - n_fft // 2 onwards.
    """

    def __init__(
        self, n_fft: int, hop: int, block: int, lookahead: int, iters: int, momentum: float = 0.0
    ):
        self.n_fft, self.hop, self.block = n_fft, hop, block
        self.lookahead, self.iters, self.momentum = lookahead, iters, momentum
        self.rows = -(-n_fft // hop)  # R
        window = np.zeros(self.rows * hop)
        window[:n_fft] = np.hanning(n_fft + 1)[:-1]  # periodic Hann, zero-padded to R * hop
        self.window = window
        self.window_sq = (window**2).reshape(self.rows, hop)  # (R, hop)
        bins = n_fft // 2 + 1
        self.mag = np.zeros((0, bins))  # (frames, bins): every frame pushed so far
        self.phase = np.zeros((0, bins), dtype=np.complex128)  # unit phasors
        self.num = np.zeros((self.rows, hop))  # overlap-add of committed frames
        self.den = np.zeros((self.rows, hop))  # window sum of squares of all pushed frames
        self.started = 0  # frames that have an initial phase
        self.committed = 0  # frames added to ``num``
        self.emitted = 0  # samples returned

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
        start, count = len(self.mag), len(mag)
        self.mag = np.concatenate([self.mag, mag])
        self.phase = np.concatenate([self.phase, np.zeros(mag.shape, dtype=np.complex128)])
        grow = np.zeros((count, self.hop))
        self.num, self.den = np.concatenate([self.num, grow]), np.concatenate([self.den, grow])
        self._overlap_add(self.den, np.broadcast_to(self.window_sq, (count, self.rows, self.hop)),
                          start, 0)

    def _commit(self, a: int, b: int) -> None:
        """Start new look-ahead frames, iterate frames a .. b+lookahead, commit a .. b-1."""
        c = min(b + self.lookahead, len(self.mag))
        if self.started < c:  # phase of the partial reconstruction (zero where there is none)
            spec = self._analyse(self._estimator(self.started, c)())
            mag = np.abs(spec)
            self.phase[self.started : c] = np.where(mag > 1e-9, spec / np.maximum(mag, 1e-9), 1)
            self.started = c
        estimate, previous = self._estimator(a, c), None
        for _ in range(self.iters):
            spec = self._analyse(estimate())  # (c - a, bins)
            if self.momentum and previous is not None:
                spec, previous = spec + self.momentum * (spec - previous), spec
            else:
                previous = spec
            self.phase[a:c] = spec / np.maximum(np.abs(spec), 1e-9)
        self._overlap_add(self.num, self._synth(a, b), a, 0)
        self.committed = b

    def _estimator(self, a: int, b: int) -> Callable[[], np.ndarray]:
        """A function returning the current signal over the rows of frames a .. b-1 (row 0 =
        row a): committed frames plus started ones below b, over their window sum of squares."""
        first = max(a - self.rows + 1, 0)  # the first frame reaching row a
        live = max(first, self.committed)
        base = self.num[a : b - 1 + self.rows].copy()  # (rows, hop): committed frames
        den = np.zeros_like(base)
        self._overlap_add(den, np.broadcast_to(self.window_sq, (b - first, *self.window_sq.shape)),
                          first, a)
        inv_den = 1.0 / np.maximum(den, 1e-8)

        def estimate() -> np.ndarray:
            signal = base.copy()
            self._overlap_add(signal, self._synth(live, b), live, a)
            return signal * inv_den

        return estimate

    def _overlap_add(self, out: np.ndarray, frames: np.ndarray, first: int, origin: int) -> None:
        """Add (n, R, hop) frames first .. first+n-1 into rows ``out`` (row 0 = ``origin``)."""
        for r in range(self.rows):
            start = max(first, origin - r)  # skip rows before the origin
            stop = min(first + len(frames), len(out) + origin - r)
            if stop > start:
                out[start + r - origin : stop + r - origin] += frames[start - first : stop - first, r]

    def _synth(self, a: int, b: int) -> np.ndarray:
        """(b - a, R, hop) windowed time frames from magnitudes and current phases."""
        time = np.fft.irfft(self.mag[a:b] * self.phase[a:b], n=self.n_fft, axis=-1)
        padded = np.zeros((b - a, self.rows * self.hop))
        padded[:, : self.n_fft] = time * self.window[: self.n_fft]
        return padded.reshape(b - a, self.rows, self.hop)

    def _analyse(self, signal: np.ndarray) -> np.ndarray:
        """(n, bins) spectra of the frames of a row signal with n + R - 1 rows."""
        count = len(signal) - self.rows + 1
        frames = np.concatenate([signal[r : r + count] for r in range(self.rows)], axis=1)
        return np.fft.rfft(frames[:, : self.n_fft] * self.window[: self.n_fft], axis=-1)

    def _emit(self, upto: int) -> np.ndarray:
        pad = self.n_fft // 2
        span = slice(self.emitted + pad, upto + pad)
        out = self.num.reshape(-1)[span] / np.maximum(self.den.reshape(-1)[span], 1e-8)
        self.emitted = upto
        return out.astype(np.float32)


# --------------------------------------------------------------------------- default codec


class MelCodecTokenizer(SpeechTokenizer):
    """k-means over 4 stacked log-mel frames; trained conv token->mel; streaming Griffin-Lim."""

    def __init__(self, config: MelCodecConfig, net: TokenToMel | None = None):
        self.config = config
        self.vocab_size = config.vocab_size
        self.sample_rate = config.sample_rate
        self.input_rate = config.sample_rate
        self.net = (net or TokenToMel(config)).eval()
        self.filters = mel_filters(config)  # (bins, n_mels)
        self.info: dict = {}

    @property
    def codebook(self) -> torch.Tensor:
        return self.net.codebook  # (K, k * n_mels)

    @property
    def lookahead_tokens(self) -> int:
        return self.config.lookahead_tokens

    @cached_property
    def _inverse_filters(self) -> np.ndarray:
        return np.linalg.pinv(self.filters.T.astype(np.float64)).T  # (n_mels, bins)

    # -- encode

    def features(self, wav16k: np.ndarray) -> np.ndarray:
        """(samples,) -> (T, k * n_mels) stacked log-mel, T = ceil(samples / 640)."""
        wav = check_wav(wav16k)
        per_token = self.samples_per_token
        n = self.num_tokens(len(wav))
        wav = np.pad(wav, (0, n * per_token - len(wav)))
        return stack_frames(log_mel(wav, self.config, self.filters), self.config.frames_per_token)

    def encode(self, wav16k: np.ndarray) -> np.ndarray:
        feats = torch.from_numpy(self.features(wav16k))  # (T, D)
        if len(feats) == 0:
            return np.zeros(0, dtype=np.int64)
        return nearest(feats, self.codebook).numpy()

    # -- decode

    @torch.no_grad()
    def token_mel(self, ids: np.ndarray) -> np.ndarray:
        """(T,) ids -> (T * k, n_mels) log-mel frames."""
        ids = self.check_ids(ids)
        if len(ids) == 0:
            return np.zeros((0, self.config.n_mels), dtype=np.float32)
        out = self.net(torch.from_numpy(ids)[None])[0]  # (T, D)
        return out.reshape(-1, self.config.n_mels).numpy()

    def magnitudes(self, mel: np.ndarray) -> np.ndarray:
        """(frames, n_mels) log-mel -> (frames, bins) linear magnitudes (pseudo-inverse)."""
        return np.maximum(np.exp(mel.astype(np.float64)) @ self._inverse_filters, 0.0)

    def vocoder(self) -> StreamingGriffinLim:
        c = self.config
        return StreamingGriffinLim(
            c.n_fft, c.hop_length, c.frames_per_token, c.gl_lookahead_frames, c.gl_iters,
            c.gl_momentum,
        )

    def decode(self, ids: np.ndarray) -> np.ndarray:
        mel = self.token_mel(ids)
        return self.vocoder().push(self.magnitudes(mel), final=True)

    def stream(self) -> DecodeStream:
        """A fresh incremental decoder: ``push(ids)`` then ``flush()``."""
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
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().contiguous() for k, v in self.net.state_dict().items()}
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
        config = MelCodecConfig.from_dict(data["config"])
        net = TokenToMel(config)
        net.load_state_dict(load_file(weights_path))
        tok = cls(config, net)
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


def nearest(x: torch.Tensor, codebook: torch.Tensor, batch: int = 8192) -> torch.Tensor:
    """(N, D), (K, D) -> (N,) int64 index of the nearest centroid (squared L2)."""
    c_sq = (codebook**2).sum(1)  # (K,)
    out = []
    for start in range(0, len(x), batch):
        xb = x[start : start + batch]
        out.append((c_sq[None] - 2 * xb @ codebook.T).argmin(1))
    return torch.cat(out)


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


def seconds_to_tokens(seconds: float) -> int:
    """ceil(seconds * 25): the number of tokens for a duration."""
    return math.ceil(round(seconds * SpeechTokenizer.token_rate, 9))
