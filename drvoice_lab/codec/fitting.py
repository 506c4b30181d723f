"""Fit the default 25 Hz mel codec on the project's own hibari-voice audio.

    python -m drvoice_lab.codec.fitting --out drvoice_lab/assets/speech_tokenizer

Steps: sentences from ``drvoice_lab.data.sentences`` (spoken QA over the task world, widened,
plus everyday sentences for phonetic variety), deterministic from a seed -> hibari TTS at a few
speeds -> 16 kHz -> stacked log-mel per 25 Hz token -> k-means codebook -> train the token ->
mel conv decoder on the codebook's own encodings -> save (safetensors + json). About 11 minutes
on a shared 2-core CPU.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from drvoice_lab.codec.config import MelCodecConfig
from drvoice_lab.codec.decoder_training import TokenToMel, train_decoder
from drvoice_lab.codec.kmeans import kmeans
from drvoice_lab.codec.mel_codec import MelCodecTokenizer, nearest
from drvoice_lab.data.sentences import spoken_qa_sentences
from drvoice_lab.data.voices import Voice


def synthesize(
    sentences: Sequence[str], seed: int = 0, speeds: Sequence[float] = (1.0,), progress=True
) -> list[np.ndarray]:
    """The assistant's (hibari) voice -> float32 16 kHz; one speed per sentence, by seed."""
    rng = random.Random(seed)
    out = []
    for i, text in enumerate(tqdm(sentences, desc="hibari", disable=not progress)):
        voice = Voice("hibari", "heart", rng.choice(list(speeds)))
        out.append(voice.synthesize(text, seed=seed + i))
    return out


def fit_tokenizer(
    wavs: Sequence[np.ndarray],
    config: MelCodecConfig,
    kmeans_iters: int = 20,
    steps: int = 1500,
    seed: int = 0,
    progress: bool = True,
) -> MelCodecTokenizer:
    """Fit codebook and decoder on 16 kHz audio."""
    torch.manual_seed(seed)
    net = TokenToMel(config)
    untrained = MelCodecTokenizer(config, net.numpy_weights())
    feats = [untrained.features(w) for w in wavs]  # each (T, D)
    x = torch.from_numpy(np.concatenate(feats))  # (N, D)
    net.codebook.copy_(kmeans(x, config.vocab_size, kmeans_iters, seed, progress))
    net.mean.copy_(x.mean(0))
    net.std.copy_(x.std(0).clamp_min(1e-3))
    codebook = net.codebook.numpy()
    ids = [nearest(f, codebook) for f in feats]  # exactly what encode will give
    train_decoder(net, ids, feats, steps=steps, seed=seed, progress=progress)
    return MelCodecTokenizer(config, net.numpy_weights())


def fit_default_tokenizer(
    out_dir: str | Path,
    vocab_size: int = 1024,
    num_sentences: int = 2000,
    speeds: Sequence[float] = (0.9, 1.0, 1.1),
    kmeans_iters: int = 20,
    steps: int = 1500,
    seed: int = 0,
    progress: bool = True,
    threads: int | None = 1,
    **config_overrides,
) -> MelCodecTokenizer:
    """Synthesize the corpus, fit, save to ``out_dir`` and return the tokenizer.

    ``threads``: torch threads while fitting (restored after; None keeps the setting). 1 is
    the default because on a shared 2-core machine torch's OpenMP workers spin-wait for a
    descheduled peer and a training step gets ~20x slower with 2 threads.
    """
    t0 = time.perf_counter()
    config = MelCodecConfig(vocab_size=vocab_size, **config_overrides)
    sentences = spoken_qa_sentences(num_sentences, seed)
    wavs = synthesize(sentences, seed, speeds, progress)
    before = torch.get_num_threads()
    torch.set_num_threads(threads or before)
    try:
        tok = fit_tokenizer(wavs, config, kmeans_iters, steps, seed, progress)
    finally:
        torch.set_num_threads(before)
    tok.info = {
        "corpus": "hibari-tts voice 'heart', spoken-QA and everyday template sentences",
        "num_sentences": num_sentences,
        "speeds": list(speeds),
        "seconds_of_audio": round(sum(len(w) for w in wavs) / 16_000, 1),
        "seed": seed,
        "kmeans_iters": kmeans_iters,
        "decoder_steps": steps,
        "fit_seconds": round(time.perf_counter() - t0, 1),
        "torch_threads": threads or before,
    }
    tok.save(out_dir)
    return tok


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", required=True, help="directory to write config.json + weights")
    p.add_argument("--vocab-size", type=int, default=1024)
    p.add_argument("--sentences", type=int, default=2000)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--kmeans-iters", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: see docstring)")
    args = p.parse_args(argv)
    tok = fit_default_tokenizer(
        args.out,
        args.vocab_size,
        args.sentences,
        kmeans_iters=args.kmeans_iters,
        steps=args.steps,
        seed=args.seed,
        threads=args.threads,
    )
    print(f"saved to {args.out}: {tok.info}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
