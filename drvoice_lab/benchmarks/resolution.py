"""Resolution compute: what grouping k saves in the backbone for one spoken user turn.

A turn of S seconds is S x 25 speech tokens; grouped by k it takes ceil(25 S / k) backbone
positions (plus a short text prompt). For k = 1, 2, 3, 5, 7 this module counts the positions,
the backbone's forward FLOPs (analytically, from the config) and measures prefill time and the
time of one decode step with that context in the KV cache. The text head is left out of both
the count and the timing: it costs the same per position at every k and, with a 150k-word
vocabulary, would dominate a 2-layer CPU stand-in for the small backbone.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

import torch
from transformers import AutoModelForCausalLM, DynamicCache, PretrainedConfig

from drvoice_lab.benchmarks import machine
from drvoice_lab.config import DrVoiceConfig

PROMPT_POSITIONS = 16  # system prompt and turn markers before the user's speech
SPEECH_TOKEN_RATE = 25


def positions_for(seconds: float, k: int, prompt: int = PROMPT_POSITIONS) -> int:
    """Backbone positions of a spoken turn: prompt + ceil(25 s / k) grouped speech positions."""
    return prompt + math.ceil(seconds * SPEECH_TOKEN_RATE / k)


def layer_flops(cfg: PretrainedConfig, new: int, context: int = 0) -> float:
    """Forward FLOPs (2 per multiply-add) of one decoder layer for ``new`` positions that attend
    causally to ``context`` cached positions and to each other."""
    d = cfg.hidden_size
    head_dim = getattr(cfg, "head_dim", None) or d // cfg.num_attention_heads
    q, kv = cfg.num_attention_heads * head_dim, cfg.num_key_value_heads * head_dim
    projections = 2 * new * d * (q + 2 * kv) + 2 * new * q * d  # Q, K, V in; O out
    mlp = 2 * new * 3 * d * cfg.intermediate_size  # gate, up, down (SwiGLU)
    attended = new * context + new * (new + 1) / 2  # query-key pairs under the causal mask
    attention = 2 * 2 * attended * q  # scores and the weighted sum of values
    return projections + mlp + attention


def backbone_flops(cfg: PretrainedConfig, new: int, context: int = 0) -> float:
    return cfg.num_hidden_layers * layer_flops(cfg, new, context)


@dataclass(frozen=True)
class Backbone:
    """A named backbone shape to measure; ``layers`` caps depth so a CPU run finishes (FLOPs and
    time scale with depth alike, so ratios between k are unaffected)."""

    name: str
    preset: str
    layers: int | None = None

    def config(self) -> PretrainedConfig:
        cfg = DrVoiceConfig.from_preset(self.preset).backbone_config
        if self.layers is not None:
            cfg.num_hidden_layers = self.layers
        return cfg


BACKBONES = {
    "tiny": Backbone("tiny", "tiny"),
    "small-width": Backbone("small-width (2 of 28 layers)", "small", layers=2),
}


def build_transformer(cfg: PretrainedConfig) -> torch.nn.Module:
    """The decoder stack without the text head (random weights: timing only)."""
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(cfg).model.eval()


@torch.no_grad()
def measure(model: torch.nn.Module, cfg: PretrainedConfig, n: int, reps: int) -> dict[str, float]:
    """Median prefill seconds for ``n`` positions and of one decode step after them."""
    x = torch.randn(1, n, cfg.hidden_size) * 0.02  # (1, N, D)
    step = torch.randn(1, 1, cfg.hidden_size) * 0.02  # (1, 1, D)

    def prefill():
        return model(inputs_embeds=x, past_key_values=DynamicCache(config=cfg), use_cache=True)

    cache = prefill().past_key_values

    def decode():
        model(inputs_embeds=step, past_key_values=cache, use_cache=True)
        cache.crop(-1)  # drop the step again: every timed step sees the same n positions

    return {
        "prefill_s": statistics.median(machine.timings(prefill, reps)),
        "step_s": statistics.median(machine.timings(decode, reps)),
    }


def resolution_table(
    backbone: Backbone,
    seconds: tuple[float, ...] = (10.0, 30.0, 60.0),
    ks: tuple[int, ...] = (1, 2, 3, 5, 7),
    reps: int = 3,
    progress=None,
) -> list[dict]:
    """One row per (seconds, k): positions, FLOPs and measured times, and their ratios to k=1."""
    cfg = backbone.config()
    model = build_transformer(cfg)
    rows = []
    for s in seconds:
        base = None
        for k in ks:
            n = positions_for(s, k)
            timed = measure(model, cfg, n, reps)
            row = {
                "provider": "torch",
                "mode": "prefill+step",
                "size": f"{s:g} s turn",
                "backbone": backbone.name,
                "hidden": cfg.hidden_size,
                "layers": cfg.num_hidden_layers,
                "seconds": s,
                "k": k,
                "positions": n,
                "prefill_gflop": backbone_flops(cfg, n) / 1e9,
                "step_mflop": backbone_flops(cfg, 1, context=n) / 1e6,
                "prefill_ms": 1000 * timed["prefill_s"],
                "step_ms": 1000 * timed["step_s"],
            }
            base = base or row
            row["positions_ratio"] = base["positions"] / n
            row["flop_ratio"] = base["prefill_gflop"] / row["prefill_gflop"]
            row["prefill_speedup"] = base["prefill_ms"] / row["prefill_ms"]
            row["step_speedup"] = base["step_ms"] / row["step_ms"]
            rows.append(row)
            if progress is not None:
                progress(row)
    return rows


def bench(settings, say) -> list[dict]:
    """The `resolution` suite: both backbones at 10 / 30 / 60 s (``--quick``: tiny, 10 s,
    k = 1 and 5)."""
    if settings.quick:
        return resolution_table(BACKBONES["tiny"], seconds=(10.0,), ks=(1, 5), reps=1)
    seconds = settings.seconds or (10.0, 30.0, 60.0)
    rows = []
    for backbone in BACKBONES.values():
        rows += resolution_table(
            backbone,
            seconds,
            reps=settings.reps or 3,
            progress=lambda r: say(
                f"  {r['backbone']:<28} {r['seconds']:4.0f} s  k={r['k']}  "
                f"{r['positions']:5d} positions  prefill {r['prefill_ms']:9.2f} ms "
                f"(x{r['prefill_speedup']:.2f})  step {r['step_ms']:7.3f} ms"
            ),
        )
    return rows
