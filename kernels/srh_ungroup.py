"""Fused SRH ungroup: W_p h -> k sub-states -> + embedding of the previous speech token.

Math (``SpeechRefinedHead.inputs`` in drvoice_lab/modeling/srh.py), for position n, j < k:

    x[n*k + j] = (W_p h_n + b_p)[j*d : (j+1)*d] + E[prev[n*k + j]]      W_p: (k*d, D)

The forward kernel is the GEMM (B*N, D) x (D, k*d) whose epilogue gathers and adds the
previous-token embeddings, writing the (B, N*k, d) SRH input once. Because the output viewed
as (B*N, k*d) is exactly the GEMM output, column c of a tile belongs to sub-position
j = c // d, feature c % d. Backward: dh = G W_p and dW_p = G^T h (cuBLAS GEMMs), db_p by a sum,
and dE by scattering G's rows into the table (``embedding_grad``: atomic or deterministic).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from ._common import autocast_cast, block, contiguous, dot_precision, new_output, use_triton
from .embedding_scatter import embedding_grad


@triton.jit
def _ungroup_fwd_kernel(
    h_ptr,  # (B*N, D) backbone hidden states
    w_ptr,  # (k*d, D) W_p
    bias_ptr,  # (k*d,)
    prev_ptr,  # (B*N*k,) previous speech token of every sub-position
    emb_ptr,  # (V, d) speech embedding
    out_ptr,  # (B*N, k*d) == (B, N*k, d)
    R,
    D,
    C,  # k*d
    d,
    K: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)  # 5 Hz positions
    cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)  # (sub-position, feature)
    row_ok, col_ok = rows < R, cols < C
    rows64 = rows.to(tl.int64)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, D, BLOCK_K):
        ks = k0 + tl.arange(0, BLOCK_K)
        k_ok = ks < D
        h_mask = row_ok[:, None] & k_ok[None, :]
        w_mask = k_ok[:, None] & col_ok[None, :]
        h = tl.load(h_ptr + rows64[:, None] * D + ks[None, :], mask=h_mask, other=0.0)
        w = tl.load(w_ptr + cols[None, :] * D + ks[:, None], mask=w_mask, other=0.0)  # W^T tile
        acc = tl.dot(h, w, acc, input_precision=PRECISION)  # (BM, BN)
    if HAS_BIAS:
        acc += tl.load(bias_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)[None, :]
    # Round the sub-states like a separate linear would, then add the embeddings.
    sub = acc.to(w_ptr.dtype.element_ty).to(tl.float32)
    mask = row_ok[:, None] & col_ok[None, :]
    j, feature = cols // d, cols % d
    prev = tl.load(prev_ptr + rows64[:, None] * K + j[None, :], mask=mask, other=0).to(tl.int64)
    emb = tl.load(emb_ptr + prev * d + feature[None, :], mask=mask, other=0.0).to(tl.float32)
    out = sub + emb
    tl.store(out_ptr + rows64[:, None] * C + cols[None, :], out.to(out_ptr.dtype.element_ty), mask)


def ungroup_forward(hidden, weight, bias, prev_tokens, embedding):
    """Launch the forward kernel: (B, N, D) -> (B, N*k, d)."""
    b, n, hidden_size = hidden.shape
    c, d = weight.shape[0], embedding.shape[1]
    r, k = b * n, c // d
    out_dtype = torch.promote_types(weight.dtype, embedding.dtype)  # as in `linear + embedding`
    out = new_output((b, n * k, d), out_dtype, hidden.device)
    bm, bn, bk = block(r, 64), block(c, 64), block(hidden_size, 32)
    grid = (triton.cdiv(r, bm), triton.cdiv(c, bn))
    _ungroup_fwd_kernel[grid](
        hidden, weight, bias if bias is not None else weight, prev_tokens, embedding, out,
        r, hidden_size, c, d,
        K=k, HAS_BIAS=bias is not None, PRECISION=dot_precision(weight.dtype),
        BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk,
    )  # fmt: skip
    return out


class FusedUngroupFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, bias, prev_tokens, embedding, padding_idx, deterministic):
        hidden, weight, bias, prev_tokens, embedding = contiguous(
            hidden, weight, bias, prev_tokens, embedding
        )
        out = ungroup_forward(hidden, weight, bias, prev_tokens, embedding)  # (B, N*k, d)
        ctx.save_for_backward(hidden, weight, prev_tokens)
        ctx.config = (embedding.shape[0], embedding.dtype, padding_idx, deterministic)
        ctx.has_bias = bias is not None
        return out

    @staticmethod
    def backward(ctx, grad_out):
        hidden, weight, prev_tokens = ctx.saved_tensors
        num_embeddings, emb_dtype, padding_idx, deterministic = ctx.config
        need_h, need_w, need_b, _, need_emb = ctx.needs_input_grad[:5]
        c, hidden_size = weight.shape
        grad = grad_out.contiguous().view(-1, c).to(weight.dtype)  # (B*N, k*d)
        grad_h = grad_w = grad_b = grad_emb = None
        if need_h:
            grad_h = (grad @ weight).view(hidden.shape)  # (B, N, D)
        if need_w:
            grad_w = grad.t() @ hidden.view(-1, hidden_size)  # (k*d, D)
        if need_b and ctx.has_bias:
            grad_b = grad.sum(0, dtype=torch.float32).to(weight.dtype)
        if need_emb:
            rows = grad_out.contiguous().view(-1, grad_out.shape[-1])  # (B*N*k, d)
            grad_emb = embedding_grad(
                rows, prev_tokens.view(-1), num_embeddings, padding_idx, deterministic
            ).to(emb_dtype)
        return grad_h, grad_w, grad_b, None, grad_emb, None, None


def ungroup_reference(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    prev_tokens: torch.Tensor,
    embedding: torch.Tensor,
    padding_idx: int | None = None,
) -> torch.Tensor:
    """Plain torch, the same math as the SRH: (B, N, D) -> (B, N*k, d)."""
    b, n, _ = hidden.shape
    substates = F.linear(hidden, weight, bias).view(b, n * _group_size(weight, embedding), -1)
    return substates + F.embedding(prev_tokens, embedding, padding_idx)  # (B, N*k, d)


def _group_size(weight: torch.Tensor, embedding: torch.Tensor) -> int:
    c, d = weight.shape[0], embedding.shape[1]
    if c % d:
        raise ValueError(f"W_p has {c} outputs, not a multiple of the embedding width {d}")
    return c // d


def fused_ungroup(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    prev_tokens: torch.Tensor,
    embedding: torch.Tensor,
    padding_idx: int | None = None,
    deterministic: bool | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """SRH input sequence ``split_k(W_p h + b_p) + E[prev]``: (B, N, D) -> (B, N*k, d).

    Args:
        hidden: (B, N, D) backbone hidden states.
        weight, bias: W_p (k*d, D) and its bias (k*d,).
        prev_tokens: (B, N*k) previous speech token of each 25 Hz sub-position.
        embedding: (V, d) speech embedding table E_s.
        padding_idx: table row that gets no gradient (``nn.Embedding.padding_idx``).
        deterministic: fixed-order embedding-gradient scatter (default: follow
            ``torch.are_deterministic_algorithms_enabled()``).
        backend: "auto" (Triton on CUDA or under the interpreter), "triton" or "torch".
    """
    b, n, _ = hidden.shape
    k = _group_size(weight, embedding)
    if tuple(prev_tokens.shape) != (b, n * k):
        raise ValueError(f"prev_tokens must be (B, N*k) = {(b, n * k)}, got {prev_tokens.shape}")
    if not use_triton(hidden, weight, embedding, backend=backend):
        return ungroup_reference(hidden, weight, bias, prev_tokens, embedding, padding_idx)
    hidden, weight, bias = autocast_cast(hidden, weight, bias)
    if hidden.dtype != weight.dtype:
        raise ValueError(f"hidden is {hidden.dtype} but W_p is {weight.dtype}")
    return FusedUngroupFunction.apply(
        hidden, weight, bias, prev_tokens, embedding, padding_idx, deterministic
    )
