"""Training throughput of the tiny preset: full fine-tuning versus LoRA.

Each variant runs in its own child process (so peak memory is its own): build the model,
note the resident set, then train on a fixed synthetic T2M-shaped batch (text and speech
labels, SRH loss included) with AdamW; report samples/s over the timed steps and the growth of
the peak resident set above the built model (activations, gradients, optimizer state).
"""

from __future__ import annotations

import json
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

VARIANTS = ("full", "lora")


def _rss_mb() -> float:
    """Peak resident set of this process so far (VmHWM; ``ru_maxrss`` would include the
    parent's peak, which Linux carries across fork + exec)."""
    try:
        status = Path("/proc/self/status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024
    except (OSError, AttributeError):  # not Linux
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_variant(variant: str, batch: int, positions: int, steps: int, warmup: int) -> dict:
    """Train ``steps`` timed steps (after ``warmup``) in this process; returns the row."""
    from drvoice_lab import DrVoiceConfig, DrVoiceModel
    from drvoice_lab.training.lora import apply_lora
    from drvoice_lab.training.recipe import LoraSettings

    torch.manual_seed(0)
    config = DrVoiceConfig.from_preset("tiny")
    model = DrVoiceModel(config)
    if variant == "lora":
        model = apply_lora(model, LoraSettings())
    elif variant != "full":
        raise ValueError(f"unknown variant {variant!r}; choose one of {VARIANTS}")
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    k = config.group_size
    text = torch.randint(2, config.text_vocab_size, (batch, positions))  # (B, N)
    speech = torch.randint(0, config.speech_codebook_size, (batch, positions * k))  # (B, N*k)
    built = _rss_mb()
    model.train()
    for step in range(warmup + steps):
        if step == warmup:
            start = time.perf_counter()
        out = model(text, speech, text_labels=text, speech_labels=speech)
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    seconds = time.perf_counter() - start
    return {
        "variant": variant,
        "trainable_params": sum(p.numel() for p in params),
        "batch": batch,
        "positions": positions,
        "steps": steps,
        "samples_per_s": round(batch * steps / seconds, 3),
        "step_ms": round(1000 * seconds / steps, 2),
        "peak_rss_mb": round(_rss_mb(), 1),
        "training_rss_mb": round(_rss_mb() - built, 1),
    }


def throughput_rows(batch: int = 16, positions: int = 40, steps: int = 10, warmup: int = 3):
    rows = []
    for variant in VARIANTS:
        code = (
            "import json; from drvoice_lab.benchmarks.throughput import run_variant; "
            f"print(json.dumps(run_variant({variant!r}, {batch}, {positions}, {steps}, {warmup})))"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=1800
        )
        if out.returncode != 0:
            raise RuntimeError(f"{variant} training benchmark failed:\n{out.stderr[-2000:]}")
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return rows
