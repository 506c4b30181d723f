"""Embedding-table gradient: scatter-add of per-token gradient rows into a (V, d) table.

Shared by the grouping and the SRH-ungroup backward passes. Two Triton paths:

* atomic (fast, order of additions not fixed): one program per tile of rows, ``atomic_add``;
* deterministic: stable-sort the ids, then one program per vocabulary row sums its gradient
  rows in sorted order, so results are bit-identical between runs. Every table row is written
  (zeros for unused rows), so the output needs no zero fill.

``deterministic=None`` follows ``torch.are_deterministic_algorithms_enabled()``.
Rows whose id equals ``padding_idx`` get no gradient, as with ``nn.Embedding(padding_idx=...)``.
The result is always fp32; callers cast it to the table's dtype.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import block, contiguous, new_output, use_triton


@triton.jit
def _scatter_add_atomic_kernel(
    grad_ptr,  # (M, d) gradient rows
    ids_ptr,  # (M,) table row of each gradient row
    out_ptr,  # (V, d) fp32, zero-initialised
    M,
    d,
    padding_idx,
    BLOCK_M: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    row_ok = rows < M
    ids = tl.load(ids_ptr + rows, mask=row_ok, other=0).to(tl.int64)  # (BM,)
    keep = row_ok & (ids != padding_idx)
    mask = keep[:, None] & (cols[None, :] < d)
    g = tl.load(grad_ptr + rows.to(tl.int64)[:, None] * d + cols[None, :], mask=mask, other=0.0)
    tl.atomic_add(out_ptr + ids[:, None] * d + cols[None, :], g.to(tl.float32), mask=mask)


@triton.jit
def _segment_sum_kernel(
    grad_ptr,  # (M, d) gradient rows
    order_ptr,  # (M,) gradient-row indices sorted by id (stable)
    offsets_ptr,  # (V + 1,) start of each id's run in `order`
    out_ptr,  # (V, d) fp32, written completely
    d,
    padding_idx,
    BLOCK_R: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    v = tl.program_id(0)
    cols = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    col_ok = cols < d
    start = tl.load(offsets_ptr + v).to(tl.int32)
    end = tl.load(offsets_ptr + v + 1).to(tl.int32)
    if v == padding_idx:
        end = start
    acc = tl.zeros((BLOCK_R, BLOCK_D), dtype=tl.float32)
    for i0 in range(start, end, BLOCK_R):
        idx = i0 + tl.arange(0, BLOCK_R)
        row_ok = idx < end
        rows = tl.load(order_ptr + idx, mask=row_ok, other=0).to(tl.int64)  # (BR,)
        mask = row_ok[:, None] & col_ok[None, :]
        acc += tl.load(grad_ptr + rows[:, None] * d + cols[None, :], mask=mask, other=0.0).to(
            tl.float32
        )
    tl.store(out_ptr + v.to(tl.int64) * d + cols, tl.sum(acc, axis=0), mask=col_ok)


def embedding_grad_reference(
    grad_rows: torch.Tensor, ids: torch.Tensor, num_embeddings: int, padding_idx: int | None = None
) -> torch.Tensor:
    """(M, d) rows, (M,) ids -> (V, d) fp32 table gradient (plain torch)."""
    out = grad_rows.new_zeros((num_embeddings, grad_rows.shape[-1]), dtype=torch.float32)
    out.index_add_(0, ids, grad_rows.float())
    if padding_idx is not None:
        out[padding_idx] = 0
    return out


def embedding_grad(
    grad_rows: torch.Tensor,
    ids: torch.Tensor,
    num_embeddings: int,
    padding_idx: int | None = None,
    deterministic: bool | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """(M, d) gradient rows and (M,) ids -> (V, d) fp32 gradient of the embedding table."""
    if not use_triton(grad_rows, ids, backend=backend):
        return embedding_grad_reference(grad_rows, ids, num_embeddings, padding_idx)
    if deterministic is None:
        deterministic = torch.are_deterministic_algorithms_enabled()
    grad_rows, ids = contiguous(grad_rows, ids)
    m, d = grad_rows.shape
    pad = -1 if padding_idx is None else padding_idx
    block_d = block(d, 128)
    if not deterministic:
        out = torch.zeros((num_embeddings, d), dtype=torch.float32, device=grad_rows.device)
        block_m = block(m, 32)
        grid = (triton.cdiv(m, block_m), triton.cdiv(d, block_d))
        _scatter_add_atomic_kernel[grid](grad_rows, ids, out, m, d, pad, block_m, block_d)
        return out
    sorted_ids, order = torch.sort(ids, stable=True)  # (M,), (M,)
    vocab = torch.arange(num_embeddings + 1, device=ids.device, dtype=sorted_ids.dtype)
    offsets = torch.searchsorted(sorted_ids, vocab)  # (V + 1,)
    out = new_output((num_embeddings, d), torch.float32, grad_rows.device)
    grid = (num_embeddings, triton.cdiv(d, block_d))
    _segment_sum_kernel[grid](grad_rows, order, offsets, out, d, pad, block(m, 16, 64), block_d)
    return out
