"""Silero VAD trimming of recorded questions (the model ships in the silero-vad wheel)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("silero_vad", reason="the demo extra is not installed")

from drvoice_lab.audio.io import MODEL_SAMPLE_RATE, SilentAudioError  # noqa: E402
from drvoice_lab.audio.vad import PAD_SECONDS, speech_spans, trim_silence  # noqa: E402
from drvoice_lab.data.voices import Voice  # noqa: E402

RATE = MODEL_SAMPLE_RATE


@pytest.fixture(scope="module")
def speech():
    return Voice.parse("hibari").synthesize("Which city is the capital of Japan?")


def test_trims_room_noise_around_the_speech(speech):
    rng = np.random.default_rng(0)
    lead, tail = int(1.5 * RATE), int(1.0 * RATE)
    noise = lambda n: (0.003 * rng.standard_normal(n)).astype(np.float32)  # noqa: E731
    recording = np.concatenate([noise(lead), speech, noise(tail)])
    result = trim_silence(recording)
    # Where the clean utterance's speech starts and ends (TTS adds its own short pauses):
    spoken = speech_spans(speech)
    start, end = (lead + spoken[0][0]) / RATE, (lead + spoken[-1][1]) / RATE
    assert result.start_s == pytest.approx(start - PAD_SECONDS, abs=0.1)
    assert result.end_s == pytest.approx(end + PAD_SECONDS, abs=0.15)
    assert result.original_s == pytest.approx(len(recording) / RATE)


def test_no_speech_is_a_clear_error():
    hum = (0.2 * np.sin(2 * np.pi * 50 * np.arange(2 * RATE) / RATE)).astype(np.float32)
    with pytest.raises(SilentAudioError, match="no speech detected"):
        trim_silence(hum)


def test_vad_leaves_torch_threads_alone():
    """silero_vad's import sets torch's thread count to 1; the first VAD call, in a fresh
    process, must leave it as it was."""
    code = (
        "import numpy as np, torch; torch.set_num_threads(2);"
        "from drvoice_lab.audio.vad import speech_spans;"
        "speech_spans(np.zeros(16000, np.float32)); print(torch.get_num_threads())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-1] == "2"
