"""Latency profile of one spoken turn, stage by stage, cold (the first turn after loading) and
warm (median of later turns), with each stage's FLOPs and its fraction of the machine's matmul
ceiling.

Stages: Whisper encoder, adapter (50 Hz -> 25 Hz -> grouped 5 Hz), backbone prefill, SRH
prefill (the prompt's sub-states into the SRH's cache), one backbone decode step, the k SRH
steps of one position, and one detokenizer chunk (one position's audio). Times come from
``VoiceChat.stream``'s per-stage clocks, which start when ``stream`` is called (file reading
and VAD not included; the `voice_latency` suite measures that path); the adapter is timed on its
own, and runs again inside the prefill. FLOPs are counted from the configs.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch
from transformers import PretrainedConfig

from drvoice_lab.benchmarks import machine
from drvoice_lab.benchmarks.resolution import backbone_flops
from drvoice_lab.inference.pipeline import VoiceChat
from drvoice_lab.model_folder import default_checkpoint

QUESTION = "Which city is the capital of Japan?"


def encoder_flops(cfg: PretrainedConfig, frames: int) -> float:
    """Whisper encoder forward on ``frames`` output frames (50 Hz): two convolutions over the
    mel frames, then bidirectional transformer layers with a GELU MLP."""
    d, mels = cfg.d_model, cfg.num_mel_bins
    convs = 2 * (2 * frames) * mels * 3 * d + 2 * frames * d * 3 * d
    layer = 2 * frames * 4 * d * d + 2 * frames * 2 * d * cfg.encoder_ffn_dim
    layer += 2 * 2 * frames * frames * d  # scores and weighted values, every pair
    return convs + cfg.encoder_layers * layer


def adapter_flops(model, frames: int) -> float:
    cfg = model.config
    t25, k = -(-frames // 2), cfg.group_size
    positions = -(-t25 // k)
    d_enc, d_a, d = cfg.encoder_hidden_size, cfg.adapter_hidden_size, cfg.hidden_size
    grouped_in = k * d_a if cfg.grouping_mode == "concat" else d_a  # W_g's input width
    return 2 * t25 * (2 * d_enc * d_a + d_a * d_a) + 2 * positions * grouped_in * d


def stage_flops(model, frames: int, prompt_positions: int) -> dict[str, float]:
    """FLOPs per stage of a turn whose question has ``frames`` encoder frames and whose prompt
    (system text + user speech) has ``prompt_positions`` positions."""
    cfg = model.config
    bb, srh = cfg.backbone_config, cfg.srh_config
    d, k = cfg.hidden_size, cfg.group_size
    head = 2 * d * cfg.text_vocab_size
    ungroup = 2 * d * k * srh.hidden_size  # W_p per position
    cached = (prompt_positions - 1) * k  # sub-states the SRH prefill puts in its cache
    srh_steps = ungroup + sum(
        backbone_flops(srh, 1, context=cached + i) + 2 * srh.hidden_size * srh.vocab_size
        for i in range(k)
    )
    return {
        "encoder": encoder_flops(cfg.encoder_config, frames),
        "adapter": adapter_flops(model, frames),
        "backbone_prefill": backbone_flops(bb, prompt_positions) + prompt_positions * head,
        "srh_prefill": (prompt_positions - 1) * ungroup + backbone_flops(srh, cached),
        "backbone_step": backbone_flops(bb, 1, context=prompt_positions) + head,
        "srh_k_steps": srh_steps,
        "detokenizer_chunk": float("nan"),  # FFT-based Griffin-Lim: not a matmul workload
    }


def _one_turn(chat: VoiceChat, wav: np.ndarray) -> dict[str, float]:
    result = chat.fork().respond(audio=wav, sample_rate=16_000, mode="S2M")
    t, positions = result.timings, max(int(result.timings["positions"]), 1)
    chunks = max(int(round(len(result.speech_ids) / chat.config.group_size)), 1)
    with torch.no_grad():
        frames, lengths = chat.encoder.encode([wav])  # (1, F, d_enc) 50 Hz, (1,)
        start = time.perf_counter()
        chat.model.adapter(frames.float(), lengths)
        adapter = time.perf_counter() - start
    return {
        "encoder": t["encoder"],
        "adapter": adapter,
        "backbone_prefill": t["prefill"],
        "srh_prefill": t["srh_prefill"],
        "backbone_step": t["backbone_steps"] / max(positions - 1, 1),
        "srh_k_steps": (t["srh"] - t["srh_prefill"]) / positions,
        "detokenizer_chunk": t["detokenizer"] / chunks,
        "first_audio": t.get("first_audio", float("nan")),
        "total": t["total"],
        "positions": positions,
        "frames": int(lengths[0]),
    }


def latency_rows(chat: VoiceChat, wav: np.ndarray, warm_turns: int, gflops: float) -> list[dict]:
    """Rows (stage, cold ms, warm ms, GFLOP, achieved GFLOP/s, fraction of ``gflops``)."""
    cold = _one_turn(chat, wav)
    warm_runs = [_one_turn(chat, wav) for _ in range(warm_turns)]
    warm = {key: statistics.median(r[key] for r in warm_runs) for key in cold}
    prompt = _prompt_positions(chat, wav)
    flops = stage_flops(chat.model, cold["frames"], prompt)
    rows = []
    for stage in (
        "encoder",
        "adapter",
        "backbone_prefill",
        "srh_prefill",
        "backbone_step",
        "srh_k_steps",
        "detokenizer_chunk",
        "first_audio",
        "total",
    ):
        f = flops.get(stage, float("nan"))
        achieved = f / warm[stage] / 1e9 if warm[stage] > 0 else float("nan")
        rows.append(
            {
                "provider": "torch",
                "mode": "S2M turn",
                "size": f"{len(wav) / 16_000:.2f} s question",
                "stage": stage,
                "cold_ms": round(1000 * cold[stage], 3),
                "warm_ms": round(1000 * warm[stage], 3),
                "gflop": round(f / 1e9, 6),
                "achieved_gflops": round(achieved, 3),
                "ceiling_fraction": round(achieved / gflops, 4),
                "positions": cold["positions"],
                "prompt_positions": prompt,
                "question_s": round(len(wav) / 16_000, 2),
            }
        )
    return rows


def _prompt_positions(chat: VoiceChat, wav: np.ndarray) -> int:
    """Positions of the S2M prompt for this question (system text + grouped user speech)."""
    from drvoice_lab.data.com import TurnInput, format_dialogue

    with torch.no_grad():
        _, lengths = chat.encoder.encode([wav])
    turn = TurnInput("", "", user_frames=int(lengths[0]), answer_speech=np.zeros(0, np.int64))
    return format_dialogue([turn], "S2M", chat.config, chat.tokenizer).prompt_positions


def bench(settings, say) -> list[dict]:
    """The `latency` suite: one held-out voice asks ``QUESTION``; the ceiling is the `ceiling`
    suite's (measured once per process)."""
    from drvoice_lab.data.voices import HELDOUT_USER_VOICES

    gflops = max(r["gflops"] for r in machine.ceiling_rows(settings.quick, settings.reps or 10))
    chat = VoiceChat.from_checkpoint(settings.checkpoint or default_checkpoint())
    wav = HELDOUT_USER_VOICES[0].synthesize(QUESTION)  # 16 kHz
    rows = latency_rows(chat, wav, warm_turns=1 if settings.quick else 5, gflops=gflops)
    for row in rows:
        say(f"  {row['stage']:<18} cold {row['cold_ms']:9.2f} ms  warm {row['warm_ms']:9.2f} ms")
    return rows
