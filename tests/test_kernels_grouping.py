"""Fused grouping kernel (drvoice_kernels.grouping) vs its torch reference, and the shared
embedding-gradient scatter. On CPU the Triton kernels run in Triton's interpreter."""


import pytest
import torch
from drvoice_kernels import (
    embedding_grad,
    embedding_grad_reference,
    fused_grouping,
    grouping_reference,
)
from drvoice_kernels._common import compile_for_gpu
from drvoice_kernels.grouping import FusedGroupingFunction
from kernel_setup import DEVICE, dtype_params, fresh_seed_and_poison  # noqa: F401 (autouse)

DTYPES = dtype_params()
V, D_EMB, D_OUT, PAD = 37, 24, 40, 36  # d and D not powers of two; PAD: the pad/silence id


def _inputs(k, mode, dtype, batch=3, length=None, bias=True):
    length = 4 * k + 2 if length is None else length  # not a multiple of k (unless k = 1)
    ids = torch.randint(0, V - 1, (batch, length), device=DEVICE)
    ids[1] = PAD  # an all-pad row
    in_features = k * D_EMB if mode == "concat" else D_EMB
    emb = torch.randn(V, D_EMB, device=DEVICE, dtype=dtype, requires_grad=True)
    w = (torch.randn(D_OUT, in_features, device=DEVICE) / in_features**0.5).to(dtype)
    b = torch.randn(D_OUT, device=DEVICE, dtype=dtype) if bias else None
    return ids, emb, w.requires_grad_(), (b.requires_grad_() if bias else None)


def _run(fn, ids, params, grad_out=None, **kw):
    """Output and gradients of every differentiable parameter after backward(grad_out)."""
    for p in params:
        p.grad = None
    out = fn(ids, *params, **kw)
    grad_out = torch.randn_like(out) if grad_out is None else grad_out
    out.backward(grad_out)
    return out, [p.grad for p in params], grad_out


def _check(k, mode, dtype, rtol, atol, deterministic, padding_idx=None, **shape):
    ids, emb, w, b = _inputs(k, mode, dtype, **shape)
    params = [emb, w] + ([b] if b is not None else [])
    kw = dict(k=k, pad_id=PAD, mode=mode, padding_idx=padding_idx)

    def fused(ids, emb, w, b=None, **kw):
        return fused_grouping(ids, emb, w, b, deterministic=deterministic, backend="triton", **kw)

    def ref(ids, emb, w, b=None, **kw):
        return grouping_reference(ids, emb, w, b, **kw)

    out, grads, g = _run(fused, ids, params, **kw)
    assert out.grad_fn.name() == FusedGroupingFunction.__name__ + "Backward"
    expected, expected_grads, _ = _run(ref, ids, params, grad_out=g, **kw)
    torch.testing.assert_close(out, expected, rtol=rtol, atol=atol)
    names = ["dE", "dW", "db"][: len(grads)]
    for name, got, want in zip(names, grads, expected_grads, strict=True):
        torch.testing.assert_close(
            got, want, rtol=rtol, atol=atol, msg=lambda m, n=name: f"{n}: {m}"
        )


@pytest.mark.parametrize("dtype, rtol, atol", DTYPES)
@pytest.mark.parametrize("mode", ["concat", "mean"])
@pytest.mark.parametrize("k", [1, 3, 5])
def test_matches_reference(k, mode, dtype, rtol, atol):
    _check(k, mode, dtype, rtol, atol, deterministic=False)


@pytest.mark.parametrize("mode", ["concat", "mean"])
@pytest.mark.parametrize("k", [3, 5])
def test_deterministic_scatter_matches_reference(k, mode):
    _check(k, mode, torch.float32, 1e-5, 1e-5, deterministic=True, padding_idx=PAD)


def test_longer_rows_than_one_block_and_no_bias():
    """More positions than one tile of rows, T % k != 0, and a grouping without bias."""
    _check(5, "concat", torch.float32, 1e-5, 1e-5, False, batch=5, length=5 * 31 + 3, bias=False)


def test_padding_idx_row_gets_no_gradient():
    ids, emb, w, b = _inputs(3, "concat", torch.float32)
    out = fused_grouping(ids, emb, w, b, 3, pad_id=PAD, padding_idx=PAD, backend="triton")
    out.sum().backward()
    assert torch.count_nonzero(emb.grad[PAD]) == 0
    assert torch.count_nonzero(emb.grad[ids[0, 0]]) > 0


def test_frozen_embedding_only_weight_gradients():
    ids, emb, w, b = _inputs(5, "concat", torch.float32)
    emb.requires_grad_(False)
    out = fused_grouping(ids, emb, w, b, 5, pad_id=PAD, backend="triton")
    out.square().sum().backward()
    expected = grouping_reference(ids, emb, w.detach().requires_grad_(), b, 5, PAD)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    assert emb.grad is None and w.grad is not None and b.grad is not None


@pytest.mark.parametrize("mode", ["concat", "mean"])
def test_autocast_matches_reference(mode):
    """fp32 parameters under autocast (CPU: fp16, CUDA: bf16), as in mixed-precision training."""
    ids, emb, w, b = _inputs(3, mode, torch.float32)
    dtype = torch.float16 if DEVICE == "cpu" else torch.bfloat16
    kw = dict(k=3, pad_id=PAD, mode=mode)
    results = []
    for fn in (fused_grouping, grouping_reference):
        emb.grad = w.grad = b.grad = None
        with torch.autocast(DEVICE, dtype=dtype):
            out = fn(ids, emb, w, b, **kw)
        out.float().square().sum().backward()
        results.append([out, emb.grad, w.grad, b.grad])
    for got, want in zip(*results, strict=True):
        assert got.dtype == want.dtype
        torch.testing.assert_close(got, want, rtol=2e-2, atol=2e-2)


def test_deterministic_scatter_is_bitwise_repeatable():
    ids, emb, w, b = _inputs(5, "concat", torch.float32, batch=4, length=60)
    grads = []
    for _ in range(2):
        emb.grad = None
        fused_grouping(
            ids, emb, w, b, 5, pad_id=PAD, deterministic=True, backend="triton"
        ).sum().backward()
        grads.append(emb.grad.clone())
    assert torch.equal(grads[0], grads[1])


@pytest.mark.parametrize("deterministic", [False, True])
def test_embedding_grad_scatter(deterministic):
    """Duplicated ids, an id absent from the batch, and a padding_idx row."""
    rows = torch.randn(70, D_EMB, device=DEVICE)
    ids = torch.randint(0, V - 2, (70,), device=DEVICE)  # id V-1 never occurs
    ids[:20] = 5  # a hot row, more than one block of duplicates
    got = embedding_grad(rows, ids, V, padding_idx=7, deterministic=deterministic, backend="triton")
    want = embedding_grad_reference(rows, ids, V, padding_idx=7)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert torch.count_nonzero(got[V - 1]) == 0 and torch.count_nonzero(got[7]) == 0


def test_dispatcher_and_shape_errors():
    ids, emb, w, b = _inputs(3, "concat", torch.float32)
    plain = fused_grouping(ids, emb, w, b, 3, pad_id=PAD, backend="torch")
    assert plain.grad_fn.name() != FusedGroupingFunction.__name__ + "Backward"
    auto = fused_grouping(ids, emb, w, b, 3, pad_id=PAD)  # CUDA or interpreter: Triton
    assert auto.grad_fn.name() == FusedGroupingFunction.__name__ + "Backward"
    with pytest.raises(ValueError, match="needs 72"):
        fused_grouping(ids, emb, w[:, :50], b, 3, backend="triton")
    with pytest.raises(ValueError, match="mode"):
        fused_grouping(ids, emb, w, b, 3, mode="sum")
    with pytest.raises(ValueError, match="backend"):
        fused_grouping(ids, emb, w, b, 3, backend="cuda")


def test_kernels_compile_for_a_gpu():
    """What the interpreter lets through (tl.dot shapes, types) a GPU may not: compile for
    sm_90 (fp32 concat; bf16 concat and mean), no GPU needed."""
    specs = []
    for dt in ("fp32", "bf16"):
        tensors = {name: f"*{dt}" for name in ("emb_ptr", "w_ptr", "bias_ptr", "out_ptr")}
        tensors |= dict(grad_ptr=f"*{dt}", dw_ptr=f"*{dt}", ids_ptr="*i64")
        for mean in (False, True) if dt == "bf16" else (False,):
            mode = dict(K=5, MEAN=mean, PRECISION="ieee")
            blocks = dict(BLOCK_M=64, BLOCK_N=64, BLOCK_K=32, GROUPS=1 if mean else 5)
            specs.append(
                ("grouping", "_grouping_fwd_kernel", tensors, mode | blocks | {"HAS_BIAS": True})
            )
            blocks = dict(BLOCK_O=64, BLOCK_D=64, BLOCK_R=32)
            specs.append(("grouping", "_grouping_dw_kernel", tensors, mode | blocks))
        tensors = dict(grad_ptr=f"*{dt}", ids_ptr="*i64", out_ptr="*fp32")
        tensors |= dict(order_ptr="*i64", offsets_ptr="*i64")
        blocks = dict(BLOCK_M=32, BLOCK_D=128)
        specs.append(("embedding_scatter", "_scatter_add_atomic_kernel", tensors, blocks))
        blocks = dict(BLOCK_R=16, BLOCK_D=128)
        specs.append(("embedding_scatter", "_segment_sum_kernel", tensors, blocks))
    # autocast: an fp32 table with a bf16 W_g
    tensors = {name: "*bf16" for name in ("w_ptr", "bias_ptr", "out_ptr", "grad_ptr", "dw_ptr")}
    tensors |= dict(emb_ptr="*fp32", ids_ptr="*i64")
    constexprs = dict(K=5, MEAN=False, PRECISION="ieee", BLOCK_M=64, BLOCK_N=64, BLOCK_K=32)
    specs.append(
        ("grouping", "_grouping_fwd_kernel", tensors, constexprs | dict(GROUPS=5, HAS_BIAS=True))
    )
    constexprs = dict(K=5, MEAN=False, PRECISION="ieee", BLOCK_O=64, BLOCK_D=64, BLOCK_R=32)
    specs.append(("grouping", "_grouping_dw_kernel", tensors, constexprs))
    compile_for_gpu(specs)
