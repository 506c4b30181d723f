"""What a training run starts from: its config, text tokenizer, model, data, trainable parts,
optimizer groups, schedule, and the Core-Cocktail merge (used by ``training.loop``)."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from drvoice_lab.config import DrVoiceConfig
from drvoice_lab.data.text_tokenizer import TextTokenizer
from drvoice_lab.modeling import DrVoiceModel
from drvoice_lab.modeling.base_model import backbone_trainable, no_decay_parameters
from drvoice_lab.training.data import DialogueBatches, FeatureStore
from drvoice_lab.training.recipe import Recipe, Stage


@dataclass
class RunData:
    train: DialogueBatches
    eval: DialogueBatches | None
    tokenizer: TextTokenizer
    corpus_sha256: str | None = None  # of dialogues.jsonl: which corpus the run saw


def model_config(recipe: Recipe, corpus: Path | None = None) -> DrVoiceConfig:
    """The config of the model a recipe trains. A preset on the corpus BPE takes its pad and
    end-of-turn ids from the corpus's tokenizer; a backbone tokenizer keeps the preset's."""
    if recipe.init_from:  # the data must be laid out for the model that is loaded (its k)
        return DrVoiceConfig.from_pretrained(recipe.init_from)
    overrides = dict(recipe.model)
    config = DrVoiceConfig.from_preset(recipe.preset, **overrides)
    if config.text_tokenizer == "corpus_bpe" and corpus is not None:
        tokenizer = TextTokenizer.for_config(config, corpus)
        overrides.setdefault("text_pad_token_id", tokenizer.pad_id)
        overrides.setdefault("text_eos_token_id", tokenizer.eos_id)
        config = DrVoiceConfig.from_preset(recipe.preset, **overrides)
    return config


def text_tokenizer(config: DrVoiceConfig, recipe: Recipe, corpus: Path) -> TextTokenizer:
    """The corpus BPE (from the model folder when starting from one), or the backbone's own."""
    folder = recipe.init_from if recipe.init_from else corpus
    if (
        config.text_tokenizer == "corpus_bpe"
        and not (Path(folder) / "text_tokenizer.json").exists()
    ):
        folder = corpus
    return TextTokenizer.for_config(config, folder)


def build_model(recipe: Recipe, config: DrVoiceConfig) -> DrVoiceModel:
    if recipe.init_from:  # trained in float32 whatever the checkpoint stores (fp16 exports)
        return DrVoiceModel.from_pretrained(recipe.init_from, dtype=torch.float32)
    torch.manual_seed(recipe.seed)
    if config.backbone_source is not None:  # the pretrained LLM, checked by sha256
        return DrVoiceModel.from_base(config)
    return DrVoiceModel(config)


def set_trainable(model: DrVoiceModel, parts: list[str]) -> list[torch.nn.Parameter]:
    """Freeze everything but ``parts`` (backbone / srh / grouping / adapter). On a frozen base,
    "backbone" means its LoRA weights and the rows of the added tokens."""
    frozen_base = model.keeps_base_frozen
    for name in ("backbone", "srh", "grouping", "adapter"):
        wanted = name in parts and not (name == "backbone" and frozen_base)
        getattr(model, name).requires_grad_(wanted)
    if "backbone" in parts and frozen_base:
        for p in backbone_trainable(model.backbone, model.config):
            p.requires_grad_(True)
    return [p for p in model.parameters() if p.requires_grad]


def optimizer_groups(model, params: list, weight_decay: float) -> list[dict]:
    """AdamW groups: text matrices whose base rows stay frozen are never decayed (decay would
    move the rows their masked gradient keeps still)."""
    keep = {id(p) for p in no_decay_parameters(model)}
    return [
        {"params": [p for p in params if id(p) not in keep], "weight_decay": weight_decay},
        {"params": [p for p in params if id(p) in keep], "weight_decay": 0.0},
    ]


def lr_lambda(stage: Stage):
    """Linear warm-up, then cosine from lr down to min_lr (as a factor of lr)."""
    floor = (stage.min_lr if stage.min_lr is not None else stage.lr / 10) / stage.lr

    def factor(step: int) -> float:
        if step < stage.warmup_steps:
            return (step + 1) / stage.warmup_steps
        progress = (step - stage.warmup_steps) / max(1, stage.steps - stage.warmup_steps)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def core_cocktail_merge(
    model: DrVoiceModel, base_backbone: dict[str, torch.Tensor], alpha: float
) -> None:
    """Backbone <- alpha * M1 + (1 - alpha) * M0, M0 = the backbone when training started.

    Iterates over parameters (not the state dict) so tied weights are merged once.
    """
    with torch.no_grad():
        for name, param in model.backbone.named_parameters():
            if name in base_backbone:
                param.copy_(alpha * param + (1 - alpha) * base_backbone[name].to(param))


def prepare_run_data(recipe: Recipe, progress: bool = True) -> RunData:
    """Corpus, text tokenizer and cached speech features (encoded on first use)."""
    from drvoice_lab.audio.encoder import SpeechEncoder
    from drvoice_lab.codec.registry import load_speech_tokenizer
    from drvoice_lab.data.corpus import default_corpus_dir, load_dialogues

    corpus = Path(recipe.corpus) if recipe.corpus else default_corpus_dir()
    if not (corpus / "dialogues.jsonl").exists():
        raise ValueError(
            f"no corpus at {corpus}: run `drvoice-lab data build` first "
            "(or set `corpus:` in the recipe)"
        )
    config = model_config(recipe, corpus)
    tokenizer = text_tokenizer(config, recipe, corpus)
    encoder = SpeechEncoder.from_pretrained(config.encoder_name_or_path)
    speech_tokenizer = load_speech_tokenizer(recipe.speech_tokenizer)
    features = FeatureStore(
        corpus,
        encoder,
        speech_tokenizer,
        encoder_name=config.encoder_name_or_path,
        tokenizer_name=str(recipe.speech_tokenizer or "default"),
    )
    features.prepare(
        load_dialogues(corpus, "train") + load_dialogues(corpus, "test_question"), progress=progress
    )
    train = DialogueBatches(corpus, "train", config, tokenizer, features, recipe.seed)
    held_out = DialogueBatches(corpus, "test_question", config, tokenizer, features, recipe.seed)
    return RunData(train, held_out, tokenizer, corpus_sha256(corpus))


def corpus_sha256(corpus: Path) -> str:
    """Hash of the corpus plan (dialogues.jsonl: every question, answer, voice and split)."""
    return hashlib.sha256((Path(corpus) / "dialogues.jsonl").read_bytes()).hexdigest()
