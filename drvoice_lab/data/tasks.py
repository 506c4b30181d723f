"""Spoken-QA task families a tiny model can learn, each a deterministic (question, answer) maker.

Numbers are written as words on both sides: the TTS voices speak words, and the text channel
then carries exactly what is said. Every family draws from a small closed world, so that
exact-match accuracy is a meaningful measure for a few-M-parameter model.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_words(n: int) -> str:
    """0..999 in words: 42 -> 'forty two'."""
    if not 0 <= n < 1000:
        raise ValueError(f"number_words supports 0..999, got {n}")
    if n < 20:
        return ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return TENS[tens] + ("" if ones == 0 else " " + ONES[ones])
    hundreds, rest = divmod(n, 100)
    return ONES[hundreds] + " hundred" + ("" if rest == 0 else " and " + number_words(rest))


@dataclass(frozen=True)
class QA:
    """One question and its answer. ``phrasing`` indexes the family's question templates; the
    answer depends only on the content, never on the phrasing, so a question asked in a
    phrasing held out of training is still answerable from what training saw (phrasing 0,
    the canonical one, is never held out)."""

    family: str
    question: str
    answer: str
    phrasing: int = 0


def _ask(rng: random.Random, family: str, templates: tuple[str, ...], answer: str, **slots) -> QA:
    phrasing = rng.randrange(len(templates))
    return QA(family, templates[phrasing].format(**slots), answer, phrasing)


DAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()
MONTHS = (
    "January February March April May June July August September October November December"
).split()
CAPITALS = {
    "France": "Paris", "Spain": "Madrid", "Italy": "Rome", "Germany": "Berlin",
    "Japan": "Tokyo", "Egypt": "Cairo", "Canada": "Ottawa", "Kenya": "Nairobi",
    "Peru": "Lima", "Norway": "Oslo", "Greece": "Athens", "Ireland": "Dublin",
    "Poland": "Warsaw", "Portugal": "Lisbon", "Russia": "Moscow", "China": "Beijing",
}  # fmt: skip
COLOURS = {
    "the sky": "blue", "grass": "green", "snow": "white", "coal": "black", "a banana": "yellow",
    "a tomato": "red", "an orange": "orange", "a plum": "purple", "chocolate": "brown",
    "a lemon": "yellow", "milk": "white", "a leaf": "green",
}  # fmt: skip
LEGS = {
    "a spider": 8, "a dog": 4, "a bird": 2, "an ant": 6, "a cat": 4, "a fish": 0,
    "a horse": 4, "a duck": 2, "a bee": 6, "a snake": 0, "a cow": 4, "a crab": 10,
}  # fmt: skip
OPPOSITES = {
    "hot": "cold", "big": "small", "up": "down", "fast": "slow", "happy": "sad",
    "light": "dark", "open": "closed", "early": "late", "full": "empty", "old": "new",
    "hard": "soft", "high": "low", "loud": "quiet", "wet": "dry", "long": "short",
    "strong": "weak", "rich": "poor", "left": "right", "thick": "thin", "clean": "dirty",
}  # fmt: skip
REPEAT_SUBJECTS = (
    "the cat",
    "my friend",
    "the little boy",
    "our teacher",
    "the old man",
    "a small bird",
    "the red car",
    "her brother",
    "the baker",
    "the dog",
)
REPEAT_VERBS = ("likes", "sees", "wants", "finds", "paints", "carries", "needs", "buys")
REPEAT_OBJECTS = (
    "green apples",
    "a blue hat",
    "the big box",
    "warm bread",
    "a yellow kite",
    "two books",
    "fresh fish",
    "the wooden chair",
    "a silver key",
    "cold water",
)


PLUS = (
    "What is {a} plus {b}?",
    "How much is {a} plus {b}?",
    "What do you get when you add {a} and {b}?",
    "Can you tell me {a} plus {b}?",
)
MINUS = (
    "What is {a} minus {b}?",
    "How much is {a} minus {b}?",
    "What do you get when you take {b} from {a}?",
    "Can you tell me {a} minus {b}?",
)
CAPITAL = (
    "What is the capital of {x}?",
    "Which city is the capital of {x}?",
    "Tell me the capital of {x}.",
    "Do you know the capital of {x}?",
)
COLOUR = (
    "What colour is {x}?",
    "Which colour is {x}?",
    "Tell me the colour of {x}.",
    "Do you know what colour {x} is?",
)
LEG_COUNT = (
    "How many legs does {x} have?",
    "What is the number of legs on {x}?",
    "Tell me how many legs {x} has.",
    "Do you know how many legs {x} has?",
)
OPPOSITE = (
    "What is the opposite of {x}?",
    "Tell me the opposite of {x}.",
    "What word means the opposite of {x}?",
    "Do you know the opposite of {x}?",
)
AFTER = (
    "What {kind} comes after {x}?",
    "Which {kind} follows {x}?",
    "Tell me the {kind} after {x}.",
    "What is the {kind} after {x}?",
)
TIMES = (
    "What is {a} times {b}?",
    "How much is {a} times {b}?",
    "What do you get when you multiply {a} by {b}?",
    "Can you tell me {a} times {b}?",
)
REPEAT = (
    "Repeat after me: {x}.",
    "Please say: {x}.",
    "Say this back to me: {x}.",
    "Can you repeat this: {x}.",
)


def arithmetic(rng: random.Random) -> QA:
    # Operands 0..9: a closed world small enough that every sum and difference is seen in
    # training many times (in some phrasing) for a few-M-parameter model to memorise it.
    a, b = rng.randint(0, 9), rng.randint(0, 9)
    if rng.random() < 0.5:
        a_, b_, c_ = number_words(a), number_words(b), number_words(a + b)
        return _ask(rng, "arithmetic", PLUS, f"{a_} plus {b_} is {c_}.".capitalize(), a=a_, b=b_)
    a, b = max(a, b), min(a, b)
    a_, b_, c_ = number_words(a), number_words(b), number_words(a - b)
    return _ask(rng, "arithmetic", MINUS, f"{a_} minus {b_} is {c_}.".capitalize(), a=a_, b=b_)


def facts(rng: random.Random) -> QA:
    kind = rng.randrange(3)
    if kind == 0:
        country = rng.choice(sorted(CAPITALS))
        answer = f"The capital of {country} is {CAPITALS[country]}."
        return _ask(rng, "facts", CAPITAL, answer, x=country)
    if kind == 1:
        thing = rng.choice(sorted(COLOURS))
        answer = f"{thing.capitalize()} is {COLOURS[thing]}."
        return _ask(rng, "facts", COLOUR, answer, x=thing)
    animal = rng.choice(sorted(LEGS))
    answer = f"{animal.capitalize()} has {number_words(LEGS[animal])} legs."
    return _ask(rng, "facts", LEG_COUNT, answer, x=animal)


def opposites(rng: random.Random) -> QA:
    word = rng.choice(sorted(OPPOSITES))
    answer = f"The opposite of {word} is {OPPOSITES[word]}."
    return _ask(rng, "opposites", OPPOSITE, answer, x=word)


def sequences(rng: random.Random) -> QA:
    kind = rng.randrange(3)
    if kind == 0:
        i = rng.randrange(7)
        answer = f"{DAYS[(i + 1) % 7]} comes after {DAYS[i]}."
        return _ask(rng, "sequences", AFTER, answer, kind="day", x=DAYS[i])
    if kind == 1:
        i = rng.randrange(12)
        answer = f"{MONTHS[(i + 1) % 12]} comes after {MONTHS[i]}."
        return _ask(rng, "sequences", AFTER, answer, kind="month", x=MONTHS[i])
    n = rng.randint(0, 49)
    answer = f"{number_words(n + 1)} comes after {number_words(n)}.".capitalize()
    return _ask(rng, "sequences", AFTER, answer, kind="number", x=number_words(n))


def repeat(rng: random.Random) -> QA:
    sentence = (
        f"{rng.choice(REPEAT_SUBJECTS)} {rng.choice(REPEAT_VERBS)} {rng.choice(REPEAT_OBJECTS)}"
    ).capitalize()
    return _ask(rng, "repeat", REPEAT, f"{sentence}.", x=sentence)


FAMILIES: dict[str, Callable[[random.Random], QA]] = {
    "arithmetic": arithmetic,
    "facts": facts,
    "opposites": opposites,
    "sequences": sequences,
    "repeat": repeat,
}


def multiplication(rng: random.Random) -> QA:
    # Kept out of the default corpus: the new task family of the LoRA adaptation notebook.
    # Operands 2..6: 25 facts, few enough for a short LoRA run to learn.
    a, b = rng.randint(2, 6), rng.randint(2, 6)
    a_, b_, c_ = number_words(a), number_words(b), number_words(a * b)
    return _ask(rng, "multiplication", TIMES, f"{a_} times {b_} is {c_}.".capitalize(), a=a_, b=b_)


# Families for adaptation experiments only (a base model trained on FAMILIES never saw them).
NEW_FAMILIES: dict[str, Callable[[random.Random], QA]] = {"multiplication": multiplication}
ALL_FAMILIES = {**FAMILIES, **NEW_FAMILIES}
