"""Varied spoken sentences for fitting and measuring acoustic models (the speech codec).

The task world of ``tasks.py`` is small on purpose; an acoustic codebook wants more phonetic
variety. So this source widens the same world (its days, months, capitals, colours, opposites,
number words) with a few more facts, and adds everyday subject-verb-object sentences. Each fact
has one home: the extra entries below are written as differences from ``tasks.py``'s.

``spoken_qa_sentences(2000, seed=0)`` is the list the shipped speech tokenizer was fitted on;
keep this module's output stable, or a refit and the codec benchmark's held-out set drift.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from drvoice_lab.data import tasks
from drvoice_lab.data.tasks import DAYS, MONTHS, TENS

CAPITALS = {
    **tasks.CAPITALS,
    "Sweden": "Stockholm", "India": "New Delhi", "Brazil": "Brasilia",
    "Mexico": "Mexico City", "Australia": "Canberra", "Austria": "Vienna", "Turkey": "Ankara",
    "Argentina": "Buenos Aires", "Chile": "Santiago", "Thailand": "Bangkok",
    "Vietnam": "Hanoi", "Cuba": "Havana", "Finland": "Helsinki", "Denmark": "Copenhagen",
    "Hungary": "Budapest", "Belgium": "Brussels", "Morocco": "Rabat",
    "South Korea": "Seoul", "the United States": "Washington", "England": "London",
}  # fmt: skip
OPPOSITES = {
    **tasks.OPPOSITES,
    "old": "young", "near": "far", "heavy": "light", "inside": "outside", "day": "night",
    "win": "lose", "push": "pull", "buy": "sell", "first": "last", "north": "south",
    "east": "west",
}  # fmt: skip
NOT_FITTED_COLOURS = ("a plum", "a leaf")  # the shipped codec's sentences never had these
COLOURS = {
    **{thing: colour for thing, colour in tasks.COLOURS.items() if thing not in NOT_FITTED_COLOURS},
    "a strawberry": "red", "the sea": "blue", "a carrot": "orange", "a frog": "green",
    "a crow": "black", "an aubergine": "purple",
}  # fmt: skip
MIXES = {
    ("blue", "yellow"): "green", ("red", "white"): "pink", ("red", "yellow"): "orange",
    ("blue", "red"): "purple", ("black", "white"): "grey",
}  # fmt: skip
COUNTS = [
    ("days are in a week", "There are seven days in a week"),
    ("months are in a year", "There are twelve months in a year"),
    ("legs does a spider have", "A spider has eight legs"),
    ("legs does a dog have", "A dog has four legs"),
    ("sides does a triangle have", "A triangle has three sides"),
    ("sides does a square have", "A square has four sides"),
    ("hours are in a day", "There are twenty four hours in a day"),
    ("minutes are in an hour", "There are sixty minutes in an hour"),
    ("seconds are in a minute", "There are sixty seconds in a minute"),
    ("wheels does a bicycle have", "A bicycle has two wheels"),
    ("continents are there", "There are seven continents"),
    ("letters are in the alphabet", "There are twenty six letters in the alphabet"),
]
COMMON = [
    "Good morning, how can I help you today?", "Sure, I can help with that.",
    "Let me think about that for a moment.", "That is a great question.",
    "I am not sure, but I can try.", "Yes, that is correct.", "No, that is not right.",
    "Could you say that again, please?", "Thank you for asking.", "Here is the answer.",
    "Of course, here you go.", "I hope that helps.", "Is there anything else?",
    "Have a nice day.", "The weather is lovely today.", "It might rain this afternoon.",
    "Please speak a little more slowly.", "I did not catch that.", "Good night and sleep well.",
    "See you tomorrow.", "That sounds like a good plan.", "Let us try another one.",
    "Well done, that is the right answer.", "Take your time.", "I am happy to help.",
    "The train leaves at nine in the morning.", "Water boils at one hundred degrees.",
    "The sun rises in the east.", "Cats like to sleep in the sun.", "Bread is made from flour.",
    "Bees make honey.", "The moon goes around the earth.", "Fish live in water.",
    "Apples grow on trees.", "My favourite colour is blue.", "The shop opens at ten.",
    "Remember to drink some water.", "The library is closed on Sunday.",
]  # fmt: skip
PREFIXES = ["", "", "", "Sure. ", "Well, ", "Okay. ", "Good question. ", "Let me see. ", "Yes. "]
# everyday sentences, for phonetic variety beyond the question-answer templates
SUBJECTS = [
    "The teacher", "My sister", "Our neighbour", "The young doctor", "A tall man", "The twins",
    "Her father", "The farmer", "My best friend", "The captain", "The little girl", "Your uncle",
    "The students", "A friendly nurse", "The police officer", "Grandma", "The chef", "Everyone",
    "Nobody", "The shopkeeper", "The baby", "Our coach", "The engineer", "A quiet boy",
]  # fmt: skip
PREDICATES = [
    "bought a new bicycle", "cooked a spicy curry", "painted the kitchen blue", "found a wallet",
    "wrote a short poem", "visited an old castle", "fixed the broken chair", "played chess",
    "planted some tomatoes", "watched a funny film", "carried the heavy boxes", "won the race",
    "opened a small shop", "sang a cheerful song", "lost the car keys", "climbed the steep hill",
    "caught a huge salmon", "built a sandcastle", "borrowed some pencils", "drank hot cocoa",
    "ordered a cup of tea", "moved to a quiet town", "learned to swim", "answered the phone",
    "drew a picture of a horse", "washed the dishes", "missed the ferry", "baked a lemon pie",
    "fed the ducks", "knitted a woolly scarf", "repaired the fence", "juggled three oranges",
    "checked the weather", "typed a long email", "hummed a tune", "swept the yard",
]  # fmt: skip
PLACES = [
    "", "", " at the station", " near the river", " at the zoo", " in the city centre",
    " on the beach", " at the office", " in the village", " behind the house", " upstairs",
    " in the mountains", " at the airport", " by the lake", " in the kitchen",
]  # fmt: skip
WHEN = [
    "", "", " yesterday", " last week", " this morning", " on Saturday", " every evening",
    " after lunch", " in the summer", " at midnight", " two days ago", " last year",
]  # fmt: skip


def number_words(n: int) -> str:
    """0..999 in words without the British "and": 123 -> 'one hundred twenty three'."""
    return tasks.number_words(n).replace(" hundred and ", " hundred ")


def ordinal_words(n: int) -> str:
    """1..99 as an ordinal: 21 -> 'twenty first'."""
    special = {1: "first", 2: "second", 3: "third", 5: "fifth", 8: "eighth", 9: "ninth",
               12: "twelfth"}  # fmt: skip
    tens, ones = divmod(n, 10)
    if n in special:
        return special[n]
    if n >= 20 and ones:
        return TENS[tens] + " " + ordinal_words(ones)
    word = number_words(n)
    return word[:-1] + "ieth" if word.endswith("y") else word + "th"


def _arithmetic(rng: random.Random) -> list[str]:
    op = rng.choice(["plus", "minus", "times", "divided by"])
    a, b = rng.randint(0, 20), rng.randint(1, 12)
    if op == "plus":
        c = a + b
    elif op == "minus":
        a, b = max(a, b), min(a, b)
        c = a - b
    elif op == "times":
        c = a * b
    else:  # a whole-number quotient
        a, c = a * b, a
    a_, b_, c_ = number_words(a), number_words(b), number_words(c)
    return [
        f"What is {a_} {op} {b_}?",
        f"{a_.capitalize()} {op} {b_} is {c_}.",
        f"The answer is {c_}.",
        f"{a_.capitalize()} {op} {b_} equals {c_}.",
    ]


def _numbers(rng: random.Random) -> list[str]:
    n = rng.choice([rng.randint(1, 30), rng.randint(1, 998)])
    w, after, before = number_words(n), number_words(n + 1), number_words(n - 1)
    return [
        f"What number comes after {w}?",
        f"The number after {w} is {after}.",
        f"What number comes before {w}?",
        f"The number before {w} is {before}.",
        f"Is {w} an even number?",
        f"{w.capitalize()} is {'an even' if n % 2 == 0 else 'an odd'} number.",
        f"Count from {w} to {number_words(min(n + 3, 999))}.",
    ]


def _calendar(rng: random.Random) -> list[str]:
    i, j = rng.randrange(7), rng.randrange(12)
    day, nxt, prev = DAYS[i], DAYS[(i + 1) % 7], DAYS[i - 1]
    month, mnext, mprev = MONTHS[j], MONTHS[(j + 1) % 12], MONTHS[j - 1]
    return [
        f"What day comes after {day}?",
        f"The day after {day} is {nxt}.",
        f"What day comes before {day}?",
        f"The day before {day} is {prev}.",
        f"Which month comes after {month}?",
        f"The month after {month} is {mnext}.",
        f"The month before {month} is {mprev}.",
        f"Today is {day}, the {ordinal_words(rng.randint(1, 31))} of {month}.",
        f"My birthday is in {month}.",
    ]


def _capitals(rng: random.Random) -> list[str]:
    country = rng.choice(sorted(CAPITALS))
    city = CAPITALS[country]
    return [
        f"What is the capital of {country}?",
        f"The capital of {country} is {city}.",
        f"{city} is the capital of {country}.",
        f"Which country has {city} as its capital?",
    ]


def _opposites(rng: random.Random) -> list[str]:
    word = rng.choice(sorted(OPPOSITES))
    other = OPPOSITES[word]
    return [
        f"What is the opposite of {word}?",
        f"The opposite of {word} is {other}.",
        f"{other.capitalize()} is the opposite of {word}.",
    ]


def _colours(rng: random.Random) -> list[str]:
    thing = rng.choice(sorted(COLOURS))
    (a, b), mix = rng.choice(sorted(MIXES.items()))
    return [
        f"What colour is {thing}?",
        f"{thing[0].upper() + thing[1:]} is {COLOURS[thing]}.",
        f"What do you get when you mix {a} and {b}?",
        f"If you mix {a} and {b}, you get {mix}.",
    ]


def _counts(rng: random.Random) -> list[str]:
    question, answer = rng.choice(COUNTS)
    return [f"How many {question}?", f"{answer}."]


def _everyday(rng: random.Random) -> list[str]:
    clause = f"{rng.choice(SUBJECTS)} {rng.choice(PREDICATES)}"
    clause += rng.choice(PLACES) + rng.choice(WHEN)
    inner = clause if clause.startswith("Grandma") else clause[0].lower() + clause[1:]
    return [
        f"{clause}.",
        f"I think {inner}.",
        f"Did you know that {inner}?",
        f"Repeat after me: {clause}.",
    ]


GENERATORS = [_arithmetic, _arithmetic, _numbers, _calendar, _capitals, _opposites, _colours,
              _counts, _everyday, _everyday, _everyday]  # fmt: skip


def spoken_qa_sentences(count: int, seed: int = 0, exclude: Sequence[str] = ()) -> list[str]:
    """``count`` distinct sentences from the spoken-QA templates, deterministic in ``seed``."""
    rng = random.Random(seed)
    seen, out = set(exclude), []
    for _ in range(count * 50):
        if len(out) == count:
            break
        if rng.random() < 0.12:
            sentence = rng.choice(COMMON)
        else:
            sentence = rng.choice(rng.choice(GENERATORS)(rng))
        prefix = rng.choice(PREFIXES)
        if prefix.endswith(", ") and not sentence.startswith("I "):
            sentence = sentence[0].lower() + sentence[1:]
        sentence = prefix + sentence
        if sentence not in seen:
            seen.add(sentence)
            out.append(sentence)
    if len(out) < count:
        raise ValueError(f"the templates gave only {len(out)} distinct sentences, not {count}")
    return out
