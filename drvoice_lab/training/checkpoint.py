"""Resumable training checkpoints: safetensors + JSON only (nothing is ever unpickled).

A checkpoint is a folder ``step-000120/`` holding::

    model/               save_pretrained output (model.safetensors + config.json) or a peft adapter
    optimizer.safetensors  every optimizer state tensor, keyed "<param index>.<name>"
    trainer.json         optimizer param groups + scalar state, scheduler state, data position,
                         stage index, RNG states of python / numpy
    rng.safetensors      torch RNG state

It is written to a temporary folder and renamed into place, then ``latest`` (a one-line file)
is replaced atomically, so a run killed at any moment leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from drvoice_lab.pause import pause_point

LATEST = "latest"


def _optimizer_to_files(optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, param_state in state["state"].items():
        for name, value in param_state.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{index}.{name}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _optimizer_from_files(tensors: dict, meta: dict) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for key, value in list(tensors.items()) + list(meta["scalars"].items()):
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(
    run_dir: Path,
    step: int,
    save_model,  # callable(folder) writing the model (full model or adapter)
    optimizer: torch.optim.Optimizer,
    scheduler_state: dict,
    extra: dict,
    keep: int = 2,
) -> Path:
    """Write ``run_dir/step-XXXXXX`` atomically and point ``latest`` at it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    final = run_dir / f"step-{step:06d}"
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=run_dir))
    save_model(tmp / "model")
    tensors, optim_meta = _optimizer_to_files(optimizer)
    save_file(tensors, str(tmp / "optimizer.safetensors"))
    save_file({"torch": torch.get_rng_state()}, str(tmp / "rng.safetensors"))
    trainer = {
        "step": step,
        "optimizer": optim_meta,
        "scheduler": scheduler_state,
        "python_rng": _python_rng_state(),
        "numpy_rng": _numpy_rng_state(),
        **extra,
    }
    (tmp / "trainer.json").write_text(json.dumps(trainer, indent=1))
    pause_point("checkpoint", run_dir, step)  # tests kill here: all written, nothing in place
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    _write_atomic(run_dir / LATEST, final.name)
    _prune(run_dir, keep)
    return final


def latest_checkpoint(run_dir: Path) -> Path | None:
    pointer = run_dir / LATEST
    if not pointer.exists():
        return None
    path = run_dir / pointer.read_text().strip()
    return path if (path / "trainer.json").exists() else None


def load_training_state(checkpoint: Path, optimizer: torch.optim.Optimizer) -> dict:
    """Restore the optimizer state; return trainer.json (step, scheduler, position)."""
    trainer = json.loads((checkpoint / "trainer.json").read_text())
    tensors = load_file(str(checkpoint / "optimizer.safetensors"))
    optimizer.load_state_dict(_optimizer_from_files(tensors, trainer["optimizer"]))
    return trainer


def restore_rng(checkpoint: Path) -> None:
    """Restore torch / python / numpy RNG states saved with the checkpoint."""
    trainer = json.loads((checkpoint / "trainer.json").read_text())
    torch.set_rng_state(load_file(str(checkpoint / "rng.safetensors"))["torch"])
    _restore_python_rng(trainer["python_rng"])
    _restore_numpy_rng(trainer["numpy_rng"])


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _prune(run_dir: Path, keep: int) -> None:
    steps = sorted(p for p in run_dir.glob("step-*") if p.is_dir())
    for old in steps[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    for stale in run_dir.glob(".tmp-*"):  # left by a run killed mid-write
        shutil.rmtree(stale, ignore_errors=True)


def _python_rng_state() -> list:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def _restore_python_rng(state: list) -> None:
    random.setstate((state[0], tuple(state[1]), state[2]))


def _numpy_rng_state() -> dict:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "name": name,
        "keys": keys.tolist(),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached": float(cached),
    }


def _restore_numpy_rng(state: dict) -> None:
    np.random.set_state(
        (
            state["name"],
            np.asarray(state["keys"], dtype=np.uint32),
            state["pos"],
            state["has_gauss"],
            state["cached"],
        )
    )
