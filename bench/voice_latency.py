"""Time to first audio and real-time factor of spoken answers, the demo's path on this CPU.

    python bench/voice_latency.py [--questions 24] [--checkpoint DIR] [--no-vad]

Held-out questions (new wording, spoken by user voices held out of training) are answered in
S2M mode by the default model, one at a time, exactly as the demo does it: read the uploaded
file, Silero-VAD trimming, then ``VoiceChat.stream``. The clock starts when the file is handed
over ("the user's audio is received"):

* first audio: until the first chunk of the spoken answer is ready to play;
* RTF: total time of the turn / seconds of spoken answer.

Prints medians (and per-stage medians) against the issue's targets on a 2-core CPU
(first audio <= 300 ms, RTF <= 0.3) and appends one row per question to
bench/results/voice_latency.csv. Two warm-up turns are not counted.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from drvoice_lab.audio.io import MODEL_SAMPLE_RATE, AudioLimits
from drvoice_lab.benchmarks.machine import machine_fields
from drvoice_lab.benchmarks.report import append_rows
from drvoice_lab.data.corpus import CorpusConfig, build_corpus, load_dialogues
from drvoice_lab.demo import read_question
from drvoice_lab.inference.pipeline import VoiceChat, default_checkpoint
from drvoice_lab.inference.timeline import STAGES as TIMELINE_STAGES

RESULTS = Path(__file__).parent / "results" / "voice_latency.csv"
TARGETS = {"first_audio_ms": 300.0, "rtf": 0.3}
STAGES = ("audio_load", *TIMELINE_STAGES)


def held_out_questions(count: int, seed: int, folder: Path) -> list[tuple[Path, str, str]]:
    """(audio file, question, voice) of ``count`` held-out spoken questions, built in
    ``folder``."""
    config = CorpusConfig(num_dialogues=count, max_turns=1, heldout_voice_fraction=1.0, seed=seed)
    corpus = build_corpus(folder, config, progress=False)
    turns = [d.turns[0] for d in load_dialogues(corpus)]
    return [(corpus / t.user_audio, t.question, t.user_voice) for t in turns]


def one_turn(chat: VoiceChat, path: Path, vad: bool, limits: AudioLimits) -> dict:
    received = time.perf_counter()
    wav, _ = read_question(str(path), limits, trim=vad)
    vad_s = time.perf_counter() - received
    first = None
    for event in chat.fork().stream(audio=wav, sample_rate=MODEL_SAMPLE_RATE, mode="S2M"):
        if event.kind == "audio" and first is None:
            first = time.perf_counter() - received
        if event.kind == "done":
            result = event.result
    total = time.perf_counter() - received
    answer_s = len(result.audio) / result.sample_rate if result.audio is not None else 0.0
    row = {
        "question_s": round(len(wav) / MODEL_SAMPLE_RATE, 3),
        "answer_s": round(answer_s, 3),
        "positions": result.timings["positions"],
        "first_audio_ms": round(1000 * first, 1) if first is not None else "",
        "total_ms": round(1000 * total, 1),
        "rtf": round(total / answer_s, 4) if answer_s else "",
        "vad_ms": round(1000 * vad_s, 1),
    }
    row.update({f"{s}_ms": round(1000 * result.timings.get(s, 0.0), 1) for s in STAGES})
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--questions", type=int, default=24, help="at least 20 for the record")
    parser.add_argument("--checkpoint", default=None, help="model folder (default: shipped)")
    parser.add_argument("--no-vad", action="store_true", help="skip Silero VAD trimming")
    parser.add_argument("--seed", type=int, default=21, help="seed of the held-out questions")
    parser.add_argument("--csv", type=Path, default=RESULTS)
    parser.add_argument("--no-csv", action="store_true", help="print only")
    args = parser.parse_args()

    checkpoint = Path(args.checkpoint or default_checkpoint())
    chat = VoiceChat.from_checkpoint(checkpoint)
    limits = AudioLimits()
    scratch = tempfile.TemporaryDirectory(prefix="drvoice-latency-")
    questions = held_out_questions(args.questions, args.seed, Path(scratch.name))
    for path, _, _ in questions[:2]:  # warm-up: first calls allocate and pick kernels
        one_turn(chat, path, not args.no_vad, limits)

    common = {**machine_fields(), "checkpoint": checkpoint.name, "vad": not args.no_vad}
    rows = []
    for i, (path, question, voice) in enumerate(questions):
        row = {"question": question, "voice": voice}
        row.update(one_turn(chat, path, not args.no_vad, limits))
        rows.append(row)
        print(f"{i + 1:3d}/{len(questions)} first audio {row['first_audio_ms']:>7} ms  "
              f"RTF {row['rtf']:<7} {row['answer_s']:5.2f} s  {question}")  # fmt: skip
    print(f"\n{checkpoint.name}: medians over {len(rows)} held-out spoken questions "
          f"({common['threads']} torch threads, load {common['load1']})")  # fmt: skip
    for key in (
        "first_audio_ms",
        "rtf",
        "total_ms",
        "answer_s",
        "vad_ms",
        *(f"{s}_ms" for s in STAGES),
    ):
        values = [r[key] for r in rows if r[key] != ""]
        median = statistics.median(values)
        target = TARGETS.get(key)
        verdict = "" if target is None else (" ok" if median <= target else " MISSED")
        print(
            f"  {key:<18} {median:9.3f}" + (f"  (target <= {target:g}){verdict}" if target else "")
        )
    if not args.no_csv:
        append_rows(args.csv.parent, args.csv.stem, common, rows)
        print(f"appended {len(rows)} rows to {args.csv}")


if __name__ == "__main__":
    main()
