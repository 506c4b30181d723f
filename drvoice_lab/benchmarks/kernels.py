"""Harness of the kernel suites (``kernel_cases``): provider (triton / torch eager /
torch.compile) x mode (forward, backward, full) x size, median time and peak memory per point.

* time: median wall time of ``reps`` runs after warm-up (CUDA: ``triton.testing.do_bench``);
* memory: CUDA: peak allocated bytes above what the inputs hold; CPU: growth of the process's
  peak resident set (VmHWM, reset through /proc/self/clear_refs), measured in a child process
  that fixes glibc's mmap threshold at 64 KiB before allocating anything, so that freed tensors
  leave the resident set (this slows allocation, hence not in the timed process).

Triton runs only on a GPU: the CPU interpreter is a correctness tool (~ms per program step),
so its timings would mean nothing; on a CPU-only machine the Triton provider is skipped with
a message and the torch providers run at sizes that finish on 2 cores.
"""

from __future__ import annotations

import ctypes
import gc
import shutil
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from drvoice_lab.benchmarks import machine

CASES_MODULE = "drvoice_lab.benchmarks.kernel_cases"  # KERNELS and the memory pass

MODES = ("forward", "backward", "full")
PROVIDERS = ("triton", "torch", "torch.compile")
DTYPES = ("float32", "float16", "bfloat16")

# A provider turns the inputs into an output tensor (forward) with a graph to backward through.
Provider = Callable[[dict], torch.Tensor]


@dataclass(frozen=True)
class Case:
    """One size: ``make(device, dtype)`` returns the inputs; ``shape`` describes them."""

    shape: str
    make: Callable[[str, torch.dtype], dict]


@dataclass(frozen=True)
class Kernel:
    """A fused kernel and its torch reference, called as ``fn(*inputs[args], *extra)``."""

    fused: Callable  # dispatcher taking backend="triton"
    reference: Callable
    args: tuple[str, ...]  # input names, in call order
    cases: dict[str, Case]  # size -> inputs: tiny, 7b (GPU) and 7b-cpu (7B widths, fewer tokens)
    extra: tuple = ()
    notes: dict[str, str] = field(default_factory=dict)  # provider -> note on its rows

    def provider(self, name: str) -> Provider:
        if name == "triton":
            fn, kwargs = self.fused, {"backend": "triton"}
        elif name == "torch":
            fn, kwargs = self.reference, {}
        else:
            fn, kwargs = torch.compile(self.reference, dynamic=False), {}
        return lambda x: fn(*(x[a] for a in self.args), *self.extra, **kwargs)


def skip_reason(provider: str, device: str) -> str | None:
    if provider == "triton" and device != "cuda":
        return (
            "no CUDA device: Triton kernels only run under the CPU interpreter here, a "
            "correctness tool (~ms per program step) whose timings mean nothing"
        )
    compiler = shutil.which("g++") or shutil.which("c++")
    if provider == "torch.compile" and device != "cuda" and not compiler:
        return "torch.compile unavailable (no C++ compiler for inductor)"
    return None


# ---------------------------------------------------------------------------- one point
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


def _median_ms(fn: Callable[[], object], device: str, reps: int) -> float:
    if device == "cuda":
        from triton.testing import do_bench

        return do_bench(fn, return_mode="median")
    return 1e3 * statistics.median(machine.timings(fn, reps))


def peak_mb(fn: Callable[[], object], device: str) -> tuple[float, str]:
    gc.collect()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20, "cuda peak allocated"
    if not machine.reset_peak_rss():
        return float("nan"), "unavailable"
    base = machine.rss_mb()[0]
    fn()
    return machine.rss_mb()[1] - base, "cpu peak RSS growth"


def measure(kernel: Kernel, points: list, device: str, dtype: torch.dtype, measure) -> list:
    """``measure(fn)`` for every (provider, size, mode), re-using the inputs of one
    (provider, size)."""
    results, made, providers = [], {}, {}
    for name, size, mode in points:
        if (name, size) not in made:
            made.clear()
            gc.collect()
            made[(name, size)] = kernel.cases[size].make(device, dtype)
        inputs = made[(name, size)]
        provider = providers.setdefault(name, kernel.provider(name))
        fn = _mode_fn(provider, inputs, mode)
        fn()  # warm-up (and compilation for torch.compile)
        if device == "cuda":
            torch.cuda.synchronize()
        _clear_grads(inputs)
        results.append(measure(fn))
        _clear_grads(inputs)
        del fn
    return results


def track_live_cpu_memory() -> None:
    """Make glibc return freed large blocks to the OS, so peak RSS follows live tensors."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 64 * 1024)  # M_MMAP_THRESHOLD (also stops its dynamic growth)
        libc.mallopt(-1, 64 * 1024)  # M_TRIM_THRESHOLD
    except OSError:
        pass


# ---------------------------------------------------------------------------- the suite
def run_kernel(name: str, kernel: Kernel, settings, say: Callable[[str], None]) -> list[dict]:
    """Measure every (provider, size, mode) of ``kernel``; the suite's rows."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    cpu = "-cpu" if device == "cpu" else ""  # 7B widths with fewer tokens
    dtype = settings.dtype or ("bfloat16" if device == "cuda" else "float32")
    sizes = settings.sizes or (["tiny"] if settings.quick else ["tiny", f"7b{cpu}"])
    unknown = set(sizes) - set(kernel.cases)
    if unknown:
        raise ValueError(
            f"unknown sizes {sorted(unknown)} for {name}; choose from {list(kernel.cases)}"
        )
    reps = settings.reps or (1 if settings.quick else 5)
    points = []
    for provider in settings.providers:
        reason = skip_reason(provider, device)
        if reason:
            say(f"  skipping provider {provider}: {reason}")
            continue
        points += [(provider, size, mode) for size in sizes for mode in settings.modes]
    times = measure(
        kernel, points, device, getattr(torch, dtype), lambda fn: _median_ms(fn, device, reps)
    )
    if device == "cpu" and points:
        # the child imports kernel_cases, which holds the kernels
        peaks = machine.run_child(CASES_MODULE, "cpu_memory_pass", name, points, dtype)
    else:
        peaks = measure(
            kernel, points, device, getattr(torch, dtype), lambda fn: peak_mb(fn, device)
        )
    rows = []
    for (provider, size, mode), median, (peak, memory) in zip(points, times, peaks, strict=True):
        rows.append(
            {
                "provider": provider,
                "mode": mode,
                "size": size,
                "shape": kernel.cases[size].shape,
                "dtype": dtype,
                "median_ms": f"{median:.3f}",
                "peak_mem_mb": f"{peak:.1f}",
                "memory": memory,
                "reps": reps if device == "cpu" else "do_bench",
                "note": kernel.notes.get(provider, ""),
            }
        )
        say(
            f"  {provider:14s} {mode:8s} {size:7s} {median:10.3f} ms {peak:9.1f} MB  "
            f"{kernel.cases[size].shape}"
        )
    return rows
