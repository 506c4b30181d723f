"""`drvoice-lab bench [SUITE ...]`: run suites, append their rows to CSVs, regenerate the summary.

The suites are listed in ``suites.SUITES`` (and by ``--help``). Every suite's rows go through
``report.append_rows`` into ``<out>/<suite>.csv`` (one schema, see ``report``), and
``<out>/SUMMARY.md`` is regenerated from the latest run of each. ``--quick`` shrinks every
suite so that it finishes in seconds (the tests). ``bench/*.py`` call ``main`` below.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

from drvoice_lab.benchmarks import machine, report
from drvoice_lab.benchmarks.kernels import DTYPES, MODES, PROVIDERS
from drvoice_lab.benchmarks.suites import DEFAULT_SUITES, RUNNABLE, SUITES, suite_list

RESULTS = Path("bench/results")
DESCRIPTION = (
    "Run benchmark suites; rows are appended to <out>/<suite>.csv (date, device, suite, "
    "provider, mode, size, the suite's metrics, versions) and <out>/SUMMARY.md is regenerated."
)


@dataclass(frozen=True)
class BenchSettings:
    suites: tuple[str, ...] = DEFAULT_SUITES
    out: Path = RESULTS  # folder of <suite>.csv and SUMMARY.md
    csv: Path | None = None  # one suite: append its rows to this file instead (no summary)
    write: bool = True  # False: print only
    quick: bool = False  # smallest sizes and fewest repetitions
    note: str = ""  # free text in every row's note column
    reps: int | None = None  # timed runs per point (None: the suite's default)
    seconds: tuple[float, ...] | None = None  # resolution: turn lengths; encoder_window: speech
    checkpoint: str | None = None  # latency, voice_latency: model folder (None: the shipped one)
    # kernel suites
    sizes: tuple[str, ...] | None = None  # None: tiny and 7b (GPU) or 7b-cpu (CPU)
    providers: tuple[str, ...] = PROVIDERS
    modes: tuple[str, ...] = MODES
    dtype: str | None = None  # None: bfloat16 on GPU, float32 on CPU
    # voice_latency
    questions: int = 24
    vad: bool = True
    seed: int = 21
    # speech_tokenizer
    tokenizer: str | None = None
    sentences: int = 100
    # encoder_window
    encoder: str | None = None  # Whisper weights (None: the embedded tiny.en)

    def __post_init__(self) -> None:
        unknown = set(self.suites) - set(RUNNABLE)
        if unknown:
            raise ValueError(f"unknown bench suites {sorted(unknown)}; choose from {RUNNABLE}")
        if self.csv is not None and len(self.suites) != 1:
            raise ValueError("--csv takes the rows of one suite; use --out for several")


def run_bench(settings: BenchSettings, say: Callable[[str], None] = print) -> dict[str, list]:
    """Run the chosen suites in the registry's order; their rows by suite (also appended to
    the CSVs unless ``settings.write`` is off)."""
    results: dict[str, list] = {}
    for name in (n for n in SUITES if n in settings.suites):
        say(f"[bench] {name}: {SUITES[name].help}")
        stamp = machine.machine_fields()  # one date per suite run: the summary shows it whole
        rows = [_with_note(row, settings.note) for row in SUITES[name].runner()(settings, say)]
        results[name] = rows
        if rows and settings.write:
            path = report.append_rows(
                settings.csv or settings.out / f"{name}.csv", name, rows, stamp
            )
            say(f"[bench] appended {len(rows)} rows to {path}")
    if settings.write and settings.csv is None and any(results.values()):
        say(f"[bench] summary: {report.write_summary(settings.out)}")
    return results


def _with_note(row: dict, note: str) -> dict:
    if not note:
        return row
    return {**row, "note": "; ".join(x for x in (row.get("note", ""), note) if x)}


# ---------------------------------------------------------------------------- command line
def configure_parser(p: argparse.ArgumentParser) -> None:
    """The options of `drvoice-lab bench` (and of the thin ``bench/*.py`` entry points)."""
    p.description, p.epilog = DESCRIPTION, suite_list()
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("suite", nargs="*", help="suites to run (listed below)")
    p.add_argument("--suites", dest="suites_csv", help=argparse.SUPPRESS)  # older spelling
    p.add_argument("--out", type=Path, default=RESULTS, help="folder of the CSVs and SUMMARY.md")
    p.add_argument("--csv", type=Path, help="one suite: append its rows to this file instead")
    p.add_argument("--no-csv", action="store_true", help="print only")
    p.add_argument("--quick", action="store_true", help="tiny sizes, seconds not minutes")
    p.add_argument("--note", default="", help="free text in every row's note column")
    p.add_argument("--reps", type=int, help="timed runs per point (default: the suite's)")
    p.add_argument(
        "--seconds",
        type=float,
        nargs="+",
        help="resolution: turn lengths (10 30 60); encoder_window: speech (3)",
    )
    p.add_argument("--checkpoint", help="latency, voice_latency: model folder (default: shipped)")
    kernels = p.add_argument_group("kernel suites (grouping, srh_ungroup, linear_cross_entropy)")
    kernels.add_argument(
        "--sizes",
        nargs="+",
        help="tiny, 7b, 7b-cpu (default: tiny 7b on GPU, tiny 7b-cpu on CPU, tiny with --quick)",
    )
    kernels.add_argument("--providers", nargs="+", choices=PROVIDERS, default=list(PROVIDERS))
    kernels.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    kernels.add_argument("--dtype", choices=DTYPES, help="default: bfloat16 on GPU, else float32")
    voice = p.add_argument_group("voice_latency")
    voice.add_argument("--questions", type=int, default=24, help="at least 20 for the record")
    voice.add_argument("--no-vad", action="store_true", help="skip Silero VAD trimming")
    voice.add_argument("--seed", type=int, default=21, help="seed of the held-out questions")
    codec = p.add_argument_group("speech_tokenizer and encoder_window")
    codec.add_argument("--tokenizer", help="speech tokenizer name or folder (default: default)")
    codec.add_argument("--sentences", type=int, default=100, help="held-out template sentences")
    codec.add_argument("--encoder", help="Whisper weights (default: the embedded tiny.en)")


def settings_from_args(args: argparse.Namespace) -> BenchSettings:
    """The settings the options name (lists become tuples; --no-csv and --no-vad invert)."""
    names = {f.name for f in fields(BenchSettings)}
    given = {k: tuple(v) if isinstance(v, list) else v for k, v in vars(args).items() if k in names}
    suites = [*args.suite, *(s.strip() for s in (args.suites_csv or "").split(",") if s.strip())]
    given.update(suites=tuple(suites) or DEFAULT_SUITES, write=not args.no_csv, vad=not args.no_vad)
    return BenchSettings(**given)


def main(argv: list[str] | None = None) -> int:
    """`python bench/<script>.py ...`: `drvoice-lab bench` without the rest of the CLI (so that
    a bare GPU machine, with torch and Triton but no audio packages, runs the kernel suites)."""
    parser = argparse.ArgumentParser(prog="drvoice-lab bench")
    configure_parser(parser)
    args = parser.parse_args(argv)
    try:
        run_bench(settings_from_args(args))
    except ValueError as err:
        parser.error(str(err))
    return 0
