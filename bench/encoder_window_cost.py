"""Speech encoder: cost of the fitted window vs Whisper's padded 30 s window, and how far apart
their outputs are.

    python bench/encoder_window_cost.py                       # tiny.en, 3 s of speech, CPU
    python bench/encoder_window_cost.py --seconds 3 10 --csv bench/encoder_window_cost.csv

The fitted window runs the encoder on ceil(n / 320) frames; the padded window always runs
1500 frames (30 s) and keeps the same first frames. Whisper attention is bidirectional, so the
padded window's frames also attend to the silence after the speech: outputs differ. The speech
is real (hibari TTS), repeated or cut to the requested length.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

from drvoice_lab.audio import resample  # noqa: E402
from drvoice_lab.audio.encoder import EMBEDDED_WHISPER, SpeechEncoder  # noqa: E402

TEXT = (
    "Could you tell me how long it takes to walk from the station to the museum, "
    "and whether it is open on Sunday mornings?"
)


def speech(seconds: float) -> np.ndarray:
    """``seconds`` of real speech at 16 kHz (one sentence, tiled)."""
    from hibari import Hibari

    wav = resample(Hibari()(TEXT, seed=0), 24000)
    samples = int(seconds * 16_000)
    return np.tile(wav, samples // len(wav) + 1)[:samples]


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (platform.processor() is often empty on Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def best_time(fn, repeats: int) -> float:
    """Best of ``repeats`` wall times in seconds (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=EMBEDDED_WHISPER)
    parser.add_argument("--seconds", type=float, nargs="+", default=[3.0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--csv", type=Path, default=None, help="append result rows here")
    args = parser.parse_args()

    encoder = SpeechEncoder.from_pretrained(args.model).to(args.device)
    device_name = cpu_name() if args.device == "cpu" else torch.cuda.get_device_name()
    print(
        f"{args.model} on {args.device} ({device_name}), torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    rows = []
    for seconds in args.seconds:
        wav = speech(seconds)
        fitted_s = best_time(lambda wav=wav: encoder.encode(wav), args.repeats)
        padded_s = best_time(lambda wav=wav: encoder.encode(wav, pad_to_window=True), args.repeats)
        fitted, lengths = encoder.encode(wav)
        padded, _ = encoder.encode(wav, pad_to_window=True)
        stats = compare(fitted[0], padded[0])
        print(
            f"{seconds:g} s -> {int(lengths[0])} frames: fitted window {fitted_s * 1e3:.1f} ms, "
            f"padded 30 s window {padded_s * 1e3:.1f} ms ({padded_s / fitted_s:.1f}x)\n"
            "  fitted vs padded: "
            + ", ".join(f"{name} {value:.4g}" for name, value in stats.items())
        )
        rows.append(
            dict(
                date=datetime.datetime.now().isoformat(timespec="seconds"),
                device=device_name,
                model=args.model,
                torch=torch.__version__,
                transformers=transformers.__version__,
                seconds=seconds,
                frames=int(lengths[0]),
                fitted_ms=round(fitted_s * 1e3, 2),
                padded_ms=round(padded_s * 1e3, 2),
                **{name: round(value, 6) for name, value in stats.items()},
            )
        )
    if args.csv:
        new = not args.csv.exists()
        with args.csv.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            if new:
                writer.writeheader()
            writer.writerows(rows)
        print(f"appended {len(rows)} rows to {args.csv}")


if __name__ == "__main__":
    main()
