"""Fused SRH ungroup kernel (drvoice_kernels.srh_ungroup) vs its torch reference.
On CPU the Triton kernels run in Triton's interpreter."""


import pytest
import torch
from drvoice_kernels import fused_ungroup, ungroup_reference
from drvoice_kernels._common import compile_for_gpu
from drvoice_kernels.srh_ungroup import FusedUngroupFunction
from kernel_setup import DEVICE, dtype_params, fresh_seed_and_poison  # noqa: F401 (autouse)

DTYPES = dtype_params()
V, D_EMB, D_HID, PAD = 41, 24, 40, 40  # d and D not powers of two; PAD: the pad/silence id
FUSED_NAME = FusedUngroupFunction.__name__ + "Backward"


def _inputs(k, dtype, batch=3, positions=7, bias=True):
    hidden = torch.randn(batch, positions, D_HID, device=DEVICE, dtype=dtype)
    w = (torch.randn(k * D_EMB, D_HID, device=DEVICE) / D_HID**0.5).to(dtype)
    b = torch.randn(k * D_EMB, device=DEVICE, dtype=dtype) if bias else None
    emb = torch.randn(V, D_EMB, device=DEVICE, dtype=dtype)
    prev = torch.randint(0, V - 1, (batch, positions * k), device=DEVICE)
    prev[-1] = PAD  # an all-pad row
    params = [hidden, w] + ([b] if bias else []) + [emb]
    for p in params:
        p.requires_grad_()
    return hidden, w, b, prev, emb, params


def _forward_backward(fn, inputs, grad_out=None, **kw):
    hidden, w, b, prev, emb, params = inputs
    for p in params:
        p.grad = None
    out = fn(hidden, w, b, prev, emb, **kw)
    grad_out = torch.randn_like(out) if grad_out is None else grad_out
    out.backward(grad_out)
    return out, [p.grad for p in params], grad_out


def _check(k, dtype, rtol, atol, deterministic=False, padding_idx=None, **shape):
    inputs = _inputs(k, dtype, **shape)
    out, grads, g = _forward_backward(
        fused_ungroup,
        inputs,
        padding_idx=padding_idx,
        deterministic=deterministic,
        backend="triton",
    )
    assert out.grad_fn.name() == FUSED_NAME
    expected, expected_grads, _ = _forward_backward(
        ungroup_reference, inputs, grad_out=g, padding_idx=padding_idx
    )
    torch.testing.assert_close(out, expected, rtol=rtol, atol=atol)
    names = ["dh", "dW_p", "db_p", "dE"] if len(grads) == 4 else ["dh", "dW_p", "dE"]
    for name, got, want in zip(names, grads, expected_grads, strict=True):
        torch.testing.assert_close(
            got, want, rtol=rtol, atol=atol, msg=lambda m, n=name: f"{n}: {m}"
        )


@pytest.mark.parametrize("dtype, rtol, atol", DTYPES)
@pytest.mark.parametrize("k", [1, 3, 5])
def test_matches_reference(k, dtype, rtol, atol):
    _check(k, dtype, rtol, atol)


@pytest.mark.parametrize("k", [3, 5])
def test_deterministic_scatter_and_padding_idx(k):
    _check(k, torch.float32, 1e-5, 1e-5, deterministic=True, padding_idx=PAD)


def test_more_positions_than_one_tile_and_no_bias():
    _check(5, torch.float32, 1e-5, 1e-5, batch=2, positions=67, bias=False)


def test_each_sub_position_adds_its_own_previous_token():
    """out[:, n*k + j] = (W_p h_n)[j*d:(j+1)*d] + E[prev[n*k + j]], checked element by element."""
    k = 3
    hidden, w, b, prev, emb, _ = _inputs(k, torch.float32, batch=1, positions=2)
    with torch.no_grad():
        out = fused_ungroup(hidden, w, b, prev, emb, backend="triton")  # (1, 6, d)
        for n in range(2):
            sub = (hidden[0, n] @ w.T + b).view(k, D_EMB)  # (k, d)
            for j in range(k):
                want = sub[j] + emb[prev[0, n * k + j]]
                torch.testing.assert_close(out[0, n * k + j], want, rtol=1e-5, atol=1e-5)


def test_autocast_matches_reference():
    """fp32 parameters under autocast (CPU: fp16, CUDA: bf16): the linear runs in the autocast
    dtype, the embedding add in fp32, as in the plain model."""
    *inputs, params = _inputs(5, torch.float32)
    dtype = torch.float16 if DEVICE == "cpu" else torch.bfloat16
    results = []
    for fn in (fused_ungroup, ungroup_reference):
        for p in params:
            p.grad = None
        with torch.autocast(DEVICE, dtype=dtype):
            out = fn(*inputs)
        out.square().sum().backward()
        results.append([out] + [p.grad for p in params])
    for got, want in zip(*results, strict=True):
        assert got.dtype == want.dtype
        torch.testing.assert_close(got, want, rtol=2e-2, atol=2e-2)


def test_shape_errors_and_dispatcher():
    hidden, w, b, prev, emb, _ = _inputs(3, torch.float32)
    with pytest.raises(ValueError, match="prev_tokens"):
        fused_ungroup(hidden, w, b, prev[:, :-1], emb)
    with pytest.raises(ValueError, match="multiple of the embedding width"):
        fused_ungroup(hidden, w[:-1], b[:-1], prev, emb)
    plain = fused_ungroup(hidden, w, b, prev, emb, backend="torch")
    assert plain.grad_fn.name() != FUSED_NAME


def test_kernel_compiles_for_a_gpu():
    """What the interpreter lets through (tl.dot shapes, types) a GPU may not: compile for
    sm_90 (fp32 with IEEE and TF32 dots, bf16), no GPU needed."""
    specs = []
    cases = [("fp32", "fp32", "ieee"), ("fp32", "fp32", "tf32"), ("bf16", "bf16", "ieee")]
    cases.append(("bf16", "fp32", "ieee"))  # autocast: bf16 linear, fp32 table and output
    for dt, table, precision in cases:
        types = {name: f"*{dt}" for name in ("h_ptr", "w_ptr", "bias_ptr")}
        types |= dict(emb_ptr=f"*{table}", out_ptr=f"*{table}", prev_ptr="*i64")
        constexprs = dict(K=5, HAS_BIAS=True, PRECISION=precision)
        constexprs |= dict(BLOCK_M=64, BLOCK_N=64, BLOCK_K=32)
        specs.append(("srh_ungroup", "_ungroup_fwd_kernel", types, constexprs))
    compile_for_gpu(specs)
