"""`drvoice-lab bench`: run the suites, append their rows to CSVs, regenerate the summary.

Suites (all on the default model / tiny preset unless said otherwise):
  ceiling     dense matmul GFLOP/s of this machine
  latency     one spoken turn per stage, cold and warm, with FLOPs and fraction of the ceiling
  resolution  backbone positions, FLOPs, prefill and decode-step time at k = 1, 2, 3, 5, 7
              for 10 / 30 / 60 s turns, tiny and small-width backbones, as ratios to k = 1
  training    samples/s and peak memory, full fine-tuning vs LoRA (tiny preset)
``quick`` shrinks every suite so that the whole run takes well under a minute (the tests).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from drvoice_lab.benchmarks import machine, report
from drvoice_lab.benchmarks.resolution import BACKBONES, resolution_table

ALL_SUITES = ("ceiling", "latency", "resolution", "training")


@dataclass(frozen=True)
class BenchSettings:
    suites: tuple[str, ...] = ALL_SUITES
    out: Path = Path("bench/results")
    checkpoint: str | None = None  # latency suite: model folder (default: the shipped one)
    quick: bool = False

    def __post_init__(self) -> None:
        unknown = set(self.suites) - set(ALL_SUITES)
        if unknown:
            raise ValueError(f"unknown bench suites {sorted(unknown)}; choose from {ALL_SUITES}")


def run_bench(settings: BenchSettings, say: Callable[[str], None] = print) -> dict[str, list]:
    """Run the chosen suites; returns their rows by suite (also appended to the CSVs)."""
    results: dict[str, list] = {}
    ceiling = None
    for suite in ALL_SUITES:  # fixed order: the ceiling first, latency before anything warms up
        if suite not in settings.suites:
            continue
        stamp = machine.machine_fields()  # one date per suite run
        say(f"[bench] {suite} ...")
        if suite == "ceiling":
            rows = machine.ceiling_rows((256, 512) if settings.quick else (256, 1024, 2048))
            ceiling = max(r["gflops"] for r in rows)
        elif suite == "latency":
            ceiling = ceiling or machine.matmul_gflops(1024)
            rows = _latency(settings, ceiling)
        elif suite == "resolution":
            rows = _resolution(settings, say)
        else:
            from drvoice_lab.benchmarks.throughput import throughput_rows

            rows = throughput_rows(steps=2, warmup=1) if settings.quick else throughput_rows()
        results[suite] = rows
        report.append_rows(settings.out, suite, stamp, rows)
    summary = report.write_summary(settings.out)
    say(f"[bench] results appended to {settings.out}/<suite>.csv; summary: {summary}")
    return results


def _latency(settings: BenchSettings, ceiling: float) -> list[dict]:
    from drvoice_lab.benchmarks.latency import latency_rows
    from drvoice_lab.data.voices import HELDOUT_USER_VOICES
    from drvoice_lab.inference.pipeline import VoiceChat, default_checkpoint

    chat = VoiceChat.from_checkpoint(settings.checkpoint or default_checkpoint())
    wav = HELDOUT_USER_VOICES[0].synthesize("Which city is the capital of Japan?")  # 16 kHz
    return latency_rows(chat, wav, warm_turns=1 if settings.quick else 5, gflops=ceiling)


def _resolution(settings: BenchSettings, say: Callable[[str], None]) -> list[dict]:
    if settings.quick:
        return resolution_table(BACKBONES["tiny"], seconds=(10.0,), ks=(1, 5), reps=1)
    rows = []
    for backbone in BACKBONES.values():
        rows += resolution_table(
            backbone,
            progress=lambda r: say(
                f"  {r['backbone']:<28} {r['seconds']:4.0f} s  k={r['k']}  "
                f"{r['positions']:5d} positions  prefill {r['prefill_ms']:9.2f} ms "
                f"(x{r['prefill_speedup']:.2f})  step {r['step_ms']:7.3f} ms"
            ),
        )
    return rows
