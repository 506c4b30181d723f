"""Speech tokenizers by name, and the fingerprint a model folder records of its tokenizer.

Names: ``None`` or ``"default"`` (the shipped mel codec, K = 1024, fitted on the task world's
sentences), ``"open"`` (the shipped mel codec for open text, K = 4096, fitted on the base LLM's
answers to the training open questions: DrVoice-smol's), a folder holding a fitted mel codec,
or ``"cosyvoice2"`` / ``"cosyvoice2:/path/to/CosyVoice2-0.5B"``. The lookup lives here, not in
the interface, so that adapters can import the interface without an import circle.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from drvoice_lab.codec.cosyvoice import CosyVoice2Tokenizer
from drvoice_lab.codec.interface import SpeechTokenizer
from drvoice_lab.codec.mel_codec import WEIGHTS_NAME, MelCodecTokenizer
from drvoice_lab.paths import ASSETS_DIR

DEFAULT_DIR = ASSETS_DIR / "speech_tokenizer"
SHIPPED = {"default": DEFAULT_DIR, "open": ASSETS_DIR / "speech_tokenizer_open"}


def load_speech_tokenizer(name: str | Path | None = None) -> SpeechTokenizer:
    """A shipped tokenizer (``None``/``"default"``, ``"open"``), a fitted codec directory, or
    ``"cosyvoice2"`` / ``"cosyvoice2:/path/to/CosyVoice2-0.5B"`` (needs those packages)."""
    text = "default" if name is None else str(name)
    if text in SHIPPED:
        return MelCodecTokenizer.load(SHIPPED[text])
    if text == "cosyvoice2" or text.startswith("cosyvoice2:"):
        return CosyVoice2Tokenizer(text.partition(":")[2] or None)
    if Path(text).is_dir():
        return MelCodecTokenizer.load(text)
    raise ValueError(
        f"unknown speech tokenizer {text!r}: use 'default', 'open', 'cosyvoice2[:DIR]' or a "
        "directory holding a fitted codec"
    )


def speech_tokenizer_fingerprint(name: str | Path | None = None) -> str | None:
    """sha256 of a fitted codec's weights (the default one for ``None``/``"default"``), so a
    model can check it is decoded by the tokenizer it was trained with; None for external
    tokenizers (CosyVoice2), whose identity is their name."""
    text = "default" if name is None else str(name)
    folder = SHIPPED.get(text, Path(text))
    weights = folder / WEIGHTS_NAME
    if not weights.is_file():
        return None
    return hashlib.sha256(weights.read_bytes()).hexdigest()
