"""Model folders: what a DrVoice model folder holds, and loading one with its tokenizers.

A folder is ``config.json`` + ``model.safetensors`` (all weights, or on a pretrained base only
what DrVoice adds: ``drvoice_lab.modeling.base_model``), ``text_tokenizer.json`` for models on
the corpus BPE, and ``speech_tokenizer.json``: the name and sha256 of the speech tokenizer
its speech tokens belong to. Training writes such folders, inference, evaluation, export and
the demo read them; this module sits below all of them. (Resume checkpoints of a training run
are another thing: ``drvoice_lab.training.checkpoint``.)
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from drvoice_lab.data.text_tokenizer import TextTokenizer
from drvoice_lab.modeling import DrVoiceModel
from drvoice_lab.modeling.backbones import BackboneError
from drvoice_lab.modeling.base_model import CheckpointError, check_header

__all__ = [
    "SPEECH_TOKENIZER_REF",
    "CheckpointError",
    "default_checkpoint",
    "tiny_checkpoint",
    "load_checkpoint",
    "load_speech_tokenizer_for",
    "write_speech_tokenizer_ref",
]


def default_checkpoint() -> Path:
    """The embedded default model: what chat, the demo, the benchmarks and the notebooks load
    when no model is named."""
    return tiny_checkpoint()


def tiny_checkpoint() -> Path:
    """The 5 M from-scratch model of the closed task world (`drvoice-lab train --recipe tiny`):
    the fast fixture of the tests and of closed-world probes."""
    from drvoice_lab.paths import ASSETS_DIR

    return ASSETS_DIR / "tiny_model"


SPEECH_TOKENIZER_REF = "speech_tokenizer.json"


def write_speech_tokenizer_ref(folder: str | Path, name: str | Path | None) -> None:
    """Record in a model folder which speech tokenizer its speech tokens belong to."""
    from drvoice_lab.codec.registry import speech_tokenizer_fingerprint

    ref = {"name": str(name or "default"), "sha256": speech_tokenizer_fingerprint(name)}
    (Path(folder) / SPEECH_TOKENIZER_REF).write_text(json.dumps(ref, indent=1) + "\n")


def load_speech_tokenizer_for(folder: str | Path):
    """The speech tokenizer a model folder was trained with (checked by fingerprint)."""
    from drvoice_lab.codec.registry import (
        load_speech_tokenizer,
        speech_tokenizer_fingerprint,
    )

    path = Path(folder) / SPEECH_TOKENIZER_REF
    ref = json.loads(path.read_text()) if path.exists() else {"name": "default", "sha256": None}
    found = speech_tokenizer_fingerprint(ref["name"])
    if ref.get("sha256") and found != ref["sha256"]:
        raise CheckpointError(
            f"{folder} was trained with speech tokenizer {ref['name']!r} "
            f"(sha256 {ref['sha256'][:12]}...) but the one installed now differs "
            f"({(found or 'missing')[:12]}...): its speech tokens would decode to noise. "
            "Retrain the model (`drvoice-lab train`) or restore that tokenizer."
        )
    return load_speech_tokenizer(ref["name"])


def load_checkpoint(
    path: str | Path, adapter: str | Path | None = None
) -> tuple[DrVoiceModel, TextTokenizer]:
    """A DrVoice model folder: config.json + model.safetensors (+ text_tokenizer.json for the
    corpus BPE; a model on a pretrained base uses the base's tokenizer and rebuilds the base
    from its source), loaded in float32 whatever it was stored in; ``adapter``: a LoRA adapter
    folder merged on top."""
    folder = Path(path)
    missing = [n for n in ("config.json", "model.safetensors") if not (folder / n).exists()]
    if not missing:
        config = _read_config(folder)
        if config.text_tokenizer == "corpus_bpe" and not (folder / "text_tokenizer.json").exists():
            missing = ["text_tokenizer.json"]
    if missing:
        raise CheckpointError(
            f"{folder} is not a DrVoice checkpoint (missing {missing}); "
            "train one with `drvoice-lab train` or pass --checkpoint"
        )
    try:
        tokenizer = TextTokenizer.for_config(config, folder)
    except BackboneError:
        raise
    except Exception as err:  # a damaged tokenizer file (the tokenizers library's own errors)
        raise CheckpointError(f"the text tokenizer of {folder} cannot be read: {err}") from err
    model = DrVoiceModel.from_pretrained(folder, dtype=torch.float32).eval()
    if adapter is not None:
        model = _with_adapter(model, Path(adapter))
    return model, tokenizer


def _read_config(folder: Path):
    from drvoice_lab.config import DrVoiceConfig

    try:
        return DrVoiceConfig.from_pretrained(folder)
    except (OSError, ValueError, TypeError) as err:  # invalid JSON, unknown fields
        raise CheckpointError(f"{folder}/config.json is not a valid DrVoice config: {err}") from err


def _with_adapter(model: DrVoiceModel, adapter: Path) -> DrVoiceModel:
    from drvoice_lab.modeling.lora import load_adapter, merge_adapter

    if not (adapter / "adapter_config.json").exists():
        raise CheckpointError(
            f"{adapter} is not a LoRA adapter folder (no adapter_config.json); adapters are "
            "written by a LoRA recipe's `drvoice-lab train` (runs/<name>/final)"
        )
    try:
        json.loads((adapter / "adapter_config.json").read_text())
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{adapter}/adapter_config.json is not valid JSON: {err}") from err
    weights = adapter / "adapter_model.safetensors"
    if weights.is_file():
        check_header(weights)
    try:
        return merge_adapter(load_adapter(model, adapter)).eval()
    except Exception as err:  # peft: shapes, module names or fields of another model's adapter
        raise CheckpointError(
            f"the adapter in {adapter} does not fit this model ({type(err).__name__}: {err}); "
            "use an adapter trained on this model"
        ) from err
