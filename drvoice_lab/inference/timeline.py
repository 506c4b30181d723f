"""Readable views of one answered turn: the text / 5 Hz / 25 Hz timeline and the latency line.

The timeline shows, for every generated 5 Hz position (200 ms at k = 5), the text token the
backbone wrote and the k speech tokens the SRH ungrouped from the same hidden state: the
paper's parallel channels, side by side.
"""

from __future__ import annotations

import html

import numpy as np

from drvoice_lab.config import DrVoiceConfig
from drvoice_lab.data.text_tokenizer import TextTokenizer
from drvoice_lab.inference.pipeline import TurnResult

MAX_COLUMNS = 60  # longer answers are cut (with a note) to keep the page light
# The per-stage clocks of ``TurnResult.timings`` (seconds), in pipeline order, and their names.
STAGES = {
    "encoder": "encoder",
    "prefill": "prefill",
    "backbone_steps": "backbone steps",
    "srh": "SRH",
    "detokenizer": "detokenizer",
}


def speech_label(token: int, config: DrVoiceConfig) -> str:
    """A 25 Hz id as shown in the timeline: codebook ids as numbers, specials by name."""
    if token < config.speech_codebook_size:
        return str(token)
    return {
        config.speech_pad_token_id: "·",  # pad doubles as silence
        config.speech_eos_token_id: "eos",
        config.speech_bos_token_id: "bos",
    }.get(token, f"<{token}>")


def text_label(token: int, tokenizer: TextTokenizer, config: DrVoiceConfig) -> str:
    if token == config.text_pad_token_id:
        return "·"
    if token == config.text_eos_token_id:
        return "eos"
    return tokenizer.decode([token]) or f"<{token}>"


def timeline_rows(
    result: TurnResult, tokenizer: TextTokenizer, config: DrVoiceConfig
) -> list[dict]:
    """One dict per generated position: index, start time (s), text label, speech labels."""
    if result.text_channel is None:
        return []
    seconds_per_position = config.group_size / config.speech_token_rate
    speech = result.speech_channel if result.speech_channel is not None else np.zeros((0, 0))
    rows = []
    for i, token in enumerate(result.text_channel.tolist()):
        group = speech[i].tolist() if i < len(speech) else []
        rows.append(
            {
                "position": i,
                "start_s": round(i * seconds_per_position, 3),
                "text": text_label(int(token), tokenizer, config),
                "speech": [speech_label(int(t), config) for t in group],
            }
        )
    return rows


def timeline_html(result: TurnResult, tokenizer: TextTokenizer, config: DrVoiceConfig) -> str:
    """An HTML table: a column per 5 Hz position, rows for time, text and 25 Hz tokens."""
    rows = timeline_rows(result, tokenizer, config)
    if not rows:
        return "<p>No answer yet.</p>"
    shown = rows[:MAX_COLUMNS]
    cell = "padding:2px 4px;border:1px solid #ccc;text-align:center;white-space:nowrap"

    def line(title: str, values: list[str]) -> str:
        cells = "".join(f'<td style="{cell}">{v}</td>' for v in values)
        return f'<tr><th style="{cell};text-align:left">{title}</th>{cells}</tr>'

    k = config.group_size
    parts = [
        line("5 Hz position", [str(r["position"]) for r in shown]),
        line("time (s)", [f"{r['start_s']:.1f}" for r in shown]),
        line("text token", [f"<b>{html.escape(r['text'])}</b>" for r in shown]),
    ]
    if any(r["speech"] for r in shown):
        parts.append(
            line(
                f"25 Hz tokens (k={k})",
                ["<br>".join(html.escape(s) for s in r["speech"]) for r in shown],
            )
        )
    more = len(rows) - len(shown)
    note = f"<p>… {more} more positions not shown.</p>" if more > 0 else ""
    return (
        '<div id="timeline" style="overflow-x:auto;font-family:monospace;font-size:12px">'
        f'<table style="border-collapse:collapse">{"".join(parts)}</table>{note}</div>'
    )


def latency_summary(result: TurnResult, received_at_offset: float = 0.0) -> dict[str, float]:
    """Time to first audio (from the moment the user's turn was received; ``received_at_offset``
    is work done before ``VoiceChat.stream`` started, e.g. VAD), the real-time factor (compute
    seconds per second of spoken answer) and the per-stage times, all in seconds."""
    t = result.timings
    audio_seconds = 0.0 if result.audio is None else len(result.audio) / result.sample_rate
    total = t.get("total", 0.0) + received_at_offset
    summary = {
        "total": total,
        "answer_audio": audio_seconds,
        "rtf": total / audio_seconds if audio_seconds > 0 else float("nan"),
    }
    if "first_audio" in t:
        summary["first_audio"] = t["first_audio"] + received_at_offset
    for key in STAGES:
        if key in t:
            summary[key] = t[key]
    summary["positions"] = t.get("positions", 0)
    return summary


def latency_markdown(summary: dict[str, float]) -> str:
    """One readable line for the demo page."""
    ms = {k: v * 1000 for k, v in summary.items() if k not in ("rtf", "positions")}
    parts = []
    if "first_audio" in ms:
        parts.append(f"first audio **{ms['first_audio']:.0f} ms**")
    if summary["answer_audio"] > 0:
        parts.append(f"RTF **{summary['rtf']:.2f}** ({summary['answer_audio']:.1f} s of speech)")
    parts.append(f"total {ms['total']:.0f} ms")
    stages = ", ".join(f"{name} {ms[key]:.0f} ms" for key, name in STAGES.items() if key in ms)
    return " · ".join(parts) + (f"  \nper stage: {stages}" if stages else "")
