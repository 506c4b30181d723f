"""The kernel suites: sizes and inputs of each fused kernel in ``drvoice_kernels``, measured
by the ``kernels`` harness against its torch reference.

Sizes: ``tiny`` = the tiny preset's widths over 8 x 30 s of speech; ``7b`` = DrVoice-7B widths
(d=896, D=3584, k=5, V=6564) over 4 x 100 s = 10,000 25 Hz tokens; ``7b-cpu`` = 7B widths with
fewer tokens, for a 2-core CPU.
"""

from __future__ import annotations

import torch

from drvoice_lab.benchmarks.kernels import (
    Case,
    Kernel,
    measure,
    peak_mb,
    run_kernel,
    track_live_cpu_memory,
)

K = 5


def _randn(shape: tuple, device: str, dtype: torch.dtype, scale: float = 1.0) -> torch.Tensor:
    """A leaf tensor of normal values times ``scale``, in ``dtype``, that takes a gradient."""
    return (torch.randn(shape, device=device) * scale).to(dtype).requires_grad_()


def grouping_case(batch: int, tokens: int, d: int, hidden: int, vocab: int) -> Case:
    """Concat grouping: k embeddings of 25 Hz tokens -> one backbone input (W_g)."""

    def make(device: str, dtype: torch.dtype) -> dict:
        return dict(
            ids=torch.randint(0, vocab, (batch, tokens), device=device),
            emb=_randn((vocab, d), device, dtype),
            w=_randn((hidden, K * d), device, dtype, (K * d) ** -0.5),
            b=torch.zeros(hidden, device=device, dtype=dtype, requires_grad=True),
        )

    return Case(f"B={batch} T={tokens} k={K} d={d} D={hidden} V={vocab}", make)


def ungroup_case(batch: int, positions: int, hidden: int, d: int, vocab: int) -> Case:
    """SRH input: split_k(W_p h) + E[previous token] for k sub-positions per position."""

    def make(device: str, dtype: torch.dtype) -> dict:
        return dict(
            h=_randn((batch, positions, hidden), device, dtype),
            w=_randn((K * d, hidden), device, dtype, hidden**-0.5),
            b=torch.zeros(K * d, device=device, dtype=dtype, requires_grad=True),
            prev=torch.randint(0, vocab, (batch, positions * K), device=device),
            emb=_randn((vocab, d), device, dtype),
        )

    return Case(f"B={batch} N={positions} (x{K} sub-positions) D={hidden} d={d} V={vocab}", make)


def cross_entropy_case(tokens: int, d: int, vocab: int) -> Case:
    """The SRH loss over 25 Hz tokens, output tied to the speech embedding."""

    def make(device: str, dtype: torch.dtype) -> dict:
        labels = torch.randint(0, vocab, (tokens,), device=device)
        labels[torch.rand(tokens, device=device) < 0.1] = -100  # some unlabelled positions
        return dict(
            h=_randn((tokens, d), device, dtype),
            emb=_randn((vocab, d), device, dtype, d**-0.5),
            labels=labels,
        )

    return Case(f"N={tokens} d={d} V={vocab}", make)


def grouping_kernel() -> Kernel:
    from drvoice_kernels import fused_grouping, grouping_reference

    cases = {
        "tiny": grouping_case(8, 750, 192, 256, 1027),
        "7b": grouping_case(4, 2500, 896, 3584, 6564),
        "7b-cpu": grouping_case(1, 1000, 896, 3584, 6564),
    }
    return Kernel(fused_grouping, grouping_reference, ("ids", "emb", "w", "b"), cases, (K,))


def ungroup_kernel() -> Kernel:
    from drvoice_kernels import fused_ungroup, ungroup_reference

    cases = {
        "tiny": ungroup_case(8, 150, 256, 192, 1027),
        "7b": ungroup_case(4, 500, 3584, 896, 6564),
        "7b-cpu": ungroup_case(1, 200, 3584, 896, 6564),
    }
    return Kernel(fused_ungroup, ungroup_reference, ("h", "w", "b", "prev", "emb"), cases)


def cross_entropy_kernel() -> Kernel:
    """The torch providers materialise the (N, V) fp32 logits; the Triton one computes the
    gradients during forward (its backward only scales them), so compare "full" first."""
    from drvoice_kernels import fused_linear_cross_entropy, linear_cross_entropy_reference

    cases = {
        "tiny": cross_entropy_case(6000, 192, 1027),
        "7b": cross_entropy_case(10000, 896, 6564),
        "7b-cpu": cross_entropy_case(1000, 896, 6564),
    }
    note = {"triton": "forward computes the gradients; backward only scales them"}
    return Kernel(
        fused_linear_cross_entropy,
        linear_cross_entropy_reference,
        ("h", "emb", "labels"),
        cases,
        notes=note,
    )


KERNELS = {
    "grouping": grouping_kernel,
    "srh_ungroup": ungroup_kernel,
    "linear_cross_entropy": cross_entropy_kernel,
}


def grouping(settings, say) -> list[dict]:
    return run_kernel("grouping", grouping_kernel(), settings, say)


def srh_ungroup(settings, say) -> list[dict]:
    return run_kernel("srh_ungroup", ungroup_kernel(), settings, say)


def linear_cross_entropy(settings, say) -> list[dict]:
    return run_kernel("linear_cross_entropy", cross_entropy_kernel(), settings, say)


def cpu_memory_pass(name: str, points: list, dtype: str) -> list:
    """Peak memory of every point, in a child process (see the module's docstring)."""
    track_live_cpu_memory()
    kernel = KERNELS[name]()
    points = [tuple(p) for p in points]
    return measure(kernel, points, "cpu", getattr(torch, dtype), lambda fn: peak_mb(fn, "cpu"))
