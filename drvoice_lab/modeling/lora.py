"""LoRA adaptation of DrVoice models through peft.

``apply_lora`` wraps a :class:`DrVoiceModel` in a ``peft.PeftModel``:

* **backbone** - LoRA (rank, alpha, dropout) on ``settings.target_modules`` (attention and MLP
  projections by default); everything else in the backbone stays frozen.
* **SRH**, per ``settings.srh``:

  - ``"full"``   - the whole SRH (transformer, speech embedding E_s, W_p ``ungroup``, untied
    head) is trained and saved with the adapter;
  - ``"lora"``   - LoRA on the SRH transformer's same projections, W_p ``ungroup`` trained and
    saved; E_s (and an untied ``speech_head``) stay frozen;
  - ``"frozen"`` - nothing in the SRH changes.
* **grouping** W_g and the **user-speech adapter** are always trained and saved.

Module choice (peft 0.21). LoRA targets are one regex, matched by peft with ``re.fullmatch``
against module paths inside the DrVoice model, so only ``backbone.…<name>`` (and, with
``srh="lora"``, ``srh.transformer.…<name>``) are chosen. ``modules_to_save`` is matched by a
plain ``str.endswith`` over the PeftModel's module paths, so its entries are chosen to be
unambiguous suffixes:

* ``"srh"``            - only the top-level SRH (``"full"``);
* ``"srh.ungroup"``    - W_p only (``"lora"``);
* ``"grouping.proj"``  - W_g of ``grouping`` *and* of ``adapter.grouping``: both always
  trained, so the double match is intended (``"grouping"`` alone would also match
  ``adapter.grouping`` and would not keep the leaf wrapping below);
* ``"adapter.to_25hz"`` - the adapter's 50 Hz -> 25 Hz MLP.

Whole modules whose methods (not ``forward``) the model calls are safe to wrap: peft's
``ModulesToSaveWrapper`` forwards attribute access to the active adapter's copy, so
``model.srh.substates(...)`` runs on the trained copy. ``apply_lora`` checks afterwards that
exactly the intended modules were wrapped.

The adapted model works as is with :func:`drvoice_lab.inference.generate_joint` and for
teacher-forced ``forward`` (``PeftModel`` forwards ``config``, ``align_channels``,
``embed_inputs``, ``run_backbone``, ``srh``, ``backbone`` to the DrVoice model, whose LoRA
layers and module copies are active). ``peft_model.base_model.model`` is the same DrVoice
model with the adapter active, for code that wants the bare class.

Wrapped modules fall back to the plain-torch path of ``config.use_kernels`` where the fused
op would read a raw weight (the grouping GEMM, W_p); ``srh="full"`` keeps the fused SRH ops.

One PeftModel holds adapters of a single SRH mode: peft cannot wrap the same SRH both as a
whole (``"full"``) and by its parts (``"lora"``), so ``add_adapter`` refuses a mix.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from peft import LoraConfig, PeftModel, get_peft_model
from peft.tuners.lora import LoraLayer
from peft.utils.other import ModulesToSaveWrapper
from torch import nn

from drvoice_lab.modeling.base_model import fold_backbone_lora
from drvoice_lab.modeling.drvoice import DrVoiceModel
from drvoice_lab.presets import PROJECTIONS


@dataclass
class LoraSettings:
    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: list(PROJECTIONS))
    srh: str = "full"  # "full" (train the SRH) | "lora" | "frozen"
    # parts whose adapter weights stay as initialised: "backbone" (its LoRA), "grouping" (W_g),
    # "adapter" (user-speech adapter); the SRH is chosen by `srh`
    freeze: list[str] = field(default_factory=list)


SRH_MODES = ("full", "lora", "frozen")
PARTS = ("backbone", "srh", "grouping", "adapter")
FREEZABLE = ("backbone", "grouping", "adapter")  # LoraSettings.freeze (the SRH: `srh`)

# modules_to_save entries (peft matches them with str.endswith; see the module docstring).
_ALWAYS_SAVED = ["grouping.proj", "adapter.to_25hz"]
_SRH_SAVED = {"full": ["srh"], "lora": ["srh.ungroup"], "frozen": []}
# The module paths (inside the DrVoice model) each SRH mode wraps; checked after wrapping.
_ALWAYS_WRAPPED = {"grouping.proj", "adapter.grouping.proj", "adapter.to_25hz"}
_SRH_WRAPPED = {"full": {"srh"}, "lora": {"srh.ungroup"}, "frozen": set()}

_PEFT_PREFIX = "base_model.model."


def lora_target_regex(target_modules: list[str], srh: str) -> str:
    """The peft ``target_modules`` regex: ``backbone.…<name>`` (and ``srh.transformer.…<name>``
    when ``srh == "lora"``) for each module name in ``target_modules``."""
    if not target_modules:
        raise ValueError("LoraSettings.target_modules is empty; name at least one module.")
    names = "|".join(re.escape(name) for name in target_modules)
    roots = r"backbone|srh\.transformer" if srh == "lora" else "backbone"
    return rf"(?:{roots})\.(?:.*\.)?(?:{names})"


def lora_config(settings: LoraSettings) -> LoraConfig:
    """The peft ``LoraConfig`` for ``settings``."""
    if settings.srh not in SRH_MODES:
        raise ValueError(f"LoraSettings.srh must be one of {SRH_MODES}, got {settings.srh!r}.")
    if settings.rank < 1:
        raise ValueError(f"LoraSettings.rank must be >= 1, got {settings.rank}.")
    if not 0.0 <= settings.dropout < 1.0:
        raise ValueError(f"LoraSettings.dropout must be in [0, 1), got {settings.dropout}.")
    bad = set(settings.freeze) - set(FREEZABLE)
    if bad:
        raise ValueError(
            f"LoraSettings.freeze names {sorted(bad)}; choose from {FREEZABLE} (the SRH is "
            "frozen with srh='frozen')."
        )
    return LoraConfig(
        r=settings.rank,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=lora_target_regex(list(settings.target_modules), settings.srh),
        modules_to_save=_ALWAYS_SAVED + _SRH_SAVED[settings.srh],
        bias="none",
    )


def srh_mode_of(modules_to_save: list[str] | None) -> str:
    """Which SRH mode (``full``/``lora``/``frozen``) an adapter config's ``modules_to_save``
    (as written by :func:`lora_config`) stands for."""
    saved = set(modules_to_save or [])
    if "srh" in saved:
        return "full"
    if "srh.ungroup" in saved:
        return "lora"
    return "frozen"


def _check_adapter_name(name: str) -> None:
    # peft also matches modules_to_save against LoRA's own sub-modules ("….lora_A.<name>").
    clash = [m for m in _ALWAYS_SAVED + sum(_SRH_SAVED.values(), []) if name.endswith(m)]
    if clash or not name or "." in name:
        raise ValueError(
            f"adapter name {name!r} cannot be used: it must be non-empty, without '.', and "
            f"must not end with a module name peft matches by suffix ({clash or 'n/a'})."
        )


def _wrapped_paths(model: nn.Module) -> set[str]:
    return {
        name.removeprefix(_PEFT_PREFIX)
        for name, module in model.named_modules()
        if isinstance(module, ModulesToSaveWrapper)
    }


def _lora_paths(model: nn.Module) -> list[str]:
    return [
        name.removeprefix(_PEFT_PREFIX)
        for name, module in model.named_modules()
        if isinstance(module, LoraLayer)
    ]


def apply_lora(
    model: DrVoiceModel, settings: LoraSettings, adapter_name: str = "default"
) -> PeftModel:
    """Wrap ``model`` for LoRA training (see the module docstring for what is trained).

    ``model`` is modified in place (LoRA layers and module copies are injected); keep your own
    copy if you still need the plain model. Returns the ``PeftModel`` with ``adapter_name``
    active and only the intended parameters requiring grad.
    """
    if not isinstance(model, DrVoiceModel):
        raise TypeError(f"apply_lora needs a DrVoiceModel, got {type(model).__name__}.")
    _check_adapter_name(adapter_name)
    config = lora_config(settings)
    if model.has_backbone_lora:  # a model on a pretrained base: its own LoRA stays on
        fold_backbone_lora(model)
    peft_model = get_peft_model(model, config, adapter_name=adapter_name)

    wanted = _ALWAYS_WRAPPED | _SRH_WRAPPED[settings.srh]
    got = _wrapped_paths(peft_model)
    if got != wanted:
        raise RuntimeError(
            f"peft wrapped {sorted(got)} as modules_to_save, expected {sorted(wanted)}; a module "
            "name now collides with a suffix (peft matches modules_to_save with endswith)."
        )
    lora = _lora_paths(peft_model)
    for root in ("backbone",) + (("srh.transformer",) if settings.srh == "lora" else ()):
        if not any(path.startswith(root + ".") for path in lora):
            raise ValueError(
                f"no module of {root} matches LoraSettings.target_modules "
                f"{list(settings.target_modules)}; name modules of that architecture."
            )
    freeze_parts(peft_model, settings.freeze)
    return peft_model


def freeze_parts(peft_model: PeftModel, parts: list[str]) -> None:
    """Stop ``parts`` (see ``FREEZABLE``) from training: their LoRA matrices and module copies
    keep their initial values, so the adapter leaves those parts as the base model has them."""
    for name, param in peft_model.named_parameters():
        if _part_of(name) in parts:
            param.requires_grad_(False)


# ---------------------------------------------------------------------------- reporting
def _part_of(param_name: str) -> str:
    head = param_name.removeprefix(_PEFT_PREFIX).split(".", 1)[0]
    return head if head in PARTS else "other"


def trainable_report(model: nn.Module) -> str:
    """``print_trainable_parameters``-style line plus trainable counts per part.

    Works on a PeftModel (counts as peft does: module copies included in "all params") or on a
    plain DrVoice model.
    """
    if isinstance(model, PeftModel):
        trainable, total = model.get_nb_trainable_parameters()
    else:
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in model.parameters())
    per_part = dict.fromkeys(PARTS + ("other",), 0)
    for name, param in model.named_parameters():
        if param.requires_grad:
            per_part[_part_of(name)] += param.numel()
    lora = _lora_paths(model)
    backbone_layers = sum(path.startswith("backbone.") for path in lora)
    srh_layers = sum(path.startswith("srh.") for path in lora)
    if srh_layers:
        srh_detail = f"LoRA on {srh_layers} layers + W_p"
    elif "srh" in _wrapped_paths(model):
        srh_detail = "full"
    else:
        srh_detail = "frozen" if not per_part["srh"] else "trainable"
    share = 100 * trainable / total if total else 0.0
    lines = [
        f"trainable params: {trainable:,d} || all params: {total:,d} || trainable%: {share:.4f}",
        f"  backbone LoRA: {per_part['backbone']:,d} ({backbone_layers} LoRA layers)",
        f"  SRH: {per_part['srh']:,d} ({srh_detail})",
        f"  grouping (W_g): {per_part['grouping']:,d}",
        f"  adapter (user speech): {per_part['adapter']:,d}",
    ]
    if per_part["other"]:
        lines.append(f"  other: {per_part['other']:,d}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- save / load
def save_adapter(peft_model: PeftModel, folder: str | Path) -> Path:
    """Write the adapter(s) only, in peft format (``adapter_config.json`` +
    ``adapter_model.safetensors``; extra adapters go to ``folder/<name>/``). No base weights:
    LoRA matrices and the ``modules_to_save`` copies (grouping, adapter, SRH per mode)."""
    folder = Path(folder)
    peft_model.save_pretrained(folder, safe_serialization=True, save_embedding_layers=False)
    return folder


def load_adapter(
    base_model: DrVoiceModel,
    folder: str | Path,
    adapter_name: str = "default",
    is_trainable: bool = False,
) -> PeftModel:
    """Load a saved adapter onto ``base_model`` (modified in place) and make it active.
    ``is_trainable=False`` (default) freezes it and puts the model in eval mode."""
    _check_adapter_name(adapter_name)
    if base_model.has_backbone_lora:  # as apply_lora did before training it
        fold_backbone_lora(base_model)
    return PeftModel.from_pretrained(
        base_model, str(folder), adapter_name=adapter_name, is_trainable=is_trainable
    )


def _saved_modules_to_save(folder: str | Path) -> list[str] | None:
    path = Path(folder) / "adapter_config.json"
    if not path.is_file():
        raise FileNotFoundError(f"no peft adapter in {folder} (missing adapter_config.json).")
    return json.loads(path.read_text()).get("modules_to_save")


def add_adapter(
    peft_model: PeftModel, folder: str | Path, name: str, is_trainable: bool = False
) -> PeftModel:
    """Load another saved adapter under ``name`` next to the existing ones (not activated;
    see :func:`set_active_adapter`). All adapters of one PeftModel must share the SRH mode."""
    _check_adapter_name(name)
    if name in peft_model.peft_config:
        raise ValueError(f"an adapter named {name!r} is already loaded.")
    mode = srh_mode_of(_saved_modules_to_save(folder))
    existing = {srh_mode_of(cfg.modules_to_save) for cfg in peft_model.peft_config.values()}
    if existing and existing != {mode}:
        raise ValueError(
            f"adapter in {folder} uses srh={mode!r} but the loaded adapters use "
            f"{sorted(existing)}; peft cannot hold both on one model (load it onto a fresh base)."
        )
    peft_model.load_adapter(str(folder), adapter_name=name, is_trainable=is_trainable)
    return peft_model


def set_active_adapter(peft_model: PeftModel, name: str) -> None:
    """Switch the active adapter (LoRA layers and module copies together). An adapter loaded
    for inference stays frozen; one loaded or created trainable stays trainable."""
    if name not in peft_model.peft_config:
        raise ValueError(f"no adapter {name!r}; loaded: {sorted(peft_model.peft_config)}.")
    peft_model.set_adapter(name, inference_mode=peft_model.peft_config[name].inference_mode)


def merge_adapter(peft_model: PeftModel) -> DrVoiceModel:
    """Fold the active adapter into the weights and return the plain DrVoice model
    (``merge_and_unload``: LoRA merged, module copies swapped in). ``peft_model`` is consumed."""
    merged = peft_model.merge_and_unload()
    assert isinstance(merged, DrVoiceModel), type(merged)
    return merged


def adapter_state_keys(folder: str | Path) -> list[str]:
    """Tensor names stored in a saved adapter (for inspection)."""
    from safetensors import safe_open

    with safe_open(str(Path(folder) / "adapter_model.safetensors"), framework="pt") as f:
        return list(f.keys())


__all__ = [
    "SRH_MODES",
    "add_adapter",
    "adapter_state_keys",
    "apply_lora",
    "freeze_parts",
    "load_adapter",
    "lora_config",
    "lora_target_regex",
    "merge_adapter",
    "save_adapter",
    "set_active_adapter",
    "srh_mode_of",
    "trainable_report",
]
