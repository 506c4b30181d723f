"""Training: recipes, Core-Cocktail merge, exact resume after SIGKILL, 2-process (gloo) runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from helpers import BIN, run_cli, small_corpus

from drvoice_lab.presets import decoder
from drvoice_lab.training import Recipe, load_recipe
from drvoice_lab.training.loop import core_cocktail_merge, lr_lambda

MICRO_MODEL = {
    "backbone_config": decoder("qwen2", 32, 2, 4, 2, 64, vocab_size=1024, tie_word_embeddings=True),
    "srh_config": decoder("qwen2", 16, 1, 2, 1, 32),
}


def test_presets_load_and_bad_recipes_are_explained(tmp_path):
    tiny = load_recipe("tiny")
    assert tiny.preset == "tiny" and [s.name for s in tiny.stages] == [
        "text_pretrain", "align", "embed_align", "srh_pretrain", "post_train",
        "speech_post_train"]  # fmt: skip
    assert [s.objective for s in tiny.stages[1:3]] == ["ctc_align", "ctc_embed"]
    assert tiny.stages[3].modes == {"T2M": 1}
    assert load_recipe("7b").stages[2].merge_alpha == 0.5
    with pytest.raises(ValueError, match="no recipe file"):
        load_recipe("nope")
    bad = tmp_path / "bad.yaml"
    bad.write_text("preset: tiny\nstages: [{name: a, steps: 2, modes: {X2Y: 1}}]\n")
    with pytest.raises(ValueError, match="unknown CoM modes"):
        load_recipe(str(bad))
    bad.write_text("preset: tiny\nstages: [{name: a, steps: 2, data: text_world}]\n")
    with pytest.raises(ValueError, match="feeds text-only modes"):  # the default mode is S2M
        load_recipe(str(bad))
    bad.write_text("preset: tiny\nstages: [{name: a, steps: 2, mix: bucket}]\n")
    with pytest.raises(ValueError, match="mix must be one of"):
        load_recipe(str(bad))
    # options taken out after their experiments say so, and where to read why
    for option in ("scheduled_sampling: 0.5", "speech_noise: 0.1", "data: world"):
        bad.write_text(f"preset: tiny\nstages: [{{name: a, steps: 2, {option}}}]\n")
        with pytest.raises(ValueError, match=rf"stage a: {option.split(':')[0]}.* was removed"):
            load_recipe(str(bad))
    bad.write_text("preset: tiny\nbatchsize: 3\nstages: [{name: a, steps: 2}]\n")
    with pytest.raises(ValueError, match="recipe: unknown keys.*batchsize"):
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
    corpus = small_corpus(root / "corpus", 16, seed=3)
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


def _train_cmd(recipe: Path, out: Path, *extra: str, launcher=()) -> list[str]:
    return [*launcher, str(BIN / "drvoice-lab"), "train", "--recipe", str(recipe),
            "--out", str(out), "--quiet", *extra]  # fmt: skip


def _train(recipe: Path, out: Path, env: dict, *extra: str, launcher=()) -> None:
    cmd = _train_cmd(recipe, out, *extra, launcher=launcher)
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

    cmd = _train_cmd(recipe, root / "killed")
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


def _kill_at(point: str, cmd: list[str], env: dict, folder: Path) -> None:
    """Run ``cmd`` with the pause point ``point`` set, kill it (SIGKILL) once it waits there."""
    proc = subprocess.Popen(cmd, env={**env, "DRVOICE_PAUSE_AT": point},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    marker = folder / f".paused-{point.partition('@')[0]}"
    deadline = time.time() + 300
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert marker.exists(), f"the run never reached {point}"
    marker.unlink()


@pytest.mark.parametrize("point", ["checkpoint@3", "base-backbone"])
def test_killed_inside_a_write_resumes_on_the_same_curve(run_setup, point):
    """Killed while a resume checkpoint (or the Core-Cocktail M0 copy) is half in place: the
    next run finds the last complete one and repeats the loss curve exactly."""
    root, recipe, env = run_setup
    straight = root / "straight-for-kills"
    if not (straight / "final").exists():
        _train(recipe, straight, env)
    run = root / f"killed-{point.partition('@')[0]}"
    _kill_at(point, _train_cmd(recipe, run), env, run)
    assert not (run / "final").exists()
    if point == "base-backbone":
        assert not (run / "base_backbone.safetensors").exists()  # only the .partial
    else:
        assert (run / "step-000002").is_dir() and not (run / "step-000003").exists()
    _train(recipe, run, env)
    for (s1, a), (s2, b) in zip(_curve(straight), _curve(run), strict=True):
        assert s1 == s2 and a == pytest.approx(b, rel=1e-5, abs=1e-6), f"step {s1}: {a} vs {b}"


def test_an_export_killed_before_the_swap_leaves_the_earlier_one(run_setup, tmp_path):
    from drvoice_lab.training.export import MARKER

    root, recipe, env = run_setup
    run = root / "straight-for-kills"
    if not (run / "final").exists():
        _train(recipe, run, env)
    out = tmp_path / "exported"
    cmd = [str(BIN / "drvoice-lab"), "export", str(run / "final"), "--out", str(out),
           "--splits", "", "--force"]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    _kill_at("export", cmd, env, tmp_path)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # untouched
    assert (out / MARKER).is_file()


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


def test_finished_run_exports_merges_and_chats(run_setup):
    from drvoice_lab.model_folder import CheckpointError, load_checkpoint
    from drvoice_lab.training.export import merge_backbones

    root, recipe, env = run_setup
    _train(recipe, root / "finished", env)
    final = root / "finished" / "final"
    facts = json.loads((final / "training.json").read_text())
    assert facts["steps"] == 8 and facts["train_seconds"] > 0 and len(facts["corpus_sha256"]) == 64
    assert json.loads((final / "speech_tokenizer.json").read_text())["name"] == "default"
    events = list((root / "finished" / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 100

    # export: fp16 on disk, float32 when loaded, same predictions up to fp16 rounding
    done = run_cli("export", str(final), "--out", str(root / "shipped"), "--splits", "", env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    shipped = root / "shipped"
    card = (shipped / "README.md").read_text()
    assert "corpus_sha256" not in card and facts["corpus_sha256"] in card
    assert "## Evaluation" in card and "make tiny-model" in card
    from safetensors import safe_open

    with safe_open(str(shipped / "model.safetensors"), framework="pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
    full, _ = load_checkpoint(final)
    half, _ = load_checkpoint(shipped)
    assert next(half.parameters()).dtype == torch.float32
    text = torch.randint(2, 200, (1, 12))
    with torch.no_grad():
        a, b = full(text).text_logits, half(text).text_logits
    assert (a.argmax(-1) == b.argmax(-1)).float().mean() > 0.9
    torch.testing.assert_close(a, b, atol=0.05, rtol=0.05)

    # chat: a typed turn on the exported model prints an answer and writes a wav
    wav = root / "answer.wav"
    done = run_cli(
        "chat", "--checkpoint", str(shipped), "--text", "What is two plus two?",
        "--max-positions", "6", "--out", str(wav), env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "T2M: " in done.stderr and wav.exists()

    # merge: alpha 1 keeps the tuned backbone, alpha 0 takes the base one
    done = run_cli(
        "merge", "--base", str(shipped), "--tuned", str(final), "--alpha", "0",
        "--out", str(root / "merged0"), env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    merged, _ = load_checkpoint(root / "merged0")
    for (name, p), (_, q) in zip(
        merged.backbone.named_parameters(), half.backbone.named_parameters(), strict=True
    ):
        torch.testing.assert_close(p, q, msg=name)
    torch.testing.assert_close(merged.srh.ungroup.weight, full.srh.ungroup.weight)
    assert (root / "merged0" / "text_tokenizer.json").exists()
    with pytest.raises(ValueError, match=r"alpha"):
        merge_backbones(shipped, final, root / "bad", 1.5)

    # a model whose speech tokenizer changed since training is refused, not decoded to noise
    ref = json.loads((shipped / "speech_tokenizer.json").read_text())
    ref["sha256"] = "0" * 64
    (shipped / "speech_tokenizer.json").write_text(json.dumps(ref))
    done = run_cli("chat", "--checkpoint", str(shipped), "--text", "hi", env=env)
    assert done.returncode == 2 and "speech tokenizer" in done.stderr
    assert "Traceback" not in done.stderr
    with pytest.raises(CheckpointError, match="not a LoRA adapter"):
        load_checkpoint(final, adapter=root)


def test_shipped_model_card_is_what_export_writes():
    """A re-export writes the committed card: the recipe's reasons, one table per kind,
    limitations and licences, from the folder's own files and evaluation."""
    from drvoice_lab.evaluation.model_card import model_card
    from drvoice_lab.model_folder import tiny_checkpoint

    folder = tiny_checkpoint()
    reports = json.loads((folder / "eval.json").read_text())
    card = model_card(folder, reports)
    assert card == (folder / "README.md").read_text()
    for heading in ("### Why the recipe looks like this", "## Limitations", "## Licence"):
        assert card.count(heading) == 1
    assert "| test_voice | hibari@1.3 | 128 | 82.8 % (22.7 %) | 85.2 % |" in card
    assert "GPL-3.0" in card and "Apache-2.0" in card and "| MIT |" in card


def test_text_world_stage_trains_the_backbone_on_fresh_text(run_setup, tmp_path):
    from drvoice_lab.model_folder import load_checkpoint
    from drvoice_lab.modeling import DrVoiceModel

    root, recipe_path, env = run_setup
    recipe = yaml.safe_load(recipe_path.read_text())
    stage = {"modes": {"T2T": 1}, "train": ["backbone"], "steps": 4, "lr": 1e-2}
    recipe["stages"] = [{"name": "text", "data": "text_world", **stage}]
    path = tmp_path / "text.yaml"
    path.write_text(yaml.safe_dump(recipe))
    _train(path, tmp_path / "world", env)
    recipe["stages"] = [{"name": "text", **stage}]
    path.write_text(yaml.safe_dump(recipe))
    _train(path, tmp_path / "corpus", env)
    # the 16-dialogue corpus and the drawn world give different batches, hence curves
    assert _curve(tmp_path / "world") != _curve(tmp_path / "corpus")

    trained, _ = load_checkpoint(tmp_path / "world" / "final")
    torch.manual_seed(recipe["seed"])
    fresh = dict(DrVoiceModel(trained.config).named_parameters())
    for name, p in trained.named_parameters():
        assert torch.equal(p, fresh[name]) != name.startswith("backbone."), name

    # In a mixed stage only the text-only examples come from the text world.
    from drvoice_lab.data.corpus import world_dialogues
    from drvoice_lab.training.loop import prepare_run_data

    data = prepare_run_data(Recipe.from_dict(recipe), progress=False)
    world = world_dialogues(recipe["corpus"], 40)
    batches = data.train.with_world(world, ["T2T"])
    assert not data.train.world_dialogues  # the corpus's own batches are left as they were
    _draw_one_batch(batches, {"T2T": 1, "S2T": 1})


def _draw_one_batch(batches, modes: dict[str, float]) -> list:
    """The (dialogue, mode) of each example of a 12-example batch, after checking that the
    world dialogues serve exactly the world modes and the corpus the others."""
    drawn = []
    example = batches.example
    batches.example = lambda d, mode: drawn.append((d, mode)) or example(d, mode)
    batches.batch(0, 12, modes)
    assert {mode for _, mode in drawn} == set(modes)
    for dialogue, mode in drawn:
        from_world = any(dialogue is w for w in batches.world_dialogues)
        assert from_world == (mode in batches.world_modes)
    return drawn


def test_batch_mix_gives_each_micro_batch_one_mode_on_every_rank(run_setup):
    from drvoice_lab.training.loop import prepare_run_data

    _, recipe_path, _ = run_setup
    data = prepare_run_data(load_recipe(str(recipe_path)), progress=False).train
    drawn = []
    example = data.example
    data.example = lambda d, mode: drawn.append(mode) or example(d, mode)
    modes = {"S2M": 2, "T2M": 1, "S2T": 1, "STC": 1}

    def modes_of(micro_batch: int, mix: str) -> set[str]:
        """The modes of one global micro-batch of 6, drawn as two ranks' shares."""
        drawn.clear()
        for rank in (0, 1):
            data.batch(micro_batch, 6, modes, rank, 2, mix=mix)
        assert len(drawn) == 6
        return set(drawn)

    batch_mixed = [modes_of(m, "batch") for m in range(16)]
    assert all(len(m) == 1 for m in batch_mixed)
    assert len(set.union(*batch_mixed)) >= 3  # the batches still follow the stage's mix
    assert any(len(modes_of(m, "example")) > 1 for m in range(4))  # the default mixes rows


@pytest.mark.parametrize(
    "objective, trained_prefix",
    # ctc_align's head reads the 25 Hz features; ctc_embed reads the grouped 5 Hz output
    [("ctc_align", "adapter.to_25hz."), ("ctc_embed", "adapter.")],
)
def test_ctc_align_stage_trains_only_the_speech_adapter(
    run_setup, tmp_path, objective, trained_prefix
):
    from drvoice_lab.model_folder import load_checkpoint

    root, recipe_path, env = run_setup
    recipe = yaml.safe_load(recipe_path.read_text())
    recipe["stages"] = [
        {"name": "align", "objective": objective, "steps": 6, "lr": 5e-3},
        {"name": "merge", "merge_alpha": 1.0},  # exports after a no-op stage
    ]
    path = tmp_path / "ctc.yaml"
    path.write_text(yaml.safe_dump(recipe))
    _train(path, tmp_path / "run", env)
    log = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    losses = [r["ctc_loss"] for r in map(json.loads, log) if "ctc_loss" in r]
    assert len(losses) == 6 and losses[-1] < losses[0]
    # checkpointed only at the end of the stage (the CTC head is not part of the model)
    assert sorted(p.name for p in (tmp_path / "run").glob("step-*")) == ["step-000006"]

    trained, _ = load_checkpoint(tmp_path / "run" / "final")
    torch.manual_seed(recipe["seed"])
    from drvoice_lab.modeling import DrVoiceModel

    fresh = DrVoiceModel(trained.config)
    for name, p in trained.named_parameters():
        same = torch.equal(p, dict(fresh.named_parameters())[name])
        assert same != name.startswith(trained_prefix), name  # the CTC head's input

    with pytest.raises(ValueError, match="objective"):
        Recipe.from_dict({**recipe, "stages": [{"name": "x", "objective": "asr", "steps": 1}]})


def test_lora_from_an_fp16_export_trains_in_float32_and_reports_live(run_setup, tmp_path):
    """An adaptation run (LoRA recipe with init_from = a shipped fp16 model) trains in
    float32 with finite losses, and ``on_log`` sees every record the log gets."""
    from drvoice_lab.training.adaptation import LoraRun, lora_recipe
    from drvoice_lab.training.loop import Trainer

    root, recipe, env = run_setup
    _train(recipe, tmp_path / "base", env)
    shipped = tmp_path / "shipped"
    done = run_cli("export", str(tmp_path / "base" / "final"), "--out", str(shipped),
                   "--splits", "", env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    corpus = yaml.safe_load(recipe.read_text())["corpus"]
    lora = lora_recipe(shipped, corpus, LoraRun(steps=3, batch_size=4, lr=1e-2))
    seen = []
    trainer = Trainer(lora, tmp_path / "lora", progress=False, on_log=seen.append)
    assert {p.dtype for p in trainer.model.parameters()} == {torch.float32}
    final = trainer.run()
    logged = [json.loads(line) for line in (tmp_path / "lora" / "metrics.jsonl").open()]
    assert seen == logged
    losses = [r["loss"] for r in logged if "loss" in r]
    assert len(losses) == 3 and all(np.isfinite(losses))
    assert (final / "adapter_config.json").exists()


def test_ablate_trains_every_variant_with_the_same_steps(run_setup, tmp_path):
    """`drvoice-lab ablate`: one run per variant (its k or head in the saved config), the same
    steps for all, one CSV row each and the summary; a rerun reuses the finished variants."""
    import csv

    root, recipe, env = run_setup
    runs, res = str(tmp_path / "runs"), str(tmp_path / "res")
    args = ["ablate", "--recipe", str(recipe), "--variants", "k2,k5-parallel", "--limit", "1",
            "--runs", runs, "--results", res, "--quiet"]  # fmt: skip
    done = run_cli(*args, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = list(csv.DictReader((tmp_path / "res" / "ablation.csv").open()))
    assert [(r["variant"], r["k"], r["speech_head"]) for r in rows] == [
        ("k2", "2", "srh"), ("k5-parallel", "5", "parallel")]  # fmt: skip
    assert rows[0]["steps"] == rows[1]["steps"] == "8"
    assert float(rows[0]["s2m_positions"]) > float(rows[1]["s2m_positions"])  # k=2: more
    for row in rows:
        assert 0 <= float(row["s2t_f1"]) <= 1 and row["dialogues"] == "1"
    saved = json.loads((tmp_path / "runs" / "k5-parallel" / "final" / "config.json").read_text())
    assert saved["speech_head"] == "parallel" and saved["srh_config"]["num_hidden_layers"] == 0
    assert "k-sweep" in (tmp_path / "res" / "SUMMARY.md").read_text()

    log = (tmp_path / "runs" / "k2" / "metrics.jsonl").read_text()
    done = run_cli(*args, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "runs" / "k2" / "metrics.jsonl").read_text() == log  # not retrained
    again = list(csv.DictReader((tmp_path / "res" / "ablation.csv").open()))
    assert len(again) == 4 and again[2]["s2t_f1"] == rows[0]["s2t_f1"]
    bad = run_cli("ablate", "--variants", "k4", env=env)
    assert bad.returncode == 2 and "unknown variants" in bad.stderr
