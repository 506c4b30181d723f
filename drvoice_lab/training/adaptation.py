"""LoRA adaptation of a trained model to a new task family and a new assistant voice.

The LoRA notebook's logic: a small corpus the base model never saw (by default
multiplication questions, answered by the assistant at a speaking rate absent from the base
corpus), a one-stage LoRA recipe on top of the base checkpoint, before/after metrics
(answer accuracy, ASR-WER and speaking rate of the spoken answer) and a rank sweep.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from drvoice_lab.data.corpus import CorpusConfig, build_corpus
from drvoice_lab.training.recipe import LoraSettings, Recipe, Stage

# The base corpus's assistant speaks hibari at rate 1.0 (users at 0.85 .. 1.3): 0.7 is new.
NEW_ASSISTANT_VOICE = "hibari@0.7"


@dataclass(frozen=True)
class AdaptationTask:
    """What the adapter should learn: a task family and the voice the answers are spoken in."""

    family: str = "multiplication"
    assistant_voice: str = NEW_ASSISTANT_VOICE
    user_voices: tuple[str, ...] = ("hibari@1", "espeak:en-us@165")  # seen by the base model
    dialogues: int = 300
    seed: int = 0


@dataclass
class LoraRun:
    """The knobs of one LoRA run (the notebook's widgets)."""

    rank: int = 8
    alpha: float = 16.0
    lr: float = 3e-3
    steps: int = 200
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj"]
    )
    srh: str = "full"  # "full" | "lora" | "frozen"
    freeze: list[str] = field(default_factory=list)  # of "backbone", "grouping", "adapter"
    batch_size: int = 16
    modes: dict[str, float] = field(
        default_factory=lambda: {"S2M": 2, "T2M": 2, "S2T": 1, "T2T": 1}
    )
    seed: int = 0


def build_task_corpus(
    out: str | Path, base_model: str | Path, task: AdaptationTask, progress: bool = True
) -> Path:
    """Synthesize the task's corpus (cached: reruns reuse the audio). It keeps the base
    model's BPE where it has one, so the adapter trains on the same token ids (a model on a
    pretrained LLM brings the LLM's tokenizer itself)."""
    bpe = Path(base_model) / "text_tokenizer.json"
    config = CorpusConfig(
        num_dialogues=task.dialogues,
        max_turns=1,
        heldout_voice_fraction=0.0,
        heldout_question_fraction=0.2,
        families=(task.family,),
        seed=task.seed,
        assistant_voice=task.assistant_voice,
        user_voices=task.user_voices,
        text_tokenizer=str(bpe) if bpe.is_file() else None,
    )
    return build_corpus(out, config, workers=2, progress=progress)


def lora_recipe(base_model: str | Path, corpus: str | Path, run: LoraRun) -> Recipe:
    """One LoRA stage on top of ``base_model`` over the task corpus."""
    recipe = Recipe(
        corpus=str(corpus),
        init_from=str(base_model),
        seed=run.seed,
        batch_size=run.batch_size,
        log_every=1,
        eval_every=max(1, run.steps // 4),
        eval_batches=2,
        save_every=run.steps,
        keep_checkpoints=1,
        lora=LoraSettings(
            rank=run.rank,
            alpha=run.alpha,
            target_modules=list(run.target_modules),
            srh=run.srh,
            freeze=list(run.freeze),
        ),
        stages=[
            Stage(
                name="adapt",
                steps=run.steps,
                lr=run.lr,
                warmup_steps=min(10, run.steps // 5),
                modes=dict(run.modes),
            )
        ],
    )
    recipe.validate()
    return recipe


def train_adapter(
    base_model: str | Path,
    corpus: str | Path,
    run: LoraRun,
    out: str | Path,
    on_log: Callable[[dict], None] | None = None,
    progress: bool = True,
) -> Path:
    """Train a LoRA adapter from scratch into ``out`` (replaced); returns the adapter folder."""
    from drvoice_lab.training.loop import Trainer

    out = Path(out)
    shutil.rmtree(out, ignore_errors=True)  # a fresh run: the widgets may have changed
    trainer = Trainer(lora_recipe(base_model, corpus, run), out, progress=progress, on_log=on_log)
    return trainer.run()


def task_metrics(chat, corpus: str | Path, limit: int | None = None, asr=None) -> dict:
    """Held-out task questions answered by ``chat``: exact match and token-F1 (typed T2M and
    spoken S2M), ASR-WER of the spoken answer against its text, and its speaking rate."""
    from drvoice_lab.evaluation.evaluate import evaluate

    report = evaluate(chat, corpus, "test_question", ("T2M", "S2M"), limit, asr, progress=False)
    modes = report["modes"]
    return {
        "T2M exact match": modes["T2M"]["exact_match"],
        "S2M exact match": modes["S2M"]["exact_match"],
        "T2M token F1": modes["T2M"]["token_f1"],
        "S2M token F1": modes["S2M"]["token_f1"],
        "S2M ASR-WER": modes["S2M"]["speech_text_wer"],
        "T2M words/s": modes["T2M"]["words_per_second"],
        "tokenizer floor WER": report["tokenizer_floor"]["round_trip_wer"],
    }


def reference_words_per_second(corpus: str | Path, split: str = "test_question") -> float:
    """Speaking rate of the corpus's own spoken answers (the target voice)."""
    from drvoice_lab.data.corpus import load_dialogues

    turns = [t for d in load_dialogues(corpus, split) for t in d.turns]
    words = sum(len(t.answer.split()) for t in turns)
    return words / sum(t.assistant_seconds for t in turns)


def rank_sweep(
    base_model: str | Path,
    corpus: str | Path,
    run: LoraRun,
    ranks: tuple[int, ...],
    out: str | Path,
    limit: int | None = None,
    progress: bool = True,
) -> list[dict]:
    """Train one adapter per rank (alpha = 2 x rank, other knobs from ``run``); for each,
    the LoRA parameters, the final held-out loss, typed (T2T) exact match and token F1, and
    the training seconds."""
    from dataclasses import replace

    from drvoice_lab.evaluation.evaluate import evaluate
    from drvoice_lab.inference.pipeline import VoiceChat

    rows = []
    for rank in ranks:
        folder = Path(out) / f"rank{rank}"
        clock = time.perf_counter()
        adapter = train_adapter(
            base_model, corpus, replace(run, rank=rank, alpha=2.0 * rank), folder, progress=progress
        )
        seconds = time.perf_counter() - clock
        log = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
        chat = VoiceChat.from_checkpoint(base_model, adapter)
        report = evaluate(chat, corpus, "test_question", ("T2T",), limit, progress=False)
        rows.append(
            {
                "rank": rank,
                "lora_params": _lora_parameters(adapter),
                "eval_loss": [r["eval_loss"] for r in log if "eval_loss" in r][-1],
                "T2T exact match": report["modes"]["T2T"]["exact_match"],
                "T2T token F1": report["modes"]["T2T"]["token_f1"],
                "train_seconds": round(seconds, 1),
            }
        )
    return rows


def _lora_parameters(adapter: str | Path) -> int:
    """Numbers in the adapter's LoRA matrices (without the module copies it also saves)."""
    from safetensors import safe_open

    with safe_open(str(Path(adapter) / "adapter_model.safetensors"), framework="pt") as f:
        return sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys() if "lora_" in k)
