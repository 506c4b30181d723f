"""``drvoice-lab eval-open``: score a model against issue 24's floors in one command.

Every input is checked before the model loads, so a wrong path fails in a second with a
message (exit code 2), not after minutes of decoding.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from drvoice_lab.data.corpus import SPLITS


def add_eval_open_command(sub: argparse._SubParsersAction) -> None:
    from drvoice_lab.arguments import int_at_least

    p = sub.add_parser(
        "eval-open",
        help="issue 24's floors on an open-domain corpus: text kept, probe, spoken questions, "
        "speech WER, speed",
    )
    p.add_argument("--checkpoint", required=True, help="model folder")
    p.add_argument("--corpus", required=True, help="open corpus (`drvoice-lab data build-open`)")
    p.add_argument(
        "--answers",
        default=None,
        help="answers.jsonl the corpus was built from (default: that of `drvoice-lab data answer`)",
    )
    p.add_argument("--split", default="test_voice", choices=list(SPLITS))
    p.add_argument(
        "--limit", type=int_at_least(1), default=None, help="first N dialogues and probe questions"
    )
    p.add_argument(
        "--max-positions", type=int_at_least(1), default=120, help="answer cap (5 Hz steps)"
    )
    p.add_argument(
        "--out",
        default=None,
        help="folder for eval_open.json and eval_open.md (default: MODEL/eval_open/SPLIT, or "
        "runs/eval_open/NAME/SPLIT for a model inside the package)",
    )
    p.add_argument(
        "--jobs",
        type=int_at_least(1),
        default=1,
        help="worker processes answering in parallel, one thread each (the same answers); "
        "speed is then timed on the first 20 spoken turns alone, once they are done",
    )
    p.add_argument(
        "--no-warm-up",
        dest="warm_up",
        action="store_false",
        help="time the very first turn after loading (by default loading ends with the demo's "
        "warm-up turns, as the demo does before its first visitor)",
    )
    p.add_argument(
        "--card",
        action="store_true",
        help="also write the floors into the model folder's card (README.md, eval_open.json)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_eval_open)


def check_inputs(checkpoint: Path, corpus: Path, answers: Path, split: str) -> None:
    """ValueError with a message for anything that would fail later (see the module doc)."""
    from drvoice_lab.data.corpus import load_dialogues

    missing = [n for n in ("config.json", "model.safetensors") if not (checkpoint / n).is_file()]
    if missing:
        raise ValueError(
            f"{checkpoint} is not a DrVoice model folder (missing {', '.join(missing)})"
        )
    if not (corpus / "dialogues.jsonl").is_file():
        raise ValueError(
            f"no corpus at {corpus} (no dialogues.jsonl): build one with "
            "`drvoice-lab data build-open --out DIR`"
        )
    if not answers.is_file():
        raise ValueError(f"no answers file at {answers}: run `drvoice-lab data answer` first")
    if not load_dialogues(corpus, split):
        raise ValueError(f"split {split!r} of {corpus} has no dialogues")


def default_out(checkpoint: Path, split: str) -> Path:
    """Next to the model, unless the model lies inside the package (never write there)."""
    import drvoice_lab

    if checkpoint.resolve().is_relative_to(Path(drvoice_lab.__file__).parent.resolve()):
        return Path("runs") / "eval_open" / checkpoint.name / split
    return checkpoint / "eval_open" / split


def cmd_eval_open(args: argparse.Namespace) -> int:
    from drvoice_lab.audio.io import check_writable
    from drvoice_lab.data.open_corpus import default_answers_path
    from drvoice_lab.evaluation.open_eval import (
        evaluate_open,
        floor_rows,
        markdown_table,
        write_report,
    )
    from drvoice_lab.inference.pipeline import VoiceChat

    checkpoint, corpus = Path(args.checkpoint), Path(args.corpus)
    answers = Path(args.answers) if args.answers else default_answers_path()
    check_inputs(checkpoint, corpus, answers, args.split)
    out = Path(args.out) if args.out else default_out(checkpoint, args.split)
    check_writable(out, folder=True)
    if args.card:
        check_writable(checkpoint / "README.md")
    chat = VoiceChat.from_checkpoint(checkpoint)
    warm_up = chat.warm_up() if args.warm_up else 0.0
    report = evaluate_open(
        chat,
        corpus,
        answers,
        args.split,
        args.limit,
        max_positions=args.max_positions,
        progress=not args.quiet,
        jobs=args.jobs,
        checkpoint=checkpoint,
    )
    report.update(checkpoint=str(checkpoint), corpus=str(corpus), answers=str(answers))
    report["speed"]["warm_up_seconds"] = round(warm_up, 2)  # part of loading, as in the demo
    report["floors"] = floor_rows(report)
    print(markdown_table(report))
    json_path, md_path = write_report(report, out)
    print(f"written: {json_path} and {md_path}")
    if args.card:
        from drvoice_lab.evaluation.model_card import write_card

        print(f"model card: {write_card(checkpoint, open_report=report)}")
    return 0
