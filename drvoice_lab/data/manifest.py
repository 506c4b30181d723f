"""Real data in: a JSONL manifest of spoken dialogues -> the corpus format (``data import``).

The manifest holds one dialogue per line, a JSON object. A single-turn dialogue::

    {"id": "q17", "split": "train", "user_audio": "wav/q17.wav", "user_text": "Where is Lima?",
     "assistant_text": "Lima is in Peru.", "assistant_audio": "wav/a17.wav"}

A multi-turn dialogue puts the turn fields in a list: ``{"id": ..., "split": ...,
"turns": [{"user_text": ..., "assistant_text": ...}, ...]}``. Fields:

* ``user_text``, ``assistant_text`` (required): the transcript of what the user said (or the
  typed question) and the answer. The user transcript is required even with user audio: the
  text-in modes (T2M, T2T), STC, SUC and the alignment stages all read it;
* ``user_audio``, ``assistant_audio`` (optional): audio files (wav, flac, ogg; any rate, any
  channels), relative to the manifest's folder or absolute;
* ``id`` (optional, unique; default ``m<line>``), ``split`` (``train``, ``test_question`` or
  ``test_voice``; default ``train``), ``family`` (optional label per turn, for evaluation).

Audio goes through ``audio.io.load_audio`` (validated, mono, 16 kHz) into ``<out>/audio/`` as
16 kHz FLAC, written atomically and named from the source's path, size and mtime, so a re-run
skips what is there. What a row lacks is synthesized, so that every CoM mode can train on it:

* no ``assistant_audio``: the answer is spoken in the assistant voice (hibari), the target of
  the speech-out modes;
* no ``user_audio``: the question is spoken by a training user voice (a held-out voice in
  ``test_voice``), picked by a hash of the text. The turn's ``user_voice`` records that voice;
  recorded users have ``user_voice: "recorded"``. Training code then needs no special case:
  ``FeatureStore`` encodes every user turn and the speech-in modes read it.

Bad rows (bad JSON, missing fields, a bad split, missing, unreadable, silent or too long audio)
are reported by line number in ``import_report.json``; the good rows are imported.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm.auto import tqdm

from drvoice_lab.audio.io import MODEL_SAMPLE_RATE, AudioError, check_writable, load_audio
from drvoice_lab.data.com import MODES
from drvoice_lab.data.corpus import (
    SPLITS,
    Dialogue,
    Turn,
    utterance_id,
    write_dialogues,
    write_manifest,
    write_text_atomic,
)
from drvoice_lab.data.text_tokenizer import TextTokenizer
from drvoice_lab.data.voices import (
    ASSISTANT_VOICE,
    HELDOUT_USER_VOICES,
    TRAIN_USER_VOICES,
    Voice,
)

RECORDED = "recorded"  # user_voice of a turn whose user audio came with the manifest
TURN_FIELDS = ("user_text", "assistant_text", "user_audio", "assistant_audio", "family")
ROW_FIELDS = ("id", "split", "turns")
REPORT_NAME = "import_report.json"


class RowError(ValueError):
    """Everything wrong with one manifest row."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


@dataclass
class Row:
    """A parsed manifest row: its dialogue (corpus-relative audio paths) and, for each audio
    file it brings, the source file and the field that named it."""

    line: int
    dialogue: Dialogue
    sources: dict[str, tuple[str, Path]] = field(default_factory=dict)  # rel -> (field, file)


@dataclass
class ImportReport:
    manifest: str
    out: str
    rows: int = 0
    imported: int = 0
    splits: dict[str, int] = field(default_factory=dict)
    recorded_audio: int = 0  # distinct audio files taken from the manifest
    synthesized_user_turns: int = 0
    synthesized_assistant_turns: int = 0
    bad_rows: list[dict] = field(default_factory=list)  # {"line", "id", "errors"}

    def summary(self) -> str:
        """What a user reads after an import: counts, then each bad row."""
        lines = [
            f"imported {self.imported} of {self.rows} rows from {self.manifest} into {self.out} "
            f"({', '.join(f'{k} {v}' for k, v in self.splits.items())}); "
            f"{self.recorded_audio} audio files taken, {self.synthesized_user_turns} user and "
            f"{self.synthesized_assistant_turns} assistant turns synthesized"
        ]
        if self.bad_rows:
            lines.append(f"{len(self.bad_rows)} bad rows (details in {self.out}/{REPORT_NAME}):")
            lines += [f"  line {b['line']}: {'; '.join(b['errors'])}" for b in self.bad_rows]
        return "\n".join(lines)


def import_manifest(
    manifest: str | Path, out_dir: str | Path, workers: int = 2, progress: bool = True
) -> ImportReport:
    """Import every good row of ``manifest`` into the corpus folder ``out_dir`` and write
    ``import_report.json``. With no good row, only the report is written."""
    manifest, out = Path(manifest), Path(out_dir)
    if not manifest.is_file():
        raise FileNotFoundError(f"no manifest at {manifest}")
    check_writable(out, folder=True)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    report = ImportReport(str(manifest), str(out))
    rows = _parse_manifest(manifest, report)
    failed = _convert_missing(out, _sources(rows), workers, progress)
    rows = [row for row in rows if not _reject_bad_audio(row, failed, report)]
    report.bad_rows.sort(key=lambda b: b["line"])
    if rows:
        _write_corpus(out, manifest, [row.dialogue for row in rows], workers, progress)
        _count(rows, report)
    write_text_atomic(out / REPORT_NAME, json.dumps(asdict(report), indent=2) + "\n")
    return report


def _parse_manifest(manifest: Path, report: ImportReport) -> list[Row]:
    """The rows that parse; the others go to ``report.bad_rows``. Blank lines are skipped."""
    rows, first_line_of = [], {}
    for number, text in enumerate(manifest.read_text(errors="replace").splitlines(), start=1):
        if not text.strip():
            continue
        report.rows += 1
        try:
            row = _parse_row(number, text, manifest.parent)
            if row.dialogue.id in first_line_of:
                first = first_line_of[row.dialogue.id]
                raise RowError([f"duplicate id {row.dialogue.id!r} (first on line {first})"])
        except RowError as err:
            report.bad_rows.append({"line": number, "id": _id_of(text), "errors": err.errors})
            continue
        first_line_of[row.dialogue.id] = number
        rows.append(row)
    return rows


def _id_of(text: str) -> str | None:
    """The row's id when the line is a JSON object with one (for the report)."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError:
        return None
    return str(raw["id"]) if isinstance(raw, dict) and "id" in raw else None


def _parse_row(number: int, text: str, folder: Path) -> Row:
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as err:
        raise RowError([f"not valid JSON ({err.msg} at column {err.colno})"]) from err
    if not isinstance(raw, dict):
        raise RowError([f"a row must be a JSON object, got {type(raw).__name__}"])
    errors = []
    single = "turns" not in raw
    known = set(ROW_FIELDS) | (set(TURN_FIELDS) if single else set())
    if unknown := sorted(set(raw) - known):
        errors.append(f"unknown fields {unknown}; known: {sorted(known)}")
    split = raw.get("split", "train")
    if split not in SPLITS:
        errors.append(f"split {split!r} is not one of {list(SPLITS)}")
    row_id = raw.get("id", f"m{number:06d}")
    if not isinstance(row_id, (str, int)) or not str(row_id).strip():
        errors.append(f"id must be a non-empty string, got {row_id!r}")
    turns_raw = [{k: v for k, v in raw.items() if k in TURN_FIELDS}] if single else raw["turns"]
    if not isinstance(turns_raw, list) or not turns_raw:
        raise RowError(errors + ["turns must be a non-empty list of turn objects"])
    row = Row(number, Dialogue(str(row_id), split if split in SPLITS else "train"))
    for index, turn_raw in enumerate(turns_raw, start=1):
        where = "" if single else f"turn {index}: "
        try:
            row.dialogue.turns.append(_parse_turn(turn_raw, folder, split, where, row.sources))
        except RowError as err:
            errors += err.errors
    if errors:
        raise RowError(errors)
    return row


def _parse_turn(raw, folder: Path, split: str, where: str, sources: dict) -> Turn:
    """One turn; recorded audio files are added to ``sources`` (rel -> (field, file))."""
    if not isinstance(raw, dict):
        raise RowError([f"{where}a turn must be a JSON object, got {type(raw).__name__}"])
    errors = []
    if unknown := sorted(set(raw) - set(TURN_FIELDS)):
        errors.append(f"{where}unknown fields {unknown}; known: {list(TURN_FIELDS)}")
    texts = {}
    for name in ("user_text", "assistant_text"):
        value = raw.get(name)
        if not isinstance(value, str) or not value.strip():
            errors.append(f"{where}missing field {name}" if value is None else
                          f"{where}{name} must be a non-empty string")  # fmt: skip
        else:
            texts[name] = " ".join(value.split())
    audio = {}
    for name in ("user_audio", "assistant_audio"):
        if raw.get(name) is not None:
            try:
                audio[name] = _audio_source(raw[name], folder, name)
            except RowError as err:
                errors += [f"{where}{e}" for e in err.errors]
    family = raw.get("family", "imported")
    if not isinstance(family, str):
        errors.append(f"{where}family must be a string")
    if errors:
        raise RowError(errors)
    question, answer = texts["user_text"], texts["assistant_text"]
    voice = _user_voice(question, split)
    turn = Turn(
        family=family,
        question=question,
        answer=answer,
        user_voice=RECORDED if "user_audio" in audio else voice.spec,
        user_audio=f"audio/{utterance_id(voice, question)}.flac",
        assistant_audio=f"audio/{utterance_id(ASSISTANT_VOICE, answer)}.flac",
    )
    for name, (rel, source) in audio.items():
        setattr(turn, name, rel)
        sources[rel] = (f"{where}{name}", source)
    return turn


def _audio_source(value, folder: Path, name: str) -> tuple[str, Path]:
    """(corpus-relative FLAC path, source file) of one audio field. The name hashes the
    source's path, size and mtime: a changed file is imported again, an unchanged one not."""
    if not isinstance(value, str) or not value.strip():
        raise RowError([f"{name} must be a file path, got {value!r}"])
    path = Path(value).expanduser()
    path = path if path.is_absolute() else folder / path
    if not path.is_file():
        raise RowError([f"{name}: missing file {path}"])
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    return f"audio/{hashlib.sha1(key.encode()).hexdigest()[:16]}.flac", path


def _user_voice(question: str, split: str) -> Voice:
    """The TTS voice that speaks a typed question: a training voice, or a held-out one in the
    held-out-voice split, chosen by the text's hash (deterministic, spread over voices)."""
    pool = HELDOUT_USER_VOICES if split == "test_voice" else TRAIN_USER_VOICES
    return pool[int(hashlib.sha1(question.encode()).hexdigest()[:8], 16) % len(pool)]


def _sources(rows: list[Row]) -> dict[str, Path]:
    return {rel: source for row in rows for rel, (_, source) in row.sources.items()}


def _convert_one(job: tuple[Path, Path]) -> str | None:
    """Source file -> validated 16 kHz mono FLAC, atomically; the error message, or None."""
    source, target = job
    try:
        wav = load_audio(source)
    except (AudioError, OSError) as err:
        return str(err)
    tmp = f"{target}.tmp{os.getpid()}.flac"
    sf.write(tmp, np.clip(wav, -1.0, 1.0), MODEL_SAMPLE_RATE, subtype="PCM_16")
    os.replace(tmp, target)  # an interrupted import never leaves a half-written file
    return None


def _convert_missing(
    out: Path, sources: dict[str, Path], workers: int, progress: bool
) -> dict[str, str]:
    """Convert each source whose FLAC is not on disk yet; returns {rel: error} of failures."""
    todo = [(rel, (src, out / rel)) for rel, src in sorted(sources.items())
            if not (out / rel).exists()]  # fmt: skip
    if not todo:
        return {}
    jobs = [job for _, job in todo]
    bar = {"total": len(jobs), "desc": "importing audio", "unit": "file", "disable": not progress}
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            results = list(tqdm(pool.map(_convert_one, jobs, chunksize=8), **bar))
    else:
        results = [_convert_one(job) for job in tqdm(jobs, **bar)]
    return {rel: err for (rel, _), err in zip(todo, results, strict=True) if err}


def _reject_bad_audio(row: Row, failed: dict[str, str], report: ImportReport) -> bool:
    """True (and the row reported) when any of the row's audio files failed to import."""
    errors = [f"{name}: {failed[rel]}" for rel, (name, _) in row.sources.items() if rel in failed]
    if errors:
        report.bad_rows.append({"line": row.line, "id": row.dialogue.id, "errors": errors})
    return bool(errors)


def _write_corpus(
    out: Path, manifest: Path, dialogues: list[Dialogue], workers: int, progress: bool
) -> None:
    """Synthesize what is missing, then dialogues.jsonl, the text BPE and manifest.json."""
    seconds = write_dialogues(out, dialogues, ASSISTANT_VOICE.spec, workers, progress)
    texts = [t for d in dialogues for turn in d.turns for t in (turn.question, turn.answer)]
    tokenizer = TextTokenizer.train_bpe(texts + [m.system_prompt for m in MODES.values()])
    tokenizer.save(out / "text_tokenizer.json")  # for presets on the corpus BPE (tiny)
    # user_voices: those of the typed questions; recorded users have user_voice "recorded"
    write_manifest(out, dialogues, seconds, source="manifest", manifest=str(manifest.resolve()),
                   text_vocab_size=tokenizer.vocab_size)  # fmt: skip


def _count(rows: list[Row], report: ImportReport) -> None:
    turns = [(row, t) for row in rows for t in row.dialogue.turns]
    report.imported = len(rows)
    report.splits = dict(Counter(row.dialogue.split for row in rows))
    report.recorded_audio = len(_sources(rows))
    report.synthesized_user_turns = sum(t.user_voice != RECORDED for _, t in turns)
    report.synthesized_assistant_turns = sum(t.assistant_audio not in r.sources for r, t in turns)
