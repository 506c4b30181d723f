"""Corpus synthesis, task families, voices, CoM-Mixing formatting and collation."""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict

import numpy as np
import pytest
import torch

from drvoice_lab import DrVoiceConfig, DrVoiceModel
from drvoice_lab.data.collator import DrVoiceCollator
from drvoice_lab.data.com import MODES, TurnInput, format_dialogue, sample_mode
from drvoice_lab.data.corpus import (
    CorpusConfig,
    build_corpus,
    is_heldout,
    load_dialogues,
    load_utterance,
    plan_dialogues,
    question_is_heldout,
    world_dialogues,
)
from drvoice_lab.data.tasks import FAMILIES, QA, number_words
from drvoice_lab.data.text_tokenizer import TextTokenizer
from drvoice_lab.data.voices import HELDOUT_USER_VOICES, Voice
from drvoice_lab.modeling import IGNORE_INDEX


def test_number_words():
    assert [number_words(n) for n in (0, 7, 13, 20, 42, 100, 315)] == [
        "zero", "seven", "thirteen", "twenty", "forty two", "one hundred",
        "three hundred and fifteen",
    ]  # fmt: skip
    with pytest.raises(ValueError):
        number_words(1000)


def test_at_least_five_deterministic_families():
    assert len(FAMILIES) >= 5
    for name, make in FAMILIES.items():
        a = [make(random.Random(3)) for _ in range(5)]
        b = [make(random.Random(3)) for _ in range(5)]
        assert a == b and all(qa.family == name and qa.question and qa.answer for qa in a)
    qa = FAMILIES["arithmetic"](random.Random(0))
    assert not any(ch.isdigit() for ch in qa.question + qa.answer)  # numbers are spoken as words


def test_answers_do_not_depend_on_the_phrasing():
    """Held-out questions are other phrasings of known content: the answer is the same."""
    for make in FAMILIES.values():
        answers_by_phrasing: dict[str, dict[int, set[str]]] = {}
        rng = random.Random(1)
        for _ in range(400):
            qa = make(rng)
            answers_by_phrasing.setdefault(qa.answer, {}).setdefault(qa.phrasing, set())
            answers_by_phrasing[qa.answer][qa.phrasing].add(qa.question)
        assert any(0 in p and len(p) > 1 for p in answers_by_phrasing.values())
        for phrasings in answers_by_phrasing.values():  # one question text per phrasing
            assert all(len(questions) == 1 for questions in phrasings.values())
    canonical = QA("facts", "What is the capital of Peru?", "The capital of Peru is Lima.", 0)
    assert not is_heldout(canonical, 1.0)
    assert is_heldout(QA("facts", "Tell me the capital of Peru.", canonical.answer, 2), 1.0)


@pytest.mark.parametrize("spec", ["hibari@1.15", "espeak:en-gb-x-rp+f3@150"])
def test_voices_speak_at_16k(spec):
    voice = Voice.parse(spec)
    assert voice.spec == spec
    wav = voice.synthesize("What is the capital of France?")
    assert wav.dtype == np.float32 and 0.8 < len(wav) / 16_000 < 4.0
    assert np.abs(wav).max() > 0.05


def test_unknown_voice_is_a_clear_error():
    with pytest.raises(ValueError, match="voice spec"):
        Voice.parse("festival:kal")
    with pytest.raises(ValueError, match="no voice"):
        Voice("espeak", "xx-nonexistent", 150).synthesize("hello")


def _digest(folder, names):
    return {n: hashlib.sha1((folder / n).read_bytes()).hexdigest() for n in sorted(names)}


def _plan(dialogues):
    return [
        (
            d.id,
            d.split,
            [
                (t.family, t.question, t.answer, t.user_voice, t.user_audio, t.assistant_audio)
                for t in d.turns
            ],
        )
        for d in dialogues
    ]


def test_corpus_build_is_deterministic_and_resumable(tmp_path):
    config = CorpusConfig(
        num_dialogues=14, seed=5, heldout_voice_fraction=0.3, heldout_question_fraction=0.3
    )
    a = build_corpus(tmp_path / "a", config, workers=1, progress=False)
    b = build_corpus(tmp_path / "b", config, workers=2, progress=False)
    dialogues = load_dialogues(a)
    assert _plan(dialogues) == _plan(load_dialogues(b))
    assert _digest(a, ["text_tokenizer.json"]) == _digest(b, ["text_tokenizer.json"])
    # hibari audio is bit-exact; espeak-ng adds random jitter that no public seed controls
    # (espeak_ng_SetRandSeed and srand were tried), so its lengths may move by a few ms.
    hibari = {t.assistant_audio for d in dialogues for t in d.turns}
    hibari |= {t.user_audio for d in dialogues for t in d.turns if t.user_voice.startswith("hib")}
    assert _digest(a, hibari) == _digest(b, hibari)
    for da, db in zip(dialogues, load_dialogues(b), strict=True):
        for ta, tb in zip(da.turns, db.turns, strict=True):
            assert abs(ta.user_seconds - tb.user_seconds) < 0.05

    assert len(dialogues) == 14 and {d.split for d in dialogues} == {
        "train", "test_question", "test_voice"}  # fmt: skip
    train_questions = {t.question for d in dialogues if d.split == "train" for t in d.turns}
    heldout_voices = {v.spec for v in HELDOUT_USER_VOICES}
    for d in dialogues:
        voices = {t.user_voice for t in d.turns}
        if d.split == "test_voice":
            assert voices <= heldout_voices
        else:
            assert not voices & heldout_voices
        if d.split != "train":  # both test splits end in a held-out phrasing
            assert d.turns[-1].question not in train_questions
            assert question_is_heldout(d.turns[-1].question, config.heldout_phrasing_fraction)
    wav = load_utterance(a, dialogues[0].turns[0].assistant_audio)
    assert abs(len(wav) / 16_000 - dialogues[0].turns[0].assistant_seconds) < 1e-3

    mtimes = {p: p.stat().st_mtime_ns for p in (a / "audio").iterdir()}
    build_corpus(a, config, workers=1, progress=False)  # resumed/rebuilt: audio is reused
    assert {p: p.stat().st_mtime_ns for p in (a / "audio").iterdir()} == mtimes
    tok = TextTokenizer.load(a / "text_tokenizer.json")
    assert tok.decode(tok.encode(dialogues[0].turns[0].answer)) == dialogues[0].turns[0].answer


def test_text_world_draws_fresh_training_dialogues_under_the_heldout_rule(tmp_path):
    config = CorpusConfig(num_dialogues=400, seed=5)
    with pytest.raises(ValueError, match="data build"):
        world_dialogues(tmp_path, 10)
    (tmp_path / "manifest.json").write_text(json.dumps({"config": asdict(config)}))
    world = world_dialogues(tmp_path, 2000, seed=1)
    assert len(world) == 2000 and {d.split for d in world} == {"train"}
    assert _plan(world) == _plan(world_dialogues(tmp_path, 2000, seed=1))
    assert _plan(world) != _plan(world_dialogues(tmp_path, 2000, seed=2))
    corpus = plan_dialogues(config)
    tested = {d.turns[-1].question for d in corpus if d.split != "train"}
    asked = {t.question for d in world for t in d.turns}
    assert tested and not tested & asked  # the test questions stay held out
    assert len(asked - {t.question for d in corpus for t in d.turns}) > 100  # a new draw
    assert {t.family for d in world for t in d.turns} == set(config.families)


@pytest.fixture(scope="module")
def tokenizer():
    rng = random.Random(0)
    qas = [make(rng) for make in FAMILIES.values() for _ in range(40)]
    texts = [t for qa in qas for t in (qa.question, qa.answer)]
    return TextTokenizer.train_bpe(texts + [m.system_prompt for m in MODES.values()], 512)


def _turns(rng: np.random.Generator, n: int = 2, speech_len: int = 37) -> list[TurnInput]:
    return [
        TurnInput(
            f"What is the opposite of hot {i}?",
            "The opposite of hot is cold.",
            user_frames=int(rng.integers(20, 90)),
            answer_speech=rng.integers(0, 1024, speech_len + 6 * i),
        )
        for i in range(n)
    ]


@pytest.mark.parametrize("k", [1, 2, 5])
@pytest.mark.parametrize("mode", sorted(MODES))
def test_every_mode_is_well_formed(tokenizer, k, mode):
    config = DrVoiceConfig.from_preset("tiny", group_size=k)
    turns = _turns(np.random.default_rng(k))
    ex = format_dialogue(turns, mode, config, tokenizer)
    spec = MODES[mode]
    n = ex.num_positions
    assert ex.text_labels.shape == (n,) and ex.speech_ids.shape == (n * k,)
    assert ex.speech_labels.shape == (n * k,) and ex.user_position_mask.shape == (n,)
    # Labels equal the ids wherever they are set (the model does the shift).
    set_text = ex.text_labels != IGNORE_INDEX
    assert (ex.text_labels[set_text] == ex.text_ids[set_text]).all()
    set_speech = ex.speech_labels != IGNORE_INDEX
    assert (ex.speech_labels[set_speech] == ex.speech_ids[set_speech]).all()
    # The system prompt opens every example; the last prompt ends with <|assistant|>.
    assert ex.text_ids[0] == tokenizer.role("system")[0]
    assert ex.text_ids[ex.prompt_positions - 1] == tokenizer.role("assistant")[0]
    system_len = 1 + len(tokenizer.encode(spec.system_prompt))
    assert not set_text[:system_len].any() and not set_speech[: system_len * k].any()
    if spec.speech_in:
        expected = sum(config.user_positions(t.user_frames) for t in turns)
        assert ex.user_position_mask.sum() == expected
        assert (ex.text_ids[ex.user_position_mask] == tokenizer.pad_id).all()
    else:
        assert not ex.user_position_mask.any()
    eos_count = (ex.text_labels == tokenizer.eos_id).sum()
    assert eos_count == len(turns)  # one end-of-turn per assistant answer
    speech_eos = (ex.speech_labels == config.speech_eos_token_id).sum()
    if spec.speech_out:
        assert speech_eos == len(turns)
        spoken = ex.speech_labels[set_speech & (ex.speech_labels < 1024)]
        assert len(spoken) == sum(len(t.answer_speech) for t in turns)
    else:
        assert speech_eos == 0 and not set_speech.any()
    decoded = tokenizer.decode(ex.text_labels[set_text])
    if mode == "SUC":
        assert "hot 0?" in decoded and "cold" not in decoded
    elif mode == "STC":
        assert "hot 0?" in decoded and decoded.count("cold") == 2 * len(turns)
    elif mode == "SAC":
        assert "hot 0?" not in decoded and decoded.count("cold") == 2 * len(turns)
    else:
        assert decoded.count("cold") == len(turns)


def test_modes_need_their_inputs(tokenizer):
    config = DrVoiceConfig.from_preset("tiny")
    with pytest.raises(ValueError, match="unknown CoM mode"):
        format_dialogue(_turns(np.random.default_rng(0)), "XYZ", config, tokenizer)
    with pytest.raises(ValueError, match="user_frames"):
        format_dialogue([TurnInput("q", "a", answer_speech=np.arange(5))], "S2M", config, tokenizer)
    with pytest.raises(ValueError, match="answer_speech"):
        format_dialogue([TurnInput("q", "a")], "T2M", config, tokenizer)
    bad = DrVoiceConfig.from_preset("tiny", text_pad_token_id=3)
    with pytest.raises(ValueError, match="pad/eos ids"):
        format_dialogue([TurnInput("q", "a")], "T2T", bad, tokenizer)


@pytest.mark.parametrize("k", [1, 2, 5])
def test_collator_aligns_channels_and_places_user_speech(tokenizer, k):
    config = DrVoiceConfig.from_preset("tiny", group_size=k)
    rng = np.random.default_rng(k)
    modes = ["S2M", "T2T", "STC", "S2T"]
    examples = [
        format_dialogue(_turns(rng, n=1 + i % 2), m, config, tokenizer) for i, m in enumerate(modes)
    ]
    # Each turn's frames hold its turn number, so placement can be checked after packing.
    feats = [
        [
            np.full((f, config.encoder_hidden_size), j + 1.0, np.float32)
            for j, f in enumerate(ex.user_frames)
        ]
        for ex in examples
    ]
    batch = DrVoiceCollator(config)(examples, feats)
    b, n = len(examples), max(ex.num_positions for ex in examples)
    assert batch["text_ids"].shape == (b, n) and batch["speech_ids"].shape == (b, n * k)
    for i, ex in enumerate(examples):
        m = ex.num_positions
        assert batch["attention_mask"][i].sum() == m
        assert (batch["text_ids"][i, m:] == config.text_pad_token_id).all()
        assert (batch["speech_ids"][i, m * k :] == config.speech_pad_token_id).all()
        assert (batch["text_labels"][i, m:] == IGNORE_INDEX).all()
        per_position = 2 * k
        assert batch["user_feature_lengths"][i] == ex.user_position_mask.sum() * per_position
        offset = 0
        for j, frames in enumerate(ex.user_frames):
            turn = batch["user_features"][i, offset : offset + frames, 0]
            assert (turn == j + 1.0).all()
            padded = -(-frames // per_position) * per_position
            assert (batch["user_features"][i, offset + frames : offset + padded] == 0).all()
            offset += padded
    torch.manual_seed(0)
    out = DrVoiceModel(config)(**batch)
    assert torch.isfinite(out.loss) and out.text_loss > 0 and out.speech_loss > 0


def test_collator_rejects_mismatched_features(tokenizer):
    config = DrVoiceConfig.from_preset("tiny")
    ex = format_dialogue(_turns(np.random.default_rng(0), n=2), "S2M", config, tokenizer)
    collate = DrVoiceCollator(config)
    with pytest.raises(ValueError, match="need their user_features"):
        collate([ex])
    with pytest.raises(ValueError, match="2 spoken turns"):
        collate([ex], [[np.zeros((ex.user_frames[0], 384), np.float32)]])


def test_mode_sampling_follows_ratios():
    rng = np.random.default_rng(0)
    draws = [sample_mode(rng, {"S2M": 3, "T2T": 1, "STC": 0}) for _ in range(4000)]
    assert abs(draws.count("S2M") / 4000 - 0.75) < 0.03 and "STC" not in draws
    with pytest.raises(ValueError):
        sample_mode(rng, {"S2X": 1})


def test_adaptation_corpus_plans_a_new_family_voice_and_reuses_a_tokenizer(tmp_path):
    """CorpusConfig's adaptation knobs: a family outside the default corpus, the assistant's
    voice, the user voices, and an existing tokenizer instead of a newly trained BPE."""
    assert "multiplication" not in FAMILIES  # the default corpus never sees it
    base = CorpusConfig(
        num_dialogues=12,
        max_turns=1,
        heldout_voice_fraction=0.0,
        families=("multiplication",),
        user_voices=("espeak:en-us@165",),
    )
    default_plan = plan_dialogues(base)  # the default assistant voice
    config = CorpusConfig(**{**vars(base), "assistant_voice": "hibari@0.7"})
    plan = plan_dialogues(config)
    turns = [t for d in plan for t in d.turns]
    assert {t.family for t in turns} == {"multiplication"}
    assert {t.user_voice for t in turns} == {"espeak:en-us@165"}
    assert all(" times " in t.question or "multiply" in t.question for t in turns)
    assert [t.answer for d in plan for t in d.turns] == [
        t.answer for d in default_plan for t in d.turns
    ]
    # the same answers, spoken in another voice, are other audio files
    assert not {t.assistant_audio for t in turns} & {
        t.assistant_audio for d in default_plan for t in d.turns
    }
    tokenizer = TextTokenizer.train_bpe(["What is two times three?", "Six."], 300)
    tokenizer.save(tmp_path / "tok.json")
    config.text_tokenizer = str(tmp_path / "tok.json")
    config.num_dialogues = 2
    out = build_corpus(tmp_path / "c", config, workers=1, progress=False)
    assert (out / "text_tokenizer.json").read_text() == (tmp_path / "tok.json").read_text()
    assert json.loads((out / "manifest.json").read_text())["assistant_voice"] == "hibari@0.7"
    with pytest.raises(ValueError, match="unknown task families"):
        CorpusConfig(families=("poetry",))
    with pytest.raises(ValueError, match="voice spec"):
        CorpusConfig(assistant_voice="festival:kal")
