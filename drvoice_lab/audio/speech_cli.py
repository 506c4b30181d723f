"""``drvoice-lab speech encode|decode``: wav <-> 25 Hz speech token ids (.npy).

drvoice-lab speech encode IN.wav --out ids.npy [--tokenizer NAME]
drvoice-lab speech decode ids.npy --out OUT.wav [--tokenizer NAME]
drvoice-lab speech say "What is two plus two?" --out question.wav [--voice SPEC]

NAME: 'default' (the embedded mel codec), a directory holding a fitted codec, or
'cosyvoice2[:DIR]'. Any audio the audio layer reads is accepted (any rate, stereo).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

TOKENIZER_HELP = "'default', a fitted codec directory, or 'cosyvoice2[:DIR]'"


def add_speech_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``speech encode`` and ``speech decode`` to a top-level parser's subparsers."""
    speech = subparsers.add_parser("speech", help="wav <-> 25 Hz speech token ids")
    sub = speech.add_subparsers(dest="speech_command", required=True)

    enc = sub.add_parser("encode", help="wav -> token ids (.npy, int64, 25 per second)")
    enc.add_argument("input", type=Path, help="audio file (wav, flac, ogg; any rate)")
    enc.add_argument("--out", type=Path, required=True, help="where to write ids.npy")
    enc.add_argument("--tokenizer", default=None, help=TOKENIZER_HELP)
    enc.set_defaults(func=cmd_speech_encode)

    dec = sub.add_parser("decode", help="token ids (.npy) -> wav")
    dec.add_argument("input", type=Path, help="ids.npy written by `speech encode`")
    dec.add_argument("--out", type=Path, required=True, help="where to write the wav")
    dec.add_argument("--tokenizer", default=None, help=TOKENIZER_HELP)
    dec.set_defaults(func=cmd_speech_decode)

    say = sub.add_parser("say", help="text -> wav with one of the corpus TTS voices")
    say.add_argument("text", help="what to say")
    say.add_argument("--out", type=Path, required=True, help="where to write the wav (16 kHz)")
    say.add_argument(
        "--voice",
        default="espeak:en-us+m5@140",
        help="'hibari@SPEED' or 'espeak:NAME@WPM' (default: a user voice held out of training)",
    )
    say.set_defaults(func=cmd_speech_say)


def cmd_speech_encode(args: argparse.Namespace) -> int:
    from drvoice_lab.audio import load_audio

    def run() -> None:
        wav = load_audio(args.input)  # validated float32 mono 16 kHz
        ids = _tokenizer(args).encode(wav)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        np.save(args.out, ids)
        print(f"{args.input}: {len(wav) / 16_000:.2f} s -> {len(ids)} tokens -> {args.out}")

    return _guard(run)


def cmd_speech_decode(args: argparse.Namespace) -> int:
    from drvoice_lab.audio import write_audio

    def run() -> None:
        ids = read_ids(args.input)
        tok = _tokenizer(args)
        wav = tok.decode(ids)
        write_audio(args.out, wav, tok.sample_rate)
        seconds = len(wav) / tok.sample_rate
        print(f"{args.input}: {len(ids)} tokens -> {seconds:.2f} s -> {args.out}")

    return _guard(run)


def cmd_speech_say(args: argparse.Namespace) -> int:
    from drvoice_lab.audio import write_audio
    from drvoice_lab.data.voices import Voice

    def run() -> None:
        if not args.text.strip():
            raise ValueError("nothing to say: the text is empty")
        wav = Voice.parse(args.voice).synthesize(args.text)
        write_audio(args.out, wav, 16_000)
        print(f"{args.voice}: {len(wav) / 16_000:.2f} s -> {args.out}")

    return _guard(run)


def read_ids(path: Path) -> np.ndarray:
    """Load a 1-D integer .npy (no pickles) or raise ValueError saying what is wrong."""
    if not Path(path).is_file():
        raise ValueError(f"no such file: {path}")
    try:
        ids = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise ValueError(f"cannot read {path} as a .npy array of token ids ({err})") from err
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"{path} must hold a 1-D integer array, got {ids.dtype} {ids.shape}")
    return ids


def _tokenizer(args: argparse.Namespace):
    from drvoice_lab.audio.speech_tokenizer import load_speech_tokenizer

    return load_speech_tokenizer(args.tokenizer)


def _guard(run) -> int:
    """Run a command; bad input or a missing backend -> one-line message and exit code 2."""
    from drvoice_lab.audio.cosyvoice import CosyVoiceUnavailable

    try:
        run()
    except (ValueError, FileNotFoundError, CosyVoiceUnavailable) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
