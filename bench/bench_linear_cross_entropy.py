"""Benchmark the fused linear + cross-entropy (drvoice_kernels.fused_linear_cross_entropy).

    python bench/bench_linear_cross_entropy.py                  # GPU: sizes tiny and 7b, bf16
    python bench/bench_linear_cross_entropy.py --sizes tiny     # CPU: torch providers only

Rows go to bench/results/linear_cross_entropy.csv. The SRH loss over 25 Hz tokens with the
output tied to the speech embedding: ``tiny`` = d=192, V=1027, 8 x 30 s of speech (6,000
tokens); ``7b`` = d=896, V=6564, 10,000 tokens; ``7b-cpu`` = 7B widths with 1,000 tokens.
The torch providers materialise the (N, V) fp32 logits; the Triton one computes the
gradients during forward (its backward only scales them), so compare "full" first.
"""

from __future__ import annotations

import torch
from bench_common import Case, parse_args, run
from drvoice_kernels import fused_linear_cross_entropy, linear_cross_entropy_reference


def make_case(size: str, tokens: int, d: int, vocab: int) -> Case:
    def make(device: str, dtype: torch.dtype) -> dict:
        h = torch.randn(tokens, d, device=device, dtype=dtype, requires_grad=True)
        emb = (torch.randn(vocab, d, device=device) * d**-0.5).to(dtype).requires_grad_()
        labels = torch.randint(0, vocab, (tokens,), device=device)
        labels[torch.rand(tokens, device=device) < 0.1] = -100  # some unlabelled positions
        return dict(h=h, emb=emb, labels=labels)

    return Case(size, f"N={tokens} d={d} V={vocab}", make)


CASES = {
    "tiny": make_case("tiny", 6000, 192, 1027),
    "7b": make_case("7b", 10000, 896, 6564),
    "7b-cpu": make_case("7b-cpu", 1000, 896, 6564),
}


def _call(fn, backend=None):
    extra = {} if backend is None else dict(backend=backend)
    return lambda x: fn(x["h"], x["emb"], x["labels"], **extra)


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], list(CASES))
    triton = _call(fused_linear_cross_entropy, "triton")
    triton.note = "forward computes the gradients; backward only scales them"
    providers = {
        "triton": triton,
        "torch": _call(linear_cross_entropy_reference),
        "torch.compile": _call(torch.compile(linear_cross_entropy_reference, dynamic=False)),
    }
    run("linear_cross_entropy", CASES, providers, args)


if __name__ == "__main__":
    main()
