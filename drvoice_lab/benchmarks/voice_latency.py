"""Time to first audio and real-time factor of spoken answers, the demo's path on this machine
(the `voice_latency` suite).

Held-out questions (new wording, spoken by user voices held out of training) are answered in
S2M mode by the default model, one at a time, exactly as the demo does it: read the uploaded
file, Silero-VAD trimming, then ``VoiceChat.stream``. The clock starts when the file is handed
over ("the user's audio is received"):

* first audio: until the first chunk of the spoken answer is ready to play;
* RTF: total time of the turn / seconds of spoken answer.

Prints medians (and per-stage medians) against the targets on a 2-core CPU (first audio
<= 300 ms, RTF <= 0.3); one row per question. Two warm-up turns are not counted.
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from pathlib import Path

from drvoice_lab.audio.io import MODEL_SAMPLE_RATE, AudioLimits
from drvoice_lab.data.corpus import CorpusConfig, build_corpus, load_dialogues
from drvoice_lab.data.open_answers import read_answers_jsonl, write_answers_jsonl
from drvoice_lab.data.open_corpus import SHIPPED_ANSWERS, build_open_corpus
from drvoice_lab.demo import read_question
from drvoice_lab.inference.pipeline import VoiceChat
from drvoice_lab.inference.timeline import STAGES as TIMELINE_STAGES
from drvoice_lab.model_folder import default_checkpoint

TARGETS = {"first_audio_ms": 300.0, "rtf": 0.3}
STAGES = ("audio_load", *TIMELINE_STAGES)


def held_out_questions(
    count: int, seed: int, folder: Path, open_domain: bool = False
) -> list[tuple[Path, str, str]]:
    """(audio file, question, voice) of ``count`` held-out spoken questions, built in
    ``folder``: the task world's held-out wording, or (``open_domain``, for a model on a
    pretrained LLM) questions of the open corpus's held-out list, in held-out voices."""
    if open_domain:
        rows = [r for r in read_answers_jsonl(SHIPPED_ANSWERS) if r["split"] == "test"]
        chosen = random.Random(seed).sample(rows, min(count, len(rows)))
        answers = write_answers_jsonl(chosen, folder / "answers.jsonl")
        corpus = build_open_corpus(folder / "open", answers, workers=1, progress=False)
        turns = [d.turns[0] for d in load_dialogues(corpus, "test_voice")]
    else:
        config = CorpusConfig(
            num_dialogues=count, max_turns=1, heldout_voice_fraction=1.0, seed=seed
        )
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
    question_s = len(wav) / MODEL_SAMPLE_RATE
    row = {
        "provider": "torch",
        "mode": "S2M turn",
        "size": f"{question_s:.2f} s question",
        "question_s": round(question_s, 3),
        "answer_s": round(answer_s, 3),
        "positions": result.timings["positions"],
        "first_audio_ms": round(1000 * first, 1) if first is not None else "",
        "total_ms": round(1000 * total, 1),
        "rtf": round(total / answer_s, 4) if answer_s else "",
        "vad_ms": round(1000 * vad_s, 1),
    }
    row.update({f"{s}_ms": round(1000 * result.timings.get(s, 0.0), 1) for s in STAGES})
    return row


def print_medians(rows: list[dict], say) -> None:
    """Median of every timing column, against ``TARGETS`` where there is one."""
    for key in (
        "first_audio_ms",
        "rtf",
        "total_ms",
        "answer_s",
        "vad_ms",
        *(f"{s}_ms" for s in STAGES),
    ):
        median = statistics.median(r[key] for r in rows if r[key] != "")
        target = TARGETS.get(key)
        verdict = "" if target is None else (" ok" if median <= target else " MISSED")
        say(f"  {key:<18} {median:9.3f}" + (f"  (target <= {target:g}){verdict}" if target else ""))


def bench(settings, say) -> list[dict]:
    """The `voice_latency` suite: ``settings.questions`` held-out spoken questions."""
    checkpoint = Path(settings.checkpoint or default_checkpoint())
    chat = VoiceChat.from_checkpoint(checkpoint)
    limits = AudioLimits()
    with tempfile.TemporaryDirectory(prefix="drvoice-latency-") as scratch:
        open_domain = chat.config.backbone_reference is not None  # e.g. DrVoice-smol
        questions = held_out_questions(
            settings.questions, settings.seed, Path(scratch), open_domain
        )
        for path, _, _ in questions[:2]:  # warm-up: first calls allocate and pick kernels
            one_turn(chat, path, settings.vad, limits)
        rows = []
        for i, (path, question, voice) in enumerate(questions):
            row = {
                **one_turn(chat, path, settings.vad, limits),
                "question": question,
                "voice": voice,
                "checkpoint": checkpoint.name,
                "vad": settings.vad,
            }
            rows.append(row)
            say(
                f"{i + 1:3d}/{len(questions)} first audio {row['first_audio_ms']:>7} ms  "
                f"RTF {row['rtf']:<7} {row['answer_s']:5.2f} s  {question}"
            )
    say(f"\n{checkpoint.name}: medians over {len(rows)} held-out spoken questions")
    print_medians(rows, say)
    say(decode_bound(chat.model, rows))
    return rows


def decode_bound(model, rows: list[dict]) -> str:
    """The median decode step (a 5 Hz position after the first) against the time it takes to
    read the backbone's weights once at this machine's copy bandwidth."""
    from drvoice_lab.benchmarks.machine import copy_bandwidth_gbs

    steps = [
        r["backbone_steps_ms"] / (r["positions"] - 1) for r in rows if r["positions"] > 1
    ]  # fmt: skip
    weights = sum(p.numel() * p.element_size() for p in model.backbone.parameters())
    bandwidth = copy_bandwidth_gbs()
    bound = 1000 * weights / (bandwidth * 1e9)
    step = statistics.median(steps) if steps else float("nan")
    return (
        f"  decode step {step:.1f} ms (backbone); reading its {weights / 1e6:.0f} MB of weights "
        f"once at the {bandwidth:.1f} GB/s a copy reaches here takes {bound:.1f} ms "
        f"({step / bound:.1f}x the bound)"
    )
