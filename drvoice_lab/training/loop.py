"""``drvoice-lab train``: run a recipe's stages with checkpoints that resume exactly.

Runs as one process or under ``accelerate launch`` / ``torchrun`` (DDP through accelerate).
Every ``save_every`` optimizer steps the run writes a checkpoint; starting the same command
again on the same ``out`` folder resumes from the latest one and continues the same loss curve
(data order, RNG, optimizer and schedule are all restored). Metrics go to ``metrics.jsonl``
and, when TensorBoard is installed, to ``tensorboard/`` (``tensorboard --logdir runs``).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import torch
from accelerate import Accelerator, DistributedDataParallelKwargs
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from drvoice_lab.model_folder import write_speech_tokenizer_ref
from drvoice_lab.modeling import DrVoiceModel
from drvoice_lab.modeling.base_model import backbone_trainable
from drvoice_lab.pause import pause_point
from drvoice_lab.training.auxiliary import AUXILIARY, AuxiliaryStage, auxiliary_step
from drvoice_lab.training.checkpoint import (
    latest_checkpoint,
    load_training_state,
    restore_rng,
    save_checkpoint,
)
from drvoice_lab.training.data import DialogueBatches
from drvoice_lab.training.recipe import Recipe, Stage
from drvoice_lab.training.setup import (
    RunData,
    build_model,
    core_cocktail_merge,
    lr_lambda,
    model_config,
    optimizer_groups,
    prepare_run_data,
    set_trainable,
)


class Trainer:
    def __init__(
        self,
        recipe: Recipe,
        out_dir: str | Path,
        data: RunData | None = None,
        progress: bool = True,
        on_log: Callable[[dict], None] | None = None,
    ) -> None:
        """``on_log`` receives every record written to metrics.jsonl (e.g. a live plot)."""
        recipe.validate()
        self.recipe, self.out = recipe, Path(out_dir)
        gpu = torch.cuda.is_available()
        self.accelerator = Accelerator(
            cpu=not gpu,  # without it accelerate ignores torchrun's processes on a CPU machine
            mixed_precision="bf16" if gpu else "no",
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
        )
        self.is_main = self.accelerator.is_main_process
        if data is None:
            with self.accelerator.main_process_first():
                data = prepare_run_data(recipe, progress=progress and self.is_main)
        self.data = data
        self.progress = progress and self.is_main
        self.config = model_config(recipe, data.train.features.corpus)
        self.model = self._fresh_model()
        self.log_path = self.out / "metrics.jsonl"
        self.on_log = on_log
        self._tensorboard = None
        self._world: dict[int, DialogueBatches] = {}  # per world stage, on demand

    # ------------------------------------------------------------------ helpers
    def _fresh_model(self):
        """The starting model; with a LoRA recipe, wrapped by peft (adapter-only training)."""
        model = build_model(self.recipe, self.config)
        if self.recipe.lora is not None:
            from drvoice_lab.modeling.lora import apply_lora

            model = apply_lora(model, self.recipe.lora)
        return model

    def _load_model(self, folder: Path):
        if self.recipe.lora is None:
            return DrVoiceModel.from_pretrained(folder)
        from drvoice_lab.modeling.lora import freeze_parts, load_adapter

        model = load_adapter(build_model(self.recipe, self.config), folder, is_trainable=True)
        freeze_parts(model, self.recipe.lora.freeze)
        return model

    def _log(self, record: dict) -> None:
        if self.is_main:
            with self.log_path.open("a") as f:
                f.write(json.dumps(record) + "\n")
            if self.on_log is not None:
                self.on_log(record)
            if self._tensorboard is not None:
                for key, value in record.items():
                    if isinstance(value, int | float) and key != "step":
                        self._tensorboard.add_scalar(key, value, record["step"])
                self._tensorboard.flush()

    def _open_tensorboard(self, resumed_step: int) -> None:
        """Event files in ``<out>/tensorboard`` when TensorBoard is installed; a resumed run
        purges the killed run's points past the checkpoint, as the JSONL log does."""
        self._tensorboard = None
        if self.is_main and importlib.util.find_spec("tensorboard") is not None:
            from torch.utils.tensorboard import SummaryWriter

            purge = resumed_step + 1 if resumed_step else None
            self._tensorboard = SummaryWriter(str(self.out / "tensorboard"), purge_step=purge)

    def _truncate_log(self, step: int) -> None:
        """Drop log lines past the resumed step (they belong to the killed run's tail)."""
        if self.is_main and self.log_path.exists():
            kept = [
                line
                for line in self.log_path.read_text().splitlines()
                if _log_step(line) <= step  # a line torn by the kill counts as past it
            ]
            _write_atomic(self.log_path, "".join(line + "\n" for line in kept))

    def _base_backbone(self) -> dict[str, torch.Tensor] | None:
        if not any(s.is_merge for s in self.recipe.stages):
            return None
        path = self.out / "base_backbone.safetensors"
        if not path.exists() and self.is_main:
            # named_parameters lists tied weights once (safetensors refuses shared storage); on
            # a frozen base only what can train differs from M0 (LoRA, added rows)
            trainable = {id(p) for p in backbone_trainable(self.model.backbone, self.config)}
            state = {
                k: v.detach().cpu().contiguous()
                for k, v in self.model.backbone.named_parameters()
                if not self.model.keeps_base_frozen or id(v) in trainable
            }
            partial = path.with_suffix(".partial")
            save_file(state, str(partial))
            pause_point("base-backbone", self.out)
            os.replace(partial, path)  # a kill mid-write never leaves a truncated M0
        self.accelerator.wait_for_everyone()
        return load_file(str(path))

    def _eval_loss(self, stage: Stage, model) -> float | None:
        if self.data.eval is None or self.recipe.eval_batches < 1:
            return None
        model.eval()
        acc = self.accelerator
        total = torch.zeros((), device=acc.device)
        with torch.no_grad():
            for i in range(self.recipe.eval_batches):
                batch = self.data.eval.batch(
                    i, self.recipe.batch_size, stage.modes, acc.process_index, acc.num_processes
                )
                total += model(**{k: v.to(acc.device) for k, v in batch.items()}).loss
        model.train()
        return float(acc.reduce(total, "mean")) / self.recipe.eval_batches

    # ------------------------------------------------------------------ the run
    def run(self, stop_after_steps: int | None = None) -> Path:
        """Train all stages (or stop after ``stop_after_steps`` optimizer steps of this call)."""
        acc, recipe = self.accelerator, self.recipe
        self.out.mkdir(parents=True, exist_ok=True)
        if self.is_main:
            check_same_recipe(self.out, recipe)
            _write_atomic(self.out / "recipe.json", json.dumps(recipe.to_dict(), indent=1))
        base_backbone = self._base_backbone()
        resume = latest_checkpoint(self.out)
        position = {"stage": 0, "stage_step": 0, "micro_batch": 0, "global_step": 0}
        if resume is not None:
            position = json.loads((resume / "trainer.json").read_text())["position"]
            self.model = self._load_model(resume / "model")
            restore_rng(resume)
            self._truncate_log(position["global_step"])
        self._open_tensorboard(position["global_step"])
        done_here = 0
        position.setdefault("seconds", 0.0)  # wall time of all calls so far (resumes add up)
        clock = time.perf_counter()
        bar = tqdm(
            total=recipe.total_steps,
            initial=position["global_step"],
            desc="training",
            disable=not self.progress,
            unit="step",
        )
        for index in range(position["stage"], len(recipe.stages)):
            stage = recipe.stages[index]
            first_step = position["stage_step"] if index == position["stage"] else 0
            position.update(stage=index, stage_step=first_step)
            if stage.is_merge:
                if first_step == 0:
                    core_cocktail_merge(self.model, base_backbone, stage.merge_alpha)
                    self._log(
                        {
                            "step": position["global_step"],
                            "stage": stage.name,
                            "merge_alpha": stage.merge_alpha,
                        }
                    )
                position.update(stage=index + 1, stage_step=0)
                continue
            aux = AuxiliaryStage(self.model, self.data, recipe.seed, index, stage.objective) \
                if stage.objective in AUXILIARY else None  # fmt: skip
            trainee = aux.module if aux else self.model
            if aux:  # one part of the model, through a module that shares it
                set_trainable(self.model, [aux.part])
                params = list(trainee.parameters())
            elif self.recipe.lora is None:
                params = set_trainable(self.model, stage.train)
            else:  # peft decides what trains (LoRA + modules_to_save); stage.train is unused
                params = [p for p in self.model.parameters() if p.requires_grad]
            groups = optimizer_groups(self.model, params, recipe.weight_decay)
            optimizer = torch.optim.AdamW(groups, lr=stage.lr)
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(stage))
            model, optimizer = acc.prepare(trainee, optimizer)
            if resume is not None and index == position["stage"] and first_step > 0:
                trainer_state = load_training_state(resume, optimizer)
                scheduler.load_state_dict(trainer_state["scheduler"])
            model.train()
            for step in range(first_step, stage.steps):
                t0 = time.perf_counter()
                if aux:
                    losses = auxiliary_step(
                        acc, recipe, aux, model, optimizer, position["micro_batch"]
                    )
                else:
                    data = self._stage_data(index, stage)
                    losses = self._optimizer_step(
                        model, optimizer, stage, position["micro_batch"], data
                    )
                scheduler.step()
                position["micro_batch"] += recipe.grad_accum
                position["global_step"] += 1
                position["stage_step"] = step + 1
                position["seconds"] += time.perf_counter() - clock
                clock = time.perf_counter()
                gstep = position["global_step"]
                if not math.isfinite(losses["loss"]):
                    raise ValueError(
                        f"the loss became {losses['loss']} at step {gstep} (stage {stage.name}); "
                        "lower the learning rate or check the data. Checkpoints up to the last "
                        f"save are kept in {self.out}."
                    )
                bar.update()
                bar.set_postfix(loss=f"{losses['loss']:.3f}", stage=stage.name)
                if gstep % recipe.log_every == 0 or step == first_step:
                    self._log(
                        {
                            "step": gstep,
                            "stage": stage.name,
                            **losses,
                            "lr": scheduler.get_last_lr()[0],
                            "step_seconds": round(time.perf_counter() - t0, 4),
                        }
                    )
                if recipe.eval_every and gstep % recipe.eval_every == 0 and not aux:
                    self._log(
                        {
                            "step": gstep,
                            "stage": stage.name,
                            "eval_loss": self._eval_loss(stage, model),
                        }
                    )
                finished_stage = step + 1 == stage.steps
                # An auxiliary stage is saved only at its end (a CTC head is not part of the
                # model): a run killed inside it redoes the stage from the previous checkpoint.
                if (gstep % recipe.save_every == 0 and not aux) or finished_stage:
                    self._save(position, index, optimizer, scheduler, finished_stage)
                done_here += 1
                if stop_after_steps is not None and done_here >= stop_after_steps:
                    bar.close()
                    return self.out
            if not aux:
                self.model = acc.unwrap_model(model)
            acc.free_memory()
            position.update(stage=index + 1, stage_step=0)
        bar.close()
        return self._export(position)

    def _stage_data(self, stage_index: int, stage: Stage) -> DialogueBatches:
        """The corpus's training dialogues; for a ``text_world`` stage, with fresh text-only
        dialogues from the task world for its ``world_modes``, as many as the stage draws
        examples (a pure function of seed and stage)."""
        if stage.data == "corpus":
            return self.data.train
        if stage_index not in self._world:
            from drvoice_lab.data.corpus import world_dialogues

            train = self.data.train
            count = stage.steps * self.recipe.batch_size * self.recipe.grad_accum
            dialogues = world_dialogues(
                train.features.corpus, count, seed=self.recipe.seed * 1000 + stage_index
            )
            self._world[stage_index] = train.with_world(dialogues, stage.world_modes)
        return self._world[stage_index]

    def _optimizer_step(
        self, model, optimizer, stage: Stage, micro_batch: int, data: DialogueBatches
    ) -> dict:
        acc, recipe = self.accelerator, self.recipe
        totals = {"loss": 0.0, "text_loss": 0.0, "speech_loss": 0.0}
        for micro in range(recipe.grad_accum):
            batch = data.batch(
                micro_batch + micro,
                recipe.batch_size,
                stage.modes,
                acc.process_index,
                acc.num_processes,
                mix=stage.mix,
            )
            batch = {k: v.to(acc.device) for k, v in batch.items()}
            last = micro == recipe.grad_accum - 1
            with nullcontext() if last else acc.no_sync(model), acc.autocast():
                out = model(**batch)
                acc.backward(out.loss / recipe.grad_accum)
            for key in totals:
                value = getattr(out, key)
                totals[key] += 0.0 if value is None else float(value.detach()) / recipe.grad_accum
        if recipe.clip_grad:
            acc.clip_grad_norm_(model.parameters(), recipe.clip_grad)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        reduced = acc.reduce(torch.tensor(list(totals.values()), device=acc.device), "mean")
        return {k: round(float(v), 6) for k, v in zip(totals, reduced, strict=True)}

    def _save(self, position, stage_index, optimizer, scheduler, finished_stage) -> None:
        acc = self.accelerator
        acc.wait_for_everyone()
        if self.is_main:
            unwrapped = acc.unwrap_model(self.model)
            saved = dict(position)
            if finished_stage:  # resume at the start of the next stage
                saved.update(stage=stage_index + 1, stage_step=0)
            save_checkpoint(
                self.out,
                position["global_step"],
                save_model=lambda folder: unwrapped.save_pretrained(folder),
                optimizer=optimizer.optimizer if hasattr(optimizer, "optimizer") else optimizer,
                scheduler_state=scheduler.state_dict(),
                extra={"position": saved},
                keep=self.recipe.keep_checkpoints,
            )
        acc.wait_for_everyone()

    def _export(self, position: dict) -> Path:
        """The final model folder: weights (or the LoRA adapter only), config, text tokenizer,
        the speech tokenizer it was trained with, recipe and training facts."""
        final = self.out / "final"
        if self.is_main:
            model = self.accelerator.unwrap_model(self.model)
            model.save_pretrained(final)
            if self.data.tokenizer._backend is not None:
                self.data.tokenizer.save(final / "text_tokenizer.json")
            shutil.copy(self.out / "recipe.json", final / "recipe.json")
            write_speech_tokenizer_ref(final, self.recipe.speech_tokenizer)
            facts = {
                "train_seconds": round(position.get("seconds", 0.0), 1),
                "steps": position["global_step"],
                "processes": self.accelerator.num_processes,
                "torch_threads": torch.get_num_threads(),
                "cpu_count": os.cpu_count(),
                "device": str(self.accelerator.device),
                "torch": torch.__version__,
                "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "corpus_sha256": self.data.corpus_sha256,
            }
            (final / "training.json").write_text(json.dumps(facts, indent=1) + "\n")
        self.accelerator.wait_for_everyone()
        return final


def check_same_recipe(out: Path, recipe: Recipe) -> None:
    """A run folder belongs to one recipe: resuming (or re-finishing) it with another would
    mix two runs' weights and describe them with the new one. Refuse, naming what differs."""
    saved = out / "recipe.json"
    if not saved.exists():
        return
    try:
        before = json.loads(saved.read_text())
    except json.JSONDecodeError:
        before = None
    now = json.loads(json.dumps(recipe.to_dict()))
    if before == now:
        return
    changed = sorted(k for k in set(now) | set(before or {}) if (before or {}).get(k) != now.get(k))
    raise ValueError(
        f"{out} holds a run of another recipe (differs in: {', '.join(changed)}); resume it "
        "with the same recipe, pick another --out, or pass --force-new to start a fresh run "
        "beside it"
    )


def _log_step(line: str) -> float:
    try:
        return json.loads(line).get("step", 0)
    except json.JSONDecodeError:
        return math.inf


def _write_atomic(path: Path, text: str) -> None:
    partial = path.with_suffix(path.suffix + ".partial")
    partial.write_text(text)
    os.replace(partial, path)
