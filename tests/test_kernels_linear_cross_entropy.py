"""Fused linear + cross-entropy (drvoice_kernels.linear_cross_entropy) vs its torch reference
and vs ``F.cross_entropy(h @ E.T)``. On CPU the Triton kernel runs in Triton's interpreter."""


import pytest
import torch
import torch.nn.functional as F
from drvoice_kernels import (
    fused_linear_cross_entropy,
    linear_cross_entropy_reference,
)
from drvoice_kernels._common import compile_for_gpu
from kernel_setup import DEVICE, dtype_params, fresh_seed_and_poison  # noqa: F401 (autouse)

DTYPES = dtype_params(fp16=(1e-2, 2e-3), bf16=(5e-2, 1e-2))
V, D_EMB, N, IGNORE = 6561, 24, 37, -100  # the S3 vocabulary; d not a power of two; N odd


def _inputs(dtype, rows=N, vocab=V, ignored=0.25):
    hidden = torch.randn(rows, D_EMB, device=DEVICE).to(dtype).requires_grad_()
    weight = (torch.randn(vocab, D_EMB, device=DEVICE) * 0.5).to(dtype).requires_grad_()
    labels = torch.randint(0, vocab, (rows,), device=DEVICE)
    labels[torch.rand(rows, device=DEVICE) < ignored] = IGNORE
    return hidden, weight, labels


def _loss_and_grads(fn, hidden, weight, labels, upstream, **kw):
    """Loss, then gradients of ``upstream * loss`` (an upstream gradient != 1)."""
    hidden.grad = weight.grad = None
    loss = fn(hidden, weight, labels, **kw)
    (loss * upstream).backward()
    return loss, hidden.grad, weight.grad


@pytest.mark.parametrize("dtype, rtol, atol", DTYPES)
@pytest.mark.parametrize("z_loss_weight", [0.0, 1e-3])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_matches_reference(reduction, z_loss_weight, dtype, rtol, atol):
    hidden, weight, labels = _inputs(dtype)
    upstream = torch.rand((), device=DEVICE) + 0.5
    kw = dict(reduction=reduction, z_loss_weight=z_loss_weight)
    # chunk_size 16: three chunks over 37 rows, the last one ragged.
    got = _loss_and_grads(
        fused_linear_cross_entropy, hidden, weight, labels, upstream, chunk_size=16, **kw
    )
    want = _loss_and_grads(linear_cross_entropy_reference, hidden, weight, labels, upstream, **kw)
    for name, g, w in zip(["loss", "dh", "dE"], got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=rtol, atol=atol, msg=lambda m, n=name: f"{n}: {m}")


def test_equals_torch_cross_entropy_of_the_logits():
    hidden, weight, labels = _inputs(torch.float32)
    fused = _loss_and_grads(
        lambda h, w, y: fused_linear_cross_entropy(h, w, y, backend="triton"),
        hidden,
        weight,
        labels,
        1.0,
    )
    plain = _loss_and_grads(
        lambda h, w, y: F.cross_entropy(h @ w.T, y), hidden, weight, labels, 1.0
    )
    for g, w in zip(fused, plain, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)


def test_all_ignored_is_zero_loss_and_zero_gradient():
    """A deliberate difference from F.cross_entropy (NaN): the model's masked-mean convention."""
    hidden, weight, labels = _inputs(torch.float32, rows=9, ignored=1.1)
    loss, dh, dw = _loss_and_grads(fused_linear_cross_entropy, hidden, weight, labels, 1.0)
    assert loss.item() == 0.0
    assert torch.count_nonzero(dh) == 0 and torch.count_nonzero(dw) == 0
    ref = linear_cross_entropy_reference(hidden, weight, labels)
    assert ref.item() == 0.0


def test_batched_input_frozen_weight_default_chunks_and_z_term():
    hidden, weight, labels = _inputs(torch.float32, rows=2 * 19)
    weight.requires_grad_(False)
    hidden3 = hidden.detach().view(2, 19, D_EMB).requires_grad_()
    loss, z = fused_linear_cross_entropy(
        hidden3, weight, labels.view(2, 19), z_loss_weight=1e-2, return_z_loss=True
    )
    loss.backward()
    ref_h = hidden3.detach().clone().requires_grad_()
    ref_loss, ref_z = linear_cross_entropy_reference(
        ref_h, weight, labels.view(2, 19), z_loss_weight=1e-2, return_z_loss=True
    )
    ref_loss.backward()
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(z, ref_z, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(hidden3.grad, ref_h.grad, rtol=1e-5, atol=1e-5)
    assert weight.grad is None and not z.requires_grad


def test_no_grad_evaluation_gives_the_same_loss():
    hidden, weight, labels = _inputs(torch.float32)
    with torch.no_grad():
        got = fused_linear_cross_entropy(hidden, weight, labels, z_loss_weight=1e-3, chunk_size=16)
        want = linear_cross_entropy_reference(hidden, weight, labels, z_loss_weight=1e-3)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_autocast_matches_reference():
    """fp32 parameters under autocast (CPU: fp16, CUDA: bf16), as in mixed-precision training."""
    hidden, weight, labels = _inputs(torch.float32)
    dtype = torch.float16 if DEVICE == "cpu" else torch.bfloat16
    results = []
    for fn in (fused_linear_cross_entropy, linear_cross_entropy_reference):
        hidden.grad = weight.grad = None
        with torch.autocast(DEVICE, dtype=dtype):
            loss = fn(hidden, weight, labels)
        loss.backward()
        results.append([loss, hidden.grad, weight.grad])
    for got, want in zip(*results, strict=True):
        assert got.dtype == want.dtype
        torch.testing.assert_close(got, want, rtol=1e-2, atol=1e-3)


def test_argument_errors():
    hidden, weight, labels = _inputs(torch.float32, rows=5, vocab=50)
    with pytest.raises(ValueError, match="reduction"):
        fused_linear_cross_entropy(hidden, weight, labels, reduction="none")
    with pytest.raises(ValueError, match="labels"):
        fused_linear_cross_entropy(hidden, weight, labels[:-1])


def test_kernel_compiles_for_a_gpu():
    """What the interpreter lets through a GPU may not: compile for sm_90, no GPU needed."""
    specs = []
    for dt in ("fp32", "bf16"):
        types = dict(logits_ptr=f"*{dt}", labels_ptr="*i64", z_weight="fp32")
        types |= {name: "*fp32" for name in ("loss_ptr", "z_ptr", "scale_ptr")}
        specs.append(("linear_cross_entropy", "_ce_fwd_bwd_kernel", types, dict(BLOCK_V=4096)))
    compile_for_gpu(specs)
