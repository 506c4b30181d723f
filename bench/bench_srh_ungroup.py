"""Benchmark the fused SRH ungroup (drvoice_kernels.fused_ungroup): split_k(W_p h) + E[prev].

    python bench/bench_srh_ungroup.py                  # GPU: sizes tiny and 7b, bf16
    python bench/bench_srh_ungroup.py --sizes tiny     # CPU: torch providers only

Rows go to bench/results/srh_ungroup.csv. Sizes: ``tiny`` = tiny preset (D=256, d=192, k=5,
V=1027, 8 x 30 s of speech); ``7b`` = DrVoice-7B (D=3584, d=896, k=5, V=6564, 4 x 100 s =
10,000 25 Hz sub-positions); ``7b-cpu`` = 7B widths with 1,000 sub-positions.
"""

from __future__ import annotations

import torch
from bench_common import Case, parse_args, run
from drvoice_kernels import fused_ungroup, ungroup_reference

K = 5


def make_case(size: str, batch: int, positions: int, hidden: int, d: int, vocab: int) -> Case:
    def make(device: str, dtype: torch.dtype) -> dict:
        h = torch.randn(batch, positions, hidden, device=device, dtype=dtype, requires_grad=True)
        w = (torch.randn(K * d, hidden, device=device) * hidden**-0.5).to(dtype)
        b = torch.zeros(K * d, device=device, dtype=dtype, requires_grad=True)
        prev = torch.randint(0, vocab, (batch, positions * K), device=device)
        emb = torch.randn(vocab, d, device=device, dtype=dtype, requires_grad=True)
        return dict(h=h, w=w.requires_grad_(), b=b, prev=prev, emb=emb)

    shape = f"B={batch} N={positions} (x{K} sub-positions) D={hidden} d={d} V={vocab}"
    return Case(size, shape, make)


CASES = {
    "tiny": make_case("tiny", 8, 150, 256, 192, 1027),
    "7b": make_case("7b", 4, 500, 3584, 896, 6564),
    "7b-cpu": make_case("7b-cpu", 1, 200, 3584, 896, 6564),
}


def _call(fn, backend=None):
    extra = {} if backend is None else dict(backend=backend)
    return lambda x: fn(x["h"], x["w"], x["b"], x["prev"], x["emb"], **extra)


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], list(CASES))
    providers = {
        "triton": _call(fused_ungroup, "triton"),
        "torch": _call(ungroup_reference),
        "torch.compile": _call(torch.compile(ungroup_reference, dynamic=False)),
    }
    run("srh_ungroup", CASES, providers, args)


if __name__ == "__main__":
    main()
