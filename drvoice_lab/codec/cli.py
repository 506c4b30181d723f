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
    from drvoice_lab.audio.io import check_writable, load_audio

    def run() -> None:
        wav = load_audio(args.input)  # validated float32 mono 16 kHz
        check_writable(args.out)  # before the work, not after
        ids = _tokenizer(args).encode(wav)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        np.save(args.out, ids)
        print(f"{args.input}: {len(wav) / 16_000:.2f} s -> {len(ids)} tokens -> {args.out}")

    return _guard(run)


def cmd_speech_decode(args: argparse.Namespace) -> int:
    from drvoice_lab.audio.io import check_audio_out, write_audio

    def run() -> None:
        ids = read_ids(args.input)
        tok = _tokenizer(args)
        try:
            ids = tok.check_ids(ids)
        except ValueError as err:  # ids of another codebook
            raise ValueError(f"{args.input}: {err}; encode with the same --tokenizer") from err
        check_audio_out(args.out)
        wav = tok.decode(ids)
        write_audio(args.out, wav, tok.sample_rate)
        seconds = len(wav) / tok.sample_rate
        print(f"{args.input}: {len(ids)} tokens -> {seconds:.2f} s -> {args.out}")

    return _guard(run)


def cmd_speech_say(args: argparse.Namespace) -> int:
    from drvoice_lab.audio.io import check_audio_out, write_audio
    from drvoice_lab.data.voices import Voice

    def run() -> None:
        if not args.text.strip():
            raise ValueError("nothing to say: the text is empty")
        check_audio_out(args.out)
        wav = Voice.parse(args.voice).synthesize(args.text)
        write_audio(args.out, wav, 16_000)
        print(f"{args.voice}: {len(wav) / 16_000:.2f} s -> {args.out}")

    return _guard(run)


NPY_MAGIC = b"\x93NUMPY"


def read_ids(path: Path) -> np.ndarray:
    """Load a non-empty 1-D integer .npy (never a pickle) or raise ValueError saying what is
    wrong and what to do."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no such file: {path}" if not path.exists() else f"{path} is a folder")
    hint = "write token ids with `drvoice-lab speech encode` or numpy.save"
    try:
        with open(path, "rb") as handle:
            magic = handle.read(len(NPY_MAGIC))
    except OSError as err:
        raise ValueError(f"cannot read {path}: {err.strerror or err}") from err
    # Without this, NumPy takes any other file for a pickle and suggests loading it unsafely.
    if magic != NPY_MAGIC:
        raise ValueError(f"{path} is not a .npy file (no NumPy header); {hint}")
    try:
        ids = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        detail = "it holds Python objects" if "allow_pickle" in str(err) else str(err)
        raise ValueError(f"cannot read {path} as token ids ({detail}); {hint}") from err
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(
            f"{path} must hold a 1-D integer array, got {ids.dtype} {ids.shape}; {hint}"
        )
    if ids.size == 0:
        raise ValueError(f"{path} holds no token ids (an empty array): nothing to decode")
    return ids


def _tokenizer(args: argparse.Namespace):
    from drvoice_lab.codec.registry import load_speech_tokenizer

    return load_speech_tokenizer(args.tokenizer)


def _guard(run) -> int:
    """Run a command; bad input or a missing backend -> one-line message and exit code 2."""
    from drvoice_lab.codec.cosyvoice import CosyVoiceUnavailable

    try:
        run()
    except (ValueError, OSError, CosyVoiceUnavailable) as err:  # OSError: e.g. a full disk
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
