"""The representation analysis behind notebooks/03: rates, views, the CTC probe, labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import micro_config

from drvoice_lab import DrVoiceModel
from drvoice_lab.analysis import representations as rep
from drvoice_lab.data.corpus import Dialogue, Turn


def test_rates_count_tokens_and_positions_per_second():
    class Words:  # one token per word
        def encode(self, text):
            return text.split()

    turn = Turn("f", "one two three four", "five six", "v", "u", "a", 2.0, 0.5)
    stats = rep.rate_statistics([Dialogue("d", "train", [turn])], Words(), ks=(1, 5))
    np.testing.assert_allclose(stats["text tokens/s"], [2.0, 4.0])
    np.testing.assert_allclose(stats["positions/s k=1"], [25.0, 26.0])  # 13 tokens in 0.5 s
    np.testing.assert_allclose(stats["positions/s k=5"], [5.0, 6.0])  # a partial last group


def test_views_have_one_row_per_token_or_per_group():
    torch.manual_seed(0)
    model = DrVoiceModel(micro_config(5)).eval()
    views = rep.views(model, torch.randint(0, 20, (12,)))
    assert views["25 Hz tokens"].shape == (12, model.config.speech_embed_dim)
    assert views["5 Hz grouped"].shape == (3, model.config.hidden_size)
    assert views["backbone hidden"].shape == (3, model.config.hidden_size)


def _probe_data(informative: bool, n: int = 60, seed: int = 0):
    """Sequences of 2-4 tokens, no token twice in a row (identical frames could not show a
    CTC blank between them); each token gets 3 frames. Informative frames are a noisy code
    of the token; uninformative ones are noise."""
    rng = np.random.default_rng(seed)
    codes = rng.normal(size=(6, 16))
    features, targets = [], []
    for _ in range(n):
        tokens = rng.choice(6, size=rng.integers(2, 5), replace=False).tolist()
        frames = np.repeat(codes[tokens] if informative else rng.normal(size=(len(tokens), 16)),
                           3, axis=0)  # fmt: skip
        features.append(torch.tensor(frames + 0.1 * rng.normal(size=frames.shape)).float())
        targets.append([100 + t for t in tokens])
    return features, targets, [i % 4 == 0 for i in range(n)]


def test_ctc_probe_reads_informative_features_and_not_noise():
    good = rep.ctc_probe(*_probe_data(True), steps=200)
    noise = rep.ctc_probe(*_probe_data(False), steps=200)
    assert good["held_out"] == 15 and good["train"] == 45
    assert good["token_accuracy"] > 0.9, good
    assert noise["token_accuracy"] < 0.5, noise
    assert good["positions_per_token"] == pytest.approx(3.0)


def test_position_words_and_word_separation():
    words = [("three", 0.0, 0.5), ("times", 0.5, 1.0)]
    assert rep.position_words(words, 6, 0.2) == ["three", "three", "times", "times", "times", ""]
    x = torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0]])
    sep = rep.word_separation(x, ["a", "a", "b", "b"])
    assert sep["same word"] > 0.99 and sep["different words"] < 0.2
