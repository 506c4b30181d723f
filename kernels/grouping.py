"""Fused speech grouping: k speech-token embeddings -> one backbone input, in one pass.

Math (``SpeechGrouping`` in drvoice_lab/modeling/grouping.py), for position n of a row:

    concat:  g_n = W_g . concat(E[s_{nk}], ..., E[s_{nk+k-1}]) + b      W_g: (D, k*d)
    mean:    g_n = W_g . mean(E[s_{nk}], ..., E[s_{nk+k-1}]) + b        W_g: (D, d)

Ids past the end of a row (T not a multiple of k) read as ``pad_id``; gathered rows are cast
to W_g's dtype (under autocast, W_g's autocast copy). The forward kernel is a
GEMM whose A operand is gathered from the embedding table on the fly, so the (B, T/k, k*d)
concat is never materialised. Backward: dW_g by the same gather-GEMM (rows reduced inside one
program: deterministic), db by a sum, and dE by ``G @ W_g`` (cuBLAS) scattered into the table
(``embedding_grad``: atomic or deterministic).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from ._common import autocast_cast, block, contiguous, dot_precision, new_output, use_triton
from .embedding_scatter import embedding_grad

MODES = ("concat", "mean")


@triton.jit
def _group_token_ids(ids_ptr, rows, row_ok, N, T, j, pad_id, K: tl.constexpr):
    """Table row of token j of each position in ``rows`` (flat b*N + n); pad past the end."""
    b = rows // N
    t = (rows % N) * K + j
    ok = row_ok & (t < T)
    return tl.load(ids_ptr + b.to(tl.int64) * T + t, mask=ok, other=pad_id).to(tl.int64)


@triton.jit
def _group_block(
    ids_ptr,
    emb_ptr,
    rows,
    row_ok,
    cols_d,
    N,
    T,
    d,
    j,
    pad_id,
    K: tl.constexpr,
    MEAN: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    """(BM, BD) slice of the embeddings of token j (concat) or of the group mean (mean)."""
    mask = row_ok[:, None] & (cols_d[None, :] < d)
    if MEAN:
        total = tl.zeros((BLOCK_M, BLOCK_D), dtype=tl.float32)
        for jj in tl.static_range(K):
            ids = _group_token_ids(ids_ptr, rows, row_ok, N, T, jj, pad_id, K)
            x = tl.load(emb_ptr + ids[:, None] * d + cols_d[None, :], mask=mask, other=0.0)
            total += x.to(tl.float32)
        block = (total / K).to(emb_ptr.dtype.element_ty)
    else:
        ids = _group_token_ids(ids_ptr, rows, row_ok, N, T, j, pad_id, K)
        block = tl.load(emb_ptr + ids[:, None] * d + cols_d[None, :], mask=mask, other=0.0)
    return block


@triton.jit
def _grouping_fwd_kernel(
    ids_ptr,  # (B, T) speech ids
    emb_ptr,  # (V, d) embedding table
    w_ptr,  # (D, k*d) or (D, d) grouping weight
    bias_ptr,  # (D,)
    out_ptr,  # (B*N, D)
    R,  # B*N positions
    N,
    T,
    d,
    D,
    pad_id,
    K: tl.constexpr,
    MEAN: tl.constexpr,
    GROUPS: tl.constexpr,  # weight column blocks: k (concat) or 1 (mean)
    HAS_BIAS: tl.constexpr,
    PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)  # positions
    cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)  # output features
    row_ok, col_ok = rows < R, cols < D
    w_stride = d if MEAN else K * d
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for d0 in range(0, d, BLOCK_K):
        cols_d = d0 + tl.arange(0, BLOCK_K)
        w_mask = (cols_d[:, None] < d) & col_ok[None, :]
        for j in tl.static_range(GROUPS):
            x = _group_block(
                ids_ptr,
                emb_ptr,
                rows,
                row_ok,
                cols_d,
                N,
                T,
                d,
                j,
                pad_id,
                K,
                MEAN,
                BLOCK_M,
                BLOCK_K,
            )
            w_offsets = cols[None, :] * w_stride + j * d + cols_d[:, None]
            w = tl.load(w_ptr + w_offsets, mask=w_mask, other=0.0)  # (BK, BN) = W^T tile
            acc = tl.dot(x.to(w.dtype), w, acc, input_precision=PRECISION)
    if HAS_BIAS:
        acc += tl.load(bias_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)[None, :]
    out_offsets = rows.to(tl.int64)[:, None] * D + cols[None, :]
    tl.store(out_ptr + out_offsets, acc.to(out_ptr.dtype.element_ty), mask=row_ok[:, None] & col_ok)


@triton.jit
def _grouping_dw_kernel(
    ids_ptr,  # (B, T)
    emb_ptr,  # (V, d)
    grad_ptr,  # (B*N, D) gradient of the output
    dw_ptr,  # (D, k*d) or (D, d)
    R,
    N,
    T,
    d,
    D,
    pad_id,
    K: tl.constexpr,
    MEAN: tl.constexpr,
    PRECISION: tl.constexpr,
    BLOCK_O: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_R: tl.constexpr,
):
    """dW[:, j*d + dd] = sum over positions of G[r, :]^T x_j[r, dd], one (BO, BD) tile each."""
    outs = tl.program_id(0) * BLOCK_O + tl.arange(0, BLOCK_O)  # output features (rows of W)
    j = tl.program_id(1)  # token within the group (always 0 in mean mode)
    cols_d = tl.program_id(2) * BLOCK_D + tl.arange(0, BLOCK_D)
    out_ok = outs < D
    acc = tl.zeros((BLOCK_O, BLOCK_D), dtype=tl.float32)
    for r0 in range(0, R, BLOCK_R):
        rows = r0 + tl.arange(0, BLOCK_R)
        row_ok = rows < R
        g_offsets = rows.to(tl.int64)[:, None] * D + outs[None, :]
        g = tl.load(grad_ptr + g_offsets, mask=row_ok[:, None] & out_ok[None, :], other=0.0)
        x = _group_block(
            ids_ptr, emb_ptr, rows, row_ok, cols_d, N, T, d, j, pad_id, K, MEAN, BLOCK_R, BLOCK_D
        )
        acc = tl.dot(tl.trans(g), x.to(g.dtype), acc, input_precision=PRECISION)  # (BO, BD)
    w_stride = d if MEAN else K * d
    dw_offsets = outs[:, None] * w_stride + j * d + cols_d[None, :]
    mask = out_ok[:, None] & (cols_d[None, :] < d)
    tl.store(dw_ptr + dw_offsets, acc.to(dw_ptr.dtype.element_ty), mask=mask)


# ---------------------------------------------------------------------------- launchers
def _shapes(ids: torch.Tensor, embedding: torch.Tensor, weight: torch.Tensor, k: int, mode: str):
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    b, t = ids.shape
    d = embedding.shape[1]
    expected_in = k * d if mode == "concat" else d
    if weight.shape[1] != expected_in:
        raise ValueError(
            f"grouping weight has {weight.shape[1]} inputs; {mode} mode with k={k} and d={d} "
            f"needs {expected_in}"
        )
    return b, t, -(-t // k), d, weight.shape[0]  # B, T, N, d, D


def grouping_forward(ids, embedding, weight, bias, k, pad_id, mode):
    """Launch the forward kernel: (B, T) ids -> (B, N, D)."""
    b, t, n, d, out_dim = _shapes(ids, embedding, weight, k, mode)
    r = b * n
    out = new_output((b, n, out_dim), weight.dtype, weight.device)
    bm, bn, bk = block(r, 64), block(out_dim, 64), block(d, 32)
    grid = (triton.cdiv(r, bm), triton.cdiv(out_dim, bn))
    _grouping_fwd_kernel[grid](
        ids, embedding, weight, bias if bias is not None else weight, out,
        r, n, t, d, out_dim, pad_id,
        K=k, MEAN=mode == "mean", GROUPS=1 if mode == "mean" else k, HAS_BIAS=bias is not None,
        PRECISION=dot_precision(weight.dtype), BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk,
    )  # fmt: skip
    return out


def grouping_weight_grad(ids, embedding, grad_out, weight, k, pad_id, mode):
    """Launch the dW_g kernel: the gather-GEMM G^T X without materialising X."""
    b, t, n, d, out_dim = _shapes(ids, embedding, weight, k, mode)
    r = b * n
    dw = new_output(tuple(weight.shape), weight.dtype, weight.device)
    bo, bd, br = block(out_dim, 64), block(d, 64), block(r, 32)
    groups = 1 if mode == "mean" else k
    grid = (triton.cdiv(out_dim, bo), groups, triton.cdiv(d, bd))
    _grouping_dw_kernel[grid](
        ids, embedding, grad_out, dw, r, n, t, d, out_dim, pad_id,
        K=k, MEAN=mode == "mean", PRECISION=dot_precision(weight.dtype),
        BLOCK_O=bo, BLOCK_D=bd, BLOCK_R=br,
    )  # fmt: skip
    return dw


def _padded_ids(ids: torch.Tensor, k: int, pad_id: int) -> torch.Tensor:
    """(B, T) -> (B, N*k), right-padded with ``pad_id``."""
    missing = -ids.shape[1] % k
    if missing == 0:
        return ids
    return torch.cat([ids, ids.new_full((ids.shape[0], missing), pad_id)], dim=1)


class FusedGroupingFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, ids, embedding, weight, bias, k, pad_id, mode, padding_idx, deterministic):
        ids, embedding, weight, bias = contiguous(ids, embedding, weight, bias)
        out = grouping_forward(ids, embedding, weight, bias, k, pad_id, mode)  # (B, N, D)
        ctx.save_for_backward(ids, embedding, weight)
        ctx.config = (k, pad_id, mode, padding_idx, deterministic, bias is not None)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        ids, embedding, weight = ctx.saved_tensors
        k, pad_id, mode, padding_idx, deterministic, has_bias = ctx.config
        _, need_emb, need_w, need_b = ctx.needs_input_grad[:4]
        grad = grad_out.contiguous()
        out_dim = weight.shape[0]
        grad_emb = grad_w = grad_b = None
        if need_w:
            grad_w = grouping_weight_grad(ids, embedding, grad, weight, k, pad_id, mode)
        if need_b and has_bias:
            grad_b = grad.reshape(-1, out_dim).sum(0, dtype=torch.float32).to(weight.dtype)
        if need_emb:
            rows = _gathered_row_grads(grad, weight, k, embedding.shape[1], mode)  # (B*N*k, d)
            flat_ids = _padded_ids(ids, k, pad_id).reshape(-1)  # (B*N*k,)
            num_embeddings = embedding.shape[0]
            grad_emb = embedding_grad(rows, flat_ids, num_embeddings, padding_idx, deterministic)
            grad_emb = grad_emb.to(embedding.dtype)
        return None, grad_emb, grad_w, grad_b, None, None, None, None, None


def _gathered_row_grads(grad, weight, k, d, mode):
    """Gradient of every gathered embedding row: (B, N, D) @ W_g -> (B*N*k, d) (cuBLAS)."""
    dx = grad.reshape(-1, weight.shape[0]) @ weight  # (B*N, k*d) or (B*N, d)
    if mode == "mean":
        dx = (dx / k).unsqueeze(1).expand(-1, k, d)  # (B*N, k, d)
    return dx.reshape(-1, d)  # (B*N*k, d)


# ---------------------------------------------------------------------------- reference
def grouping_reference(
    ids: torch.Tensor,
    embedding: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    k: int,
    pad_id: int = 0,
    mode: str = "concat",
    padding_idx: int | None = None,
) -> torch.Tensor:
    """Plain torch, the same math as ``SpeechGrouping``: (B, T) ids -> (B, ceil(T/k), D)."""
    _shapes(ids, embedding, weight, k, mode)
    ids = _padded_ids(ids, k, pad_id)  # (B, N*k)
    embeds = F.embedding(ids, embedding, padding_idx)  # (B, N*k, d)
    b, t, d = embeds.shape
    groups = embeds.view(b, t // k, k, d)  # (B, N, k, d)
    pooled = groups.reshape(b, t // k, k * d) if mode == "concat" else groups.mean(dim=2)
    return F.linear(pooled, weight, bias)  # (B, N, D)


# ---------------------------------------------------------------------------- dispatcher
def fused_grouping(
    ids: torch.Tensor,
    embedding: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    k: int,
    pad_id: int = 0,
    mode: str = "concat",
    padding_idx: int | None = None,
    deterministic: bool | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """Embed and group speech ids: (B, T) ids -> (B, ceil(T/k), D) backbone inputs.

    Args:
        ids: (B, T) speech token ids; a tail shorter than k is padded with ``pad_id``.
        embedding: (V, d) speech embedding table E_s.
        weight, bias: the grouping linear W_g ((D, k*d) concat, (D, d) mean) and its bias.
        padding_idx: table row that gets no gradient (``nn.Embedding.padding_idx``).
        deterministic: fixed-order embedding-gradient scatter (default: follow
            ``torch.are_deterministic_algorithms_enabled()``).
        backend: "auto" (Triton on CUDA or under the interpreter), "triton" or "torch".
    """
    if not use_triton(ids, embedding, weight, backend=backend):
        return grouping_reference(ids, embedding, weight, bias, k, pad_id, mode, padding_idx)
    weight, bias = autocast_cast(weight, bias)  # the table stays; rows are cast as loaded
    return FusedGroupingFunction.apply(
        ids, embedding, weight, bias, k, pad_id, mode, padding_idx, deterministic
    )
