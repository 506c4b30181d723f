"""Shared pieces of the kernel files: the Triton/torch dispatcher, output allocation, tiling.

``INTERPRETED`` records whether ``TRITON_INTERPRET=1`` was set when this package was imported,
i.e. whether its ``@triton.jit`` functions are interpreter functions that run on CPU tensors.
Triton reads that variable when a decorator runs, so tests must set it before importing
``drvoice_kernels``. If triton itself was imported earlier (transformers imports it), its own
``@jit`` helpers are then repaired here (``_interpret_triton_language``).

``compile_for_gpu`` compiles kernels for an NVIDIA GPU on a machine without one (tests use it
to catch what the interpreter lets through).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator

import torch
import triton
import triton.language as tl
import triton.runtime.interpreter

INTERPRETED: bool = bool(triton.knobs.runtime.interpret)


def _interpret_triton_language() -> None:
    """Make triton.language's own ``@jit`` helpers (``tl.zeros``, ``tl.sum``, ``tl.max``, ...)
    interpreter functions, as they are when TRITON_INTERPRET=1 precedes ``import triton``.

    When something imported triton first (transformers does), those helpers are compiled-mode
    JITFunctions, which the interpreter refuses to call from a kernel. Only done when this
    process asked for the interpreter; each helper keeps one identity across modules (the
    interpreter recognises ``tl.sum``'s combine function by identity).
    """
    from triton.runtime.interpreter import InterpretedFunction
    from triton.runtime.jit import JITFunction

    converted: dict[int, InterpretedFunction] = {}
    for name, module in list(sys.modules.items()):
        if not name.startswith("triton.language") or module is None:
            continue
        for attr, value in list(vars(module).items()):
            if isinstance(value, JITFunction):
                new = converted.setdefault(id(value), InterpretedFunction(value.fn))
                setattr(module, attr, new)


if INTERPRETED and not isinstance(tl.zeros, triton.runtime.interpreter.InterpretedFunction):
    _interpret_triton_language()

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


def autocast_cast(*tensors: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
    """Cast to the autocast dtype when autocast is on for these tensors' device - what
    ``F.linear`` does to its operands - so the fused ops see the dtypes the reference sees.
    The casts are ordinary differentiable ops outside the autograd Functions."""
    device_type = next(t for t in tensors if t is not None).device.type
    if not torch.is_autocast_enabled(device_type):
        return tensors
    dtype = torch.get_autocast_dtype(device_type)
    return tuple(None if t is None else t.to(dtype) for t in tensors)


def contiguous(*tensors: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
    return tuple(None if t is None else t.contiguous() for t in tensors)


_COMPILE_SNIPPET = """
import importlib, json, sys
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
specs, arch = json.loads(sys.argv[1]), int(sys.argv[2])
for module, kernel, types, constexprs in specs:
    fn = getattr(importlib.import_module("drvoice_kernels." + module), kernel)
    types = {**types, **{name: "constexpr" for name in constexprs}}
    signature = {name: types.get(name, "i32") for name in fn.arg_names}
    triton.compile(ASTSource(fn, signature, constexprs), target=GPUTarget("cuda", arch, 32))
"""


def compile_for_gpu(specs: list[tuple[str, str, dict, dict]], arch: int = 90) -> None:
    """Compile kernels for an NVIDIA GPU of compute capability ``arch`` without having one
    (Triton ships ptxas). Catches what the CPU interpreter lets through: ``tl.dot`` operand
    shapes and dtypes, control flow, integer and pointer types.

    ``specs``: (module, kernel name, {arg: "*fp32" | "*i64" | "fp32" ...}, {constexpr: value});
    arguments given neither a type nor a value are ``i32`` scalars. Runs in a fresh process
    without TRITON_INTERPRET, where the kernels are real JIT functions.
    """
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    cmd = [sys.executable, "-c", _COMPILE_SNIPPET, json.dumps(specs), str(arch)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"GPU compilation (sm_{arch}) failed:\n{done.stderr[-4000:]}")
