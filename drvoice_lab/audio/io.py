"""Audio in and out: read any soundfile format, mix to mono, resample (soxr), validate, write.

Everything that enters the model goes through ``load_audio``, which returns float32 mono at
16 kHz or raises an ``AudioError`` subclass whose message a user can act on.
"""

from __future__ import annotations

import io
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

MODEL_SAMPLE_RATE = 16_000
DEFAULT_MAX_SECONDS = 60.0
SILENCE_PEAK = 1e-4  # below -80 dBFS peak counts as silence
CLIP_LEVEL = 0.999
CLIP_FRACTION = 0.01  # more than 1 % of samples at full scale counts as clipped


class AudioError(ValueError):
    """Base class: the audio cannot be used. The message says why and what to do."""


class EmptyAudioError(AudioError):
    pass


class SilentAudioError(AudioError):
    pass


class NonFiniteAudioError(AudioError):
    pass


class ClippedAudioError(AudioError):
    pass


class AudioTooLongError(AudioError):
    pass


class UnreadableAudioError(AudioError):
    """Unsupported format, corrupted file, or bytes that are not audio at all."""


@dataclass(frozen=True)
class AudioLimits:
    max_seconds: float = DEFAULT_MAX_SECONDS
    reject_clipped: bool = True
    reject_silent: bool = True


def read_audio(source: str | Path | bytes) -> tuple[np.ndarray, int]:
    """Read a file (path or raw bytes) as float32 (frames, channels) and its sample rate."""
    try:
        handle = io.BytesIO(source) if isinstance(source, bytes) else source
        data, rate = sf.read(handle, dtype="float32", always_2d=True)
    except FileNotFoundError:
        raise
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        name = "the given bytes" if isinstance(source, bytes) else str(source)
        raise UnreadableAudioError(
            f"cannot read {name} as audio ({err}); is it damaged, or not wav, flac or ogg?"
        ) from err
    return data, rate


def to_mono(samples: np.ndarray) -> np.ndarray:
    """(frames,) or (frames, channels) -> (frames,) by averaging channels."""
    samples = np.asarray(samples, dtype=np.float32)
    if samples.size == 0:  # a header-only file: validate() reports it as empty
        return samples.reshape(-1)
    if samples.ndim == 2:
        # A (channels, frames) array from a caller: channels are the short axis.
        if samples.shape[0] < samples.shape[1] and samples.shape[0] <= 8:
            samples = samples.T
        return samples.mean(axis=1)
    if samples.ndim != 1:
        raise AudioError(f"audio must be 1-D or 2-D (frames, channels), got shape {samples.shape}")
    return samples


def resample(samples: np.ndarray, rate: int, target: int = MODEL_SAMPLE_RATE) -> np.ndarray:
    """Band-limited resampling with soxr (high quality)."""
    if rate == target:
        return samples.astype(np.float32, copy=False)
    if rate <= 0:
        raise AudioError(f"sample rate must be positive, got {rate}")
    return soxr.resample(samples, rate, target, quality="HQ").astype(np.float32)


def validate(samples: np.ndarray, rate: int, limits: AudioLimits = AudioLimits()) -> None:
    """Raise a typed AudioError when mono ``samples`` are unusable."""
    if samples.size == 0:
        raise EmptyAudioError("the audio is empty (zero samples)")
    if not np.isfinite(samples).all():
        raise NonFiniteAudioError("the audio contains NaN or infinite samples")
    seconds = samples.size / rate
    if seconds > limits.max_seconds:
        raise AudioTooLongError(
            f"the audio is {seconds:.1f} s long; the limit is {limits.max_seconds:g} s - "
            "trim it or raise max_seconds"
        )
    peak = float(np.abs(samples).max())
    if limits.reject_silent and peak < SILENCE_PEAK:
        raise SilentAudioError(
            f"the audio is silent (peak {peak:.2e}); check the microphone or the file"
        )
    if limits.reject_clipped:
        clipped = float(np.mean(np.abs(samples) >= CLIP_LEVEL))
        if clipped > CLIP_FRACTION:
            raise ClippedAudioError(
                f"{clipped:.1%} of the samples are at full scale (clipped); record at a lower level"
            )


def load_audio(
    source: str | Path | bytes | np.ndarray,
    sample_rate: int | None = None,
    *,
    target_rate: int = MODEL_SAMPLE_RATE,
    limits: AudioLimits = AudioLimits(),
) -> np.ndarray:
    """Path, raw bytes or array -> validated float32 mono at ``target_rate`` (16 kHz).

    Arrays need ``sample_rate``; integer arrays (e.g. int16 from a microphone widget) are
    scaled to [-1, 1]. The length limit is checked before resampling so a huge file costs
    nothing beyond its read.
    """
    if isinstance(source, np.ndarray):
        if sample_rate is None:
            raise AudioError("an audio array needs its sample_rate")
        samples, rate = source, int(sample_rate)
        if np.issubdtype(samples.dtype, np.integer):
            samples = samples.astype(np.float32) / float(np.iinfo(samples.dtype).max)
    else:
        if isinstance(source, (str, Path)):
            _check_readable_file(Path(source))
        _check_wav_complete(source)
        _check_length_from_header(source, limits)
        samples, rate = read_audio(source)
    mono = to_mono(samples)
    validate(mono, rate, limits)
    return resample(mono, rate, target_rate)


def _check_readable_file(path: Path) -> None:
    """Name the real problem with a path; libsndfile calls all of these a format error."""
    if not path.exists():
        raise UnreadableAudioError(f"no such file: {path}")
    if path.is_dir():
        raise UnreadableAudioError(f"{path} is a directory; pass an audio file (wav, flac, ogg)")
    try:
        with open(path, "rb"):
            pass
    except PermissionError as err:
        raise UnreadableAudioError(
            f"cannot read {path}: permission denied; check the file's permissions"
        ) from err
    except OSError as err:
        raise UnreadableAudioError(f"cannot read {path}: {err.strerror or err}") from err


def _check_wav_complete(source: str | Path | bytes) -> None:
    """Refuse a WAV whose data chunk is shorter than its header says (a cut download or copy).

    libsndfile silently reads the frames that are there, so this reads the chunk sizes itself.
    Streaming writers that cannot seek back leave the size 0 or 0xFFFFFFFF: not a truncation.
    """
    if not isinstance(source, (str, Path, bytes)):
        return  # a file-like object from a caller: libsndfile reads it as it is
    name = "the given bytes" if isinstance(source, bytes) else str(source)
    with io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb") as handle:
        found = _wav_data_sizes(handle)
    if found is None:
        return
    declared, present, byte_rate = found
    if declared in (0, 0xFFFFFFFF) or present >= declared:
        return
    if byte_rate:
        sizes = f"{declared / byte_rate:.2f} s of audio, only {present / byte_rate:.2f} s present"
    else:
        sizes = f"{declared} bytes of audio, only {present} present"
    raise UnreadableAudioError(
        f"{name}: truncated wav (the header announces {sizes}); copy or record it again"
    )


def _wav_data_sizes(handle) -> tuple[int, int, int] | None:
    """(declared data bytes, data bytes present, byte rate) of a RIFF/WAVE file, or None when
    the input is not one (other formats report their own damage through libsndfile)."""
    end = handle.seek(0, io.SEEK_END)
    handle.seek(0)
    head = handle.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    byte_rate = 0
    for _ in range(64):  # a real file has a handful of chunks before its data
        chunk = handle.read(8)
        if len(chunk) < 8:
            return None
        kind, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
        if kind == b"data":
            return size, end - handle.tell(), byte_rate
        body_start = handle.tell()
        fmt = handle.read(12) if kind == b"fmt " else b""
        if len(fmt) == 12:
            byte_rate = struct.unpack("<I", fmt[8:12])[0]
        handle.seek(body_start + size + (size & 1))  # chunks are padded to an even size
    return None


def _check_length_from_header(source: str | Path | bytes, limits: AudioLimits) -> None:
    """Refuse over-long files from their header, before decoding them."""
    try:
        info = sf.info(io.BytesIO(source) if isinstance(source, bytes) else source)
    except (sf.LibsndfileError, RuntimeError, TypeError):
        return  # read_audio reports unreadable input with a proper message
    if info.frames > 0 and info.frames / info.samplerate > limits.max_seconds:
        raise AudioTooLongError(
            f"the audio is {info.frames / info.samplerate:.1f} s long; the limit is "
            f"{limits.max_seconds:g} s - trim it or raise max_seconds"
        )


def write_audio(path: str | Path, samples: np.ndarray, rate: int = MODEL_SAMPLE_RATE) -> Path:
    """Write float samples in [-1, 1] as 16-bit PCM wav (parent folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(
        path, np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0), rate, subtype="PCM_16"
    )
    return path


def check_audio_out(path: str | Path) -> Path:
    """Fail now, before any work, when :func:`write_audio` could not write ``path``."""
    path = check_writable(path)
    kind = path.suffix.lstrip(".").upper()
    if kind not in sf.available_formats() or not sf.check_format(kind, "PCM_16"):
        raise ValueError(f"cannot write audio to {path}: name it .wav or .flac")
    return path


def check_writable(path: str | Path, folder: bool = False) -> Path:
    """Fail now, before any work, when a file (or with ``folder``, a folder of files) cannot be
    written at ``path``; missing parent folders count as creatable when their ancestor is."""
    path = Path(path)
    if path.exists() and path.is_dir() != folder:
        what = "a folder" if folder else "a file name, not a folder"
        raise ValueError(f"{path} is {'a file' if folder else 'a folder'}; --out needs {what}")
    existing = path
    while not existing.exists():  # ends at '.' or '/' at the latest
        existing = existing.parent
    if existing != path and not existing.is_dir():
        raise ValueError(
            f"cannot write {path}: {existing} is a file, not a folder; choose another --out"
        )
    # os.access is also false on a read-only file system, even for root.
    if not os.access(existing, os.W_OK | (os.X_OK if existing.is_dir() else 0)):
        raise ValueError(
            f"cannot write {path}: permission denied on {existing}; choose another --out"
        )
    return path
