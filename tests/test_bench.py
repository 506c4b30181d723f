"""`drvoice-lab bench`: the analytic FLOP counts agree with torch's FLOP counter, and a quick
run of every suite writes its CSV rows and the Markdown summary."""

from __future__ import annotations

import csv

import pytest
import torch
from helpers import run_cli
from torch.utils.flop_counter import FlopCounterMode
from transformers import DynamicCache

from drvoice_lab.benchmarks.report import SUITES
from drvoice_lab.benchmarks.resolution import (
    PROMPT_POSITIONS,
    Backbone,
    backbone_flops,
    build_transformer,
    positions_for,
)
from drvoice_lab.benchmarks.run import ALL_SUITES


def test_positions_of_a_spoken_turn():
    assert positions_for(30, 1) == PROMPT_POSITIONS + 750
    assert positions_for(30, 5) == PROMPT_POSITIONS + 150
    assert positions_for(10, 7) == PROMPT_POSITIONS + 36  # ceil(250 / 7)


@pytest.fixture(scope="module")
def tiny():
    cfg = Backbone("tiny", "tiny", layers=2).config()
    # Eager attention is plain matmuls, which torch's counter sees (its CPU flash kernel isn't
    # registered there); it scores every query-key pair, masked ones included.
    cfg._attn_implementation = "eager"
    return cfg, build_transformer(cfg)


def _counted(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


@torch.no_grad()
def test_decode_step_flops_match_torch_counter(tiny):
    cfg, model = tiny
    n = 37
    cache = DynamicCache(config=cfg)
    model(inputs_embeds=torch.randn(1, n, cfg.hidden_size), past_key_values=cache, use_cache=True)
    step = torch.randn(1, 1, cfg.hidden_size)
    counted = _counted(lambda: model(inputs_embeds=step, past_key_values=cache, use_cache=True))
    assert backbone_flops(cfg, 1, context=n) == pytest.approx(counted, rel=1e-6)


@torch.no_grad()
def test_prefill_flops_count_only_the_causal_half_of_attention(tiny):
    cfg, model = tiny
    n = 41
    x = torch.randn(1, n, cfg.hidden_size)
    counted = _counted(lambda: model(inputs_embeds=x))  # torch counts every query-key pair
    q = cfg.num_attention_heads * (cfg.hidden_size // cfg.num_attention_heads)
    masked_pairs = n * n - n * (n + 1) / 2
    skipped = cfg.num_hidden_layers * 2 * 2 * masked_pairs * q
    assert backbone_flops(cfg, n) == pytest.approx(counted - skipped, rel=1e-6)


def test_quick_bench_writes_every_suite_and_the_summary(tmp_path):
    out = run_cli("bench", "--quick", "--out", str(tmp_path), timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = (tmp_path / "SUMMARY.md").read_text()
    assert "k-sweep" not in summary  # `drvoice-lab ablate` writes that one
    for suite in ALL_SUITES:
        title, columns = SUITES[suite]
        with (tmp_path / f"{suite}.csv").open() as handle:
            rows = list(csv.DictReader(handle))
        assert rows and set(columns) <= set(rows[0]), suite
        assert title in summary
    resolution = list(csv.DictReader((tmp_path / "resolution.csv").open()))
    k5 = next(r for r in resolution if r["k"] == "5")
    assert float(k5["positions_ratio"]) > 3.5 and float(k5["flop_ratio"]) > 3.5
    stages = {r["stage"] for r in csv.DictReader((tmp_path / "latency.csv").open())}
    assert {"encoder", "backbone_prefill", "srh_k_steps", "detokenizer_chunk"} <= stages
    again = run_cli("bench", "--quick", "--suites", "ceiling", "--out", str(tmp_path))
    assert again.returncode == 0
    assert len(list(csv.DictReader((tmp_path / "ceiling.csv").open()))) == 4  # appended


def test_unknown_suite_is_a_message(tmp_path):
    out = run_cli("bench", "--suites", "speed", "--out", str(tmp_path))
    assert out.returncode == 2 and "unknown bench suites" in out.stderr
