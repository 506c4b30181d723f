"""Parameter counts per part, computed on the meta device (no weights are allocated)."""

from __future__ import annotations

import torch
from torch import nn
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from drvoice_lab.config import DrVoiceConfig
from drvoice_lab.modeling.base_model import is_lora_key
from drvoice_lab.modeling.drvoice import DrVoiceModel


def _count(module: nn.Module | None, exclude: set[int] = frozenset()) -> int:
    if module is None:
        return 0
    return sum(p.numel() for p in module.parameters() if id(p) not in exclude)


def parameter_report(config: DrVoiceConfig) -> dict[str, int]:
    """Parameters of each part of a DrVoice model built from ``config``.

    Keys: backbone parts, grouping, adapter, SRH parts, ``trainable_total`` (everything but
    the frozen speech encoder and, on a frozen base, the base LLM's own weights, counted in
    ``base LLM (frozen)``) and ``speech_encoder`` (Whisper encoder of that shape).
    """
    with torch.device("meta"):
        model = DrVoiceModel(config)
        encoder = WhisperEncoder(config.encoder_config)
    text_embed = model.backbone.get_input_embeddings()
    text_head = model.backbone.get_output_embeddings()
    head_is_tied = text_head is not None and text_head.weight is text_embed.weight
    embed_ids = {id(p) for p in text_embed.parameters()} | {id(p) for p in text_head.parameters()}
    speech_embed = model.srh.speech_embedding
    speech_ids = {id(p) for p in speech_embed.parameters()}
    lora = [p for name, p in model.backbone.named_parameters() if is_lora_key(name)]
    lora_ids = {id(p) for p in lora}
    report = {
        "backbone.text_embedding": _count(text_embed),
        "backbone.text_head": 0 if head_is_tied else _count(text_head),
        "backbone.transformer": _count(model.backbone, exclude=embed_ids | lora_ids),
        "backbone.lora": sum(p.numel() for p in lora),
        "grouping (W_g)": _count(model.grouping),
        "adapter (50 Hz -> 25 Hz -> 5 Hz)": _count(model.adapter),
        "srh.ungroup (W_p)": _count(model.srh.ungroup),
        "srh.speech_embedding (tied output)": _count(speech_embed),
        "srh.transformer": _count(model.srh.transformer, exclude=speech_ids),
        "srh.speech_head (untied)": _count(model.srh.speech_head),
    }
    report["backbone_total"] = sum(v for key, v in report.items() if key.startswith("backbone."))
    if model.keeps_base_frozen:  # the base LLM stays as shipped: LoRA and added rows train
        added = len(config.text_special_tokens) * config.hidden_size * (1 + (not head_is_tied))
        report["backbone.added_token_rows"] = added
        frozen = report["backbone_total"] - report["backbone.lora"]
        report["trainable_total"] = _count(model) - frozen + added
        report["base LLM (frozen)"] = frozen - added
    else:
        report["trainable_total"] = _count(model)
    report["speech_encoder (frozen)"] = _count(encoder)
    return report
