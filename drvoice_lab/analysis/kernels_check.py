"""Each Triton kernel against its torch reference: the output and every gradient, as a table
(the kernels notebook shows it; the kernel tests assert the same in detail).

On a CPU the kernels run in Triton's interpreter, which must be switched on before
``drvoice_kernels`` is first imported: call :func:`enable_interpreter_on_cpu` first.
"""

from __future__ import annotations

import os

import torch


def enable_interpreter_on_cpu() -> str:
    """Set TRITON_INTERPRET=1 when there is no GPU; returns where the kernels will run."""
    if torch.cuda.is_available():
        return f"GPU: {torch.cuda.get_device_name()}"
    os.environ.setdefault("TRITON_INTERPRET", "1")
    return "CPU: Triton interpreter (a correctness check; its speed means nothing)"


def _compare(name: str, fused, reference, inputs: dict, grads: list[str]) -> dict:
    """Run both on the same inputs with the same upstream gradient; max |difference|."""
    results = []
    for fn in (fused, reference):
        for key in grads:
            inputs[key].grad = None
        out = fn(**inputs)
        torch.manual_seed(1)
        out.backward(torch.randn_like(out))
        results.append((out.detach(), [inputs[k].grad.clone() for k in grads]))
    (out_f, grads_f), (out_r, grads_r) = results
    row = {"kernel": name, "output": float((out_f - out_r).abs().max())}
    pairs = zip(grads, grads_f, grads_r, strict=True)
    row.update({f"d{k}": float((a - b).abs().max()) for k, a, b in pairs})
    return row


def check_kernels(seed: int = 0) -> list[dict]:
    """Max absolute differences (fp32, odd sizes) for grouping, SRH ungroup and linear CE."""
    from drvoice_kernels import (
        fused_grouping,
        fused_linear_cross_entropy,
        fused_ungroup,
        grouping_reference,
        linear_cross_entropy_reference,
        ungroup_reference,
    )

    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(seed)
    k, vocab, d, hidden = 5, 37, 24, 40

    def param(*shape):
        return torch.randn(*shape, device=device).div(shape[-1] ** 0.5).requires_grad_()

    grouping = {
        "ids": torch.randint(0, vocab, (3, 4 * k + 2), device=device),  # tail shorter than k
        "embedding": param(vocab, d),
        "weight": param(hidden, k * d),
        "bias": param(hidden),
        "k": k,
    }
    ungroup = {
        "hidden": param(2, 7, hidden),
        "weight": param(k * d, hidden),
        "bias": param(k * d),
        "prev_tokens": torch.randint(0, vocab, (2, 7 * k), device=device),
        "embedding": param(vocab, d),
    }
    labels = torch.randint(0, vocab, (53,), device=device)
    labels[::7] = -100  # ignored positions
    cross_entropy = {"hidden": param(53, d), "weight": param(vocab, d), "labels": labels}
    return [
        _compare(
            "grouping (embed k ids + W_g)",
            lambda **a: fused_grouping(**a, backend="triton"),
            grouping_reference,
            grouping,
            ["embedding", "weight", "bias"],
        ),
        _compare(
            "SRH ungroup (W_p h + E[prev])",
            lambda **a: fused_ungroup(**a, backend="triton"),
            ungroup_reference,
            ungroup,
            ["hidden", "weight", "bias", "embedding"],
        ),
        _compare(
            "linear + cross-entropy (chunked)",
            lambda **a: fused_linear_cross_entropy(**a, backend="triton"),
            linear_cross_entropy_reference,
            cross_entropy,
            ["hidden", "weight"],
        ),
    ]
