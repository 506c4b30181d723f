"""Spoken-QA task families a tiny model can learn, each a deterministic (question, answer) maker.

Numbers are written as words on both sides: the TTS voices speak words, and the text channel
then carries exactly what is said. Every family draws from a small closed world, so that
exact-match accuracy is a meaningful measure for a few-M-parameter model.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_words(n: int) -> str:
    """0..999 in words: 42 -> 'forty two'."""
    if not 0 <= n < 1000:
        raise ValueError(f"number_words supports 0..999, got {n}")
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + ("" if ones == 0 else " " + _ONES[ones])
    hundreds, rest = divmod(n, 100)
    return _ONES[hundreds] + " hundred" + ("" if rest == 0 else " and " + number_words(rest))


@dataclass(frozen=True)
class QA:
    family: str
    question: str
    answer: str


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


def arithmetic(rng: random.Random) -> QA:
    a, b = rng.randint(0, 20), rng.randint(0, 20)
    if rng.random() < 0.5:
        return QA(
            "arithmetic",
            f"What is {number_words(a)} plus {number_words(b)}?",
            f"{number_words(a)} plus {number_words(b)} is {number_words(a + b)}.".capitalize(),
        )
    a, b = max(a, b), min(a, b)
    return QA(
        "arithmetic",
        f"What is {number_words(a)} minus {number_words(b)}?",
        f"{number_words(a)} minus {number_words(b)} is {number_words(a - b)}.".capitalize(),
    )


def facts(rng: random.Random) -> QA:
    kind = rng.randrange(3)
    if kind == 0:
        country = rng.choice(sorted(CAPITALS))
        return QA(
            "facts",
            f"What is the capital of {country}?",
            f"The capital of {country} is {CAPITALS[country]}.",
        )
    if kind == 1:
        thing = rng.choice(sorted(COLOURS))
        return QA("facts", f"What colour is {thing}?", f"{thing.capitalize()} is {COLOURS[thing]}.")
    animal = rng.choice(sorted(LEGS))
    return QA(
        "facts",
        f"How many legs does {animal} have?",
        f"{animal.capitalize()} has {number_words(LEGS[animal])} legs.",
    )


def opposites(rng: random.Random) -> QA:
    word = rng.choice(sorted(OPPOSITES))
    return QA(
        "opposites",
        f"What is the opposite of {word}?",
        f"The opposite of {word} is {OPPOSITES[word]}.",
    )


def sequences(rng: random.Random) -> QA:
    kind = rng.randrange(3)
    if kind == 0:
        i = rng.randrange(7)
        return QA(
            "sequences",
            f"What day comes after {DAYS[i]}?",
            f"{DAYS[(i + 1) % 7]} comes after {DAYS[i]}.",
        )
    if kind == 1:
        i = rng.randrange(12)
        return QA(
            "sequences",
            f"What month comes after {MONTHS[i]}?",
            f"{MONTHS[(i + 1) % 12]} comes after {MONTHS[i]}.",
        )
    n = rng.randint(0, 98)
    return QA(
        "sequences",
        f"What number comes after {number_words(n)}?",
        f"{number_words(n + 1)} comes after {number_words(n)}.".capitalize(),
    )


def repeat(rng: random.Random) -> QA:
    sentence = (
        f"{rng.choice(REPEAT_SUBJECTS)} {rng.choice(REPEAT_VERBS)} {rng.choice(REPEAT_OBJECTS)}"
    ).capitalize()
    return QA("repeat", f"Repeat after me: {sentence}.", f"{sentence}.")


FAMILIES: dict[str, Callable[[random.Random], QA]] = {
    "arithmetic": arithmetic,
    "facts": facts,
    "opposites": opposites,
    "sequences": sequences,
    "repeat": repeat,
}
