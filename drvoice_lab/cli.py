"""The ``drvoice-lab`` command.

drvoice-lab info --preset 7b        parameter count of each part (meta device, no weights)
drvoice-lab turn --preset tiny      one joint-decoding turn through the whole model
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from drvoice_lab.arguments import float_in, int_at_least
from drvoice_lab.codec.cli import add_speech_commands
from drvoice_lab.config import DrVoiceConfig, preset_names
from drvoice_lab.data.commands import add_data_commands
from drvoice_lab.evaluation.commands import add_eval_open_command
from drvoice_lab.training.commands import add_training_commands


def _add_info(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "info", help="parameter count of each part of a preset (no weights allocated)"
    )
    p.add_argument("--preset", default="tiny", help=f"one of {preset_names()}")
    p.add_argument("-k", "--group-size", type=int, default=None, help="override k")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_info)


def cmd_info(args: argparse.Namespace) -> int:
    from drvoice_lab.modeling.summary import parameter_report

    config = _preset(args)
    report = parameter_report(config)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    bb = config.backbone_config
    print(
        f"preset {args.preset}: k={config.group_size} ({config.position_rate:g} Hz positions), "
        f"grouping={config.grouping_mode}, backbone {bb.model_type} d={bb.hidden_size} "
        f"x{bb.num_hidden_layers}, SRH d={config.srh_config.hidden_size} "
        f"x{config.srh_config.num_hidden_layers}, speech vocab {config.speech_vocab_size} "
        f"({config.speech_codebook_size} + 3 specials), text vocab {config.text_vocab_size}"
    )
    width = max(len(key) for key in report)
    for key, value in report.items():
        if key in ("backbone_total", "trainable_total", "base LLM (frozen)"):
            print("-" * (width + 16))
        print(f"{key:<{width}}  {_human(value):>12}")
    return 0


def _add_turn(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "turn",
        help="one spoken turn through the whole path with fresh (untrained) weights: "
        "wav -> encoder -> model -> speech tokens -> wav",
    )
    p.add_argument("--preset", default="tiny", help=f"one of {preset_names()}")
    p.add_argument("-k", "--group-size", type=int, default=None, help="override k")
    p.add_argument(
        "--audio",
        default=None,
        help="the user's question (default: a sentence spoken by the hibari voice)",
    )
    p.add_argument("--out", default=None, help="write the (untrained) spoken answer here")
    p.add_argument("--max-positions", type=int_at_least(1), default=25, help="answer cap (5 Hz)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_turn)


def cmd_turn(args: argparse.Namespace) -> int:
    import torch

    from drvoice_lab.audio.io import write_audio
    from drvoice_lab.data.text_tokenizer import TextTokenizer
    from drvoice_lab.inference.pipeline import VoiceChat
    from drvoice_lab.model_folder import tiny_checkpoint
    from drvoice_lab.modeling import DrVoiceModel

    config = _preset(args)
    audio, source = args.audio, args.audio
    if audio is None:
        from drvoice_lab.data.voices import ASSISTANT_VOICE

        source = "hibari: 'What is the capital of France?'"
        audio = ASSISTANT_VOICE.synthesize("What is the capital of France?")  # 16 kHz
    torch.manual_seed(args.seed)
    model = DrVoiceModel(config).eval()
    # the tiny model's BPE for presets on the corpus BPE; the backbone's own otherwise
    chat = VoiceChat(model, TextTokenizer.for_config(config, tiny_checkpoint()))
    print(
        f"{args.preset} (k={config.group_size}) with freshly initialised weights: no trained "
        "checkpoint is used here, so the answer is noise; this checks the full path."
    )
    result = chat.respond(
        audio=audio, sample_rate=16_000, mode="S2M", max_positions=args.max_positions
    )
    frames = len(chat.history[-1][1])  # the user's 50 Hz encoder frames
    print(
        f"user turn ({source}) -> {frames} encoder frames (50 Hz) "
        f"-> {config.user_positions(frames)} backbone positions ({config.position_rate:g} Hz)"
    )
    print(
        f"answer: {len(result.text_channel)} steps -> {len(result.text_channel)} text tokens + "
        f"{result.speech_channel.size} speech tokens (25 Hz)"
    )
    if result.audio is not None:
        print(f"detokenized answer: {len(result.audio) / result.sample_rate:.2f}s of audio")
        if args.out:
            write_audio(args.out, result.audio, result.sample_rate)
            print(f"written: {args.out}")
    timings = {k: v for k, v in result.timings.items() if k != "positions"}
    print("timings: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in timings.items()))
    return 0


def _add_chat(sub: argparse._SubParsersAction) -> None:

    p = sub.add_parser("chat", help="one spoken or typed turn with a trained model")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--audio", help="the spoken question (any rate, mono or stereo)")
    src.add_argument("--text", help="the typed question")
    p.add_argument(
        "--no-vad", action="store_true", help="use the whole recording (no Silero VAD trimming)"
    )
    p.add_argument(
        "--mode", default=None, help="CoM mode (default: S2M for --audio, T2M for --text)"
    )
    p.add_argument("--checkpoint", default=None, help="model folder (default: the shipped model)")
    p.add_argument("--adapter", default=None, help="LoRA adapter folder to apply to the model")
    p.add_argument("--out", default=None, help="write the spoken answer here (.wav or .flac)")
    p.add_argument(
        "--temperature", type=float_in(0.0), default=0.0, help="text and speech sampling, 0: greedy"
    )
    p.add_argument("--top-p", type=float_in(0.0, 1.0, low_open=True), default=1.0, help="in (0, 1]")
    p.add_argument("--top-k", type=int_at_least(0), default=0, help="0: no top-k filter")
    p.add_argument(
        "--max-positions", type=int_at_least(1), default=120, help="answer length cap (5 Hz steps)"
    )
    p.set_defaults(func=cmd_chat)


def cmd_chat(args: argparse.Namespace) -> int:
    import os
    import tempfile

    from drvoice_lab.audio.io import check_audio_out, load_audio, write_audio
    from drvoice_lab.inference import SamplingConfig
    from drvoice_lab.inference.pipeline import VoiceChat
    from drvoice_lab.model_folder import default_checkpoint

    # Bad input fails here, in a second, not after the model has loaded and answered.
    if args.out:
        check_audio_out(args.out)
    audio = load_audio(args.audio) if args.audio else None  # validated, 16 kHz mono
    if audio is not None and not args.no_vad:  # as the demo: noise and clicks are no question
        audio = _speech_only(audio, args.audio)
    mode = args.mode or ("S2M" if args.audio else "T2M")
    chat = VoiceChat.from_checkpoint(args.checkpoint or default_checkpoint(), args.adapter)
    sampling = SamplingConfig(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p)
    result = chat.respond(
        audio=audio,
        sample_rate=16_000 if audio is not None else None,
        text=args.text,
        mode=mode,
        text_sampling=sampling,
        speech_sampling=sampling,
        max_positions=args.max_positions,
    )
    print(result.text)
    status = 0
    if result.audio is not None:
        seconds = len(result.audio) / result.sample_rate
        if args.out:
            try:
                write_audio(args.out, result.audio, result.sample_rate)
                print(f"[spoken answer: {seconds:.1f}s -> {args.out}]", file=sys.stderr)
            except (OSError, RuntimeError) as err:  # checked above, yet disks fill up
                handle, kept = tempfile.mkstemp(prefix="drvoice-answer-", suffix=".wav")
                os.close(handle)
                write_audio(kept, result.audio, result.sample_rate)
                print(
                    f"drvoice-lab chat: error: could not write {args.out} ({err}); "
                    f"the spoken answer is kept in {kept}",
                    file=sys.stderr,
                )
                status = 2
        else:
            print(
                f"[spoken answer: {seconds:.1f}s; pass --out FILE.wav to keep it]", file=sys.stderr
            )
    elif args.out:
        print(f"[{mode} answers in text only: nothing written to {args.out}]", file=sys.stderr)
    timing = ", ".join(
        f"{k} {v * 1000:.0f} ms" for k, v in result.timings.items() if k != "positions"
    )
    print(f"[{mode}: {result.timings['positions']} positions; {timing}]", file=sys.stderr)
    return status


def _speech_only(audio, path: str):
    """The spoken part of a recording (Silero VAD), or an error that says none was heard."""
    try:
        from drvoice_lab.audio.vad import trim_silence
    except ImportError:  # silero-vad comes with the `demo` extra
        print("[no VAD installed (pip install silero-vad): the whole recording is used]",
              file=sys.stderr)  # fmt: skip
        return audio
    try:
        return trim_silence(audio).audio
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from err


def _add_eval(sub: argparse._SubParsersAction) -> None:
    from drvoice_lab.arguments import int_at_least

    p = sub.add_parser(
        "eval", help="closed task world: answer accuracy per CoM mode and voice, speech-text WER"
    )
    p.add_argument(
        "--checkpoint",
        default=None,
        help="model folder (default: the tiny model, whose world the default corpus is; "
        "open-domain models: `drvoice-lab eval-open`)",
    )
    p.add_argument("--adapter", default=None, help="LoRA adapter folder to apply to the model")
    p.add_argument("--corpus", default=None, help="corpus folder (default: the default corpus)")
    p.add_argument(
        "--split", default="test_question", choices=["train", "test_question", "test_voice"]
    )
    p.add_argument("--modes", default="S2T,S2M,T2M,T2T,STC", help="comma-separated CoM modes")
    p.add_argument(
        "--limit", type=int_at_least(1), default=None, help="first N dialogues of the split"
    )
    p.add_argument(
        "--out",
        default=None,
        help="folder for eval.json and eval.md (default: MODEL/eval/SPLIT, or "
        "runs/eval/NAME/SPLIT for a model inside the package)",
    )
    p.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    import drvoice_lab
    from drvoice_lab.audio.io import check_writable
    from drvoice_lab.data.com import MODES
    from drvoice_lab.data.corpus import default_corpus_dir, load_dialogues
    from drvoice_lab.evaluation.evaluate import evaluate, markdown_table, write_report
    from drvoice_lab.inference.pipeline import VoiceChat
    from drvoice_lab.model_folder import tiny_checkpoint

    checkpoint = Path(args.checkpoint) if args.checkpoint else tiny_checkpoint()
    modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
    if unknown := sorted(set(modes) - set(MODES)):
        raise ValueError(f"unknown --modes {unknown}; choose from {sorted(MODES)}")
    corpus = args.corpus or default_corpus_dir()
    load_dialogues(corpus, args.split)  # no corpus: says to run `drvoice-lab data build`
    model_dir = Path(args.adapter or checkpoint)
    if args.out:
        out = Path(args.out)
    elif model_dir.resolve().is_relative_to(Path(drvoice_lab.__file__).parent.resolve()):
        out = Path("runs") / "eval" / model_dir.name / args.split  # never into the package
    else:
        out = model_dir / "eval" / args.split
    check_writable(out, folder=True)  # before minutes of evaluation, not after
    chat = VoiceChat.from_checkpoint(checkpoint, args.adapter)
    report = evaluate(chat, corpus, args.split, modes, args.limit)
    report["checkpoint"] = str(checkpoint)
    report["adapter"] = args.adapter
    print(markdown_table(report))
    json_path, _ = write_report(report, out)
    print(f"written: {json_path} (+ eval.md)")
    return 0


def _preset(args: argparse.Namespace) -> DrVoiceConfig:
    overrides = {}
    if getattr(args, "group_size", None) is not None:
        overrides["group_size"] = args.group_size
    return DrVoiceConfig.from_preset(args.preset, **overrides)


def _human(n: int) -> str:
    if n >= 1e9:
        return f"{n / 1e9:.3f} B"
    if n >= 1e6:
        return f"{n / 1e6:.2f} M"
    if n >= 1e3:
        return f"{n / 1e3:.1f} K"
    return str(n)


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the Gradio voice chat in the browser")
    p.add_argument("--checkpoint", default=None, help="model folder (default: the shipped model)")
    p.add_argument("--host", default=None, help="interface to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int_at_least(1), default=None, help="default 7860")
    p.add_argument("--max-file-mb", type=int_at_least(1), default=None, help="upload limit (16)")
    p.add_argument("--max-seconds", type=float_in(0, low_open=True), default=None,
                   help="longest question (default 30)")  # fmt: skip
    p.add_argument("--concurrency", type=int_at_least(1), default=None, help="turns at once (2)")
    p.add_argument(
        "--allow-model-paths",
        action="store_true",
        default=None,
        help="let the page load other checkpoint/adapter folders even when not on 127.0.0.1",
    )
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from drvoice_lab.demo import DemoSettings, launch

    given = {k: v for k, v in vars(args).items() if k not in ("command", "func") and v is not None}
    settings = DemoSettings(**given)
    url = f"http://{settings.host}:{settings.port}"
    print(f"drvoice-lab demo: loading the model, then serving {url} (Ctrl+C stops it)")
    launch(settings)
    return 0


def _add_bench(sub: argparse._SubParsersAction) -> None:
    from drvoice_lab.benchmarks.run import configure_parser

    p = sub.add_parser("bench", help="benchmark suites: kernels, latency, compute, codec, ...")
    configure_parser(p)
    p.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    from drvoice_lab.benchmarks.run import run_bench, settings_from_args

    run_bench(settings_from_args(args))
    return 0


def _add_ablate(sub: argparse._SubParsersAction) -> None:
    from drvoice_lab.benchmarks.ablation import VARIANTS

    p = sub.add_parser(
        "ablate",
        help="k-sweep and 'without SRH' ablation: train each variant, evaluate, tabulate",
    )
    p.add_argument(
        "--variants", default=",".join(VARIANTS), help=f"comma-separated: {', '.join(VARIANTS)}"
    )
    p.add_argument("--recipe", default="tiny", help="recipe every variant trains")
    p.add_argument(
        "--scale", type=float, default=1.0, help="fraction of the recipe's steps (same for all)"
    )
    p.add_argument("--runs", default="runs/ablate", help="one run folder per variant (resumable)")
    p.add_argument("--results", default="bench/results", help="folder of ablation.csv")
    p.add_argument(
        "--split", default="test_question", choices=["test_question", "test_voice", "train"]
    )
    p.add_argument("--limit", type=int, default=40, help="held-out dialogues per variant")
    p.add_argument("--corpus", default=None, help="corpus folder (default: the default corpus)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_ablate)


def cmd_ablate(args: argparse.Namespace) -> int:
    from drvoice_lab.benchmarks.ablation import AblationSettings, run_ablation

    if args.quiet:
        from transformers.utils import logging

        logging.disable_progress_bar()  # the per-save "Writing model shards" bars
    settings = AblationSettings(
        variants=tuple(v.strip() for v in args.variants.split(",") if v.strip()),
        recipe=args.recipe,
        scale=args.scale,
        runs=Path(args.runs),
        results=Path(args.results),
        split=args.split,
        limit=args.limit,
        corpus=args.corpus,
        progress=not args.quiet,
    )
    run_ablation(settings)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="drvoice-lab", description="DrVoice research workbench (parallel speech-text LLM)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _add_info(sub)
    _add_turn(sub)
    add_data_commands(sub)
    add_speech_commands(sub)
    add_training_commands(sub)
    _add_chat(sub)
    _add_eval(sub)
    add_eval_open_command(sub)
    _add_demo(sub)
    _add_bench(sub)
    _add_ablate(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    # Input, configuration and file problems (missing, unreadable, unwritable): a message
    # that names the file, exit code 2, not a traceback.
    except (ValueError, OSError) as err:
        print(f"drvoice-lab {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
