"""Running the model for ``eval-open``: every held-out question answered three ways (S2M,
S2T, T2T) and the probe questions typed, each turn on an empty history, in this process or
spread over worker processes.

``jobs > 1`` starts that many processes (one torch thread each, each with its own copy of the
model loaded from ``checkpoint``): a batch-1 decode uses two cores poorly, two processes use
them well. The answers are the same as in one process (greedy decoding); the timings are not
the product's (each turn shares the machine and runs on one thread), so ``eval-open`` then
times the first spoken turns again in its own process, once the workers are done
(``spoken_timings``).
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from drvoice_lab.audio.io import resample
from drvoice_lab.data.corpus import load_utterance

CHUNK = 4  # dialogues (or probe questions) per task handed to a worker

_WORKER: dict = {}  # inside a worker process: its chat and ASR


def answer(chat, mode: str, max_positions: int, text=None, audio=None):
    """One turn on an empty history (each question is scored on its own)."""
    chat.reset()
    return chat.respond(
        audio=audio,
        sample_rate=16_000 if audio is not None else None,
        text=text,
        mode=mode,
        max_positions=max_positions,
    )


def _dialogue_records(chat, asr, corpus_dir, dialogues, max_positions, bar=None):
    """S2M, S2T, T2T per dialogue: (records, S2M timings)."""
    records, timings = [], []
    for dialogue in dialogues:
        turn = dialogue.turns[-1]
        wav = load_utterance(corpus_dir, turn.user_audio)
        s2m = answer(chat, "S2M", max_positions, audio=wav)
        s2t = answer(chat, "S2T", max_positions, audio=wav)
        t2t = answer(chat, "T2T", max_positions, text=turn.question)
        seconds = _audio_seconds(s2m)
        heard_by_asr = asr.transcribe(resample(s2m.audio, s2m.sample_rate)) if seconds else ""
        records.append({
            "dialogue_id": dialogue.id, "voice": turn.user_voice, "question": turn.question,
            "t2t": t2t.text, "s2t": s2t.text, "s2m": s2m.text, "s2m_asr": heard_by_asr,
            "s2m_seconds": seconds,
        })  # fmt: skip
        timings.append(s2m.timings)
        if bar is not None:
            bar.update()
    return records, timings


def spoken_timings(chat, corpus_dir, dialogues, max_positions) -> tuple[list[dict], list[float]]:
    """S2M turns alone, in this process, for their timings: (timings, seconds of answer)."""
    timings, seconds = [], []
    for dialogue in dialogues:
        wav = load_utterance(corpus_dir, dialogue.turns[-1].user_audio)
        s2m = answer(chat, "S2M", max_positions, audio=wav)
        timings.append(s2m.timings)
        seconds.append(_audio_seconds(s2m))
    return timings, seconds


def _audio_seconds(result) -> float:
    return 0.0 if result.audio is None else len(result.audio) / result.sample_rate


def _typed_answers(chat, questions: list[str], max_positions, bar=None) -> list[str]:
    answers = []
    for question in questions:
        answers.append(answer(chat, "T2T", max_positions, text=question).text)
        if bar is not None:
            bar.update()
    return answers


def answer_dialogues(chat, asr, corpus_dir, dialogues, max_positions, bar, jobs=1, checkpoint=None):
    """Records of every dialogue (in order) and the S2M timings (None with ``jobs > 1``)."""
    if jobs == 1:
        return _dialogue_records(chat, asr, corpus_dir, dialogues, max_positions, bar)
    chunks = [dialogues[i : i + CHUNK] for i in range(0, len(dialogues), CHUNK)]
    tasks = [(_dialogues_task, (str(corpus_dir), chunk, max_positions)) for chunk in chunks]
    done = _in_workers(tasks, [len(c) for c in chunks], jobs, checkpoint, bar)
    return [r for records, _ in done for r in records], None


def answer_typed(chat, questions: list[str], max_positions, bar, jobs=1, checkpoint=None):
    """The model's T2T answers to ``questions``, in order."""
    if jobs == 1:
        return _typed_answers(chat, questions, max_positions, bar)
    chunks = [questions[i : i + CHUNK] for i in range(0, len(questions), CHUNK)]
    tasks = [(_typed_task, (chunk, max_positions)) for chunk in chunks]
    done = _in_workers(tasks, [len(c) for c in chunks], jobs, checkpoint, bar)
    return [a for answers in done for a in answers]


# --- worker processes --------------------------------------------------------------------------


def _start_worker(checkpoint: str) -> None:
    import torch

    from drvoice_lab.evaluation.evaluate import WhisperASR
    from drvoice_lab.inference.pipeline import VoiceChat

    torch.set_num_threads(1)
    _WORKER["chat"] = VoiceChat.from_checkpoint(checkpoint)
    _WORKER["asr"] = WhisperASR(threads=1)


def _dialogues_task(corpus_dir: str, dialogues, max_positions: int):
    return _dialogue_records(_WORKER["chat"], _WORKER["asr"], corpus_dir, dialogues, max_positions)


def _typed_task(questions: list[str], max_positions: int) -> list[str]:
    return _typed_answers(_WORKER["chat"], questions, max_positions)


def _in_workers(tasks, sizes: list[int], jobs: int, checkpoint, bar) -> list:
    """Run ``(function, args)`` tasks in ``jobs`` fresh processes that each load
    ``checkpoint``; results in task order. Spawned, not forked: no torch threads inherited."""
    if checkpoint is None:
        raise ValueError("jobs > 1 needs the model folder (checkpoint) for the worker processes")
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        jobs, mp_context=context, initializer=_start_worker, initargs=(str(Path(checkpoint)),)
    ) as pool:
        futures = {pool.submit(fn, *args): n for (fn, args), n in zip(tasks, sizes, strict=True)}
        for future in as_completed(futures):
            bar.update(futures[future])
        return [future.result() for future in futures]
