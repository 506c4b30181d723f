"""Package a trained model folder for shipping, and merge two models' backbones.

``export_model`` turns a run's ``final/`` folder into a small, self-describing model folder:
fp16 safetensors, the text tokenizer, the speech-tokenizer reference (name + sha256), the
recipe, the training facts and a model card (README.md) with the evaluation tables. The
shipped models (``drvoice_lab/assets/``) are made this way; see ``make default-model`` and
``make tiny-model``.

An export folder carries a marker file (``.drvoice-export``): only such a folder is ever
replaced by a later export, and only with ``force``; a folder that overlaps the source model
is always refused.

``merge_backbones`` is the Core-Cocktail merge as its own step: backbone <- alpha * tuned +
(1 - alpha) * base, everything else from the tuned model.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import torch

from drvoice_lab.audio.io import check_writable
from drvoice_lab.evaluation.model_card import write_card
from drvoice_lab.model_folder import SPEECH_TOKENIZER_REF, CheckpointError, load_checkpoint
from drvoice_lab.pause import pause_point

SIDE_FILES = ("text_tokenizer.json", SPEECH_TOKENIZER_REF, "recipe.json", "training.json")
MARKER = ".drvoice-export"  # written into every export folder: the licence to replace it


class ExportError(ValueError):
    """``--out`` cannot be written without destroying something export did not make."""


def check_export_target(final_dir: str | Path, out_dir: str | Path, force: bool = False) -> None:
    """Raise ExportError unless ``out_dir`` is new, empty, or an earlier export and ``force``."""
    final, out = Path(final_dir).resolve(), Path(out_dir).resolve()
    if out.is_relative_to(final) or final.is_relative_to(out):
        where = "is" if out == final else "lies inside" if out.is_relative_to(final) else "holds"
        raise ExportError(
            f"--out {out_dir} {where} the model folder {final_dir}; export to a folder of its "
            "own (nothing was changed)"
        )
    if Path(out_dir).is_symlink():
        raise ExportError(f"--out {out_dir} is a symbolic link; pass the folder itself")
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out_dir} is a file; choose a folder name")
    if not out.exists() or not any(out.iterdir()):
        return
    if not (out / MARKER).is_file():
        raise ExportError(
            f"--out {out_dir} is not empty and was not written by `drvoice-lab export`; "
            "choose a new or empty folder (nothing was changed)"
        )
    if not force:
        raise ExportError(f"--out {out_dir} holds an earlier export; pass --force to replace it")


def export_model(
    final_dir: str | Path,
    out_dir: str | Path,
    dtype: torch.dtype = torch.float16,
    force: bool = False,
) -> Path:
    """Write ``final_dir``'s model to ``out_dir`` in ``dtype`` with its side files and a model
    card (without evaluation: see :func:`write_card`). An existing ``out_dir`` must be empty,
    or an earlier export with ``force`` (see :func:`check_export_target`); it is replaced only
    once the new folder is complete, so a failed export leaves it as it was."""
    final, out = Path(final_dir), Path(out_dir)
    check_export_target(final, out, force)
    check_writable(out.parent, folder=True)  # staging is made there, and renamed into place
    model, _ = load_checkpoint(final)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; a model folder is meant to be shared
    try:
        model.to(dtype).save_pretrained(staging)
        for name in SIDE_FILES:
            if (final / name).exists():
                shutil.copy(final / name, staging / name)
        write_card(staging)
        marker = {"written_by": "drvoice-lab export", "source": str(final.resolve())}
        (staging / MARKER).write_text(json.dumps(marker) + "\n")
        check_export_target(final, out, force)  # again: the folder may have changed meanwhile
        pause_point("export", out.parent)  # tests kill here: complete, not yet in place
        _swap_into_place(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def _swap_into_place(staging: Path, out: Path) -> None:
    """Rename ``staging`` to ``out``; an old ``out`` (checked: empty or an export) is renamed
    aside first and deleted last, so a crash in between leaves it recoverable beside ``out``."""
    if not out.exists():
        staging.rename(out)
        return
    old = staging.with_name(staging.name + ".old")
    out.rename(old)
    staging.rename(out)
    shutil.rmtree(old)


def merge_backbones(base_dir: str | Path, tuned_dir: str | Path, out_dir: str | Path, alpha: float):
    """Core-Cocktail merge of two model folders: ``alpha * tuned + (1 - alpha) * base`` for
    the backbone, the rest (SRH, grouping, adapter) from ``tuned``. Writes ``out_dir``."""
    from drvoice_lab.training.loop import core_cocktail_merge

    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    base, _ = load_checkpoint(base_dir)
    tuned, _ = load_checkpoint(tuned_dir)
    base_state = dict(base.backbone.named_parameters())
    tuned_names = {n for n, _ in tuned.backbone.named_parameters()}
    if set(base_state) != tuned_names or any(
        base_state[n].shape != p.shape for n, p in tuned.backbone.named_parameters()
    ):
        raise CheckpointError(
            f"{base_dir} and {tuned_dir} have different backbones; Core-Cocktail merges two "
            "versions of the same backbone"
        )
    core_cocktail_merge(tuned, {n: p.detach() for n, p in base_state.items()}, alpha)
    out = Path(out_dir)
    tuned.save_pretrained(out)
    for name in SIDE_FILES:
        if (Path(tuned_dir) / name).exists():
            shutil.copy(Path(tuned_dir) / name, out / name)
    return out
