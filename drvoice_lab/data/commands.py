"""``drvoice-lab data ...``: build the synthetic corpus, answer the open questions with the
base LLM, build the open-domain corpus, import a manifest of the user's own dialogues."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def add_data_commands(sub: argparse._SubParsersAction) -> None:
    from drvoice_lab.arguments import int_at_least

    at_least_1 = int_at_least(1)
    data = sub.add_parser("data", help="corpus synthesis").add_subparsers(
        dest="data_cmd", required=True
    )
    p = data.add_parser("build", help="synthesize the spoken-dialogue corpus (cached, resumable)")
    p.add_argument("--out", default=None, help="corpus folder (default: <cache>/corpus/default)")
    p.add_argument("--dialogues", type=at_least_1, default=3000, help="number of dialogues")
    p.add_argument("--max-turns", type=at_least_1, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=at_least_1, default=2, help="synthesis processes")
    p.set_defaults(func=cmd_data_build)
    p = data.add_parser(
        "answer",
        help="the smol base LLM answers every open question (its own answers: what it knows)",
    )
    p.add_argument("--out", default=None, help="answers.jsonl (default: <cache>/open_domain/)")
    p.add_argument("--batch-size", type=at_least_1, default=32)
    p.set_defaults(func=cmd_data_answer)
    p = data.add_parser(
        "build-open", help="synthesize the open-domain corpus from the answers (resumable)"
    )
    p.add_argument("--out", required=True, help="corpus folder")
    p.add_argument("--answers", default=None, help="answers.jsonl from `data answer`")
    p.add_argument("--limit", type=at_least_1, default=None, help="first N training questions")
    p.add_argument("--workers", type=at_least_1, default=2, help="synthesis processes")
    p.set_defaults(func=cmd_data_build_open)
    p = data.add_parser(
        "import",
        help="import a JSONL manifest of spoken dialogues (bad rows reported, good rows imported)",
    )
    p.add_argument("manifest", help="JSONL, one dialogue per line (docs/distributed.md)")
    p.add_argument("--out", required=True, help="corpus folder")
    p.add_argument("--workers", type=at_least_1, default=2, help="audio and synthesis processes")
    p.set_defaults(func=cmd_data_import)


def cmd_data_build(args: argparse.Namespace) -> int:
    from drvoice_lab.data.corpus import CorpusConfig, build_corpus, default_corpus_dir

    config = CorpusConfig(num_dialogues=args.dialogues, max_turns=args.max_turns, seed=args.seed)
    out = args.out or default_corpus_dir()
    t0 = time.perf_counter()
    build_corpus(out, config, workers=args.workers)
    _report(Path(out), t0)
    return 0


def cmd_data_answer(args: argparse.Namespace) -> int:
    from drvoice_lab.data.open_corpus import answer_all

    t0 = time.perf_counter()
    out = answer_all(args.out, batch_size=args.batch_size)
    print(f"answers at {out}; {time.perf_counter() - t0:.0f}s")
    return 0


def cmd_data_build_open(args: argparse.Namespace) -> int:
    from drvoice_lab.data.open_corpus import build_open_corpus

    t0 = time.perf_counter()
    build_open_corpus(args.out, args.answers, workers=args.workers, limit=args.limit)
    _report(Path(args.out), t0)
    return 0


def cmd_data_import(args: argparse.Namespace) -> int:
    """Exit 0 when at least one row was imported, 2 when none was."""
    from drvoice_lab.data.manifest import import_manifest

    t0 = time.perf_counter()
    report = import_manifest(args.manifest, args.out, workers=args.workers)
    print(report.summary())
    if not report.imported:
        return 2
    _report(Path(args.out), t0)
    return 0


def _report(out: Path, started: float) -> None:
    manifest = json.loads((out / "manifest.json").read_text())
    vocab = manifest.get("text_vocab_size")
    print(
        f"corpus at {out}: {sum(manifest['splits'].values())} dialogues "
        f"({', '.join(f'{k} {v}' for k, v in manifest['splits'].items())}), "
        f"{manifest['turns']} turns, {manifest['utterances']} distinct utterances, "
        f"{manifest['hours']:.2f} h of speech"
        + (f", text vocabulary {vocab}" if vocab else "")
        + f"; built in {time.perf_counter() - started:.0f}s"
    )
