"""Small configurations and inputs shared by the tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

from drvoice_lab import DrVoiceConfig
from drvoice_lab.presets import decoder, whisper

TEXT_VOCAB = 64
SPEECH_CODEBOOK = 29  # odd on purpose


def micro_config(k: int = 5, mode: str = "concat", **overrides) -> DrVoiceConfig:
    """A dim-32 backbone and dim-16 SRH: every code path of the tiny preset, in milliseconds."""
    fields = dict(
        backbone_config=decoder(
            "qwen2", 32, 2, 4, 2, 64, vocab_size=TEXT_VOCAB, max_position_embeddings=512,
            tie_word_embeddings=True,
        ),  # fmt: skip
        srh_config=decoder("qwen2", 16, 2, 2, 1, 32, max_position_embeddings=2048),
        encoder_config=whisper(24, 1, 2, 32),
        group_size=k,
        grouping_mode=mode,
        speech_codebook_size=SPEECH_CODEBOOK,
        text_pad_token_id=0,
        text_eos_token_id=1,
    )
    fields.update(overrides)
    return DrVoiceConfig(**fields)


def random_batch(
    config: DrVoiceConfig,
    batch: int,
    positions: int,
    speech_len: int | None = None,
    generator: torch.Generator | None = None,
):
    """Random text ids (B, N) avoiding the specials, and random codebook speech ids."""
    if speech_len is None:
        speech_len = positions * config.group_size
    text = torch.randint(2, config.text_vocab_size, (batch, positions), generator=generator)
    speech = torch.randint(0, config.speech_codebook_size, (batch, speech_len), generator=generator)
    return text, speech


BIN = Path(sys.executable).parent  # the venv's scripts (drvoice-lab, torchrun)


def run_cli(*args: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run ``drvoice-lab ARGS`` as a user would; output captured as text."""
    return subprocess.run(
        [str(BIN / "drvoice-lab"), *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def small_corpus(folder: Path, dialogues: int, seed: int) -> Path:
    """A synthesized corpus of a few dialogues (a quarter of the questions held out)."""
    from drvoice_lab.data.corpus import CorpusConfig, build_corpus

    config = CorpusConfig(num_dialogues=dialogues, seed=seed, heldout_question_fraction=0.25)
    return build_corpus(folder, config, workers=1, progress=False)


def rows(*answered: tuple[str, str, str, str]) -> list[dict]:
    """answers.jsonl rows from (question, topic, split, answer) tuples."""
    return [dict(zip(("question", "topic", "split", "answer"), r, strict=True)) for r in answered]
