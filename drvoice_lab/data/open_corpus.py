"""The open-domain spoken corpus of DrVoice-smol: open questions, answered by the base LLM itself.

DrVoice keeps what its LLM knows by training on the LLM's own answers. Here:

1. ``answer_all`` asks SmolLM2-135M-Instruct every question of ``data.open_questions`` (the
   training generator, the held-out test list, the knowledge probe) under the T2T system prompt
   of the ``smol`` preset (its short-answer persona), greedily, in batches, and writes
   ``answers.jsonl``. It resumes: questions already answered in that file are skipped. The
   package ships its result (``assets/open_questions/answers.jsonl``: 3624 answers, about 70
   minutes of a loaded 2-core CPU), which the builders use by default.
2. ``build_open_corpus`` turns the training and test rows into a corpus in the format of
   ``data.corpus`` (``dialogues.jsonl``, ``manifest.json``, 16 kHz audio): users ask in the
   training voices, the assistant answers in hibari. Held-out questions appear twice: in
   training voices (``test_question``) and in held-out voices (``test_voice``). Probe rows
   stay out of the corpus; they only score what the LLM knows.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from drvoice_lab.data import corpus
from drvoice_lab.data.corpus import Dialogue, Turn, utterance_id
from drvoice_lab.data.open_answers import answer_questions, read_answers_jsonl
from drvoice_lab.data.voices import ASSISTANT_VOICE, HELDOUT_USER_VOICES, TRAIN_USER_VOICES
from drvoice_lab.paths import ASSETS_DIR, cache_dir

CHUNK = 256  # questions answered between two saves of answers.jsonl


SHIPPED_ANSWERS = ASSETS_DIR / "open_questions" / "answers.jsonl"


def default_answers_path() -> Path:
    """The answers shipped with the package (made by ``answer_all``), else a regenerated set."""
    return SHIPPED_ANSWERS if SHIPPED_ANSWERS.exists() else regenerated_answers_path()


def regenerated_answers_path() -> Path:
    return cache_dir("open_domain") / "answers.jsonl"


def all_questions() -> list[tuple[str, str, str]]:
    """(question, topic, split) of every open question: probe, test, then train (so the
    rows that measure come first)."""
    from drvoice_lab.data.open_questions import (
        held_out_questions,
        probe_questions,
        training_questions,
    )

    rows = [(q.text, q.topic, q.split) for q in held_out_questions() + training_questions()]
    return [(p.text, p.topic, "probe") for p in probe_questions()] + rows


def answer_all(
    out: str | Path | None = None, batch_size: int = 32, progress: bool = True
) -> Path:
    """Answer every open question with the smol preset's base LLM (see the module docstring)."""
    from drvoice_lab.config import DrVoiceConfig
    from drvoice_lab.data.com import system_text
    from drvoice_lab.modeling.backbones import load_backbone, load_backbone_tokenizer

    out = Path(out) if out else regenerated_answers_path()  # never into the package
    config = DrVoiceConfig.from_preset("smol")
    done = {row["question"]: row for row in read_answers_jsonl(out)} if out.exists() else {}
    todo = [row for row in all_questions() if row[0] not in done]
    if not todo:
        return out
    model = load_backbone(config.backbone_source)
    tokenizer = load_backbone_tokenizer(config.backbone_source)
    prompt = system_text(config, "T2T")
    for start in range(0, len(todo), CHUNK):
        chunk = todo[start : start + CHUNK]
        answers = answer_questions(
            [q for q, _, _ in chunk], model, tokenizer, prompt, batch_size, progress=progress
        )
        for (question, topic, split), answer in zip(chunk, answers, strict=True):
            done[question] = {"question": question, "topic": topic, "split": split,
                              "answer": answer}  # fmt: skip
        rows = [done[q] for q, _, _ in all_questions() if q in done]
        lines = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        out.parent.mkdir(parents=True, exist_ok=True)
        corpus.write_text_atomic(out, lines)  # atomic: a killed run keeps every finished chunk
    return out


def plan_open_dialogues(rows: list[dict], seed: int = 0) -> list[Dialogue]:
    """One single-turn dialogue per answered training question; two per test question."""
    rng = random.Random(seed)
    plans = []
    for row in rows:
        if row["split"] == "train":
            plans.append(("train", rng.choice(TRAIN_USER_VOICES), row))
        elif row["split"] == "test":
            plans.append(("test_question", rng.choice(TRAIN_USER_VOICES), row))
            plans.append(("test_voice", rng.choice(HELDOUT_USER_VOICES), row))
    dialogues = []
    for index, (split, voice, row) in enumerate(plans):
        if not row["answer"].strip():
            continue  # the LLM said nothing: nothing to speak
        turn = Turn(
            family=row["topic"],
            question=row["question"],
            answer=row["answer"],
            user_voice=voice.spec,
            user_audio=f"audio/{utterance_id(voice, row['question'])}.flac",
            assistant_audio=f"audio/{utterance_id(ASSISTANT_VOICE, row['answer'])}.flac",
        )
        dialogues.append(Dialogue(id=f"o{index:06d}", split=split, turns=[turn]))
    return dialogues


def build_open_corpus(
    out_dir: str | Path,
    answers: str | Path | None = None,
    workers: int = 2,
    progress: bool = True,
    limit: int | None = None,
) -> Path:
    """Synthesize (or reuse) the audio of the open-domain dialogues and write the corpus files.
    ``limit`` keeps the first N training rows (and every test row): a quick corpus for tests."""
    answers = Path(answers) if answers else default_answers_path()
    if not answers.exists():
        raise FileNotFoundError(
            f"no answers at {answers}: run `drvoice-lab data answer` first (the base LLM "
            "answers every open question once)"
        )
    rows = read_answers_jsonl(answers)
    if limit is not None:
        train = [r for r in rows if r["split"] == "train"][:limit]
        rows = train + [r for r in rows if r["split"] != "train"]
    out = Path(out_dir)
    dialogues = plan_open_dialogues(rows)
    seconds = corpus.write_dialogues(out, dialogues, ASSISTANT_VOICE.spec, workers, progress)
    corpus.write_manifest(out, dialogues, seconds, source="open_domain", answers=str(answers))
    return out
