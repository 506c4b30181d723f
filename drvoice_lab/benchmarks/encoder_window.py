"""Speech encoder: cost of the fitted window vs Whisper's padded 30 s window, and how far apart
their outputs are (the `encoder_window` suite).

The fitted window runs the encoder on ceil(n / 320) frames; the padded window always runs
1500 frames (30 s) and keeps the same first frames. Whisper attention is bidirectional, so the
padded window's frames also attend to the silence after the speech: outputs differ. The speech
is real (hibari TTS), repeated or cut to the requested length.
"""

from __future__ import annotations

import numpy as np
import torch

from drvoice_lab.benchmarks import machine

TEXT = (
    "Could you tell me how long it takes to walk from the station to the museum, "
    "and whether it is open on Sunday mornings?"
)


def speech(seconds: float) -> np.ndarray:
    """``seconds`` of real speech at 16 kHz (one sentence, tiled)."""
    from hibari import Hibari

    from drvoice_lab.audio.io import resample

    wav = resample(Hibari()(TEXT, seed=0), 24000)
    samples = int(seconds * 16_000)
    return np.tile(wav, samples // len(wav) + 1)[:samples]


def compare(fitted: torch.Tensor, padded: torch.Tensor) -> dict[str, float]:
    """How far the fitted window's frames (F, d) are from the padded window's."""
    diff = (fitted - padded).float()
    cosine = torch.nn.functional.cosine_similarity(fitted.float(), padded.float(), dim=-1)
    relative = diff.norm(dim=-1) / padded.float().norm(dim=-1)
    return {
        "max_abs_diff": diff.abs().max().item(),
        "mean_abs_diff": diff.abs().mean().item(),
        "mean_abs_value": padded.float().abs().mean().item(),
        "median_rel_err": relative.median().item(),
        "median_cosine": cosine.median().item(),
        "min_cosine": cosine.min().item(),
    }


def window_row(encoder, name: str, seconds: float, reps: int) -> dict:
    """Best-of-``reps`` time of both windows on ``seconds`` of speech, and their distance."""
    wav = speech(seconds)
    fitted_s = min(machine.timings(lambda: encoder.encode(wav), reps))
    padded_s = min(machine.timings(lambda: encoder.encode(wav, pad_to_window=True), reps))
    fitted, lengths = encoder.encode(wav)
    padded, _ = encoder.encode(wav, pad_to_window=True)
    stats = compare(fitted[0], padded[0])
    return {
        "provider": name,
        "mode": "encode",
        "size": f"{seconds:g} s",
        "seconds": seconds,
        "frames": int(lengths[0]),
        "fitted_ms": round(fitted_s * 1e3, 2),
        "padded_ms": round(padded_s * 1e3, 2),
        **{key: round(value, 6) for key, value in stats.items()},
    }


def bench(settings, say) -> list[dict]:
    """The `encoder_window` suite: ``settings.seconds`` of speech (default 3 s)."""
    from drvoice_lab.audio.encoder import EMBEDDED_WHISPER, SpeechEncoder

    name = settings.encoder or EMBEDDED_WHISPER
    device = "cuda" if torch.cuda.is_available() else "cpu"
    encoder = SpeechEncoder.from_pretrained(name).to(device)
    rows = []
    for seconds in settings.seconds or ((1.0,) if settings.quick else (3.0,)):
        row = window_row(encoder, name, seconds, settings.reps or (1 if settings.quick else 10))
        rows.append(row)
        say(
            f"  {seconds:g} s -> {row['frames']} frames: fitted window {row['fitted_ms']} ms, "
            f"padded 30 s window {row['padded_ms']} ms; median cosine {row['median_cosine']}"
        )
    return rows
