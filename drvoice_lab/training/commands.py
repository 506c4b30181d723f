"""``drvoice-lab train``, ``merge`` and ``export``: the commands that make model folders."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def add_training_commands(sub: argparse._SubParsersAction) -> None:
    _add_train(sub)
    _add_merge(sub)
    _add_export(sub)


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a recipe; re-running the same command resumes it")
    p.add_argument("--recipe", default="tiny", help="preset name (tiny, small, 7b) or YAML/JSON")
    p.add_argument("--out", default=None, help="run folder (default: runs/<recipe name>)")
    p.add_argument("--corpus", default=None, help="corpus folder (overrides the recipe)")
    p.add_argument(
        "--stop-after",
        type=int,
        default=None,
        help="stop after this many optimizer steps (the run stays resumable)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--force-new", action="store_true", help="OUT holds another run: use OUT-2...")
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    from drvoice_lab.training import load_recipe
    from drvoice_lab.training.loop import Trainer

    overrides = {"corpus": args.corpus} if args.corpus else {}
    recipe = load_recipe(args.recipe, **overrides)
    out = Path(args.out or Path("runs") / Path(args.recipe).stem)
    if args.force_new:
        out = _fresh_beside(out, recipe)
    t0 = time.perf_counter()
    trainer = Trainer(recipe, out, progress=not args.quiet)
    result = trainer.run(stop_after_steps=args.stop_after)
    if trainer.is_main:
        print(
            f"{'stopped' if args.stop_after else 'finished'} in "
            f"{time.perf_counter() - t0:.0f}s; metrics: {out / 'metrics.jsonl'}; "
            f"model: {result}"
        )
    return 0


def _fresh_beside(out: Path, recipe) -> Path:
    """``out`` if it is free or holds this recipe's run, else the first free ``out-N``."""
    from drvoice_lab.training.loop import check_same_recipe

    candidate, n = out, 1
    while True:
        try:
            check_same_recipe(candidate, recipe)
            break
        except ValueError:
            n += 1
            candidate = out.with_name(f"{out.name}-{n}")
    if candidate != out:
        print(f"{out} holds another recipe's run: training in {candidate}", file=sys.stderr)
    return candidate


def _add_merge(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "merge",
        help="Core-Cocktail merge: backbone = alpha * TUNED + (1 - alpha) * BASE, rest from TUNED",
    )
    p.add_argument("--base", required=True, help="model folder M0 (before fine-tuning)")
    p.add_argument("--tuned", required=True, help="model folder M1 (after fine-tuning)")
    p.add_argument("--alpha", type=float, required=True, help="weight of TUNED, in [0, 1]")
    p.add_argument("--out", required=True, help="folder for the merged model")
    p.set_defaults(func=cmd_merge)


def cmd_merge(args: argparse.Namespace) -> int:
    from drvoice_lab.training.export import merge_backbones

    out = merge_backbones(args.base, args.tuned, args.out, args.alpha)
    print(f"merged backbone (alpha {args.alpha:g}) written to {out}")
    return 0


def _add_export(sub: argparse._SubParsersAction) -> None:
    from drvoice_lab.arguments import int_at_least

    p = sub.add_parser(
        "export", help="package a trained model (fp16 + tokenizers + model card), evaluated"
    )
    p.add_argument("model", help="a trained model folder (runs/<name>/final)")
    p.add_argument(
        "--out", required=True, help="destination folder: new, empty, or an earlier export"
    )
    p.add_argument("--force", action="store_true", help="replace an earlier export at --out")
    p.add_argument("--corpus", default=None, help="corpus to evaluate on (default corpus)")
    p.add_argument(
        "--splits", default="test_voice,test_question", help="splits for the card ('' = none)"
    )
    p.add_argument("--modes", default="S2T,S2M,T2M,T2T,STC", help="comma-separated CoM modes")
    p.add_argument(
        "--limit", type=int_at_least(1), default=None, help="first N dialogues of each split"
    )
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from drvoice_lab.data.com import MODES
    from drvoice_lab.data.corpus import default_corpus_dir, load_dialogues
    from drvoice_lab.evaluation.evaluate import WhisperASR, evaluate, markdown_table
    from drvoice_lab.inference.pipeline import VoiceChat
    from drvoice_lab.training.export import check_export_target, export_model, write_card

    # Every check before anything is written: a refused export leaves --out as it was.
    check_export_target(args.model, args.out, args.force)
    modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
    if unknown := sorted(set(modes) - set(MODES)):
        raise ValueError(f"unknown --modes {unknown}; choose from {sorted(MODES)}")
    splits = [s.strip() for s in args.splits.split(",") if s.strip()]
    corpus = args.corpus or (default_corpus_dir() if splits else None)
    for split in splits:
        if not load_dialogues(corpus, split):  # no corpus: says to run `drvoice-lab data build`
            raise ValueError(f"split {split!r} of {corpus} is empty")
    out = export_model(args.model, args.out, force=args.force)
    reports, asr = [], None
    for split in splits:
        asr = asr or WhisperASR()
        chat = VoiceChat.from_checkpoint(out)  # what ships: the fp16 weights
        report = evaluate(chat, corpus, split, modes, args.limit, asr)
        print(markdown_table(report))
        reports.append(report)
    card = write_card(out, reports)
    size = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    print(f"exported {out} ({size / 1e6:.1f} MB); model card: {card}")
    return 0
