"""Shared harness of the kernel benchmarks (bench/bench_<kernel>.py); not a benchmark itself.

Every script measures provider (triton / torch eager / torch.compile) x mode (forward,
backward, full) x size, prints a table and appends one CSV row per measurement to
bench/results/<kernel>.csv with the device name, torch/triton versions and the date.

* time: median wall time of ``--reps`` runs after warm-up (CUDA: ``triton.testing.do_bench``);
* memory: CUDA: peak allocated bytes above what the inputs hold; CPU: growth of the process's
  peak resident set (``VmHWM``, reset through /proc/self/clear_refs), measured in a child
  process that fixes glibc's mmap threshold at 64 KiB before allocating anything, so that
  freed tensors leave the resident set (this slows allocation, hence not in the timed process).

Triton runs only on a GPU: the CPU interpreter is a correctness tool (~ms per program step),
so its timings would mean nothing; on a CPU-only machine the scripts say so and measure the
torch providers at sizes that finish on 2 cores.
"""

from __future__ import annotations

import argparse
import csv
import ctypes
import datetime as dt
import gc
import json
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

MEMORY_MARKER = "MEMORY-PASS "
RESULTS = Path(__file__).resolve().parent / "results"
MODES = ("forward", "backward", "full")
PROVIDERS = ("triton", "torch", "torch.compile")
FIELDS = [
    "date", "device", "torch", "triton", "kernel", "provider", "mode", "size", "shape",
    "dtype", "median_ms", "peak_mem_mb", "memory", "reps", "note",
]  # fmt: skip


@dataclass
class Case:
    """One size: ``make(device, dtype)`` returns the inputs; ``shape`` describes them."""

    size: str
    shape: str
    make: Callable[[str, torch.dtype], dict]


# A provider turns the inputs into an output tensor (forward) with a graph to backward through.
Provider = Callable[[dict], torch.Tensor]


def parse_args(description: str, sizes: list[str]) -> argparse.Namespace:
    """Command line of a kernel benchmark; default sizes: tiny and 7b on GPU, tiny and 7b-cpu
    (7B widths, fewer tokens) on CPU."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--sizes", nargs="+", choices=sizes, help="default: tiny 7b (GPU)")
    parser.add_argument("--providers", nargs="+", choices=PROVIDERS, default=list(PROVIDERS))
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], help="bf16 on GPU")
    parser.add_argument("--reps", type=int, default=5, help="timed runs per point on CPU")
    parser.add_argument("--csv", type=Path, help="default: bench/results/<kernel>.csv")
    parser.add_argument("--no-csv", action="store_true", help="print only")
    parser.add_argument("--note", default="", help="free text added to every row's note")
    parser.add_argument("--memory-pass", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    args.device = "cuda" if cuda else "cpu"
    args.sizes = args.sizes or (["tiny", "7b"] if cuda else ["tiny", "7b-cpu"])
    args.dtype = getattr(torch, args.dtype or ("bfloat16" if cuda else "float32"))
    return args


def device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name()
    cpu = platform.processor() or platform.machine()
    try:
        text = Path("/proc/cpuinfo").read_text()
        cpu = re.search(r"model name\s*:\s*(.*)", text).group(1)
    except (OSError, AttributeError):
        pass
    return f"CPU {cpu} ({torch.get_num_threads()} threads)"


def triton_version() -> str:
    try:
        import triton

        return triton.__version__
    except ImportError:
        return "none"


def skip_reason(provider: str, device: str) -> str | None:
    if provider == "triton" and device != "cuda":
        return (
            "no CUDA device: Triton kernels only run under the CPU interpreter here, a "
            "correctness tool (~ms per program step) whose timings mean nothing"
        )
    if provider == "torch.compile" and not _compile_available(device):
        return "torch.compile unavailable (no C++ compiler or Triton for inductor)"
    return None


def _compile_available(device: str) -> bool:
    import shutil

    return device == "cuda" or shutil.which("g++") is not None or shutil.which("c++") is not None


# ---------------------------------------------------------------------------- measuring
def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _median_ms(fn: Callable[[], object], device: str, reps: int) -> float:
    if device == "cuda":
        from triton.testing import do_bench

        return do_bench(fn, return_mode="median")
    fn()  # warm-up
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def _rss_mb() -> tuple[float, float]:
    status = Path("/proc/self/status").read_text()
    current, peak = (int(re.search(rf"{k}:\s+(\d+)", status).group(1)) for k in ("VmRSS", "VmHWM"))
    return current / 1024, peak / 1024


def _track_live_cpu_memory() -> None:
    """Make glibc return freed large blocks to the OS, so peak RSS follows live tensors."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 64 * 1024)  # M_MMAP_THRESHOLD (also stops its dynamic growth)
        libc.mallopt(-1, 64 * 1024)  # M_TRIM_THRESHOLD
    except OSError:
        pass


def _peak_mb(fn: Callable[[], object], device: str) -> tuple[float, str]:
    gc.collect()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20, "cuda peak allocated"
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS counter
        base, _ = _rss_mb()
        fn()
        return _rss_mb()[1] - base, "cpu peak RSS growth"
    except OSError:
        return float("nan"), "unavailable"


def _mode_fn(provider: Provider, inputs: dict, mode: str) -> Callable[[], object]:
    """A closure running one mode; backward re-uses one forward graph (retain_graph)."""
    if mode == "forward":
        return lambda: provider(inputs)
    if mode == "full":
        return lambda: _backward(provider(inputs), retain=False)
    out = provider(inputs)
    return lambda: _backward(out, retain=True)


def _backward(out: torch.Tensor, retain: bool) -> None:
    grad = torch.ones_like(out) if out.ndim else None
    out.backward(grad, retain_graph=retain)


def _clear_grads(inputs: dict) -> None:
    for value in inputs.values():
        if isinstance(value, torch.Tensor):
            value.grad = None


# ---------------------------------------------------------------------------- main loop
def run(kernel: str, cases: dict[str, Case], providers: dict[str, Provider], args) -> list[dict]:
    """Measure every (provider, mode, size) and append the rows to the kernel's CSV.

    All timings come first; on CPU the memory pass follows with the allocator switched to
    tracking live memory (which would slow the timed runs down)."""
    device, dtype = args.device, args.dtype
    common = dict(
        date=dt.datetime.now().isoformat(timespec="seconds"),
        device=device_name(device),
        torch=torch.__version__,
        triton=triton_version(),
        kernel=kernel,
        dtype=str(dtype).removeprefix("torch."),
    )
    print(f"{kernel} on {common['device']} | torch {common['torch']} triton {common['triton']}")
    points = []
    for name in args.providers:
        reason = skip_reason(name, device)
        if reason:
            print(f"  skipping provider {name}: {reason}")
            continue
        points += [(name, size, mode) for size in args.sizes for mode in args.modes]
    if args.memory_pass:  # child process of a CPU run: memory only, reported as JSON
        _track_live_cpu_memory()
        peaks = _measure(points, cases, providers, args, lambda fn: _peak_mb(fn, device))
        print(MEMORY_MARKER + json.dumps(peaks))
        return []
    times = _measure(points, cases, providers, args, _median_ms_for(device, args.reps))
    if device == "cpu":
        peaks = _cpu_memory_pass()
    else:
        peaks = _measure(points, cases, providers, args, lambda fn: _peak_mb(fn, device))
    rows = []
    for (name, size, mode), median, (peak, memory) in zip(points, times, peaks, strict=True):
        row = dict(common, provider=name, mode=mode, size=size, shape=cases[size].shape)
        row.update(
            median_ms=f"{median:.3f}",
            peak_mem_mb=f"{peak:.1f}",
            memory=memory,
            reps=args.reps if device == "cpu" else "do_bench",
            note="; ".join(x for x in (getattr(providers[name], "note", ""), args.note) if x),
        )
        rows.append(row)
        print(f"  {name:14s} {mode:8s} {size:7s} {median:10.3f} ms {peak:9.1f} MB  {row['shape']}")
    if rows and not args.no_csv:
        _append_csv(args.csv or RESULTS / f"{kernel}.csv", rows)
    return rows


def _cpu_memory_pass() -> list:
    """Re-run this script with --memory-pass in a fresh process; its peaks, point by point."""
    cmd = [sys.executable, sys.argv[0], *sys.argv[1:], "--memory-pass", "--no-csv"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith(MEMORY_MARKER))
    return json.loads(line.removeprefix(MEMORY_MARKER))


def _median_ms_for(device: str, reps: int) -> Callable[[Callable[[], object]], float]:
    return lambda fn: _median_ms(fn, device, reps)


def _measure(points, cases, providers, args, measure) -> list:
    """``measure(fn)`` for every point, re-using the inputs of one (provider, size)."""
    results, made = [], {}
    for name, size, mode in points:
        if (name, size) not in made:
            made.clear()
            gc.collect()
            made[(name, size)] = cases[size].make(args.device, args.dtype)
        inputs = made[(name, size)]
        fn = _mode_fn(providers[name], inputs, mode)
        fn()  # warm-up (and compilation for torch.compile)
        _sync(args.device)
        _clear_grads(inputs)
        results.append(measure(fn))
        _clear_grads(inputs)
        del fn
    return results


def _append_csv(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        if new:
            writer.writeheader()
        writer.writerows(rows)
    print(f"appended {len(rows)} rows to {path}")
