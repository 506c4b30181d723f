"""Training recipes: one YAML/JSON file (or a named preset) says everything about a run.

A recipe has global settings and a list of stages run in order. A stage either trains
(modes, steps, learning rates) or merges (Core-Cocktail: ``alpha * M1 + (1 - alpha) * M0``
with the backbone as it was when training started). The paper's schedule, as a recipe::

    stages:
      - {name: srh_pretrain, modes: {T2M: 1}, steps: 400, lr: 3e-3, train: [srh, grouping]}
      - {name: stage1, modes: {S2M: 3, S2T: 1, T2M: 1, T2T: 1, STC: 1}, steps: 2000, lr: 1e-4}
      - {name: merge, merge_alpha: 0.5}
      - {name: stage2, modes: {...}, steps: 1000, lr: 2e-5}
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from drvoice_lab.config import PRESETS
from drvoice_lab.data.com import MODES
from drvoice_lab.modeling.lora import LoraSettings
from drvoice_lab.training.recipe_schema import check_fields, check_model_overrides

TRAINABLE_PARTS = ("backbone", "srh", "grouping", "adapter")
OBJECTIVES = ("lm", "ctc_align", "ctc_embed", "speech_lm")
DATA_SOURCES = ("corpus", "text_world")
MIXES = ("example", "batch")
# Stage options that were tried and taken out because they did not help (docs/journal.md has
# the runs); an old recipe that still names one is told so.
REMOVED = {
    "speech_noise": "random input speech tokens made the spoken answers worse",
    "scheduled_sampling": "in the time budget it lost more teacher-forced accuracy than it "
    "closed of the exposure gap",
    "data: world": "spoken answers drawn from the task world gained nothing over the whole "
    "test_voice split",
}


@dataclass
class Stage:
    name: str
    steps: int = 0
    lr: float = 1e-3
    min_lr: float | None = None  # end of the cosine; default lr / 10
    warmup_steps: int = 0
    modes: dict[str, float] = field(default_factory=lambda: {"S2M": 1.0})
    # parts that train in this stage; ignored with LoRA (peft decides what trains)
    train: list[str] = field(default_factory=lambda: list(TRAINABLE_PARTS))
    merge_alpha: float | None = None  # set -> a Core-Cocktail merge stage, no training
    # "lm": the model's own loss on CoM-formatted dialogues; "ctc_align": CTC from the speech
    # adapter to user transcripts (drvoice_lab.training.align; modes/train are unused);
    # "ctc_embed": CTC at 5 Hz from the adapter's output to the backbone's text embeddings
    objective: str = "lm"
    # "corpus": the corpus's training dialogues; "text_world": the same, but examples in
    # text-only modes (T2T) are fresh dialogues drawn from the corpus's task world (its task
    # families, turn counts and held-out rule: drvoice_lab.data.corpus.world_dialogues), so
    # that facts generalise across phrasings instead of a few thousand sentences being learnt
    data: str = "corpus"
    # "example": every example draws its own CoM mode; "batch": a micro-batch draws one mode
    # for all its examples, so it is padded to that mode's lengths only (faster when the modes'
    # lengths differ: STC's chained answers are the longest)
    mix: str = "example"

    @property
    def is_merge(self) -> bool:
        return self.merge_alpha is not None

    @property
    def world_modes(self) -> list[str]:
        """This stage's modes whose examples come from the task world (``data``)."""
        if self.data == "text_world":
            return [m for m in self.modes if not (MODES[m].speech_in or MODES[m].speech_out)]
        return []

    def validate(self) -> None:
        if self.is_merge:
            if not 0.0 <= self.merge_alpha <= 1.0:
                raise ValueError(f"stage {self.name}: merge_alpha must be in [0, 1]")
            return
        if self.objective not in OBJECTIVES:
            raise ValueError(f"stage {self.name}: objective must be one of {OBJECTIVES}")
        if self.steps < 1:
            raise ValueError(f"stage {self.name}: steps must be >= 1")
        if self.lr <= 0:
            raise ValueError(f"stage {self.name}: lr must be > 0")
        if self.min_lr is not None and not 0 <= self.min_lr <= self.lr:
            raise ValueError(f"stage {self.name}: min_lr must be in [0, lr={self.lr}]")
        if self.warmup_steps < 0:
            raise ValueError(f"stage {self.name}: warmup_steps must be >= 0")
        unknown = set(self.modes) - set(MODES)
        if unknown:
            raise ValueError(f"stage {self.name}: unknown CoM modes {sorted(unknown)}")
        if self.data == "world":
            raise ValueError(_removed(self.name, "data: world"))
        if self.data not in DATA_SOURCES:
            raise ValueError(f"stage {self.name}: data must be one of {DATA_SOURCES}")
        if self.mix not in MIXES:
            raise ValueError(f"stage {self.name}: mix must be one of {MIXES}")
        if self.data != "corpus" and (not self.world_modes or self.objective != "lm"):
            raise ValueError(
                f"stage {self.name}: data: {self.data} feeds text-only modes (T2T) with the lm "
                f"objective; this stage has modes {sorted(self.modes)}, objective "
                f"{self.objective}"
            )
        bad = set(self.train) - set(TRAINABLE_PARTS)
        if bad:
            raise ValueError(
                f"stage {self.name}: unknown parts {sorted(bad)}; choose from {TRAINABLE_PARTS}"
            )


@dataclass
class Recipe:
    preset: str = "tiny"
    model: dict[str, Any] = field(default_factory=dict)  # DrVoiceConfig overrides
    corpus: str | None = None  # default: the cache's default corpus
    speech_tokenizer: str | None = None  # default: the shipped one (see load_speech_tokenizer)
    init_from: str | None = None  # a DrVoice checkpoint folder to start from
    seed: int = 0
    batch_size: int = 16
    grad_accum: int = 1
    weight_decay: float = 0.0
    clip_grad: float = 1.0
    log_every: int = 10
    eval_every: int = 200
    eval_batches: int = 4
    save_every: int = 100
    keep_checkpoints: int = 2
    lora: LoraSettings | None = None
    stages: list[Stage] = field(default_factory=list)

    @property
    def total_steps(self) -> int:
        return sum(s.steps for s in self.stages if not s.is_merge)

    def validate(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; choose one of {sorted(PRESETS)}")
        at_least = {"batch_size": 1, "grad_accum": 1, "log_every": 1, "save_every": 1,
                    "keep_checkpoints": 1, "eval_every": 0, "eval_batches": 0}  # fmt: skip
        for name, low in at_least.items():
            if getattr(self, name) < low:
                raise ValueError(f"recipe: {name} must be >= {low}, got {getattr(self, name)}")
        if self.clip_grad < 0 or self.weight_decay < 0:
            raise ValueError("recipe: clip_grad and weight_decay must be >= 0")
        if self.init_from and not (Path(self.init_from) / "config.json").is_file():
            raise ValueError(
                f"recipe: init_from {self.init_from} is not a model folder (no config.json); "
                "point it at a trained model (runs/<name>/final) or an export"
            )
        if not self.stages:
            raise ValueError("a recipe needs at least one stage")
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise ValueError(f"stage names must be unique, got {names}")
        for stage in self.stages:
            stage.validate()
        if self.lora is not None and any(s.objective != "lm" for s in self.stages):
            raise ValueError("LoRA recipes train with the model's own loss only (objective: lm)")
        if self.lora is not None and any(s.is_merge for s in self.stages):
            raise ValueError(
                "Core-Cocktail merge stages need full fine-tuning; drop `lora` or the merge stage"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Recipe:
        check_fields(raw, cls, "recipe")
        check_model_overrides(raw.get("model", {}))
        raw = dict(raw)
        raw["stages"] = [_stage(s) for s in raw.get("stages", [])]
        if raw.get("lora") is not None:
            check_fields(raw["lora"], LoraSettings, "recipe: lora")
            raw["lora"] = LoraSettings(**raw["lora"])
        recipe = cls(**raw)
        recipe.validate()
        return recipe


def _removed(stage: str, option: str) -> str:
    return (
        f"stage {stage}: {option} was removed ({REMOVED[option]}; docs/journal.md); "
        "delete it from the recipe"
    )


def _stage(raw: dict[str, Any]) -> Stage:
    name = raw.get("name", "?") if isinstance(raw, dict) else "?"
    removed = sorted(set(raw) & set(REMOVED)) if isinstance(raw, dict) else []
    if removed:
        raise ValueError(_removed(name, removed[0]))
    check_fields(raw, Stage, f"stage {name}")
    return Stage(**raw)


RECIPE_DIR = Path(__file__).resolve().parent / "recipes"


def load_recipe(name_or_path: str, **overrides: Any) -> Recipe:
    """A preset name (``tiny``, ``small``, ``7b``) or a .yaml/.yml/.json file."""
    path = Path(name_or_path)
    if not path.exists():
        path = RECIPE_DIR / f"{name_or_path}.yaml"
        if not path.exists():
            names = sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))
            raise ValueError(
                f"no recipe file {name_or_path!r} and no preset of that name (presets: {names})"
            )
    text = path.read_text()
    try:
        raw = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise ValueError(f"cannot parse recipe {path}: {err}") from err
    if not isinstance(raw, dict):
        raise ValueError(f"recipe {path} must be a mapping of settings")
    raw.update(overrides)
    return Recipe.from_dict(raw)
