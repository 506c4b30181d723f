"""Voice-activity trimming of recorded input with Silero VAD (its ONNX model ships in the wheel).

A microphone take usually starts and ends with room noise; the model was trained on
utterances with short pauses around them, so the demo keeps only the span from the first to
the last detected speech, plus a little padding.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from drvoice_lab.audio.io import MODEL_SAMPLE_RATE, SilentAudioError

PAD_SECONDS = 0.15  # kept around the detected speech, as in the training utterances


@dataclass(frozen=True)
class TrimResult:
    audio: np.ndarray  # (T,) float32 at 16 kHz
    start_s: float  # where the kept span starts in the original
    end_s: float
    original_s: float


_lock = threading.Lock()  # the ONNX wrapper keeps recurrent state between calls


@lru_cache(maxsize=1)
def _silero():
    """silero_vad's speech-span function and its ONNX model (shipped in the wheel)."""
    threads = torch.get_num_threads()
    import silero_vad  # its import calls torch.set_num_threads(1)...

    torch.set_num_threads(threads)  # ...which would halve the model's speed on 2 cores
    return silero_vad.get_speech_timestamps, silero_vad.load_silero_vad(onnx=True)


def speech_spans(audio: np.ndarray, threshold: float = 0.5) -> list[tuple[int, int]]:
    """(start, end) sample indices of the speech in 16 kHz mono ``audio``."""
    get_speech_timestamps, model = _silero()
    with _lock:
        spans = get_speech_timestamps(
            torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)),
            model,
            threshold=threshold,
            sampling_rate=MODEL_SAMPLE_RATE,
            speech_pad_ms=0,
        )
    return [(int(s["start"]), int(s["end"])) for s in spans]


def trim_silence(audio: np.ndarray, pad_seconds: float = PAD_SECONDS) -> TrimResult:
    """Keep first-to-last detected speech (+ ``pad_seconds`` each side) of 16 kHz mono audio;
    raise ``SilentAudioError`` when the VAD hears no speech at all."""
    spans = speech_spans(audio)
    total = len(audio) / MODEL_SAMPLE_RATE
    if not spans:
        raise SilentAudioError(
            f"no speech detected in {total:.1f} s of audio; speak closer to the microphone "
            "or turn voice-activity trimming off"
        )
    pad = int(pad_seconds * MODEL_SAMPLE_RATE)
    start, end = max(0, spans[0][0] - pad), min(len(audio), spans[-1][1] + pad)
    rate = MODEL_SAMPLE_RATE
    return TrimResult(audio[start:end], start / rate, end / rate, total)
