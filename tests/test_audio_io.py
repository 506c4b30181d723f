"""Audio I/O: every bad-input class gets its typed error; mono mix and resampling are right."""

from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf

from drvoice_lab.audio.io import (
    AudioLimits,
    AudioTooLongError,
    ClippedAudioError,
    EmptyAudioError,
    NonFiniteAudioError,
    SilentAudioError,
    UnreadableAudioError,
    load_audio,
    write_audio,
)


def tone(seconds=1.0, rate=16_000, freq=440.0, amp=0.3):
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize("rate", [8_000, 22_050, 44_100, 48_000, 96_000])
def test_resamples_to_16k_and_keeps_the_pitch(tmp_path, rate):
    path = tmp_path / "a.wav"
    sf.write(path, tone(1.0, rate, 440.0), rate)
    out = load_audio(path)
    assert out.dtype == np.float32 and abs(len(out) - 16_000) <= 1
    spectrum = np.abs(np.fft.rfft(out))
    assert abs(np.argmax(spectrum) * 16_000 / len(out) - 440.0) < 2.0


def test_stereo_is_mixed_to_mono(tmp_path):
    left, right = tone(freq=300.0), tone(freq=500.0)
    path = tmp_path / "stereo.flac"
    sf.write(path, np.stack([left, right], axis=1), 16_000)
    out = load_audio(path)
    np.testing.assert_allclose(out, (left + right) / 2, atol=1e-4)
    # A (channels, frames) array from a caller is understood as well.
    np.testing.assert_allclose(
        load_audio(np.stack([left, right]), 16_000), (left + right) / 2, atol=1e-6
    )


def test_int16_arrays_are_scaled():
    pcm = (tone() * 32767).astype(np.int16)
    np.testing.assert_allclose(load_audio(pcm, 16_000), tone(), atol=1e-4)


def test_ogg_and_flac_round_trip(tmp_path):
    for name in ("a.ogg", "a.flac"):
        sf.write(tmp_path / name, tone(0.5, 24_000), 24_000)
        assert abs(len(load_audio(tmp_path / name)) - 8000) <= 1


@pytest.mark.parametrize(
    "samples, error",
    [
        (np.zeros(0, np.float32), EmptyAudioError),
        (np.zeros(16_000, np.float32), SilentAudioError),
        (np.full(16_000, 1e-6, np.float32), SilentAudioError),
        (np.where(np.arange(16_000) == 5, np.nan, 0.1).astype(np.float32), NonFiniteAudioError),
        (np.where(np.arange(16_000) == 5, np.inf, 0.1).astype(np.float32), NonFiniteAudioError),
        (np.clip(tone(amp=3.0), -1, 1), ClippedAudioError),
    ],
)
def test_bad_arrays_get_typed_errors(samples, error):
    with pytest.raises(error):
        load_audio(samples, 16_000)


def test_too_long_is_refused_from_the_header(tmp_path):
    path = tmp_path / "long.wav"
    sf.write(path, tone(3.0), 16_000)
    with pytest.raises(AudioTooLongError, match="limit is 2 s"):
        load_audio(path, limits=AudioLimits(max_seconds=2.0))
    assert len(load_audio(path, limits=AudioLimits(max_seconds=5.0))) == 48_000
    with pytest.raises(AudioTooLongError):
        load_audio(tone(61.0), 16_000)  # default limit 60 s


@pytest.mark.parametrize(
    "content",
    [b"", b"this is not audio at all", b"RIFF\x10\x00\x00\x00WAVEfmt garbage", bytes(range(256))],
)
def test_non_audio_bytes_and_corrupted_files(tmp_path, content):
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(UnreadableAudioError):
        load_audio(path)
    with pytest.raises(UnreadableAudioError):
        load_audio(content)


def test_truncated_wav_and_missing_file(tmp_path):
    good = tmp_path / "good.wav"
    sf.write(good, tone(), 16_000)
    truncated = tmp_path / "truncated.wav"
    truncated.write_bytes(good.read_bytes()[:30])
    with pytest.raises(UnreadableAudioError):
        load_audio(truncated)
    with pytest.raises(UnreadableAudioError, match="no such file"):
        load_audio(tmp_path / "missing.wav")


@pytest.mark.parametrize("keep", [0.5, 0.99])
def test_wav_cut_short_is_refused_not_read_in_part(tmp_path, keep):
    """libsndfile reads the frames a cut file still has; the header says how many it should."""
    good = tmp_path / "good.wav"
    sf.write(good, tone(), 16_000)
    data = good.read_bytes()[: int(good.stat().st_size * keep)]
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data)
    assert 0 < sf.info(cut).frames < 16_000  # what soundfile alone would accept
    with pytest.raises(UnreadableAudioError, match=r"cut\.wav: truncated wav .*announces 1\.00 s"):
        load_audio(cut)
    with pytest.raises(UnreadableAudioError, match="truncated"):
        load_audio(data)


def test_streamed_wav_without_a_final_size_is_read(tmp_path):
    """A writer that could not seek back leaves the data size at its maximum: not a cut file."""
    path = tmp_path / "streamed.wav"
    sf.write(path, tone(), 16_000)
    raw = bytearray(path.read_bytes())
    at = raw.index(b"data") + 4
    raw[at : at + 4] = (0xFFFFFFFF).to_bytes(4, "little")
    path.write_bytes(bytes(raw))
    assert len(load_audio(path)) == 16_000


def test_a_folder_is_named_as_a_folder(tmp_path):
    with pytest.raises(UnreadableAudioError, match="is a directory"):
        load_audio(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file; see test_bad_input")
def test_unreadable_file_says_permission_denied(tmp_path):
    path = tmp_path / "locked.wav"
    sf.write(path, tone(), 16_000)
    path.chmod(0)
    with pytest.raises(UnreadableAudioError, match=r"locked\.wav: permission denied"):
        load_audio(path)


@pytest.mark.parametrize("channels", [1, 2])
def test_header_only_file_is_empty_not_nan(tmp_path, channels):
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros((0, channels), np.float32), 16_000)
    with pytest.raises(EmptyAudioError):
        load_audio(path)


def test_bytes_input_and_write(tmp_path):
    path = write_audio(tmp_path / "sub" / "out.wav", tone())
    np.testing.assert_allclose(load_audio(path.read_bytes()), tone(), atol=1e-4)
