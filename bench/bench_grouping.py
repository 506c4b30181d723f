"""Benchmark the fused speech grouping (drvoice_kernels.fused_grouping), concat mode.

    python bench/bench_grouping.py                  # GPU: sizes tiny and 7b, bf16
    python bench/bench_grouping.py --sizes tiny     # CPU: torch providers only (see bench_common)

Rows go to bench/results/grouping.csv. Sizes: ``tiny`` = tiny preset (d=192, D=256, k=5,
V=1027, 8 x 30 s of speech); ``7b`` = DrVoice-7B (d=896, D=3584, k=5, V=6564, 4 x 100 s =
10,000 25 Hz tokens); ``7b-cpu`` = 7B widths with 1,000 tokens, for a 2-core CPU.
"""

from __future__ import annotations

import torch
from bench_common import Case, parse_args, run
from drvoice_kernels import fused_grouping, grouping_reference

K = 5


def make_case(size: str, batch: int, tokens: int, d: int, hidden: int, vocab: int) -> Case:
    def make(device: str, dtype: torch.dtype) -> dict:
        ids = torch.randint(0, vocab, (batch, tokens), device=device)
        emb = torch.randn(vocab, d, device=device, dtype=dtype, requires_grad=True)
        w = (torch.randn(hidden, K * d, device=device) * (K * d) ** -0.5).to(dtype)
        b = torch.zeros(hidden, device=device, dtype=dtype, requires_grad=True)
        return dict(ids=ids, emb=emb, w=w.requires_grad_(), b=b)

    shape = f"B={batch} T={tokens} k={K} d={d} D={hidden} V={vocab}"
    return Case(size, shape, make)


CASES = {
    "tiny": make_case("tiny", 8, 750, 192, 256, 1027),
    "7b": make_case("7b", 4, 2500, 896, 3584, 6564),
    "7b-cpu": make_case("7b-cpu", 1, 1000, 896, 3584, 6564),
}


def _call(fn, backend=None):
    extra = {} if backend is None else dict(backend=backend)
    return lambda x: fn(x["ids"], x["emb"], x["w"], x["b"], K, **extra)


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], list(CASES))
    providers = {
        "triton": _call(fused_grouping, "triton"),
        "torch": _call(grouping_reference),
        "torch.compile": _call(torch.compile(grouping_reference, dynamic=False)),
    }
    run("grouping", CASES, providers, args)


if __name__ == "__main__":
    main()
