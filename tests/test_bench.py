"""`drvoice-lab bench`: the analytic FLOP counts agree with torch's FLOP counter, the one CSV
writer keeps one schema, a quick run of the default suites writes its CSV rows and the Markdown
summary, and a kernel suite skips Triton cleanly on a CPU."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import run_cli
from torch.utils.flop_counter import FlopCounterMode
from transformers import DynamicCache

from drvoice_lab.benchmarks.report import HEAD, TAIL, append_rows, latest_points, read_rows
from drvoice_lab.benchmarks.resolution import (
    PROMPT_POSITIONS,
    Backbone,
    backbone_flops,
    build_transformer,
    positions_for,
)
from drvoice_lab.benchmarks.run import configure_parser, main
from drvoice_lab.benchmarks.suites import DEFAULT_SUITES, RUNNABLE, SUITES

ROOT = Path(__file__).resolve().parents[1]


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


def test_the_writer_keeps_one_schema_and_every_row(tmp_path):
    path = tmp_path / "demo.csv"
    stamp = {"date": "2026-01-01T00:00:00", "device": "CPU test", "threads": 2}
    append_rows(path, "demo", [{"provider": "torch", "size": "tiny", "ms": 1.5}], stamp)
    later = {**stamp, "date": "2026-01-02T00:00:00"}
    append_rows(path, "demo", [{"provider": "torch", "size": "tiny", "ms": 1.0, "mb": 3}], later)
    fields, rows = read_rows(path)
    assert fields == [*HEAD, "ms", "mb", *TAIL]  # a new column: the file is rewritten
    assert [r["ms"] for r in rows] == ["1.5", "1.0"] and rows[0]["mb"] == ""
    assert {r["suite"] for r in rows} == {"demo"}
    assert latest_points(path, ("provider", "size")) == rows[1:]


def test_help_lists_every_suite():
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    text = parser.format_help()
    assert all(name in text for name in RUNNABLE)
    assert "ablation" not in RUNNABLE  # `drvoice-lab ablate` writes that suite


def test_quick_bench_writes_every_default_suite_and_the_summary(tmp_path):
    out = run_cli("bench", "--quick", "--out", str(tmp_path), timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = (tmp_path / "SUMMARY.md").read_text()
    assert "k-sweep" not in summary  # `drvoice-lab ablate` writes that one
    for suite in DEFAULT_SUITES:
        fields, rows = read_rows(tmp_path / f"{suite}.csv")
        assert rows and fields[: len(HEAD)] == list(HEAD) and fields[-len(TAIL) :] == list(TAIL)
        assert set(SUITES[suite].columns) <= set(fields), suite
        assert {r["suite"] for r in rows} == {suite} and all(r["provider"] for r in rows)
        assert SUITES[suite].title in summary
    resolution = read_rows(tmp_path / "resolution.csv")[1]
    k5 = next(r for r in resolution if r["k"] == "5")
    assert float(k5["positions_ratio"]) > 3.5 and float(k5["flop_ratio"]) > 3.5
    stages = {r["stage"] for r in read_rows(tmp_path / "latency.csv")[1]}
    assert {"encoder", "backbone_prefill", "srh_k_steps", "detokenizer_chunk"} <= stages


def test_kernel_script_skips_triton_on_cpu_and_measures_torch(tmp_path):
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_grouping.py"), "--quick", "--providers",
         "triton", "torch", "--modes", "forward", "full", "--csv", str(tmp_path / "g.csv")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    rows = read_rows(tmp_path / "g.csv")[1]
    cuda = torch.cuda.is_available()
    assert {r["provider"] for r in rows} == ({"triton", "torch"} if cuda else {"torch"})
    assert cuda or "skipping provider triton: no CUDA device" in out.stdout
    assert {(r["suite"], r["mode"], r["size"]) for r in rows} == {
        ("grouping", "forward", "tiny"),
        ("grouping", "full", "tiny"),
    }
    assert all(float(r["median_ms"]) > 0 and not float(r["peak_mem_mb"]) < 0 for r in rows)


def test_unknown_suite_is_a_message(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["speed"])
    assert exit_.value.code == 2 and "unknown bench suites" in capsys.readouterr().err
