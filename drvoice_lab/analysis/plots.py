"""Figures the notebooks show: the two channels of an answer on one time axis, per-stage
timings of a turn, and the kernel benchmarks from their CSVs (matplotlib, imported lazily)."""

from __future__ import annotations

import csv
from pathlib import Path

from drvoice_lab.inference.timeline import STAGES, timeline_rows


def plot_timeline(result, tokenizer, config, ax=None):
    """Text tokens at their 5 Hz positions (top) over the 25 Hz speech tokens of the same
    positions (dots: codebook id over time); grey lines mark the 5 Hz groups."""
    import matplotlib.pyplot as plt

    rows = timeline_rows(result, tokenizer, config)
    if ax is None:
        _, ax = plt.subplots(figsize=(max(6.0, 0.5 * len(rows)), 3.2))
    step = 1.0 / config.speech_token_rate
    k = config.group_size
    for row in rows:
        t0 = row["start_s"]
        ax.axvline(t0, color="0.85", lw=0.8, zorder=0)
        ax.text(t0 + k * step / 2, 1.07, row["text"], rotation=60, ha="left", va="bottom",
                fontsize=8, transform=ax.get_xaxis_transform())  # fmt: skip
        for j, label in enumerate(row["speech"]):
            if label.isdigit():
                ax.scatter(t0 + j * step, int(label), s=10, color="tab:blue")
            else:  # specials (pad/silence, eos) along the bottom
                ax.scatter(t0 + j * step, -40, s=10, marker="x", color="tab:red")
    ax.set_xlabel("time (s): text token per 5 Hz position, speech token per 25 Hz step")
    ax.set_ylabel("25 Hz codebook id")
    ax.set_xlim(0, max(len(rows), 1) * k * step)
    return ax


def plot_stage_timings(timings: dict[str, float], ax=None):
    """Horizontal bars: milliseconds per stage of one turn (``TurnResult.timings``)."""
    import matplotlib.pyplot as plt

    stages = [s for s in STAGES if s in timings]
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 0.4 * len(stages) + 1))
    ax.barh(stages, [1000 * timings[s] for s in stages], color="tab:green")
    ax.invert_yaxis()
    ax.set_xlabel("ms")
    if "first_audio" in timings:
        ax.set_title(f"first audio after {1000 * timings['first_audio']:.0f} ms", fontsize=10)
    return ax


def read_kernel_bench(path: str | Path) -> list[dict]:
    with Path(path).open() as handle:
        return list(csv.DictReader(handle))


def plot_kernel_bench(paths: list[str | Path]):
    """One panel per kernel CSV: median ms per (size, mode), a bar per provider, from the
    latest row of each (device, provider, mode, size)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(paths), figsize=(5 * len(paths), 3.6), squeeze=False)
    for ax, path in zip(axes[0], paths, strict=True):
        latest: dict[tuple, dict] = {}
        for row in read_kernel_bench(path):
            latest[(row["device"], row["provider"], row["mode"], row["size"])] = row
        cases = sorted({(r["device"], r["size"], r["mode"]) for r in latest.values()})
        providers = sorted({r["provider"] for r in latest.values()})
        width = 0.8 / max(len(providers), 1)
        for i, provider in enumerate(providers):
            values = [
                float(latest[(d, provider, m, s)]["median_ms"])
                if (d, provider, m, s) in latest
                else 0.0
                for d, s, m in cases
            ]
            ax.bar([c + i * width for c in range(len(cases))], values, width, label=provider)
        ax.set_xticks([c + 0.4 - width / 2 for c in range(len(cases))])
        ax.set_xticklabels(
            [f"{s}\n{m}\n{'GPU' if 'CPU' not in d else 'CPU'}" for d, s, m in cases], fontsize=7
        )
        ax.set_yscale("log")
        ax.set_ylabel("median ms")
        ax.set_title(Path(path).stem)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
