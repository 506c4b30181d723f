"""The benchmark suites: what each measures, where its code lives, what SUMMARY.md shows.

A suite's entry is ``module:function`` in this package, imported only when the suite runs
(so that ``--help`` and the kernel suites need no audio or ASR packages). The function takes
``(settings, say)`` and returns result rows (see ``report`` for the schema).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

KERNEL_COLUMNS = ("provider", "mode", "size", "dtype", "median_ms", "peak_mem_mb")


@dataclass(frozen=True)
class Suite:
    help: str  # one line for `drvoice-lab bench --help`
    title: str  # heading in SUMMARY.md
    columns: tuple[str, ...]  # columns SUMMARY.md shows
    entry: str | None  # "module:function"; None: written by another command
    default: bool = False  # run by a plain `drvoice-lab bench`
    latest_by: tuple[str, ...] = ()  # summary: latest row per these columns, not the last run

    def runner(self) -> Callable:
        module, function = self.entry.split(":")
        return getattr(importlib.import_module(f"drvoice_lab.benchmarks.{module}"), function)


def _kernel(name: str, what: str) -> Suite:
    return Suite(
        f"{what}: triton vs torch vs torch.compile, forward/backward/full (Triton: GPU only)",
        f"Kernel: {what} (median time, peak memory above the inputs)",
        KERNEL_COLUMNS,
        f"kernel_cases:{name}",
        latest_by=("provider", "mode", "size"),
    )


# Run order and summary order: the ceiling first, latency before anything else warms up.
SUITES = {
    "ceiling": Suite(
        "dense fp32 matmul GFLOP/s of this machine",
        "Machine ceiling: dense matmul",
        ("size", "dtype", "gflops"),
        "machine:ceiling",
        default=True,
    ),
    "latency": Suite(
        "one spoken turn per stage, cold and warm, with FLOPs and fraction of the ceiling",
        "Latency profile of one spoken turn (default model; cold = first turn after loading)",
        ("stage", "cold_ms", "warm_ms", "gflop", "achieved_gflops", "ceiling_fraction"),
        "latency:bench",
        default=True,
    ),
    "resolution": Suite(
        "backbone positions, FLOPs, prefill and decode-step time at k = 1..7 (ratios to k = 1)",
        "Resolution compute: one spoken turn, backbone prefill and decode step per k "
        "(ratios to k = 1)",
        (
            "backbone",
            "seconds",
            "k",
            "positions",
            "prefill_gflop",
            "prefill_ms",
            "step_ms",
            "positions_ratio",
            "flop_ratio",
            "prefill_speedup",
            "step_speedup",
        ),
        "resolution:bench",
        default=True,
    ),
    "training": Suite(
        "samples/s and peak memory, full fine-tuning vs LoRA (tiny preset)",
        "Training throughput, tiny preset: full fine-tuning vs LoRA",
        (
            "mode",
            "trainable_params",
            "batch",
            "positions",
            "samples_per_s",
            "step_ms",
            "training_rss_mb",
            "peak_rss_mb",
        ),
        "throughput:bench",
        default=True,
    ),
    "grouping": _kernel("grouping", "fused speech grouping"),
    "srh_ungroup": _kernel("srh_ungroup", "fused SRH ungroup"),
    "linear_cross_entropy": _kernel("linear_cross_entropy", "fused linear + cross-entropy"),
    "encoder_window": Suite(
        "Whisper encoder: fitted window vs the padded 30 s window, cost and output distance",
        "Speech encoder: fitted window vs padded 30 s window",
        ("provider", "size", "frames", "fitted_ms", "padded_ms", "median_cosine", "median_rel_err"),
        "encoder_window:bench",
    ),
    "speech_tokenizer": Suite(
        "round-trip ASR-WER and decode real-time factor of the 25 Hz speech tokenizer",
        "Speech tokenizer: round-trip ASR-WER and decode real-time factor",
        (
            "provider",
            "size",
            "sentences",
            "audio_s",
            "wer_original",
            "wer_roundtrip",
            "decode_rtf_wall",
            "decode_rtf_cpu",
        ),
        "speech_tokenizer:bench",
    ),
    "voice_latency": Suite(
        "first audio and RTF of spoken answers on the demo's path, held-out questions",
        "Voice latency on the demo's path (one row per held-out question)",
        ("question", "question_s", "answer_s", "first_audio_ms", "total_ms", "rtf"),
        "voice_latency:bench",
    ),
    "ablation": Suite(
        "written by `drvoice-lab ablate`",
        "k-sweep and head ablation (`drvoice-lab ablate`): the same recipe and steps per "
        "variant, held-out dialogues",
        (
            "variant",
            "k",
            "speech_head",
            "s2m_positions",
            "steps",
            "train_min",
            "s2t_em",
            "s2t_f1",
            "s2m_em",
            "s2m_f1",
            "s2m_asr_wer",
            "tokenizer_wer",
            "dialogues",
            "scale",
        ),
        None,
    ),
}
RUNNABLE = tuple(name for name, suite in SUITES.items() if suite.entry)
DEFAULT_SUITES = tuple(name for name, suite in SUITES.items() if suite.default)


def suite_list() -> str:
    """The suites for `--help`, one a line."""
    lines = ["suites (default: " + ", ".join(DEFAULT_SUITES) + "):"]
    lines += [f"  {name:<21} {SUITES[name].help}" for name in RUNNABLE]
    return "\n".join(lines)
