"""`drvoice-lab ablate`: the k-sweep and the "without SRH" ablation of the paper, on a CPU.

Every variant trains the same recipe (the ``tiny`` one by default, its steps scaled by
``scale`` so that a sweep fits a session) with only the model changed: ``k`` (25 Hz tokens
per backbone position) or the speech head (``parallel``: k independent linear heads instead
of the autoregressive SRH). Each trained model is then evaluated on the same held-out
dialogues (S2T and S2M exact match and token-F1, Whisper ASR-WER of the S2M speech against its
text), and one row per variant is appended to ``<results>/ablation.csv``.

Re-running the same command resumes: a finished variant is not trained again, a killed one
continues from its last checkpoint.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from drvoice_lab.benchmarks import machine, report
from drvoice_lab.training.recipe import Recipe, load_recipe

# variant name -> DrVoiceConfig overrides
VARIANTS: dict[str, dict] = {
    "k1": {"group_size": 1},
    "k2": {"group_size": 2},
    "k3": {"group_size": 3},
    "k5": {"group_size": 5},
    "k7": {"group_size": 7},
    "k5-parallel": {"group_size": 5, "speech_head": "parallel"},
}
EVAL_MODES = ("S2T", "S2M")


@dataclass(frozen=True)
class AblationSettings:
    variants: tuple[str, ...] = tuple(VARIANTS)
    recipe: str = "tiny"
    scale: float = 1.0  # fraction of every stage's steps (the same budget for all variants)
    runs: Path = Path("runs/ablate")
    results: Path = Path("bench/results")
    split: str = "test_question"
    limit: int | None = 40  # held-out dialogues evaluated per variant
    corpus: str | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        unknown = set(self.variants) - set(VARIANTS)
        if unknown:
            raise ValueError(f"unknown variants {sorted(unknown)}; choose from {list(VARIANTS)}")
        if not 0 < self.scale <= 1:
            raise ValueError(f"scale must be in (0, 1], got {self.scale}")


def scaled_recipe(recipe: Recipe, scale: float, model: dict) -> Recipe:
    """``recipe`` with every stage's steps and warm-up scaled, and ``model`` overrides added."""
    recipe = copy.deepcopy(recipe)
    recipe.model = {**recipe.model, **model}
    for stage in recipe.stages:
        if not stage.is_merge:
            stage.steps = max(1, round(stage.steps * scale))
            stage.warmup_steps = round(stage.warmup_steps * scale)
    recipe.eval_every = max(1, round(recipe.eval_every * scale))
    recipe.save_every = max(1, round(recipe.save_every * scale))
    recipe.validate()
    return recipe


def mean_positions(data, mode: str = "S2M", dialogues: int = 200) -> float:
    """Mean backbone positions of a training dialogue in ``mode`` (what k divides)."""
    sizes = [data.train.example(d, mode)[0].num_positions for d in data.train.dialogues[:dialogues]]
    return float(np.mean(sizes))


def run_variant(name: str, settings: AblationSettings, asr) -> dict:
    """Train (or resume) one variant, evaluate it, return its results row (kept in
    ``<runs>/<name>/row.json``, so that a resumed sweep does not evaluate it again)."""
    from drvoice_lab.data.corpus import default_corpus_dir
    from drvoice_lab.evaluation.evaluate import evaluate, write_report
    from drvoice_lab.inference.pipeline import VoiceChat
    from drvoice_lab.training.loop import Trainer, prepare_run_data

    overrides = {"corpus": settings.corpus} if settings.corpus else {}
    base = load_recipe(settings.recipe, **overrides)
    recipe = scaled_recipe(base, settings.scale, VARIANTS[name])
    out = settings.runs / name
    final, row_path = out / "final", out / "row.json"
    done = json.loads(row_path.read_text()) if row_path.exists() else None
    if done and (done["split"], done["limit"], done["scale"]) == (
        settings.split,
        settings.limit,
        settings.scale,
    ):
        return done
    data = prepare_run_data(recipe, progress=False)
    if not (final / "training.json").exists():
        Trainer(recipe, out, data=data, progress=settings.progress).run()
    facts = json.loads((final / "training.json").read_text())

    chat = VoiceChat.from_checkpoint(final)
    result = evaluate(
        chat,
        recipe.corpus or default_corpus_dir(),
        settings.split,
        EVAL_MODES,
        settings.limit,
        asr=asr,
        progress=settings.progress,
    )
    write_report(result, out / "eval")
    modes, floor = result["modes"], result.get("tokenizer_floor", {})
    cfg = chat.model.config
    row = {
        "variant": name,
        "k": cfg.group_size,
        "speech_head": cfg.speech_head,
        "position_hz": cfg.position_rate,
        "s2m_positions": round(mean_positions(data), 1),
        "steps": facts["steps"],
        "train_min": round(facts["train_seconds"] / 60, 1),
        "params_m": round(sum(p.numel() for p in chat.model.parameters()) / 1e6, 2),
        "s2t_em": round(modes["S2T"]["exact_match"], 3),
        "s2t_f1": round(modes["S2T"]["token_f1"], 3),
        "s2m_em": round(modes["S2M"]["exact_match"], 3),
        "s2m_f1": round(modes["S2M"]["token_f1"], 3),
        "s2m_asr_wer": round(modes["S2M"]["speech_text_wer"], 3),
        "tokenizer_wer": round(floor.get("round_trip_wer", float("nan")), 3),
        "split": settings.split,
        "limit": settings.limit,
        "dialogues": result["dialogues"],
        "scale": settings.scale,
    }
    row_path.write_text(json.dumps(row, indent=1) + "\n")
    return row


def run_ablation(settings: AblationSettings, say: Callable[[str], None] = print) -> list[dict]:
    """Train and evaluate every variant in turn; rows are appended as each one finishes."""
    from drvoice_lab.evaluation.evaluate import WhisperASR

    asr = WhisperASR()
    stamp = machine.machine_fields()  # one date for the sweep: the summary shows it whole
    rows = []
    for name in settings.variants:
        budget = f"{settings.scale:g} x the {settings.recipe} recipe's steps"
        say(f"[ablate] {name}: {VARIANTS[name]} at {budget}")
        row = run_variant(name, settings, asr)
        rows.append(row)
        labels = {"provider": "torch", "mode": "train+eval", "size": Path(settings.recipe).stem}
        report.append_rows(settings.results / "ablation.csv", "ablation", [labels | row], stamp)
        say(
            f"[ablate] {name}: S2T EM {row['s2t_em']:.2f} F1 {row['s2t_f1']:.2f} | S2M EM "
            f"{row['s2m_em']:.2f} F1 {row['s2m_f1']:.2f} ASR-WER {row['s2m_asr_wer']:.2f} | "
            f"{row['train_min']} min"
        )
    summary = report.write_summary(settings.results)
    say(f"[ablate] rows appended to {settings.results}/ablation.csv; summary: {summary}")
    return rows
