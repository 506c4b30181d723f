"""Triton kernels for the grouping and the grouped upsampling head (SRH), with torch references.

Installed under the import name ``drvoice_kernels`` (see pyproject.toml): a PyPI package
named ``kernels`` exists and transformers probes for it, so this folder must not shadow it.

Each op is a kernel file: ``@triton.jit`` kernels, a launcher, a ``torch.autograd.Function``
and a plain-torch reference of the same math. The public function dispatches: Triton on CUDA
tensors (or on CPU tensors when ``TRITON_INTERPRET=1`` was set before this package was
imported), the reference otherwise; ``backend="triton" | "torch"`` forces one. Under autocast
the fused ops cast their operands as ``F.linear`` would, so they match the references there too.

* ``fused_grouping``            - embed k speech ids and apply the grouping linear W_g
  (concat or mean) without the (B, T/k, k*d) concat; backward scatters dE.
* ``fused_ungroup``             - SRH input ``split_k(W_p h) + E[previous token]`` in one pass.
* ``fused_linear_cross_entropy`` - CE over ``h @ E^T`` in row chunks, logits never whole;
  ignore_index, mean/sum, optional z-loss.
* ``embedding_grad``            - the shared dE scatter (atomic or deterministic).

The model uses them when ``DrVoiceConfig.use_kernels`` is True. Benchmarks: ``bench/``.
"""

from ._common import INTERPRETED, poisoned_outputs, use_triton
from .embedding_scatter import embedding_grad, embedding_grad_reference
from .grouping import fused_grouping, grouping_reference
from .linear_cross_entropy import fused_linear_cross_entropy, linear_cross_entropy_reference
from .srh_ungroup import fused_ungroup, ungroup_reference

__all__ = [
    "INTERPRETED",
    "embedding_grad",
    "embedding_grad_reference",
    "fused_grouping",
    "fused_linear_cross_entropy",
    "fused_ungroup",
    "grouping_reference",
    "linear_cross_entropy_reference",
    "poisoned_outputs",
    "ungroup_reference",
    "use_triton",
]
