"""Shared by the kernel tests (conftest.py switches Triton's interpreter on without CUDA)."""

import zlib

import drvoice_kernels
import pytest
import torch
from drvoice_kernels import poisoned_outputs

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
GPU_ONLY = pytest.mark.skipif(DEVICE == "cpu", reason="bf16 math is wrong in the interpreter")


def dtype_params(fp16=(1e-2, 1e-2), bf16=(5e-2, 5e-2)) -> list:
    """(dtype, atol, rtol) cases: fp32 exact to 1e-5; bf16 only on a GPU."""
    return [
        pytest.param(torch.float32, 1e-5, 1e-5, id="fp32"),
        pytest.param(torch.float16, *fp16, id="fp16"),
        pytest.param(torch.bfloat16, *bf16, id="bf16", marks=GPU_ONLY),
    ]


@pytest.fixture(autouse=True)
def fresh_seed_and_poison(request):
    """Every test: its own seed, and kernel outputs pre-filled with NaN (unwritten = caught)."""
    assert drvoice_kernels.INTERPRETED or DEVICE == "cuda", "Triton cannot run these tensors"
    torch.manual_seed(zlib.crc32(request.node.nodeid.encode()))
    with poisoned_outputs():
        yield
