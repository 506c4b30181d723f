"""eval-open: issue 24's floors measured on an open corpus (scoring, report, command).

The shipped tiny model is a closed-world model: it is scored here to check the machinery and
the report, never against the floors themselves.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
from helpers import rows

from drvoice_lab import cli
from drvoice_lab.data.open_answers import write_answers_jsonl
from drvoice_lab.data.open_corpus import build_open_corpus
from drvoice_lab.evaluation.evaluate import WhisperASR
from drvoice_lab.evaluation.metrics import normalize
from drvoice_lab.evaluation.open_eval import (
    FLOORS,
    agreement,
    agrees,
    evaluate_open,
    heard_answers,
    markdown_table,
    never_heard,
    probe_figures,
    speed_figures,
    write_report,
)
from drvoice_lab.inference.pipeline import VoiceChat
from drvoice_lab.model_folder import tiny_checkpoint

ROWS = rows(  # (question, topic, split, base LLM's answer)
    ("What is a volcano?", "nature", "train", "A volcano is a mountain that can erupt with lava."),
    ("What is frozen water called?", "nature", "train", "Ice."),
    # a held-out question whose answer was heard in training: left out of the speech figure
    ("What is water called when it freezes?", "science", "test", "Ice."),
    ("Why is the sea salty?", "oceans", "test", "Rivers carry salt from rocks into the sea."),
    ("What do bees make?", "animals", "test", "Bees make honey."),
    # the first two probe questions: the base LLM gets one of two right
    ("What is the capital of France?", "capitals", "probe", "The capital of France is Paris."),
    ("What is the capital of England?", "capitals", "probe", "I am not sure."),
)  # fmt: skip


# --- scoring functions on known strings ---------------------------------------------------------


def test_agreement_is_exact_match_or_token_f1_of_at_least_0_8():
    assert agrees("Paris.", "paris")  # normalised exact match
    assert agrees("7 days", "seven days")  # digits spelled out on both sides
    assert agrees("bees make sweet honey", "bees make honey")  # F1 = 2*0.75/1.75 = 0.857
    assert not agrees("bees make wax", "bees make honey")  # F1 = 2/3
    scores = agreement(
        ["Paris.", "bees make sweet honey", "bees make wax"],
        ["paris", "bees make honey", "bees make honey"],
    )
    assert scores["n"] == 3
    assert scores["exact_match"] == pytest.approx(1 / 3)
    assert scores["agree"] == pytest.approx(2 / 3)
    assert scores["token_f1"] == pytest.approx((1 + 6 / 7 + 2 / 3) / 3)
    assert math.isnan(agreement([], [])["agree"])


def test_probe_figures_score_both_models_on_the_same_questions():
    figures = probe_figures(
        ["Paris is the capital.", "It is Berlin."],
        ["Paris", "London, of course."],
        [("paris",), ("london",)],
    )
    assert figures == {
        "n": 2, "model_accuracy": 0.5, "base_accuracy": 1.0, "drop_points": 50.0,
    }  # fmt: skip


def test_speed_takes_the_first_turn_as_the_cold_one():
    timings = [
        {"first_audio": 0.9, "total": 3.0, "backbone_steps": 0.9, "positions": 10},  # cold
        {"first_audio": 0.2, "total": 1.0, "backbone_steps": 0.45, "positions": 10},
        {"first_audio": 0.3, "total": 1.0, "backbone_steps": 0.45, "positions": 10},
        {"total": 1.0, "backbone_steps": 0.0, "positions": 1},  # said nothing: no first audio
    ]
    speed = speed_figures(timings, [4.0, 2.0, 4.0, 0.0])
    assert speed["first_audio_cold_ms"] == pytest.approx(900)
    assert speed["first_audio_median_ms"] == pytest.approx(250)  # of the turns that spoke
    assert speed["first_audio_max_ms"] == pytest.approx(900)
    assert speed["rtf"] == pytest.approx(6.0 / 10.0)
    assert speed["rtf_warm"] == pytest.approx(3.0 / 6.0)
    assert speed["decode_step_ms"] == pytest.approx(1000 * (0.1 + 0.05 + 0.05) / 3)
    assert speed["turns_without_audio"] == 1


def test_floors_judge_each_figure_in_its_direction():
    assert FLOORS["text_kept"].passes(0.85) and not FLOORS["text_kept"].passes(0.84)
    assert FLOORS["probe_drop"].passes(-5.0) and not FLOORS["probe_drop"].passes(3.5)
    assert FLOORS["speech_wer"].passes(0.15) and not FLOORS["speech_wer"].passes(0.2)
    assert FLOORS["rtf"].passes(0.5) and not FLOORS["rtf"].passes(0.6)
    assert FLOORS["first_audio_cold"].passes(399) and not FLOORS["first_audio_cold"].passes(401)
    assert FLOORS["speech_wer"].passes(math.nan) is None  # nothing measured
    assert FLOORS["text_kept"].show(0.85) == "85.0 %"
    assert FLOORS["first_audio_cold"].show(400.0) == "400 ms"


# --- the tiny default model on a tiny open corpus -------------------------------------------------


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("open_eval")
    answers = write_answers_jsonl(ROWS, folder / "answers.jsonl")
    return build_open_corpus(folder / "corpus", answers, workers=1, progress=False), answers


@pytest.fixture(scope="module")
def report(corpus):
    corpus_dir, answers = corpus
    chat = VoiceChat.from_checkpoint(tiny_checkpoint())
    return evaluate_open(chat, corpus_dir, answers, limit=2, asr=WhisperASR(), progress=False)


def test_heard_answers_are_the_training_answers(corpus):
    heard = heard_answers(corpus[0], ROWS)
    assert heard == {normalize(ROWS[0]["answer"]), "ice"}
    assert not never_heard(["Ice"], heard)
    assert never_heard(["Bees make honey.", "Honey."], heard)


def test_report_has_every_figure_beside_its_floor(report):
    assert report["split"] == "test_voice" and report["dialogues"] == 2
    items = report["items"]
    assert [i["question"] for i in items] == [ROWS[2]["question"], ROWS[3]["question"]]
    assert [i["base"] for i in items] == [ROWS[2]["answer"], ROWS[3]["answer"]]
    # the figures are those of the per-dialogue answers
    assert report["text_kept"] == agreement([i["t2t"] for i in items], [i["base"] for i in items])
    assert report["spoken_understood"] == agreement(
        [i["s2t"] for i in items], [i["t2t"] for i in items]
    )
    # the probe: the base LLM's accuracy comes from answers.jsonl (1 of 2 right)
    assert report["probe"]["n"] == 2 and report["probe"]["base_accuracy"] == 0.5
    assert [p["question"] for p in report["probe_items"]] == [ROWS[5]["question"],
                                                              ROWS[6]["question"]]  # fmt: skip
    # speech: the "Ice." answer was heard in training, so it is left out, floor and all
    speech = report["speech"]
    assert items[0]["never_heard"] is False and speech["excluded_as_heard"] >= 1
    assert speech["n"] + speech["excluded_as_heard"] == 2
    assert speech["tokenizer_floor"]["n"] == speech["n"]
    assert report["speed"]["n"] == 2 and report["speed"]["first_audio_cold_ms"] > 0
    assert report["speed"]["rtf"] > 0
    rows = {row["key"]: row for row in report["floors"]}
    assert list(rows) == list(FLOORS)
    assert rows["text_kept"]["figure"] == report["text_kept"]["agree"]
    assert rows["text_kept"]["floor"] == ">= 85.0 %"
    assert rows["probe_drop"]["floor"] == "<= 3.0 points"
    assert rows["spoken_understood"]["floor"] == ">= 75.0 %"
    assert rows["speech_wer"]["floor"] == "<= 15.0 %"
    assert rows["first_audio_cold"]["floor"] == "<= 400 ms"
    assert rows["rtf"]["floor"] == "<= 0.50"
    assert "tokenizer round trip" in rows["speech_wer"]["beside"]
    for row in rows.values():
        assert row["passed"] == FLOORS[row["key"]].passes(row["figure"])


def test_report_files(report, tmp_path):
    json_path, md_path = write_report(report, tmp_path)
    saved = json.loads(json_path.read_text())  # strict JSON: NaN written as null
    assert saved["floors"][0]["key"] == "text_kept"
    table = md_path.read_text()
    assert table == markdown_table(report)
    assert "| text kept: T2T agrees with the base LLM | 2 |" in table
    assert ">= 85.0 %" in table and "<= 400 ms" in table


# --- the command ---------------------------------------------------------------------------------


def _run(capsys, *args):
    code = cli.main(["eval-open", *args])
    return code, capsys.readouterr().err


def test_command_refuses_bad_input_with_a_message(corpus, tmp_path, capsys):
    corpus_dir, answers = corpus
    model = str(tiny_checkpoint())
    code, err = _run(capsys, "--checkpoint", str(tmp_path), "--corpus", str(corpus_dir),
                     "--answers", str(answers))  # fmt: skip
    assert code == 2 and "is not a DrVoice model folder" in err
    code, err = _run(capsys, "--checkpoint", model, "--corpus", str(tmp_path / "none"),
                     "--answers", str(answers))  # fmt: skip
    assert code == 2 and "no corpus at" in err
    code, err = _run(capsys, "--checkpoint", model, "--corpus", str(corpus_dir),
                     "--answers", str(tmp_path / "none.jsonl"))  # fmt: skip
    assert code == 2 and "no answers file" in err
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "dialogues.jsonl").write_text("")
    code, err = _run(capsys, "--checkpoint", model, "--corpus", str(tmp_path / "empty"),
                     "--answers", str(answers))  # fmt: skip
    assert code == 2 and "has no dialogues" in err


def test_command_writes_the_report(corpus, tmp_path, capsys):
    corpus_dir, answers = corpus
    code = cli.main(["eval-open", "--checkpoint", str(tiny_checkpoint()), "--corpus",
                     str(corpus_dir), "--answers", str(answers), "--split", "test_question",
                     "--limit", "1", "--out", str(tmp_path), "--quiet"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0 and "| real-time factor of spoken turns | 1 |" in out
    saved = json.loads((tmp_path / "eval_open.json").read_text())
    assert saved["split"] == "test_question" and saved["dialogues"] == 1
    assert saved["checkpoint"] == str(tiny_checkpoint()) and saved["probe"]["n"] == 1
    assert (tmp_path / "eval_open.md").read_text() in out


def test_workers_give_the_same_answers_and_the_card_gets_the_floors(corpus, report, tmp_path):
    """--jobs 2 answers in two processes: the same greedy answers as one process; speed is
    timed on the spoken turns again, alone, after warm-up; --card writes the floors on the
    card."""
    corpus_dir, answers = corpus
    model = Path(shutil.copytree(tiny_checkpoint(), tmp_path / "model"))
    code = cli.main(["eval-open", "--checkpoint", str(model), "--corpus", str(corpus_dir),
                     "--answers", str(answers), "--limit", "2", "--jobs", "2", "--card",
                     "--out", str(tmp_path / "out"), "--quiet"])  # fmt: skip
    assert code == 0
    saved = json.loads((tmp_path / "out" / "eval_open.json").read_text())
    keys = ("dialogue_id", "t2t", "s2t", "s2m", "s2m_asr")
    assert [[i[k] for k in keys] for i in saved["items"]] == [
        [i[k] for k in keys] for i in report["items"]
    ]
    assert [p["model"] for p in saved["probe_items"]] == [p["model"] for p in report["probe_items"]]
    assert saved["jobs"] == 2 and saved["speed"]["n"] == 2 and saved["speed"]["rtf"] > 0
    card = (model / "README.md").read_text()
    assert "### Open-domain questions" in card and "| text kept: T2T agrees" in card
    assert saved["speed"]["warm_up_seconds"] > 0 and "s of warm-up turns, as in the demo" in card
    assert (model / "eval_open.json").is_file()
