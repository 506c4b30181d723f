"""Recipes are checked by a schema before any work, and a run folder keeps to its recipe."""

from __future__ import annotations

import copy
import json

import pytest
import yaml
from helpers import small_corpus

from drvoice_lab.cli import main
from drvoice_lab.presets import decoder
from drvoice_lab.training import load_recipe
from drvoice_lab.training.recipe import RECIPE_DIR, Recipe

TINY = yaml.safe_load((RECIPE_DIR / "tiny.yaml").read_text())
BAD = {
    "steps-ten": (lambda r: r["stages"][0].update(steps="ten"), "steps must be a whole number"),
    "batch-size-text": (lambda r: r.update(batch_size="16"), "batch_size must be a whole"),
    "lr-1e-3": (lambda r: r["stages"][0].update(lr="1e-3"), "write 1.0e-3"),
    "modes-list": (lambda r: r["stages"][0].update(modes=["T2T"]), "modes must be a mapping"),
    "steps-2.5": (lambda r: r["stages"][0].update(steps=2.5), "steps must be a whole number"),
    "log-every-0": (lambda r: r.update(log_every=0), "log_every must be >= 1"),
    "init-from-missing": (lambda r: r.update(init_from="/no/such/model"), "not a model folder"),
    "model-typo": (lambda r: r.update(model={"hidden_sizee": 4}), "unknown keys \\['hidden_siz"),
    "nested-typo": (lambda r: r.update(model={"srh_config": {"hidden_sizee": 4}}), "srh_config"),
    "stage-typo": (lambda r: r["stages"][0].update(stepz=3), "unknown keys \\['stepz'\\]"),
    "top-typo": (lambda r: r.update(batchsize=3), "unknown keys \\['batchsize'\\]"),
    "min-lr-above-lr": (lambda r: r["stages"][0].update(min_lr=1.0), "min_lr must be in"),
    "stages-not-mappings": (lambda r: r.update(stages=["align"]), "a list of Stage mappings"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_recipes_are_refused_naming_the_key(case):
    change, message = BAD[case]
    raw = copy.deepcopy(TINY)
    change(raw)
    with pytest.raises(ValueError, match=message):
        Recipe.from_dict(raw)


def test_shipped_recipes_pass_the_schema():
    for name in ("tiny", "smol", "small", "7b"):
        assert load_recipe(name).stages


def test_a_run_folder_keeps_to_its_recipe(tmp_path, capsys):
    corpus = small_corpus(tmp_path / "corpus", 6, seed=2)
    recipe = {
        "preset": "tiny", "corpus": str(corpus), "batch_size": 2, "eval_every": 0,
        "model": {"backbone_config": decoder("qwen2", 32, 1, 2, 1, 32, vocab_size=1024),
                  "srh_config": decoder("qwen2", 16, 1, 2, 1, 32)},
        "stages": [{"name": "post", "modes": {"T2M": 1}, "steps": 1, "lr": 1e-3}],
    }  # fmt: skip
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text(yaml.safe_dump(recipe))
    recipe["stages"][0]["lr"] = 2e-3
    second.write_text(yaml.safe_dump(recipe))
    run = tmp_path / "run"
    assert main(["train", "--recipe", str(first), "--out", str(run), "--quiet"]) == 0
    before = {p: p.stat().st_mtime for p in run.rglob("*")}
    assert main(["train", "--recipe", str(second), "--out", str(run), "--quiet"]) == 2
    assert "another recipe (differs in: stages)" in capsys.readouterr().err
    assert {p: p.stat().st_mtime for p in run.rglob("*")} == before  # nothing touched
    again = ["train", "--recipe", str(second), "--out", str(run), "--quiet", "--force-new"]
    assert main(again) == 0
    fresh = tmp_path / "run-2"
    assert json.loads((fresh / "final" / "recipe.json").read_text())["stages"][0]["lr"] == 2e-3
    assert {p: p.stat().st_mtime for p in run.rglob("*")} == before
