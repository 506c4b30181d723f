"""``drvoice-lab eval-open``: the floors of issue 24 on the open-domain corpus.

DrVoice-smol must keep what its LLM knows while learning to listen and speak. Over a held-out
split of the open corpus (``data.open_corpus``; default ``test_voice``: held-out questions in
held-out voices), greedy decoding, each dialogue's question is answered three times, each turn
on an empty history:

* S2M (spoken question, spoken answer) first, so the first turn after loading is a spoken one
  and its first-audio latency is the cold one;
* S2T (spoken question, text answer);
* T2T (typed question, text answer).

Measured, each beside its floor:

* text kept: T2T answer vs the base LLM's own answer (``answers.jsonl``, made under the same
  T2T system prompt); agreement = normalised exact match or token F1 >= 0.8;
* knowledge probe: the model's T2T accuracy on ``probe_questions()`` vs the base LLM's accuracy
  on the same questions, from its probe rows in ``answers.jsonl``;
* spoken questions understood: S2T answer vs the model's own T2T answer, same agreement;
* speech says the text: Whisper ASR-WER of the S2M audio against the S2M text, over answers
  never heard in training, with the speech tokenizer's round trip on the reference answers of
  the same dialogues beside it (``evaluate.tokenizer_floor``);
* speed: first audio (cold first turn, and the median of the others) and real-time factor
  (turn time / seconds of spoken answer) of the S2M turns, from ``TurnResult.timings``.

"Never heard in training": neither the base LLM's reference answer nor the model's own S2M
text is, once normalised, among the answers of the corpus's ``train`` split or the ``train``
rows of ``answers.jsonl`` (two held-out questions can share an answer with a training one).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from statistics import median

import numpy as np
from tqdm.auto import tqdm

from drvoice_lab.data.corpus import load_dialogues
from drvoice_lab.data.open_answers import read_answers_jsonl
from drvoice_lab.data.open_questions import probe_correct, probe_questions
from drvoice_lab.evaluation.evaluate import (
    WhisperASR,
    reference_answers,
    tokenizer_floor,
)
from drvoice_lab.evaluation.metrics import exact_match, normalize, token_f1, word_error_rate
from drvoice_lab.evaluation.open_turns import answer_dialogues, answer_typed, spoken_timings

AGREE_F1 = 0.8  # token F1 at or above which two answers agree (issue 24)


@dataclass(frozen=True)
class Floor:
    """One row of issue 24's floors: what is measured, and the bound it must meet."""

    what: str
    op: str  # ">=" or "<="
    bound: float
    unit: str  # how the figure is shown: "%", "points", "ms", "x"

    def passes(self, figure: float) -> bool | None:
        """True/False; None when there is no figure (nothing measured)."""
        if figure is None or math.isnan(figure):
            return None
        return figure >= self.bound if self.op == ">=" else figure <= self.bound

    def show(self, figure: float) -> str:
        if figure is None or math.isnan(figure):
            return "-"
        if self.unit == "%":
            return f"{100 * figure:.1f} %"
        if self.unit == "ms":
            return f"{figure:.0f} ms"
        return f"{figure:.1f} points" if self.unit == "points" else f"{figure:.2f}"


# Fractions in "%" rows, points in "points", milliseconds in "ms", ratios in "x".
FLOORS = {
    "text_kept": Floor("text kept: T2T agrees with the base LLM", ">=", 0.85, "%"),
    "probe_drop": Floor("text kept: probe accuracy below the base LLM", "<=", 3.0, "points"),
    "spoken_understood": Floor("spoken questions: S2T agrees with own T2T", ">=", 0.75, "%"),
    "speech_wer": Floor("speech says the text: S2M ASR-WER, never heard", "<=", 0.15, "%"),
    "first_audio_cold": Floor("first audio, cold first turn after loading", "<=", 400.0, "ms"),
    "first_audio_median": Floor("first audio, median of the other turns", "<=", 400.0, "ms"),
    "rtf": Floor("real-time factor of spoken turns", "<=", 0.5, "x"),
}


# --- scoring -----------------------------------------------------------------------------------


def agrees(prediction: str, reference: str, threshold: float = AGREE_F1) -> bool:
    """Issue 24's agreement: normalised exact match, or token F1 >= ``threshold``."""
    return bool(exact_match(prediction, reference)) or token_f1(prediction, reference) >= threshold


def agreement(predictions: list[str], references: list[str]) -> dict:
    """Mean exact match, token F1 and share that agrees, over aligned answer pairs."""
    pairs = list(zip(predictions, references, strict=True))
    if not pairs:
        return {"n": 0, "exact_match": math.nan, "token_f1": math.nan, "agree": math.nan}
    return {
        "n": len(pairs),
        "exact_match": float(np.mean([exact_match(p, r) for p, r in pairs])),
        "token_f1": float(np.mean([token_f1(p, r) for p, r in pairs])),
        "agree": float(np.mean([agrees(p, r) for p, r in pairs])),
    }


def heard_answers(corpus_dir: str | Path, rows: list[dict]) -> set[str]:
    """Normalised answers a model trained on this corpus has heard spoken: its train split's,
    and the train rows' of ``answers.jsonl`` (a corpus built with a limit holds fewer)."""
    texts = {t.answer for d in load_dialogues(corpus_dir, "train") for t in d.turns}
    texts |= {r["answer"] for r in rows if r["split"] == "train"}
    return {normalize(t) for t in texts}


def never_heard(texts: list[str], heard: set[str]) -> bool:
    """True when none of ``texts`` was heard in training (compared normalised)."""
    return all(normalize(t) not in heard for t in texts)


def probe_figures(model_answers: list[str], base_answers: list[str], aliases: list) -> dict:
    """Probe accuracy of the model and of the base LLM on the same questions; the drop in
    points (positive: the model knows less)."""
    model, base = _accuracy(model_answers, aliases), _accuracy(base_answers, aliases)
    return {"n": len(aliases), "model_accuracy": model, "base_accuracy": base,
            "drop_points": 100 * (base - model)}  # fmt: skip


def _accuracy(answers: list[str], aliases: list) -> float:
    hits = [probe_correct(a, al) for a, al in zip(answers, aliases, strict=True)]
    return float(np.mean(hits)) if hits else math.nan


def speed_figures(timings: list[dict], audio_seconds: list[float]) -> dict:
    """First audio (ms) of the cold first spoken turn and the median of the others, and the
    real-time factor (turn time / answer audio) over all spoken turns, in turn order."""
    first = [1000 * t.get("first_audio", math.nan) for t in timings]  # NaN: no audio
    others = [f for f in first[1:] if not math.isnan(f)]
    steps = [t["backbone_steps"] / (t["positions"] - 1) for t in timings if t["positions"] > 1]
    return {
        "n": len(timings),
        "first_audio_cold_ms": first[0] if first else math.nan,
        "first_audio_median_ms": median(others) if others else math.nan,
        "first_audio_max_ms": max((f for f in first if not math.isnan(f)), default=math.nan),
        "rtf": _rtf(timings, audio_seconds),
        "rtf_warm": _rtf(timings[1:], audio_seconds[1:]),  # the cold first turn left out
        "decode_step_ms": 1000 * float(np.mean(steps)) if steps else math.nan,
        "turns_without_audio": sum(1 for s in audio_seconds if not s),
    }


def _rtf(timings: list[dict], audio_seconds: list[float]) -> float:
    """Time spent on the turns per second of spoken answer."""
    spoken = sum(audio_seconds)
    return sum(t["total"] for t in timings) / spoken if spoken and timings else math.nan


# --- running the model -------------------------------------------------------------------------


def _base_answers(rows: list[dict]) -> dict[str, str]:
    """The base LLM's answer to every question of the corpus (train and test rows)."""
    return {r["question"]: r["answer"] for r in rows if r["split"] != "probe"}


def _probe_set(rows: list[dict], limit: int | None) -> list[tuple]:
    """(probe question, base LLM answer) for the probe questions answered in answers.jsonl."""
    base = {r["question"]: r["answer"] for r in rows if r["split"] == "probe"}
    probe = [(p, base[p.text]) for p in probe_questions() if p.text in base][:limit]
    if not probe:
        raise ValueError(
            "answers.jsonl has no probe rows: run `drvoice-lab data answer` (it answers the "
            "probe questions with the base LLM)"
        )
    return probe


def _probe(answers: list[str], probe: list[tuple]) -> tuple[dict, list[dict]]:
    """The model's T2T answers to the probe questions, scored beside the base LLM's."""
    base_answers = [b for _, b in probe]
    figures = probe_figures(answers, base_answers, [q.aliases for q, _ in probe])
    records = [{"question": q.text, "model": m, "base": b, "aliases": list(q.aliases)}
               for (q, b), m in zip(probe, answers, strict=True)]  # fmt: skip
    return figures, records


def evaluate_open(
    chat,
    corpus_dir: str | Path,
    answers_path: str | Path,
    split: str = "test_voice",
    limit: int | None = None,
    asr: WhisperASR | None = None,
    max_positions: int = 120,
    progress: bool = True,
    jobs: int = 1,
    checkpoint: str | Path | None = None,
    speed_turns: int = 20,
) -> dict:
    """Score ``chat`` (a VoiceChat; pass a freshly loaded one so its first turn is the cold
    one) on a split of an open corpus; ``limit``: the first N dialogues and N probe
    questions. ``jobs > 1``: answer in that many processes loading ``checkpoint``, then time
    the first ``speed_turns`` spoken turns again here, alone (``open_turns``). Returns the
    report dict (``floor_rows``: the floors beside the figures)."""
    dialogues = load_dialogues(corpus_dir, split)[:limit]
    if not dialogues:
        raise ValueError(f"split {split!r} of {corpus_dir} has no dialogues")
    rows = read_answers_jsonl(answers_path)
    base = _base_answers(rows)
    if missing := [d.turns[-1].question for d in dialogues if d.turns[-1].question not in base]:
        raise ValueError(
            f"{len(missing)} questions of the corpus are not in {answers_path} (e.g. "
            f"{missing[0]!r}): pass the answers file the corpus was built from"
        )
    probe_set = _probe_set(rows, limit)  # both checked before minutes of decoding
    asr = asr or WhisperASR()
    total = len(dialogues) + len(probe_set)
    bar = tqdm(total=total, desc=f"eval-open {split}", disable=not progress)
    items, timings = answer_dialogues(
        chat, asr, corpus_dir, dialogues, max_positions, bar, jobs, checkpoint
    )
    typed = answer_typed(chat, [q.text for q, _ in probe_set], max_positions, bar, jobs, checkpoint)
    probe, probe_items = _probe(typed, probe_set)
    bar.close()
    seconds = [i["s2m_seconds"] for i in items]
    if timings is None:  # answered by workers: time spoken turns here, on an idle machine
        timings, seconds = spoken_timings(chat, corpus_dir, dialogues[:speed_turns], max_positions)
    heard = heard_answers(corpus_dir, rows)
    for item in items:
        item["base"] = base[item["question"]]
        item["never_heard"] = never_heard([item["base"], item["s2m"]], heard)
    fresh = [d for d, i in zip(dialogues, items, strict=True) if i["never_heard"]]
    fresh_items = [i for i in items if i["never_heard"]]
    report = {
        "split": split,
        "dialogues": len(dialogues),
        "limit": limit,
        "text_kept": agreement([i["t2t"] for i in items], [i["base"] for i in items]),
        "probe": probe,
        "spoken_understood": agreement([i["s2t"] for i in items], [i["t2t"] for i in items]),
        "speech": {
            "n": len(fresh_items),
            "excluded_as_heard": len(items) - len(fresh_items),
            "wer": _speech_wer(fresh_items),
            "wer_all": _speech_wer(items),
            "tokenizer_floor": _tokenizer_floor(chat, corpus_dir, fresh, asr),
        },
        "jobs": jobs,
        "speed": speed_figures(timings, seconds),
        "items": items,
        "probe_items": probe_items,
    }
    report["floors"] = floor_rows(report)
    return report


def _speech_wer(items: list[dict]) -> float:
    """ASR-WER of the spoken answers against their own text."""
    return word_error_rate([i["s2m_asr"] for i in items], [i["s2m"] for i in items])


def _tokenizer_floor(chat, corpus_dir, dialogues, asr) -> dict:
    if not dialogues:
        return {"round_trip_wer": math.nan, "original_wer": math.nan, "n": 0}
    references = reference_answers(chat.speech_tokenizer, corpus_dir, dialogues)
    return tokenizer_floor(chat.speech_tokenizer, references, asr)


# --- the report --------------------------------------------------------------------------------


def floor_rows(report: dict) -> list[dict]:
    """Each floor with its figure, pass/fail (None: nothing measured) and what stands beside."""
    speech, speed, understood = report["speech"], report["speed"], report["spoken_understood"]
    floor = speech["tokenizer_floor"]
    figures = {
        "text_kept": (report["text_kept"]["agree"], report["text_kept"]["n"], ""),
        "probe_drop": (
            report["probe"]["drop_points"],
            report["probe"]["n"],
            f"model {100 * report['probe']['model_accuracy']:.1f} %, "
            f"base LLM {100 * report['probe']['base_accuracy']:.1f} %",
        ),
        "spoken_understood": (understood["agree"], understood["n"], ""),
        "speech_wer": (
            speech["wer"],
            speech["n"],
            f"tokenizer round trip {_percent(floor['round_trip_wer'])} on the same answers "
            f"(original audio {_percent(floor['original_wer'])})",
        ),
        "first_audio_cold": (speed["first_audio_cold_ms"], min(speed["n"], 1), _cold(report)),
        "first_audio_median": (speed["first_audio_median_ms"], max(speed["n"] - 1, 0), ""),
        "rtf": (
            speed["rtf"],
            speed["n"],
            f"{FLOORS['rtf'].show(speed['rtf_warm'])} without the cold turn; decode step "
            f"{FLOORS['first_audio_cold'].show(speed['decode_step_ms'])}",
        ),
    }
    rows = []
    for key, (figure, n, beside) in figures.items():
        f = FLOORS[key]
        rows.append({
            "key": key, "what": f.what, "figure": figure, "n": n,
            "floor": f"{f.op} {f.show(f.bound)}", "passed": f.passes(figure), "beside": beside,
        })  # fmt: skip
    return rows


def _cold(report: dict) -> str:
    """What stands beside the first turn's figure: how it was measured."""
    warm_up = report["speed"].get("warm_up_seconds")
    return f"loading ended with {warm_up:.1f} s of warm-up turns, as in the demo" if warm_up else ""


def _percent(value: float) -> str:
    return "-" if value is None or math.isnan(value) else f"{100 * value:.1f} %"


def markdown_table(report: dict) -> str:
    """The floors table (figure, floor, pass) and a few lines of detail."""
    lines = [
        f"Split `{report['split']}`, {report['dialogues']} dialogues, greedy decoding.",
        "",
        "| what | n | figure | floor | pass | beside |",
        "|---|---|---|---|---|---|",
    ]
    for row in report["floors"]:
        shown = FLOORS[row["key"]].show(row["figure"])
        verdict = {True: "yes", False: "**no**", None: "n/a"}[row["passed"]]
        lines.append(
            f"| {row['what']} | {row['n']} | {shown} | {row['floor']} | {verdict} | "
            f"{row['beside']} |"
        )
    kept, understood, speech = report["text_kept"], report["spoken_understood"], report["speech"]
    lines += [
        "",
        f"T2T vs base LLM: exact match {_percent(kept['exact_match'])}, token F1 "
        f"{_percent(kept['token_f1'])}. S2T vs own T2T: exact match "
        f"{_percent(understood['exact_match'])}, token F1 {_percent(understood['token_f1'])}.",
        f"Speech: answers left out as heard in training: {speech['excluded_as_heard']}; "
        f"ASR-WER over every answer {_percent(speech['wer_all'])}.",
    ]
    return "\n".join(lines) + "\n"


def write_report(report: dict, out_dir: str | Path) -> tuple[Path, Path]:
    """eval_open.json (NaN written as null) and eval_open.md in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "eval_open.json", out / "eval_open.md"
    json_path.write_text(json.dumps(strict_json(report), indent=1))
    md_path.write_text(markdown_table(report))
    return json_path, md_path


def strict_json(value):
    """Strict JSON: NaN (nothing measured) becomes null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [strict_json(v) for v in value]
    return value
