"""Speech tokenizers by name, and the fingerprint a model folder records of its tokenizer.

Names: ``None`` or ``"default"`` (the shipped mel codec), a folder holding a fitted mel codec,
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


def load_speech_tokenizer(name: str | Path | None = None) -> SpeechTokenizer:
    """The default tokenizer (``None`` or ``"default"``), a fitted codec directory, or
    ``"cosyvoice2"`` / ``"cosyvoice2:/path/to/CosyVoice2-0.5B"`` (needs those packages)."""
    if name is None or str(name) == "default":
        return MelCodecTokenizer.load(DEFAULT_DIR)
    text = str(name)
    if text == "cosyvoice2" or text.startswith("cosyvoice2:"):
        return CosyVoice2Tokenizer(text.partition(":")[2] or None)
    if Path(text).is_dir():
        return MelCodecTokenizer.load(text)
    raise ValueError(
        f"unknown speech tokenizer {text!r}: use 'default', 'cosyvoice2[:DIR]' or a directory "
        "holding a fitted codec"
    )


def speech_tokenizer_fingerprint(name: str | Path | None = None) -> str | None:
    """sha256 of a fitted codec's weights (the default one for ``None``/``"default"``), so a
    model can check it is decoded by the tokenizer it was trained with; None for external
    tokenizers (CosyVoice2), whose identity is their name."""
    text = "default" if name is None else str(name)
    folder = DEFAULT_DIR if text == "default" else Path(text)
    weights = folder / WEIGHTS_NAME
    if not weights.is_file():
        return None
    return hashlib.sha256(weights.read_bytes()).hexdigest()
