"""Training throughput of the tiny preset: full fine-tuning versus LoRA (the `training` suite).

Each variant runs in its own child process (so peak memory is its own): build the model,
note the resident set, then train on a fixed synthetic T2M-shaped batch (text and speech
labels, SRH loss included) with AdamW; report samples/s over the timed steps and the growth of
the peak resident set above the built model (activations, gradients, optimizer state).
"""

from __future__ import annotations

import time

import torch

from drvoice_lab.benchmarks import machine

VARIANTS = ("full", "lora")


def run_variant(variant: str, batch: int, positions: int, steps: int, warmup: int) -> dict:
    """Train ``steps`` timed steps (after ``warmup``) in this process; returns the row."""
    from drvoice_lab import DrVoiceConfig, DrVoiceModel
    from drvoice_lab.modeling.lora import apply_lora
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
    built = machine.rss_mb()[1]
    model.train()
    for step in range(warmup + steps):
        if step == warmup:
            start = time.perf_counter()
        out = model(text, speech, text_labels=text, speech_labels=speech)
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    seconds = time.perf_counter() - start
    peak = machine.rss_mb()[1]
    return {
        "provider": "torch",
        "mode": variant,
        "size": "tiny",
        "trainable_params": sum(p.numel() for p in params),
        "batch": batch,
        "positions": positions,
        "steps": steps,
        "samples_per_s": round(batch * steps / seconds, 3),
        "step_ms": round(1000 * seconds / steps, 2),
        "peak_rss_mb": round(peak, 1),
        "training_rss_mb": round(peak - built, 1),
    }


def throughput_rows(batch: int = 16, positions: int = 40, steps: int = 10, warmup: int = 3):
    return [
        machine.run_child(__name__, "run_variant", variant, batch, positions, steps, warmup)
        for variant in VARIANTS
    ]


def bench(settings, say) -> list[dict]:
    """The `training` suite (``--quick``: 2 timed steps after 1 warm-up)."""
    steps = dict(steps=2, warmup=1) if settings.quick else dict(steps=settings.reps or 10)
    rows = throughput_rows(**steps)
    for row in rows:
        say(
            f"  {row['mode']:<5} {row['samples_per_s']:8.2f} samples/s  "
            f"{row['training_rss_mb']:8.1f} MB above the model"
        )
    return rows
