"""Audio, the bottom layer: wav I/O and validation, the Whisper speech encoder, VAD.

The 25 Hz speech tokenizer lives one floor up, in ``drvoice_lab.codec``.
"""

from drvoice_lab.audio.io import (
    MODEL_SAMPLE_RATE,
    AudioError,
    AudioLimits,
    AudioTooLongError,
    ClippedAudioError,
    EmptyAudioError,
    NonFiniteAudioError,
    SilentAudioError,
    UnreadableAudioError,
    load_audio,
    resample,
    to_mono,
    write_audio,
)

__all__ = [
    "MODEL_SAMPLE_RATE",
    "AudioError",
    "AudioLimits",
    "AudioTooLongError",
    "ClippedAudioError",
    "EmptyAudioError",
    "NonFiniteAudioError",
    "SilentAudioError",
    "UnreadableAudioError",
    "load_audio",
    "resample",
    "to_mono",
    "write_audio",
]
