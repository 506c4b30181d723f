"""Open-domain questions for DrVoice-smol (issue 24): training questions, a held-out test set,
and a knowledge probe with known answers.

Training questions come from template families (``assets/open_questions/train_families.yaml``
plus the number families below): every template filled with every slot value, numbers written
as words because TTS voices speak the questions. The test set and the probe are hand-written
lists on other topics; ``held_out_overlaps`` proves that none of them copies a training
question, exactly, nearly, or through a training template with a training slot filler.
Answers come from the base LLM itself (``open_answers``), so nothing here holds answers except
the probe's accepted aliases.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

from drvoice_lab.data.tasks import ONES, TENS, number_words
from drvoice_lab.paths import ASSETS_DIR

OPEN_DIR = ASSETS_DIR / "open_questions"
SLOT_NAMES = ("x", "y", "z")


@dataclass(frozen=True)
class Question:
    """One question. ``family`` and ``slots`` are set for generated (training) questions only."""

    text: str
    topic: str
    split: str  # "train", "test" or "probe"
    family: str = ""
    slots: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProbeQuestion:
    """A knowledge-probe question and the answers accepted for it (normalised on use)."""

    text: str
    topic: str
    aliases: tuple[str, ...]


@dataclass(frozen=True)
class Family:
    """Templates that share a slot list: every template is filled with every slot tuple."""

    topic: str
    name: str
    templates: tuple[str, ...]
    slots: tuple[tuple[str, ...], ...]

    def questions(self) -> list[Question]:
        out = []
        for template in self.templates:
            for slots in self.slots:
                text = template.format(**dict(zip(SLOT_NAMES, slots, strict=False)))
                out.append(Question(text, self.topic, "train", self.name, slots))
        return out


# --- the training generator -------------------------------------------------------------------


def number_families() -> list[Family]:
    """Arithmetic, counting, clock and pattern questions: ranges are easier written as code."""
    w = number_words
    add = [(w(a), w(b)) for a in range(1, 11) for b in range(1, 11)]
    sub = [(w(a), w(b)) for a in range(2, 16) for b in range(1, min(a, 11))]
    mul = [(w(a), w(b)) for a in range(2, 11) for b in range(2, 11)]
    div = [(w(a * b), w(b)) for b in range(2, 11) for a in range(2, 11)]
    count = [(w(n),) for n in range(1, 41)]
    double = [(w(n),) for n in range(1, 26)]
    half = [(w(n),) for n in range(2, 61, 2)]
    hours = ["one hour"] + [f"{w(h)} hours" for h in range(2, 6)]
    clock = [(w(h), d) for h in range(1, 13) for d in hours]
    # the first three terms of arithmetic sequences
    patterns = [(w(a), w(a + d), w(a + 2 * d)) for a in range(1, 11) for d in range(1, 6)]
    rows = [  # (topic, family, slots, templates)
        ("addition", "add", add,
         ("What is {x} plus {y}?", "What do you get when you add {x} and {y}?")),
        ("subtraction", "sub", sub, ("What is {x} minus {y}?", "What is {x} take away {y}?")),
        ("multiplication and division", "mul", mul,
         ("What is {x} times {y}?", "What is {x} multiplied by {y}?")),
        ("multiplication and division", "div", div, ("What is {x} divided by {y}?",)),
        ("counting", "count", count,
         ("What number comes after {x}?", "What number comes before {x}?",
          "Is {x} an even number?")),
        ("counting", "double", double, ("What is double {x}?",)),
        ("counting", "half", half, ("What is half of {x}?",)),
        ("clock time", "clock", clock,
         ("If it is {x} o'clock now, what time will it be in {y}?",)),
        ("number patterns", "patterns", patterns, ("What number comes next: {x}, {y}, {z}?",)),
    ]  # fmt: skip
    return [Family(topic, name, templates, tuple(slots)) for topic, name, slots, templates in rows]


def _as_slots(value: str | list[str], where: str) -> tuple[str, ...]:
    """A YAML slot value as a tuple of strings; YAML turns bare yes/no/on into booleans."""
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ValueError(f"{where}: slot value {value!r} must be a string or a list of strings")
    return tuple(values)


@cache
def training_families() -> tuple[Family, ...]:
    """Every training family: the YAML ones first, then the number families."""
    rows = yaml.safe_load((OPEN_DIR / "train_families.yaml").read_text())
    families = [
        Family(
            r["topic"],
            r["family"],
            tuple(r["templates"]),
            tuple(_as_slots(v, r["family"]) for v in r["slots"]),
        )
        for r in rows
    ]
    return tuple(families + number_families())


def training_questions() -> list[Question]:
    """All distinct training questions, in a fixed order (the first copy of a text wins).

    Deterministic by construction: no randomness, so every run and every machine agree.
    """
    seen: set[str] = set()
    out = []
    for family in training_families():
        for q in family.questions():
            key = normalize_text(q.text)
            if key not in seen:
                seen.add(key)
                out.append(q)
    return out


# --- the hand-written lists -------------------------------------------------------------------


def _sections(path: Path) -> list[tuple[str, str]]:
    """(topic, line) pairs of a '[topic]'-sectioned text file; '#' lines are comments."""
    topic, rows = "", []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            topic = line[1:-1].strip()
        elif not topic:
            raise ValueError(f"{path.name}: line before any [topic]: {line!r}")
        else:
            rows.append((topic, line))
    return rows


def held_out_questions() -> list[Question]:
    """The held-out test questions (hand-written, topics that training does not cover)."""
    return [
        Question(text, topic, "test") for topic, text in _sections(OPEN_DIR / "test_questions.txt")
    ]


def probe_questions() -> list[ProbeQuestion]:
    """The knowledge probe: questions with known short answers and their accepted aliases."""
    out = []
    for topic, line in _sections(OPEN_DIR / "probe.txt"):
        text, *aliases = (part.strip() for part in line.split("|"))
        if not aliases:
            raise ValueError(f"probe.txt: no alias for {text!r}")
        out.append(ProbeQuestion(text, topic, tuple(aliases)))
    return out


# --- normalisation and probe scoring ----------------------------------------------------------

_SCALES = ((1_000_000, "million"), (1000, "thousand"))


def spoken_number(n: int) -> str:
    """Any 0 <= n < 10**9 in words, without 'and': 1200 -> 'one thousand two hundred'."""
    for size, name in _SCALES:
        if n >= size:
            head, rest = divmod(n, size)
            return f"{spoken_number(head)} {name}" + (f" {spoken_number(rest)}" if rest else "")
    return number_words(n).replace(" and ", " ")


def normalize_text(text: str) -> str:
    """Lowercase words only: digits spelled out, punctuation and 'hundred and' folded away.

    So "It has 8 legs!", "It has eight legs." and "it has eight legs" all compare equal.
    """
    text = text.lower().replace("\u2019", "'")
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)  # 1,000 -> 1000
    text = re.sub(r"(?<=\d)\.0+\b", "", text)  # 100.0 -> 100
    text = re.sub(r"(?<=\d)\.(?=\d)", " point ", text)  # 3.5 -> 3 point 5
    text = re.sub(r"\b\d{1,9}\b", lambda m: f" {spoken_number(int(m.group()))} ", text)
    text = re.sub(r"\b(what|where|who|how|it|that|there|here|he|she)'s\b", r"\1 is", text)
    for short, full in (("won't", "will not"), ("can't", "can not"), ("n't", " not")):
        text = text.replace(short, full)
    for short, full in (("'re", " are"), ("'m", " am"), ("'ll", " will"), ("'ve", " have")):
        text = text.replace(short, full)
    text = re.sub(r"'s\b", "s", text)  # earth's -> earths
    text = re.sub(r"[^a-z0-9]+", " ", text)
    text = re.sub(r"\b(hundred|thousand|million) and\b", r"\1", text)
    return " ".join(text.split())


NUMBER_WORDS = frozenset(ONES + TENS[2:] + ["hundred", "thousand", "million"])


def _contains_phrase(words: list[str], phrase: list[str]) -> bool:
    """Whether ``phrase`` occurs in ``words`` as whole words, and a number phrase as a whole
    number: "eight" is not in "twenty eight", nor "one hundred" in "one hundred ten"."""
    n = len(phrase)
    for i in range(len(words) - n + 1):
        if words[i : i + n] != phrase:
            continue
        before = words[i - 1] if i > 0 else ""
        after = words[i + n] if i + n < len(words) else ""
        if phrase[0] in NUMBER_WORDS and before in NUMBER_WORDS:
            continue
        if phrase[-1] in NUMBER_WORDS and after in NUMBER_WORDS:
            continue
        return True
    return False


def probe_correct(answer_text: str, aliases: tuple[str, ...] | list[str]) -> bool:
    """Whether any alias appears in the normalised answer, as whole words and whole numbers.

    So "eighteen" or "twenty eight" do not count for "eight". A negation ("not Paris") still
    counts: a 135M model's short answers rarely negate, and the same rule scores both models.
    """
    words = normalize_text(answer_text).split()
    return any(
        _contains_phrase(words, normalize_text(alias).split()) for alias in aliases if alias.strip()
    )


def probe_accuracy(answers: list[str], probe: list[ProbeQuestion]) -> float:
    """Fraction of probe questions answered correctly (answers in probe order)."""
    if len(answers) != len(probe):
        raise ValueError(f"{len(answers)} answers for {len(probe)} probe questions")
    hits = sum(probe_correct(a, p.aliases) for a, p in zip(answers, probe, strict=True))
    return hits / max(len(probe), 1)


# --- held-out checks --------------------------------------------------------------------------

STOPWORDS = frozenset(
    "a an the is are was were be do does did i you we it its to of in on at for and or what how "
    "why who which when where can could should would will my me your there this that with by "
    "from as so if have has into about tell please know".split()
)


def _stem(word: str) -> str:
    """Crude singular: volcanoes -> volcano, berries -> berry, eggs -> egg, glass -> glass."""
    if len(word) <= 3 or not word.endswith("s") or word.endswith("ss"):
        return word
    if word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith(("oes", "sses", "shes", "ches", "xes")):
        return word[:-2]
    return word[:-1]


def _stemmed(text: str) -> set[str]:
    return {_stem(w) for w in normalize_text(text).split()}


def content_words(text: str) -> frozenset[str]:
    """Normalised words minus stop words, crudely singular: the gist a near copy shares."""
    return frozenset(_stem(w) for w in normalize_text(text).split() if w not in STOPWORDS)


def _jaccard(a: frozenset[str] | set[str], b: frozenset[str] | set[str]) -> float:
    return len(a & b) / max(len(a | b), 1)


def near_copies(
    held_out: list[str], train: list[str], threshold: float = 0.75
) -> list[tuple[str, str, str]]:
    """(held-out, training, reason) for each held-out question that copies a training one.

    Reasons: same normalised text ("What's a volcano" vs "What is a volcano?"); same
    non-empty content words ("Tell me about volcanoes."); or a Jaccard similarity of the
    (crudely singular) word sets >= threshold.
    """
    by_text = {normalize_text(t): t for t in train}
    by_content: dict[frozenset[str], str] = {}
    index: dict[str, list[int]] = defaultdict(list)  # content word -> training indices
    word_sets = [_stemmed(t) for t in train]
    for i, t in enumerate(train):
        words = content_words(t)
        by_content.setdefault(words, t)
        for w in words:
            index[w].append(i)
    found = []
    for q in held_out:
        norm, words = normalize_text(q), content_words(q)
        if norm in by_text:
            found.append((q, by_text[norm], "same text"))
        elif words and words in by_content:
            found.append((q, by_content[words], "same content words"))
        else:
            q_set = _stemmed(q)
            for i in sorted({i for w in words for i in index[w]}):
                if _jaccard(q_set, word_sets[i]) >= threshold:
                    found.append((q, train[i], "word overlap"))
                    break
    return found


def _template_regex(template: str) -> re.Pattern[str]:
    """A template's normalised text as a regex with one named group per slot."""
    marked = template
    for name in SLOT_NAMES:
        marked = marked.replace("{" + name + "}", f" slot{name}mark ")
    pattern = re.escape(normalize_text(marked))
    for name in SLOT_NAMES:
        pattern = pattern.replace(f"slot{name}mark", f"(?P<{name}>.+?)")
    return re.compile(f"^{pattern}$")


def template_leaks(held_out: list[str]) -> list[tuple[str, str, str]]:
    """(held-out, family, filler) where a held-out question fits a training template with any
    slot filler that family uses in training: the same template family must not share fillers.
    """
    leaks = []
    for family in training_families():
        fillers = {normalize_text(v) for s in family.slots for v in s}
        regexes = [_template_regex(t) for t in family.templates]
        for q in held_out:
            norm = normalize_text(q)
            for regex in regexes:
                m = regex.match(norm)
                shared = [v for v in m.groupdict().values() if v in fillers] if m else []
                if shared:
                    leaks.append((q, family.name, shared[0]))
                    break
    return leaks


def held_out_overlaps(held_out: list[str], train: list[str] | None = None) -> list[tuple]:
    """Every reason a held-out list is not independent of training (empty list: independent).

    ``train`` (texts, default: all training questions) serves the near-copy check; the template
    check always uses the training families.
    """
    train = [q.text for q in training_questions()] if train is None else train
    return near_copies(held_out, train) + template_leaks(held_out)
