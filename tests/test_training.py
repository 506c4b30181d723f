"""Training: recipes, Core-Cocktail merge, exact resume after SIGKILL, 2-process (gloo) runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from drvoice_lab.data.corpus import CorpusConfig, build_corpus
from drvoice_lab.training import Recipe, load_recipe
from drvoice_lab.training.loop import core_cocktail_merge, lr_lambda

BIN = Path(sys.executable).parent
MICRO_MODEL = {
    "backbone_config": {
        "model_type": "qwen2",
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "intermediate_size": 64,
        "vocab_size": 1024,
        "tie_word_embeddings": True,
    },
    "srh_config": {
        "model_type": "qwen2",
        "hidden_size": 16,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "intermediate_size": 32,
    },
}


def test_presets_load_and_bad_recipes_are_explained(tmp_path):
    tiny = load_recipe("tiny")
    assert tiny.preset == "tiny" and tiny.stages[0].modes == {"T2M": 1}
    assert load_recipe("7b").stages[2].merge_alpha == 0.5
    with pytest.raises(ValueError, match="no recipe file"):
        load_recipe("nope")
    bad = tmp_path / "bad.yaml"
    bad.write_text("preset: tiny\nstages: [{name: a, steps: 2, modes: {X2Y: 1}}]\n")
    with pytest.raises(ValueError, match="unknown CoM modes"):
        load_recipe(str(bad))
    bad.write_text("preset: tiny\nbatchsize: 3\nstages: [{name: a, steps: 2}]\n")
    with pytest.raises(ValueError, match="unknown recipe keys.*batchsize"):
        load_recipe(str(bad))


def test_warmup_cosine_schedule():
    from drvoice_lab.training import Stage

    f = lr_lambda(Stage("s", steps=110, lr=1.0, min_lr=0.1, warmup_steps=10))
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0) and f(110) == pytest.approx(0.1)
    assert f(60) == pytest.approx(0.55)


def test_core_cocktail_merge_interpolates_the_backbone():
    from helpers import micro_config

    from drvoice_lab import DrVoiceModel

    torch.manual_seed(0)
    model = DrVoiceModel(micro_config())
    base = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    srh_before = {k: v.clone() for k, v in model.srh.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    tuned = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    core_cocktail_merge(model, base, alpha=0.25)
    for k, v in model.backbone.state_dict().items():
        torch.testing.assert_close(v, 0.25 * tuned[k] + 0.75 * base[k])
    for k, v in model.srh.state_dict().items():  # only the backbone is merged
        torch.testing.assert_close(v, srh_before[k] + 1.0)


@pytest.fixture(scope="module")
def run_setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    corpus = build_corpus(
        root / "corpus",
        CorpusConfig(num_dialogues=16, seed=3, heldout_question_fraction=0.25),
        workers=1,
        progress=False,
    )
    recipe = {
        "preset": "tiny",
        "model": MICRO_MODEL,
        "corpus": str(corpus),
        "seed": 1,
        "batch_size": 4,
        "log_every": 1,
        "save_every": 1,
        "eval_every": 0,
        "keep_checkpoints": 2,
        "stages": [
            {
                "name": "srh_pretrain",
                "modes": {"T2M": 1},
                "train": ["srh", "grouping"],
                "steps": 3,
                "lr": 1e-2,
            },
            {"name": "merge", "merge_alpha": 0.5},
            {
                "name": "post",
                "modes": {"S2M": 1, "S2T": 1, "STC": 1},
                "steps": 5,
                "lr": 1e-2,
                "warmup_steps": 2,
            },
        ],
    }
    path = root / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    Recipe.from_dict(recipe)  # valid
    env = dict(os.environ, DRVOICE_CACHE=str(root / "cache"), OMP_NUM_THREADS="1")
    # Encode the corpus speech once, so the runs below only train.
    _train(path, root / "warmup", env, "--stop-after", "1")
    return root, path, env


def _train(recipe: Path, out: Path, env: dict, *extra: str, launcher=()) -> None:
    cmd = [
        *launcher,
        str(BIN / "drvoice-lab"),
        "train",
        "--recipe",
        str(recipe),
        "--out",
        str(out),
        "--quiet",
        *extra,
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


def _curve(out: Path) -> list[tuple[int, float]]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in rows if "loss" in r]


def test_resume_after_sigkill_continues_the_same_curve(run_setup):
    root, recipe, env = run_setup
    _train(recipe, root / "straight", env)
    straight = _curve(root / "straight")
    assert [s for s, _ in straight] == list(range(1, 9))

    cmd = [
        str(BIN / "drvoice-lab"),
        "train",
        "--recipe",
        str(recipe),
        "--out",
        str(root / "killed"),
        "--quiet",
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = root / "killed" / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline:  # kill it in the middle of the post-training stage
        if metrics.exists() and len(_curve(root / "killed")) >= 5:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = len(_curve(root / "killed"))
    assert killed_at < 8, "the run finished before it could be killed"
    _train(recipe, root / "killed", env)
    resumed = _curve(root / "killed")
    assert [s for s, _ in resumed] == [s for s, _ in straight]
    for (step, a), (_, b) in zip(straight, resumed, strict=True):
        assert a == pytest.approx(b, rel=1e-5, abs=1e-6), f"step {step}: {a} vs {b}"
    assert (root / "killed" / "final" / "model.safetensors").exists()


def test_two_processes_match_one_with_the_same_global_batch(run_setup):
    root, recipe, env = run_setup
    _train(recipe, root / "one", env)
    _train(
        recipe,
        root / "two",
        env,
        launcher=(str(BIN / "torchrun"), "--nproc_per_node", "2", "--master_port", "29533"),
    )
    one, two = _curve(root / "one"), _curve(root / "two")
    assert [s for s, _ in one] == [s for s, _ in two]
    for (step, a), (_, b) in zip(one, two, strict=True):
        # Each rank averages over its own tokens; the global mean weighs them differently.
        assert a == pytest.approx(b, rel=0.05), f"step {step}: {a} vs {b}"
