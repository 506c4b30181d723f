"""What this machine is and what it can do: a description for every result row, and the
measured matmul ceiling (GFLOP/s) that stage timings are compared against."""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
import statistics
import time
from pathlib import Path

import torch


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


def machine_fields() -> dict:
    """Columns every benchmark row starts with."""
    import transformers

    return {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "device": device_name(),
        "cpus": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "load1": round(os.getloadavg()[0], 2),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }


def matmul_gflops(n: int = 1024, reps: int = 10, dtype: torch.dtype = torch.float32) -> float:
    """Median GFLOP/s of an (n x n) @ (n x n) product in ``dtype`` with torch's current
    threads: the practical ceiling for the dense layers of the model on this machine."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    torch.mm(a, b)  # warm-up
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times) / 1e9


def ceiling_rows(sizes: tuple[int, ...] = (256, 1024, 2048), reps: int = 10) -> list[dict]:
    return [{"n": n, "dtype": "float32", "gflops": round(matmul_gflops(n, reps), 2)} for n in sizes]
