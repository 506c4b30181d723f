"""Stages with an objective of their own, beside the model's loss (``objective: lm``):

* ``ctc_align`` / ``ctc_embed``: the user-speech adapter aligned to the spoken words
  (``training.align``);
* ``speech_lm``: the SRH as a language model of the assistant's speech (``training.speech_lm``).

Each trains one part of the model through a small module that shares it, on deterministic
batches of its own; such a stage is saved only at its end (a CTC head is not part of the
model), so a run killed inside one redoes it from the previous checkpoint.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch

AUXILIARY = ("ctc_align", "ctc_embed", "speech_lm")
_LOSS_KEY = {"ctc_align": "ctc_loss", "ctc_embed": "ctc_loss", "speech_lm": "speech_lm_loss"}


class AuxiliaryStage:
    """The module, batches and trained part of one auxiliary stage. Its initialisation depends
    only on the seed and the stage (and the model, for ``ctc_embed``), so a resumed run
    rebuilds the same module."""

    def __init__(self, model, data, seed: int, stage_index: int, objective: str) -> None:
        from drvoice_lab.training.align import CTCAligner, EmbeddingCTCAligner
        from drvoice_lab.training.data import UtteranceBatches
        from drvoice_lab.training.speech_lm import AnswerBatches, SpeechLM

        train = data.train
        self.key = _LOSS_KEY[objective]
        with torch.random.fork_rng():
            torch.manual_seed(seed * 1000 + stage_index)
            if objective == "speech_lm":
                self.part = "srh"
                self.module = SpeechLM(model.srh, model.config.speech_eos_token_id)
                self.batches = AnswerBatches(train.dialogues, train.features, seed)
                return
            self.part = "adapter"  # and a throw-away CTC head
            if objective == "ctc_embed":
                self.module = EmbeddingCTCAligner(model)
            else:
                self.module = CTCAligner(model.adapter, model.config.text_vocab_size)
            self.batches = UtteranceBatches(train.dialogues, data.tokenizer, train.features, seed)


def auxiliary_step(acc, recipe, stage: AuxiliaryStage, module, optimizer, micro_batch) -> dict:
    """One optimizer step of an auxiliary stage (``module``: ``stage.module`` as prepared by
    accelerate), gradient accumulation and clipping as the recipe says."""
    total = 0.0
    for micro in range(recipe.grad_accum):
        batch = stage.batches.batch(
            micro_batch + micro, recipe.batch_size, acc.process_index, acc.num_processes
        )
        last = micro == recipe.grad_accum - 1
        with nullcontext() if last else acc.no_sync(module):
            loss = module(*(t.to(acc.device) for t in batch))  # mean per target token
            acc.backward(loss / recipe.grad_accum)
        total += float(loss.detach()) / recipe.grad_accum
    if recipe.clip_grad:
        acc.clip_grad_norm_(module.parameters(), recipe.clip_grad)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    reduced = float(acc.reduce(torch.tensor([total], device=acc.device), "mean")[0])
    return {stage.key: round(reduced, 6), "loss": round(reduced, 6)}
