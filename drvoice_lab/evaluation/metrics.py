"""Answer metrics: normalised exact match, token F1, and WER (jiwer) with Whisper-style text.

Whisper writes numbers as digits and adds punctuation ("What is 7 plus 5?"), while the corpus
spells numbers out; both sides are normalised the same way before comparing: lower case,
digits spelled out, punctuation removed, whitespace collapsed.
"""

from __future__ import annotations

import re
from collections import Counter

import jiwer

from drvoice_lab.data.tasks import number_words

_NUMBER = re.compile(r"\d+")
_PUNCT = re.compile(r"[^\w\s']|_")


def normalize(text: str) -> str:
    text = text.lower().replace("-", " ")
    text = _NUMBER.sub(
        lambda m: number_words(int(m.group())) if int(m.group()) < 1000 else m.group(), text
    )
    text = _PUNCT.sub(" ", text).replace("'", "")
    return " ".join(text.split())


def exact_match(prediction: str, reference: str) -> float:
    return float(normalize(prediction) == normalize(reference))


def token_f1(prediction: str, reference: str) -> float:
    """Bag-of-words F1 between normalised texts (SQuAD-style)."""
    pred, ref = normalize(prediction).split(), normalize(reference).split()
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def word_error_rate(hypotheses: list[str], references: list[str]) -> float:
    """Corpus-level WER over normalised texts (empty references are skipped)."""
    pairs = [(normalize(h), normalize(r)) for h, r in zip(hypotheses, references, strict=True)]
    pairs = [(h, r) for h, r in pairs if r]
    if not pairs:
        return float("nan")
    return float(jiwer.wer([r for _, r in pairs], [h for h, _ in pairs]))
