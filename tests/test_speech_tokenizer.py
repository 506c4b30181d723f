"""The 25 Hz speech tokenizer: token rate, lengths, streaming == one-shot, save/load, CLI,
the CosyVoice2 adapter's missing-package error, and a tiny end-to-end fit.

Quality (ASR-WER) and speed live in bench/speech_tokenizer_quality.py, not here. The shipped
codec's fingerprint and outputs are pinned by checksums taken before the move to codec/.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import types

import numpy as np
import pytest
import soundfile as sf
import torch

from drvoice_lab.audio.io import AudioError, resample
from drvoice_lab.codec.cli import add_speech_commands
from drvoice_lab.codec.config import MelCodecConfig
from drvoice_lab.codec.cosyvoice import CosyVoice2Tokenizer, CosyVoiceUnavailable
from drvoice_lab.codec.decoder_training import TokenToMel
from drvoice_lab.codec.fitting import fit_default_tokenizer
from drvoice_lab.codec.interface import SpeechTokenizer, seconds_to_tokens
from drvoice_lab.codec.mel_codec import MelCodecTokenizer
from drvoice_lab.codec.registry import (
    DEFAULT_DIR,
    load_speech_tokenizer,
    speech_tokenizer_fingerprint,
)
from drvoice_lab.data.sentences import number_words, ordinal_words, spoken_qa_sentences

SENTENCES = [
    "What is seven plus five?",
    "The capital of France is Paris.",
    "Good morning, how can I help you today?",
]


@pytest.fixture(scope="module")
def tok() -> MelCodecTokenizer:
    torch.set_num_threads(2)
    return load_speech_tokenizer()


@pytest.fixture(scope="module")
def wavs() -> list[np.ndarray]:
    """Three sentences in the assistant's (hibari) voice, 16 kHz; lengths not multiples of 640."""
    from hibari import Hibari

    tts = Hibari()
    return [resample(tts(text, seed=0), 24_000, 16_000) for text in SENTENCES]


def test_default_is_a_1024_token_25hz_codec(tok):
    assert isinstance(tok, SpeechTokenizer)
    assert tok.token_rate == 25 and tok.vocab_size == 1024 and tok.sample_rate == 16_000
    assert tok.samples_per_token == 640
    assert tok.lookahead_tokens == 3


def test_encode_gives_exactly_ceil_seconds_times_25_tokens(tok, wavs):
    for wav in wavs:
        ids = tok.encode(wav)
        assert len(ids) == math.ceil(len(wav) / 16_000 * 25) == tok.num_tokens(len(wav))
        assert ids.dtype == np.int64 and ids.min() >= 0 and ids.max() < tok.vocab_size
    noise = np.random.default_rng(0).normal(0, 0.01, 16_000 * 2).astype(np.float32)
    for n, expected in [(1, 1), (639, 1), (640, 1), (641, 2), (16_000, 25), (32_000, 50)]:
        assert len(tok.encode(noise[:n])) == expected == seconds_to_tokens(n / 16_000)
    assert tok.encode(np.zeros(0, np.float32)).shape == (0,)


def test_speech_uses_many_codes_and_decode_has_25hz_length(tok, wavs):
    ids = tok.encode(wavs[2])
    assert len(np.unique(ids)) > 0.5 * len(ids) * 0.6  # not collapsed onto a few codes
    wav = tok.decode(ids)
    assert wav.dtype == np.float32 and np.isfinite(wav).all()
    assert len(wav) == len(ids) * tok.sample_rate // 25
    assert 0.01 < np.abs(wav).max() < 1.0
    assert tok.decode(np.zeros(0, np.int64)).shape == (0,)


def test_round_trip_mel_is_close_to_the_original(tok, wavs):
    """A quality sanity check: log-mel of decode(encode(x)) vs x, on speech frames."""
    for wav in wavs:
        ref = tok.features(wav).reshape(-1, 80)
        out = tok.features(tok.decode(tok.encode(wav))).reshape(-1, 80)
        random_ids = np.random.default_rng(0).integers(0, tok.vocab_size, len(ref) // 4)
        noise = tok.features(tok.decode(random_ids)).reshape(-1, 80)
        speech = ref.max(1) > -6
        err = np.abs(out - ref)[speech].mean()
        assert err < 0.6
        assert err < 0.5 * np.abs(noise - ref)[speech].mean()


@pytest.mark.parametrize("chunk_tokens", [1, 4, 15, 1000])
def test_chunked_decode_equals_one_shot(tok, wavs, chunk_tokens):
    ids = tok.encode(wavs[0])
    whole = tok.decode(ids)
    chunks = list(tok.decode_stream(ids, chunk_tokens=chunk_tokens))
    assert [len(c) for c in chunks[:-1]] == [chunk_tokens * 640] * (len(chunks) - 1)
    np.testing.assert_array_equal(np.concatenate(chunks), whole)  # bit for bit


def test_first_chunk_needs_only_lookahead_tokens(tok, wavs):
    """Chunk i is fixed once chunk_tokens * (i + 1) + lookahead tokens are known."""
    ids = tok.encode(wavs[1])
    first = next(tok.decode_stream(ids, chunk_tokens=10))
    known = ids[: 10 + tok.lookahead_tokens]
    stream = tok.stream()
    early = stream.push(known)
    assert len(early) >= 10 * 640
    np.testing.assert_array_equal(early[: 10 * 640], first)
    with pytest.raises(ValueError, match="lookahead"):
        next(tok.decode_stream(ids, lookahead=tok.lookahead_tokens - 1))


def test_push_in_ragged_pieces_equals_one_shot(tok, wavs):
    ids = tok.encode(wavs[2])
    stream, parts, start = tok.stream(), [], 0
    for size in [1, 2, 5, 3, 11, 7, 1, 30]:
        parts.append(stream.push(ids[start : start + size]))
        start += size
    parts.append(stream.push(ids[start:]))
    parts.append(stream.flush())
    np.testing.assert_array_equal(np.concatenate(parts), tok.decode(ids))


@pytest.mark.parametrize(
    "bad", [np.array([0, 1024]), np.array([-1, 3]), np.array([0.5, 1.0]), np.zeros((2, 3), int)]
)
def test_bad_ids_raise_value_error(tok, bad):
    with pytest.raises(ValueError, match="speech ids"):
        tok.decode(bad)


def test_bad_audio_raises_value_error(tok):
    with pytest.raises(ValueError, match="mono"):
        tok.encode(np.zeros((100, 2), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        tok.encode(np.array([0.0, np.nan], np.float32))


def test_save_load_round_trip(tok, wavs, tmp_path):
    tok.save(tmp_path / "codec")
    assert sorted(p.name for p in (tmp_path / "codec").iterdir()) == [
        "config.json",
        "model.safetensors",
    ]
    again = load_speech_tokenizer(tmp_path / "codec")
    assert again.config == tok.config
    ids = tok.encode(wavs[0])
    np.testing.assert_array_equal(again.encode(wavs[0]), ids)
    np.testing.assert_array_equal(again.decode(ids), tok.decode(ids))


def test_shipped_artifact_is_small_and_pickle_free():
    files = sorted(p.name for p in DEFAULT_DIR.iterdir())
    assert files == ["config.json", "model.safetensors"]
    assert sum(p.stat().st_size for p in DEFAULT_DIR.iterdir()) < 15 * 2**20


def test_unknown_tokenizer_name_is_a_value_error():
    with pytest.raises(ValueError, match="unknown speech tokenizer"):
        load_speech_tokenizer("no-such-codec")


# --------------------------------------------------------------------------- pinned outputs

# Checksums of the shipped codec and its fitting sentences, taken before the codec's code moved
# from audio/ to codec/. Model folders record the fingerprint; the rest pins behaviour. The
# decode checksum is exact floats: a CPU whose numpy rounds exp/FFT differently would differ.
SHIPPED_SHA256 = "a09991d0b31eab17f4c33b4a6a5520a56db14bfdd5a7c04227b406f8e9dd8338"
FIXED_IDS_DECODE_SHA256 = "40abb54178763a05affc74c2f02550827985ad9f888711f1f11448e7f9a70e73"
NOISE_ENCODE_SHA256 = "f4ab874a9bf46fb5b8d4fb0df33f2c140bd6e9b83842c746548be0875b878945"
FITTED_SENTENCES_SHA256 = "ba863aed57c2f7364608cb301e352024a92dfe0d3c2367dbb1af1dbe4294212b"


def _sha256(data: np.ndarray | str) -> str:
    raw = data.encode() if isinstance(data, str) else np.ascontiguousarray(data).tobytes()
    return hashlib.sha256(raw).hexdigest()


def test_shipped_codec_fingerprint_is_unchanged():
    assert speech_tokenizer_fingerprint() == speech_tokenizer_fingerprint("default")
    assert speech_tokenizer_fingerprint() == SHIPPED_SHA256


def test_fixed_ids_decode_to_the_pinned_samples(tok):
    ids = (np.arange(60) * 37 + 11) % 1024
    wav = tok.decode(ids)
    assert wav.dtype == np.float32 and len(wav) == 60 * 640
    assert _sha256(wav) == FIXED_IDS_DECODE_SHA256


def test_encode_gives_the_pinned_ids(tok):
    rng = np.random.default_rng(0)
    wav = rng.normal(0, 0.05, 48_000) * (1 + np.sin(np.arange(48_000) / 700))
    assert _sha256(tok.encode(wav.astype(np.float32))) == NOISE_ENCODE_SHA256


def test_fitting_sentences_are_those_the_shipped_codec_was_fitted_on():
    """A refit and the codec benchmark's held-out split both rely on this list."""
    info = json.loads((DEFAULT_DIR / "config.json").read_text())["info"]
    sentences = spoken_qa_sentences(info["num_sentences"], seed=info["seed"])
    assert _sha256("\n".join(sentences)) == FITTED_SENTENCES_SHA256


# --------------------------------------------------------------------------- CLI


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="drvoice-lab")
    add_speech_commands(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_cli_encode_decode_round_trip(wavs, tmp_path, capsys):
    stereo_44k = resample(wavs[0], 16_000, 44_100)
    sf.write(tmp_path / "in.wav", np.stack([stereo_44k, 0.5 * stereo_44k], 1), 44_100)
    args = _parse("speech", "encode", str(tmp_path / "in.wav"), "--out", str(tmp_path / "i.npy"))
    assert args.func(args) == 0
    ids = np.load(tmp_path / "i.npy")
    assert ids.dtype == np.int64 and len(ids) == math.ceil(len(stereo_44k) / 44_100 * 25)
    args = _parse("speech", "decode", str(tmp_path / "i.npy"), "--out", str(tmp_path / "o.wav"))
    assert args.func(args) == 0
    out, rate = sf.read(tmp_path / "o.wav")
    assert rate == 16_000 and len(out) == len(ids) * 640
    assert "tokens" in capsys.readouterr().out


def test_cli_bad_input_exits_2_with_a_message(tmp_path, capsys):
    (tmp_path / "junk.wav").write_bytes(b"not audio at all")
    np.save(tmp_path / "bad.npy", np.array([5000, 1]))
    np.save(tmp_path / "float.npy", np.array([0.5]))
    cases = [
        ("encode", tmp_path / "junk.wav"),
        ("encode", tmp_path / "missing.wav"),
        ("decode", tmp_path / "bad.npy"),
        ("decode", tmp_path / "float.npy"),
        ("decode", tmp_path / "missing.npy"),
    ]
    for command, path in cases:
        args = _parse("speech", command, str(path), "--out", str(tmp_path / "o"))
        assert args.func(args) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "Traceback" not in err
    assert issubclass(AudioError, ValueError)


# --------------------------------------------------------------------------- CosyVoice2


def test_cosyvoice_without_packages_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "s3tokenizer", None)  # import fails even if installed
    with pytest.raises(CosyVoiceUnavailable, match="pip install s3tokenizer") as err:
        load_speech_tokenizer("cosyvoice2")
    assert isinstance(err.value, ImportError)


def test_cosyvoice_without_weights_says_where_to_put_them(monkeypatch, tmp_path):
    for name in ("s3tokenizer", "cosyvoice"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    with pytest.raises(CosyVoiceUnavailable, match="CosyVoice2-0.5B") as err:
        CosyVoice2Tokenizer(tmp_path)
    assert "speech_tokenizer_v2.onnx" in str(err.value) and str(tmp_path) in str(err.value)


def test_cli_reports_missing_cosyvoice_as_exit_2(wavs, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "s3tokenizer", None)
    sf.write(tmp_path / "in.wav", wavs[0], 16_000)
    args = _parse(
        "speech", "encode", str(tmp_path / "in.wav"), "--out", str(tmp_path / "i.npy"),
        "--tokenizer", "cosyvoice2",
    )  # fmt: skip
    assert args.func(args) == 2
    assert "s3tokenizer" in capsys.readouterr().err


# --------------------------------------------------------------------------- fitting


def test_sentences_are_deterministic_distinct_and_spell_numbers():
    a = spoken_qa_sentences(200, seed=3)
    assert a == spoken_qa_sentences(200, seed=3) and len(set(a)) == 200
    assert not any(ch.isdigit() for s in a for ch in s)
    held = spoken_qa_sentences(50, seed=4, exclude=a)
    assert not set(held) & set(a)
    assert number_words(0) == "zero" and number_words(115) == "one hundred fifteen"
    assert number_words(90) == "ninety" and ordinal_words(21) == "twenty first"
    assert ordinal_words(30) == "thirtieth"


@pytest.mark.parametrize("centered", [0, 1, 2])
def test_numpy_inference_net_matches_the_torch_training_net(centered):
    cfg = MelCodecConfig(vocab_size=29, channels=16, layers=3, centered_layers=centered)
    torch.manual_seed(0)
    net = TokenToMel(cfg)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.3)
    net.codebook.normal_()
    net.std.uniform_(0.5, 2.0)
    ids = np.random.default_rng(0).integers(0, 29, 23)
    expected = net(torch.from_numpy(ids)[None])[0].detach().numpy()  # (T, D)
    got = MelCodecTokenizer(cfg, net.numpy_weights()).net(ids)
    np.testing.assert_allclose(got, expected, atol=2e-5, rtol=1e-5)
    assert cfg.right_context == centered and cfg.left_context == 2 * 3 - centered
    # receptive field: changing token 11 changes outputs 11 - right .. 11 + left only
    other = ids.copy()
    other[11] = (other[11] + 1) % 29
    changed = np.abs(MelCodecTokenizer(cfg, net.numpy_weights()).net(other) - got).max(1) > 0
    assert np.flatnonzero(changed).tolist() == list(range(11 - centered, 12 + 6 - centered))


def test_tiny_fit_runs_end_to_end(tmp_path):
    out = tmp_path / "tiny"
    tok = fit_default_tokenizer(
        out, vocab_size=16, num_sentences=6, kmeans_iters=2, steps=3, progress=False,
        channels=16, layers=2,
    )  # fmt: skip
    again = load_speech_tokenizer(out)
    assert again.vocab_size == 16 and again.info["num_sentences"] == 6
    wav = np.random.default_rng(0).normal(0, 0.05, 4000).astype(np.float32)
    ids = again.encode(wav)
    assert len(ids) == 7 and ids.max() < 16
    assert len(again.decode(ids)) == 7 * 640
    np.testing.assert_array_equal(ids, tok.encode(wav))
