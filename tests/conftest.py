import os

# Nothing in the suite may reach a hub; set before transformers is imported anywhere.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

# Triton kernels run in Triton's interpreter on machines without CUDA; it must be switched on
# before any @triton.jit runs, i.e. before a test module imports drvoice_kernels.
import torch  # noqa: E402

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
