"""The open-domain corpus: base-LLM answers in, a corpus in the format of data.corpus out."""

from __future__ import annotations

import json

from helpers import rows

from drvoice_lab.data.corpus import load_dialogues, load_utterance
from drvoice_lab.data.open_answers import write_answers_jsonl
from drvoice_lab.data.open_corpus import all_questions, build_open_corpus, plan_open_dialogues
from drvoice_lab.data.voices import HELDOUT_USER_VOICES, TRAIN_USER_VOICES

ROWS = rows(  # (question, topic, split, base LLM's answer)
    ("What is a volcano?", "nature", "train", "A volcano is a mountain that can erupt with lava."),
    ("How do I boil an egg?", "cooking", "train", "Boil it for about eight minutes."),
    ("Why is the sea salty?", "oceans", "test", "Rivers carry salt from rocks into the sea."),
    ("What is the capital of Peru?", "geography", "probe", "The capital of Peru is Lima."),
    ("Say nothing.", "chat", "train", " "),
)  # fmt: skip


def test_every_question_once_and_the_measuring_rows_first():
    rows = all_questions()
    assert len({q for q, _, _ in rows}) == len(rows)
    splits = [s for _, _, s in rows]
    assert splits.index("train") > max(i for i, s in enumerate(splits) if s != "train")
    assert splits.count("train") >= 3000 and splits.count("test") >= 300


def test_dialogues_keep_test_questions_out_of_training_and_in_held_out_voices():
    dialogues = plan_open_dialogues(ROWS)
    by_split = {}
    for d in dialogues:
        by_split.setdefault(d.split, []).append(d.turns[0])
    train = [t.question for t in by_split["train"]]
    assert train == ["What is a volcano?", "How do I boil an egg?"]  # no empty answer
    assert [t.question for t in by_split["test_voice"]] == ["Why is the sea salty?"]
    assert [t.question for t in by_split["test_question"]] == ["Why is the sea salty?"]
    heldout = {v.spec for v in HELDOUT_USER_VOICES}
    assert by_split["test_voice"][0].user_voice in heldout
    assert all(t.user_voice in {v.spec for v in TRAIN_USER_VOICES} for t in by_split["train"])
    assert "What is the capital of Peru?" not in {t.question for d in dialogues for t in d.turns}


def test_build_writes_a_corpus_the_trainer_reads(tmp_path):
    answers = write_answers_jsonl(ROWS, tmp_path / "answers.jsonl")
    corpus = build_open_corpus(tmp_path / "corpus", answers, workers=1, progress=False)
    manifest = json.loads((corpus / "manifest.json").read_text())
    assert manifest["splits"] == {"train": 2, "test_question": 1, "test_voice": 1}
    turn = load_dialogues(corpus, "test_voice")[0].turns[0]
    wav = load_utterance(corpus, turn.assistant_audio)
    assert abs(len(wav) / 16000 - turn.assistant_seconds) < 1e-3 and turn.assistant_seconds > 1
    before = {p: p.stat().st_mtime for p in (corpus / "audio").iterdir()}
    build_open_corpus(corpus, answers, workers=1, progress=False)  # resumes: nothing redone
    assert {p: p.stat().st_mtime for p in (corpus / "audio").iterdir()} == before


def test_the_shipped_answers_cover_every_question_once():
    """The package ships the base LLM's answers (`drvoice-lab data answer`, about an hour):
    one per current question, none empty; regenerate them when the questions change."""
    from drvoice_lab.data.open_answers import read_answers_jsonl
    from drvoice_lab.data.open_corpus import SHIPPED_ANSWERS, default_answers_path

    assert default_answers_path() == SHIPPED_ANSWERS
    shipped = read_answers_jsonl(SHIPPED_ANSWERS)
    assert [(r["question"], r["split"]) for r in shipped] == [(q, s) for q, _, s in all_questions()]
    assert all(r["answer"].strip() for r in shipped)
