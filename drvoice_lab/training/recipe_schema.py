"""A recipe's schema: unknown keys at every level and wrong types are refused before any work,
with the key to fix (``Recipe.from_dict`` runs these; ranges are checked by ``validate``)."""

from __future__ import annotations

import inspect
import types
import typing
from typing import Any, Union


def check_fields(raw: Any, cls: type, where: str) -> None:
    """``raw`` must be a mapping whose keys are ``cls``'s fields, each of its annotated type."""
    if not isinstance(raw, dict):
        raise ValueError(f"{where} must be a mapping of settings, got {raw!r}")
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(raw) - set(hints))
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}; known: {sorted(hints)}")
    for key, value in raw.items():
        check_type(value, hints[key], f"{where}: {key}")


def check_type(value: Any, hint: Any, where: str) -> None:
    if not _fits(value, hint):
        advice = ""
        if isinstance(value, str) and _fits(0.5, hint) and _is_number(value):
            advice = " (YAML reads a number like 1e-3 without a dot as text: write 1.0e-3)"
        raise ValueError(f"{where} must be {_describe(hint)}, got {value!r}{advice}")


def check_model_overrides(overrides: Any) -> None:
    """``model:`` keys are DrVoiceConfig arguments; nested ``*_config`` keys must be fields of
    that sub-config's model type (a typo like ``hidden_sizee`` would otherwise be kept as an
    unused attribute and the run would train another model than the one asked for)."""
    from transformers import AutoConfig

    from drvoice_lab.config import DrVoiceConfig

    if not isinstance(overrides, dict):
        raise ValueError(f"recipe: model must be a mapping of config fields, got {overrides!r}")
    allowed = set(inspect.signature(DrVoiceConfig.__init__).parameters) - {"self", "kwargs"}
    unknown = sorted(set(overrides) - allowed)
    if unknown:
        raise ValueError(f"recipe: model: unknown keys {unknown}; known: {sorted(allowed)}")
    defaults = {"backbone_config": "qwen2", "srh_config": "qwen2", "encoder_config": "whisper"}
    for part, default_type in defaults.items():
        sub = overrides.get(part)
        if sub is None:
            continue
        if not isinstance(sub, dict):
            raise ValueError(f"recipe: model: {part} must be a mapping, got {sub!r}")
        reference = AutoConfig.for_model(sub.get("model_type", default_type))
        bad = sorted(k for k in sub if k != "model_type" and not hasattr(reference, k))
        if bad:
            raise ValueError(
                f"recipe: model: {part}: unknown keys {bad} for model_type "
                f"{reference.model_type!r}"
            )


def _fits(value: Any, hint: Any) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if origin in (Union, types.UnionType):
        return any(_fits(value, arg) for arg in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin is list:
        return isinstance(value, list) and all(_fits(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(
            _fits(k, args[0]) and _fits(v, args[1]) for k, v in value.items()
        )
    if inspect.isclass(hint):  # a nested settings dataclass, checked field by field later
        return isinstance(value, dict)
    return True


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if hint is type(None):
        return "empty (null)"
    if origin is list:
        return f"a list of {_describe(args[0]).removeprefix('a ')}s"
    if origin is dict:
        return f"a mapping of {_describe(args[0])} to {_describe(args[1])}"
    names = {int: "a whole number", float: "a number", str: "text", bool: "true or false"}
    return names.get(hint, f"a {getattr(hint, '__name__', hint)} mapping")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
