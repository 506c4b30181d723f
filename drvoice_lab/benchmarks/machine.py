"""What this machine is and what it can do: the stamp on every result row, timing and memory
helpers shared by the suites, and the measured matmul ceiling (the `ceiling` suite)."""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch

CHILD_MARKER = "BENCH-CHILD-RESULT "


def cpu_name() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
        return re.search(r"model name\s*:\s*(.*)", text).group(1).strip()
    except (OSError, AttributeError):
        return platform.processor() or platform.machine()


def device_name() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return f"CPU {cpu_name()}"


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return ""


def machine_fields() -> dict:
    """The stamp every result row carries (see ``report.HEAD`` and ``report.TAIL``)."""
    return {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "device": device_name(),
        "cpus": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "load1": round(os.getloadavg()[0], 2),  # other jobs share the CPUs: timings depend on it
        "torch": torch.__version__,
        "triton": _version("triton"),
        "transformers": _version("transformers"),
    }


# ---------------------------------------------------------------------------- time and memory
def timings(fn: Callable[[], object], reps: int) -> list[float]:
    """Wall seconds of ``reps`` calls of ``fn`` after one warm-up call (CUDA synchronised)."""
    fn()
    cuda, times = torch.cuda.is_available(), []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times


def rss_mb() -> tuple[float, float]:
    """(current, peak) resident set of this process in MB: VmRSS and VmHWM (``ru_maxrss`` would
    include the parent's peak, which Linux carries across fork + exec)."""
    try:
        status = Path("/proc/self/status").read_text()
        kb = (int(re.search(rf"{k}:\s+(\d+)", status).group(1)) for k in ("VmRSS", "VmHWM"))
        return tuple(x / 1024 for x in kb)
    except (OSError, AttributeError):  # not Linux
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return peak, peak


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current resident set; False where the kernel does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def run_child(module: str, function: str, *args) -> object:
    """``module.function(*args)`` in a fresh Python process (its own peak memory, its own
    allocator settings); arguments and result travel as JSON."""
    code = (
        f"import json, sys; from {module} import {function}; "
        f"print({CHILD_MARKER!r} + json.dumps({function}(*json.loads(sys.argv[1]))))"
    )
    cmd = [sys.executable, "-c", code, json.dumps(args)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        raise RuntimeError(f"{module}.{function}{args} failed:\n{out.stderr[-2000:]}")
    line = next(x for x in out.stdout.splitlines() if x.startswith(CHILD_MARKER))
    return json.loads(line.removeprefix(CHILD_MARKER))


# ---------------------------------------------------------------------------- matmul ceiling
def matmul_gflops(n: int = 1024, reps: int = 10, dtype: torch.dtype = torch.float32) -> float:
    """Median GFLOP/s of an (n x n) @ (n x n) product in ``dtype`` with torch's current
    threads: the practical ceiling for the dense layers of the model on this machine."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    return 2 * n**3 / statistics.median(timings(lambda: torch.mm(a, b), reps)) / 1e9


@functools.cache
def copy_bandwidth_gbs(megabytes: int = 256, reps: int = 5) -> float:
    """Memory bandwidth a copy reaches here (GB/s, bytes read + written, best of ``reps``):
    the bound of a batch-1 decode step, which reads every weight once."""
    src = torch.empty(megabytes * 2**20 // 4, dtype=torch.float32).uniform_()
    dst = torch.empty_like(src)
    best = min(timings(lambda: dst.copy_(src), reps))
    return 2 * src.numel() * 4 / best / 1e9


def ceiling_rows(quick: bool = False, reps: int = 10) -> tuple[dict, ...]:
    """One row per matrix size (measured once per process: the latency suite re-uses it)."""
    sizes = (256, 512) if quick else (256, 1024, 2048)
    return tuple(
        {
            "provider": "torch",
            "mode": "matmul",
            "size": f"n={n}",
            "dtype": "float32",
            "gflops": round(matmul_gflops(n, reps), 2),
        }
        for n in sizes
    )


def ceiling(settings, say: Callable[[str], None]) -> list[dict]:
    """The `ceiling` suite: dense fp32 matmul GFLOP/s."""
    rows = list(ceiling_rows(settings.quick, settings.reps or 10))
    for row in rows:
        say(f"  {row['size']:<8} {row['gflops']:9.2f} GFLOP/s")
    return rows
