"""The synthetic spoken-dialogue corpus: ``drvoice-lab data build``.

On-disk format (a folder; documented in docs/corpus.md)::

    manifest.json      build config, counts per split, format version
    dialogues.jsonl    one dialogue per line (see ``Dialogue``)
    text_tokenizer.json  byte-level BPE trained on the corpus text (HF ``tokenizers`` format)
    audio/<id>.flac    16 kHz mono 16-bit FLAC, one file per distinct (voice, text)

Splits: ``train``; ``test_question`` (dialogues ending in a held-out question, training
voices); ``test_voice`` (dialogues ending in a held-out question, spoken by held-out voices:
the quality-floor set). A held-out question is a non-canonical phrasing of known content (see
``drvoice_lab.data.tasks.QA``) picked by a hash of its text, so it stays held out whatever the
seed or corpus size, and training still sees its answer through the other phrasings.
Everything is deterministic from the seed; audio already on disk is reused.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm.auto import tqdm

from drvoice_lab.audio.io import MODEL_SAMPLE_RATE
from drvoice_lab.data.com import MODES
from drvoice_lab.data.tasks import ALL_FAMILIES, FAMILIES, QA
from drvoice_lab.data.text_tokenizer import TextTokenizer
from drvoice_lab.data.voices import ASSISTANT_VOICE, HELDOUT_USER_VOICES, TRAIN_USER_VOICES, Voice
from drvoice_lab.paths import cache_dir

FORMAT_VERSION = 2
SPLITS = ("train", "test_question", "test_voice")


@dataclass
class CorpusConfig:
    num_dialogues: int = 3000
    max_turns: int = 3
    multi_turn_fraction: float = 0.3
    heldout_voice_fraction: float = 0.08
    heldout_question_fraction: float = 0.08
    heldout_phrasing_fraction: float = 0.25  # of non-canonical phrasings
    families: tuple[str, ...] = tuple(FAMILIES)
    text_vocab_size: int = 2048
    seed: int = 0
    # Adaptation corpora (e.g. a new voice for the assistant) change these three:
    assistant_voice: str = ASSISTANT_VOICE.spec
    user_voices: tuple[str, ...] = ()  # voice specs of the train splits; () = TRAIN_USER_VOICES
    text_tokenizer: str | None = None  # reuse this tokenizer file (a model's) instead of BPE

    def __post_init__(self) -> None:
        unknown = set(self.families) - set(ALL_FAMILIES)
        if unknown:
            raise ValueError(
                f"unknown task families {sorted(unknown)}; known: {sorted(ALL_FAMILIES)}"
            )
        for spec in (self.assistant_voice, *self.user_voices):
            Voice.parse(spec)  # a clear error for a bad spec, before any synthesis
        if self.num_dialogues < 1 or self.max_turns < 1:
            raise ValueError("num_dialogues and max_turns must be >= 1")


@dataclass
class Turn:
    family: str
    question: str
    answer: str
    user_voice: str  # Voice.spec
    user_audio: str  # path relative to the corpus root
    assistant_audio: str
    user_seconds: float = 0.0
    assistant_seconds: float = 0.0


@dataclass
class Dialogue:
    id: str
    split: str
    turns: list[Turn] = field(default_factory=list)


def default_corpus_dir() -> Path:
    return cache_dir("corpus", "default")


def question_is_heldout(question: str, fraction: float) -> bool:
    """The hash test alone: True for about ``fraction`` of question texts."""
    digest = int(hashlib.sha1(question.encode()).hexdigest()[:8], 16)
    return digest / 0xFFFFFFFF < fraction


def is_heldout(qa: QA, fraction: float) -> bool:
    """Kept out of training: a non-canonical phrasing whose text hashes under ``fraction``."""
    return qa.phrasing > 0 and question_is_heldout(qa.question, fraction)


def utterance_id(voice: Voice, text: str) -> str:
    return hashlib.sha1(f"{voice.spec}|{text}".encode()).hexdigest()[:16]


def plan_dialogues(config: CorpusConfig) -> list[Dialogue]:
    """Decide every dialogue's split, voice and turns (no audio yet)."""
    rng = random.Random(config.seed)
    families = [ALL_FAMILIES[name] for name in config.families]
    train_voices = tuple(Voice.parse(v) for v in config.user_voices) or TRAIN_USER_VOICES
    assistant = Voice.parse(config.assistant_voice)
    dialogues = []
    for index in range(config.num_dialogues):
        roll = rng.random()
        if roll < config.heldout_voice_fraction:
            split, voice = "test_voice", rng.choice(HELDOUT_USER_VOICES)
        elif roll < config.heldout_voice_fraction + config.heldout_question_fraction:
            split, voice = "test_question", rng.choice(train_voices)
        else:
            split, voice = "train", rng.choice(train_voices)
        n_turns = 1
        if config.max_turns > 1 and rng.random() < config.multi_turn_fraction:
            n_turns = rng.randint(2, config.max_turns)
        turns = []
        for position in range(n_turns):
            # test dialogues end in a held-out question; all other turns avoid them.
            want_heldout = split != "train" and position == n_turns - 1
            for _ in range(1000):
                qa = rng.choice(families)(rng)
                if is_heldout(qa, config.heldout_phrasing_fraction) == want_heldout:
                    break
            else:
                raise RuntimeError("could not draw a question for the split; widen the families")
            turns.append(
                Turn(
                    family=qa.family,
                    question=qa.question,
                    answer=qa.answer,
                    user_voice=voice.spec,
                    user_audio=f"audio/{utterance_id(voice, qa.question)}.flac",
                    assistant_audio=f"audio/{utterance_id(assistant, qa.answer)}.flac",
                )
            )
        dialogues.append(Dialogue(id=f"d{index:06d}", split=split, turns=turns))
    return dialogues


def world_dialogues(corpus_dir: str | Path, count: int, seed: int = 0) -> list[Dialogue]:
    """``count`` fresh training dialogues from a corpus's task world: its task families, turn
    counts, voices and held-out rule, drawn anew (audio paths planned, nothing synthesized).
    A language model learns facts from many phrasings and contexts, not from one corpus's few
    thousand sentences: ``data: text_world`` stages read them as text (T2T)."""
    manifest = Path(corpus_dir) / "manifest.json"
    if not manifest.exists():
        raise ValueError(f"no corpus manifest at {manifest}: run `drvoice-lab data build` first")
    raw = json.loads(manifest.read_text())["config"]
    config = CorpusConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})
    config = replace(
        config,
        num_dialogues=count,
        heldout_voice_fraction=0.0,  # every dialogue a training one: no held-out question
        heldout_question_fraction=0.0,
        seed=1_000_003 * (config.seed + 1) + seed,  # a draw the corpus itself never made
    )
    return plan_dialogues(config)


def _synthesize_one(job: tuple[str, str, str]) -> tuple[str, float]:
    voice_spec, text, path = job
    wav = Voice.parse(voice_spec).synthesize(text)
    tmp = f"{path}.tmp{os.getpid()}.flac"
    sf.write(tmp, wav, MODEL_SAMPLE_RATE, subtype="PCM_16")
    os.replace(tmp, path)  # atomic: an interrupted build never leaves a half-written file
    return path, len(wav) / MODEL_SAMPLE_RATE


def _synthesize_missing(
    out: Path, jobs: dict[str, tuple[str, str]], workers: int, progress: bool
) -> None:
    """Write ``out / rel`` for each ``rel: (voice spec, text)`` of ``jobs`` not on disk yet."""
    todo = [
        (spec, text, str(out / rel))
        for rel, (spec, text) in sorted(jobs.items())
        if not (out / rel).exists()
    ]
    if not todo:
        return
    bar = tqdm(total=len(todo), desc="synthesizing speech", unit="utt", disable=not progress)
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            for _ in pool.map(_synthesize_one, todo, chunksize=16):
                bar.update()
    else:
        for job in todo:
            _synthesize_one(job)
            bar.update()
    bar.close()


def build_corpus(
    out_dir: str | Path,
    config: CorpusConfig = CorpusConfig(),
    workers: int = 2,
    progress: bool = True,
) -> Path:
    """Synthesize (or reuse) all audio and write the manifest and dialogues. Returns out_dir."""
    out = Path(out_dir)
    dialogues = plan_dialogues(config)
    durations = write_dialogues(out, dialogues, config.assistant_voice, workers, progress)
    if config.text_tokenizer:
        tokenizer = TextTokenizer.load(config.text_tokenizer)
    else:
        texts = [t for d in dialogues for turn in d.turns for t in (turn.question, turn.answer)]
        tokenizer = TextTokenizer.train_bpe(
            texts + [m.system_prompt for m in MODES.values()], config.text_vocab_size
        )
    tokenizer.save(out / "text_tokenizer.json")
    write_manifest(
        out,
        dialogues,
        durations,
        config=asdict(config),
        text_vocab_size=tokenizer.vocab_size,
        assistant_voice=config.assistant_voice,
        user_voices={
            "train": list(config.user_voices) or [v.spec for v in TRAIN_USER_VOICES],
            "heldout": [v.spec for v in HELDOUT_USER_VOICES],
        },
    )
    return out


def write_dialogues(
    out: Path, dialogues: list[Dialogue], assistant_voice: str, workers: int, progress: bool
) -> dict[str, float]:
    """Synthesize every utterance not on disk yet, set each turn's durations and write
    ``dialogues.jsonl``; returns the seconds of each distinct utterance."""
    (out / "audio").mkdir(parents=True, exist_ok=True)
    jobs = {}
    for dialogue in dialogues:
        for turn in dialogue.turns:
            jobs[turn.user_audio] = (turn.user_voice, turn.question)
            jobs[turn.assistant_audio] = (assistant_voice, turn.answer)
    _synthesize_missing(out, jobs, workers, progress)
    durations = {rel: sf.info(str(out / rel)).duration for rel in jobs}
    for dialogue in dialogues:
        for turn in dialogue.turns:
            turn.user_seconds = round(durations[turn.user_audio], 4)
            turn.assistant_seconds = round(durations[turn.assistant_audio], 4)
    write_text_atomic(
        out / "dialogues.jsonl",
        "".join(json.dumps(asdict(d), sort_keys=True) + "\n" for d in dialogues),
    )
    return durations


def write_manifest(
    out: Path, dialogues: list[Dialogue], seconds: dict[str, float], **fields
) -> None:
    """``manifest.json`` of a corpus: format, split sizes, turns, utterances, hours, and the
    builder's own ``fields`` (source, voices, ...; the default voices unless given)."""
    counts = Counter(d.split for d in dialogues)
    manifest = {
        "format_version": FORMAT_VERSION,
        "splits": {s: counts.get(s, 0) for s in SPLITS},
        "turns": sum(len(d.turns) for d in dialogues),
        "utterances": len(seconds),
        "hours": round(sum(seconds.values()) / 3600, 3),
        "sample_rate": MODEL_SAMPLE_RATE,
        "assistant_voice": ASSISTANT_VOICE.spec,
        "user_voices": {
            "train": [v.spec for v in TRAIN_USER_VOICES],
            "heldout": [v.spec for v in HELDOUT_USER_VOICES],
        },
        **fields,
    }
    write_text_atomic(out / "manifest.json", json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def load_dialogues(corpus_dir: str | Path, split: str | None = None) -> list[Dialogue]:
    """Read dialogues.jsonl back (optionally one split)."""
    path = Path(corpus_dir) / "dialogues.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"no corpus at {corpus_dir}: run `drvoice-lab data build` first")
    if split is not None and split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
    dialogues = []
    for line in path.read_text().splitlines():
        raw = json.loads(line)
        dialogue = Dialogue(raw["id"], raw["split"], [Turn(**t) for t in raw["turns"]])
        if split is None or dialogue.split == split:
            dialogues.append(dialogue)
    return dialogues


def load_utterance(corpus_dir: str | Path, relative_path: str) -> np.ndarray:
    wav, rate = sf.read(str(Path(corpus_dir) / relative_path), dtype="float32")
    assert rate == MODEL_SAMPLE_RATE, f"corpus audio must be {MODEL_SAMPLE_RATE} Hz, got {rate}"
    return wav
