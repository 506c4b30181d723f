"""Fused linear + cross-entropy over the speech vocabulary (SRH output tied to E_s).

    loss = CE(h @ W^T, labels) [+ z * mean(logsumexp^2)]          h: (N, d), W: (V, d)

The N rows are processed in chunks: for each chunk the (C, V) logits are made by one GEMM,
then ``_ce_fwd_bwd_kernel`` (one program per row, online softmax) writes the row's loss and
overwrites the logits with their gradient, which two GEMMs turn into dh and dW right away.
So only a (C, V) block ever exists, never the (N, V) logits, and the gradients are ready
when forward ends; backward only scales them by the incoming gradient (Liger-Kernel's
fused_linear_cross_entropy scheme).

Reductions: ``"sum"``, or ``"mean"`` over labels != ignore_index. One deliberate difference
from ``F.cross_entropy``: a mean over zero labelled rows is 0 (with zero gradients), not NaN
(the model's ``masked_cross_entropy`` convention). Labels must lie in [0, V) or equal
``ignore_index``; unlike F.cross_entropy the Triton path does not check this.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from ._common import INTERPRETED, autocast_cast, contiguous, new_output, use_triton

REDUCTIONS = ("mean", "sum")


@triton.jit
def _ce_fwd_bwd_kernel(
    logits_ptr,  # (C, V) chunk logits; overwritten with d loss / d logits
    labels_ptr,  # (C,)
    loss_ptr,  # (C,) fp32 per-row CE (0 where ignored)
    z_ptr,  # (C,) fp32 per-row logsumexp^2 (0 where ignored)
    scale_ptr,  # () fp32: 1 (sum) or 1 / max(#labelled, 1) (mean)
    V,
    ignore_index,
    z_weight,
    BLOCK_V: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    row_ptr = logits_ptr + row * V
    label = tl.load(labels_ptr + row)
    valid = label != ignore_index
    # Pass 1: online max / sum of exponentials -> logsumexp.
    m = -float("inf")
    s = 0.0
    for v0 in range(0, V, BLOCK_V):
        cols = v0 + tl.arange(0, BLOCK_V)
        x = tl.load(row_ptr + cols, mask=cols < V, other=-float("inf")).to(tl.float32)
        m_new = tl.maximum(m, tl.max(x, axis=0))
        s = s * tl.exp(m - m_new) + tl.sum(tl.exp(x - m_new), axis=0)
        m = m_new
    lse = m + tl.log(s)
    x_label = tl.load(row_ptr + label, mask=valid, other=0.0).to(tl.float32)
    tl.store(loss_ptr + row, tl.where(valid, lse - x_label, 0.0))
    tl.store(z_ptr + row, tl.where(valid, lse * lse, 0.0))
    # Pass 2: d/dx [CE + z*lse^2] = softmax * (1 + 2 z lse) - onehot(label), times the scale.
    scale = tl.where(valid, tl.load(scale_ptr), 0.0)
    softmax_factor = 1.0 + 2.0 * z_weight * lse
    for v0 in range(0, V, BLOCK_V):
        cols = v0 + tl.arange(0, BLOCK_V)
        x = tl.load(row_ptr + cols, mask=cols < V, other=0.0).to(tl.float32)
        grad = tl.exp(x - lse) * softmax_factor - tl.where(cols == label, 1.0, 0.0)
        tl.store(row_ptr + cols, (grad * scale).to(logits_ptr.dtype.element_ty), mask=cols < V)


def _chunk_size(n: int, vocab: int, dim: int) -> int:
    """Rows per chunk so a (C, V) logits block is about the size of the (N, d) input."""
    return triton.next_power_of_2(triton.cdiv(n, triton.cdiv(vocab, dim)))


def linear_cross_entropy_forward(
    hidden, weight, labels, ignore_index, reduction, z_weight, chunk_size, need_h, need_w
):
    """Launch chunk by chunk: returns CE, z term (both reduced) and the unscaled gradients."""
    n, d = hidden.shape
    vocab = weight.shape[0]
    valid = labels != ignore_index
    if reduction == "mean":
        scale = 1.0 / valid.sum().clamp(min=1).to(torch.float32)  # () on device, no sync
    else:
        scale = torch.ones((), dtype=torch.float32, device=hidden.device)
    loss_rows = new_output((n,), torch.float32, hidden.device)
    z_rows = new_output((n,), torch.float32, hidden.device)
    grad_h = new_output((n, d), hidden.dtype, hidden.device) if need_h else None
    grad_w = torch.zeros((vocab, d), dtype=torch.float32, device=hidden.device) if need_w else None
    chunk = chunk_size or _chunk_size(n, vocab, d)
    block_v = min(triton.next_power_of_2(vocab), 8192 if INTERPRETED else 4096)
    for start in range(0, n, chunk):
        end = min(start + chunk, n)
        h = hidden[start:end]  # (C, d)
        logits = h @ weight.t()  # (C, V), becomes d loss / d logits in place
        _ce_fwd_bwd_kernel[(end - start,)](
            logits, labels[start:end], loss_rows[start:end], z_rows[start:end], scale,
            vocab, ignore_index, z_weight, BLOCK_V=block_v, num_warps=16,
        )  # fmt: skip
        if need_h:
            torch.matmul(logits, weight, out=grad_h[start:end])  # (C, d)
        if need_w and h.dtype == torch.float32:
            grad_w.addmm_(logits.t(), h)  # (V, d)
        elif need_w:
            grad_w += (logits.t() @ h).float()  # (V, d), accumulated in fp32
    ce = loss_rows.sum() * scale
    z = z_rows.sum() * scale
    return ce, z, grad_h, grad_w


class FusedLinearCrossEntropyFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, labels, ignore_index, reduction, z_weight, chunk_size):
        hidden, weight, labels = contiguous(hidden, weight, labels)
        need_h, need_w = ctx.needs_input_grad[:2]
        ce, z, grad_h, grad_w = linear_cross_entropy_forward(
            hidden, weight, labels, ignore_index, reduction, z_weight, chunk_size, need_h, need_w
        )
        ctx.save_for_backward(grad_h, grad_w.to(weight.dtype) if grad_w is not None else None)
        ctx.mark_non_differentiable(z)
        return ce + z_weight * z, z

    @staticmethod
    def backward(ctx, grad_loss, _grad_z):
        grad_h, grad_w = ctx.saved_tensors
        if grad_h is not None:
            grad_h = grad_h * grad_loss.to(grad_h.dtype)
        if grad_w is not None:
            grad_w = grad_w * grad_loss.to(grad_w.dtype)
        return grad_h, grad_w, None, None, None, None, None


def linear_cross_entropy_reference(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    ignore_index: int = -100,
    reduction: str = "mean",
    z_loss_weight: float = 0.0,
    return_z_loss: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Plain torch, the same math; materialises the (N, V) fp32 logits."""
    hidden, labels = hidden.reshape(-1, hidden.shape[-1]), labels.reshape(-1)
    logits = F.linear(hidden, weight).float()  # (N, V)
    loss = F.cross_entropy(logits, labels, ignore_index=ignore_index, reduction="sum")
    valid = labels != ignore_index
    count = valid.sum().clamp(min=1) if reduction == "mean" else None
    if count is not None:
        loss = loss / count
    if not (z_loss_weight or return_z_loss):
        return loss
    z = (torch.logsumexp(logits, dim=-1).square() * valid).sum()  # ()
    if count is not None:
        z = z / count
    loss = loss + z_loss_weight * z
    return (loss, z.detach()) if return_z_loss else loss


def fused_linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    ignore_index: int = -100,
    reduction: str = "mean",
    z_loss_weight: float = 0.0,
    return_z_loss: bool = False,
    chunk_size: int | None = None,
    backend: str = "auto",
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """``F.cross_entropy(hidden @ weight.T, labels)`` without materialising the logits.

    Args:
        hidden: (..., d) states (e.g. the SRH's last hidden states); flattened to (N, d).
        weight: (V, d) output projection (the speech embedding when tied).
        labels: (...) target ids matching hidden's leading dims; ``ignore_index`` = no loss.
        reduction: "mean" (over labelled rows; 0 when there are none) or "sum".
        z_loss_weight: z; adds ``z * logsumexp(logits)^2`` (same reduction) to the loss.
        return_z_loss: also return the (detached) logsumexp^2 term, for logging.
        chunk_size: rows per logits block (default: the block is about the size of hidden).
        backend: "auto" (Triton on CUDA or under the interpreter), "triton" or "torch".
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if labels.numel() != hidden.numel() // hidden.shape[-1]:
        raise ValueError(f"hidden {tuple(hidden.shape)} and labels {tuple(labels.shape)} differ")
    if not use_triton(hidden, weight, labels, backend=backend):
        return linear_cross_entropy_reference(
            hidden, weight, labels, ignore_index, reduction, z_loss_weight, return_z_loss
        )
    hidden, weight = autocast_cast(hidden, weight)
    if hidden.dtype != weight.dtype:
        raise ValueError(f"hidden is {hidden.dtype} but weight is {weight.dtype}")
    args = (
        hidden.reshape(-1, hidden.shape[-1]),  # (N, d)
        weight,
        labels.reshape(-1),  # (N,)
        ignore_index,
        reduction,
        float(z_loss_weight),
        chunk_size,
    )
    if torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad):
        loss, z = FusedLinearCrossEntropyFunction.apply(*args)
    else:  # evaluation: skip the gradient GEMMs
        ce, z, _, _ = linear_cross_entropy_forward(*contiguous(*args[:3]), *args[3:], False, False)
        loss = ce + z_loss_weight * z
    return (loss, z) if return_z_loss else loss
