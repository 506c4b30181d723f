"""The per-position timeline and the latency summary of an answered turn, and the latency
benchmark script (a 2-question run)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from drvoice_lab.inference.pipeline import VoiceChat
from drvoice_lab.inference.timeline import (
    MAX_COLUMNS,
    latency_markdown,
    latency_summary,
    timeline_html,
    timeline_rows,
)
from drvoice_lab.model_folder import tiny_checkpoint

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def turn():
    chat = VoiceChat.from_checkpoint(tiny_checkpoint())
    return chat, chat.respond(text="What is the capital of France?", mode="T2M")


def test_timeline_rows_are_the_two_channels_position_by_position(turn):
    chat, result = turn
    cfg = chat.config
    rows = timeline_rows(result, chat.tokenizer, cfg)
    assert len(rows) == result.timings["positions"] == len(result.text_channel)
    assert [r["start_s"] for r in rows[:3]] == [0.0, 0.2, 0.4]  # k = 5 at 25 Hz
    words = [r["text"] for r in rows if r["text"] not in ("·", "eos")]
    assert "".join(words).replace(" ", "") == result.full_text.replace(" ", "")
    codes = [int(s) for r in rows for s in r["speech"] if s.isdigit()]
    assert codes == result.speech_ids.tolist()  # specials shown by name, codes in order
    assert all(len(r["speech"]) == cfg.group_size for r in rows)


def test_timeline_html_has_a_column_per_position(turn):
    chat, result = turn
    html = timeline_html(result, chat.tokenizer, chat.config)
    shown = min(len(result.text_channel), MAX_COLUMNS)
    assert html.count("<tr>") == 4  # position, time, text, 25 Hz tokens
    assert html.split("<tr>")[1].count("<td") == shown


def test_latency_summary_adds_the_work_before_the_stream(turn):
    _, result = turn
    plain, later = latency_summary(result), latency_summary(result, received_at_offset=0.05)
    seconds = len(result.audio) / result.sample_rate
    assert plain["answer_audio"] == pytest.approx(seconds)
    assert plain["rtf"] == pytest.approx(result.timings["total"] / seconds)
    assert later["first_audio"] == pytest.approx(plain["first_audio"] + 0.05)
    assert "first audio" in latency_markdown(later) and "SRH" in latency_markdown(later)


def test_voice_latency_benchmark_runs(tmp_path):
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "voice_latency.py"), "--questions", "2",
         "--csv", str(tmp_path / "latency.csv")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert "first_audio_ms" in out.stdout and "rtf" in out.stdout
    lines = (tmp_path / "latency.csv").read_text().splitlines()
    assert len(lines) == 3 and lines[0].startswith("date,")
