"""Shared pieces of the kernel files: the Triton/torch dispatcher, output allocation, tiling.

``INTERPRETED`` records whether ``TRITON_INTERPRET=1`` was set when this package was imported,
i.e. whether its ``@triton.jit`` functions are interpreter functions that run on CPU tensors.
Triton reads that variable when a decorator runs, so tests must set it before importing
``drvoice_kernels``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import triton

INTERPRETED: bool = bool(triton.knobs.runtime.interpret)

BACKENDS = ("auto", "triton", "torch")

_POISON = False


def use_triton(*tensors: torch.Tensor, backend: str = "auto") -> bool:
    """Pick the implementation: Triton on CUDA tensors (or under the interpreter), else torch.

    ``backend="triton"`` insists on Triton (error when it cannot run on these tensors),
    ``backend="torch"`` always takes the plain-torch reference.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "torch":
        return False
    runnable = INTERPRETED or all(t.is_cuda for t in tensors)
    if backend == "triton" and not runnable:
        raise RuntimeError(
            "backend='triton' needs CUDA tensors, or TRITON_INTERPRET=1 set before "
            "drvoice_kernels is imported (Triton's CPU interpreter)."
        )
    return runnable


@contextlib.contextmanager
def poisoned_outputs() -> Iterator[None]:
    """Debug aid for tests: buffers that kernels must fully write start as NaN, not garbage."""
    global _POISON
    previous, _POISON = _POISON, True
    try:
        yield
    finally:
        _POISON = previous


def new_output(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """An uninitialised buffer that a kernel writes completely (NaN-filled when poisoned)."""
    if _POISON:
        return torch.full(shape, float("nan"), dtype=dtype, device=device)
    return torch.empty(shape, dtype=dtype, device=device)


def dot_precision(dtype: torch.dtype) -> str:
    """``tl.dot`` input precision that matches torch's matmul for this dtype (fp32: TF32 only
    when torch allows it, so fp32 results agree with the reference)."""
    if dtype == torch.float32 and torch.backends.cuda.matmul.allow_tf32:
        return "tf32"
    return "ieee"


def block(size: int, gpu_block: int, interpreter_cap: int = 128, minimum: int = 16) -> int:
    """Tile edge for a dimension of ``size``: a fixed GPU tile, or under the interpreter (where
    every program step costs ~ms) the whole dimension up to ``interpreter_cap``. Never below
    16, the smallest ``tl.dot`` operand a GPU accepts."""
    if INTERPRETED:
        return max(minimum, min(interpreter_cap, triton.next_power_of_2(size)))
    return max(minimum, min(gpu_block, triton.next_power_of_2(size)))


def contiguous(*tensors: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
    return tuple(None if t is None else t.contiguous() for t in tensors)
