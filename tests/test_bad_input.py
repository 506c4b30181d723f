"""Bad input to `speech`, `chat`, `eval` and `export`: exit code 2, a message that names the
problem, never a traceback, and nothing on disk changed.

One CLI start costs seconds, so each command has one row through the real console script and
the other rows call ``cli.main`` in-process (the same parser and error handling).
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from helpers import BIN

from drvoice_lab.cli import main
from drvoice_lab.model_folder import tiny_checkpoint
from drvoice_lab.training.export import MARKER, ExportError, export_model

IS_ROOT = os.geteuid() == 0
# Root reads any file; without these two capabilities it obeys the permission bits like a user.
NO_DAC = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"] if IS_ROOT else []


@dataclass(frozen=True)
class Case:
    id: str
    build: Callable[[Path, Path], list[str]]  # (tmp_path, model folder) -> argv
    expect: str  # regex the error message must match
    cli: bool = False  # through the console script (one row per command)
    locked: bool = False  # the CLI runs without root's power to read any file
    empty_cache: bool = False  # DRVOICE_CACHE without a corpus


def tone_wav(path: Path, seconds: float = 1.0) -> Path:
    t = np.arange(int(16_000 * seconds)) / 16_000
    sf.write(path, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16_000)
    return path


def truncated_wav(tmp: Path, model: Path) -> list[str]:
    good = tone_wav(tmp / "good.wav").read_bytes()
    (tmp / "cut.wav").write_bytes(good[: len(good) // 2])
    return ["speech", "encode", str(tmp / "cut.wav"), "--out", str(tmp / "ids.npy")]


def locked_wav(tmp: Path, model: Path) -> list[str]:
    tone_wav(tmp / "locked.wav").chmod(0)
    return ["speech", "encode", str(tmp / "locked.wav"), "--out", str(tmp / "ids.npy")]


def ids_file(tmp: Path, name: str, content: bytes | np.ndarray) -> Path:
    path = tmp / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        np.save(path, content)
    return path


def decode(tmp: Path, ids: Path) -> list[str]:
    return ["speech", "decode", str(ids), "--out", str(tmp / "out.wav")]


def run_folder(tmp: Path, model: Path) -> Path:
    """A finished training run as `train` leaves it: checkpoints beside final/."""
    run = tmp / "run"
    shutil.copytree(model, run / "final")
    (run / "checkpoints" / "step-8").mkdir(parents=True)
    (run / "checkpoints" / "step-8" / "trainer.json").write_text("{}")
    (run / "metrics.jsonl").write_text('{"step": 8, "loss": 1.0}\n')
    return run


def export_into(out: Callable[[Path], Path], extra: tuple[str, ...] = ()) -> Callable:
    def build(tmp: Path, model: Path) -> list[str]:
        final = run_folder(tmp, model) / "final"
        return ["export", str(final), "--out", str(out(tmp)), "--splits", "", *extra]

    return build


def foreign_folder(tmp: Path) -> Path:
    (tmp / "mine").mkdir()
    (tmp / "mine" / "notes.txt").write_text("not an export")
    return tmp / "mine"


def earlier_export(tmp: Path) -> Path:
    (tmp / "shipped").mkdir()
    (tmp / "shipped" / MARKER).write_text("{}")
    (tmp / "shipped" / "model.safetensors").write_bytes(b"old")
    return tmp / "shipped"


def chat(*args: str) -> Callable:
    return lambda tmp, model: ["chat", "--text", "What is two plus two?", *args]


def chat_out(out: Callable[[Path], Path]) -> Callable:
    return lambda tmp, model: ["chat", "--text", "What is two plus two?", "--out", str(out(tmp))]


def a_file(tmp: Path) -> Path:
    (tmp / "notes.txt").write_text("a file, not a folder")
    return tmp / "notes.txt"


def broken_model(change: Callable[[Path], None]) -> Callable:
    """`chat` on a copy of the model folder that ``change`` damaged."""

    def build(tmp: Path, model: Path) -> list[str]:
        folder = Path(shutil.copytree(model, tmp / "broken"))
        change(folder)
        return ["chat", "--checkpoint", str(folder), "--text", "Hi?", "--mode", "T2T"]

    return build


def cut_weights(folder: Path) -> None:
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])


def other_weights(folder: Path) -> None:
    """Another model's weights under this config (a micro model's, same file name)."""
    from helpers import micro_config

    from drvoice_lab import DrVoiceModel

    DrVoiceModel(micro_config()).save_pretrained(folder / "other")
    (folder / "other" / "model.safetensors").replace(folder / "model.safetensors")
    shutil.rmtree(folder / "other")


def edit_config(**srh: int) -> Callable[[Path], None]:
    def change(folder: Path) -> None:
        config = json.loads((folder / "config.json").read_text())
        config["srh_config"].update(srh)
        (folder / "config.json").write_text(json.dumps(config))

    return change


def bad_adapter(weights: bytes | None) -> Callable:
    """`chat --adapter` with a garbage config (``weights`` None) or garbage weights."""

    def build(tmp: Path, model: Path) -> list[str]:
        from drvoice_lab.modeling.lora import LoraSettings, lora_config

        adapter = tmp / "adapter"
        adapter.mkdir()
        if weights is None:
            (adapter / "adapter_config.json").write_text("{not json")
        else:
            lora_config(LoraSettings()).save_pretrained(str(adapter))
            (adapter / "adapter_model.safetensors").write_bytes(weights)
        return ["chat", "--adapter", str(adapter), "--text", "Hi?", "--mode", "T2T"]

    return build


def recording(samples: np.ndarray) -> Callable:
    def build(tmp: Path, model: Path) -> list[str]:
        sf.write(tmp / "rec.wav", samples.astype(np.float32), 16_000)
        return ["chat", "--audio", str(tmp / "rec.wav")]

    return build


NOISE = np.random.default_rng(0).normal(0, 0.1, 32_000)  # 2 s of white noise


def eval_args(*args: str) -> Callable:
    return lambda tmp, model: ["eval", "--modes", "T2T", *args]


# fmt: off
# One row per bad-input class, read as a table.
CASES = [
    # audio input
    Case("audio-truncated-wav", truncated_wav, r"cut\.wav: truncated wav"),
    Case("audio-directory", lambda t, m: ["chat", "--audio", str(t)], r"is a directory"),
    Case("audio-permission-denied", locked_wav, r"locked\.wav: permission denied",
         cli=True, locked=True),
    # speech decode
    Case("decode-empty-ids", lambda t, m: decode(t, ids_file(t, "e.npy", np.zeros(0, np.int64))),
         r"e\.npy holds no token ids"),
    Case("decode-text-as-npy", lambda t, m: decode(t, ids_file(t, "t.npy", b"1 2 3\n")),
         r"t\.npy is not a \.npy file"),
    Case("decode-float-ids", lambda t, m: decode(t, ids_file(t, "f.npy", np.ones(3))),
         r"f\.npy must hold a 1-D integer array"),
    # export: never destroys what it did not write
    Case("export-out-contains-source", export_into(lambda t: t / "run"),
         r"run holds the model folder .*run/final", cli=True),
    Case("export-out-is-source", export_into(lambda t: t / "run" / "final"), r"final is the model"),
    Case("export-out-inside-source", export_into(lambda t: t / "run" / "final" / "x"),
         r"x lies inside the model folder"),
    Case("export-out-not-an-export", export_into(foreign_folder), r"not written by `drvoice-lab"),
    Case("export-earlier-export-no-force", export_into(earlier_export), r"pass --force"),
    Case("export-out-not-an-export-force", export_into(foreign_folder, ("--force",)),
         r"not written by `drvoice-lab"),
    # chat: numeric ranges (argparse) and --out checked before the model runs
    Case("chat-max-positions-0", chat("--max-positions", "0"), r"--max-positions: must be >= 1",
         cli=True),
    Case("chat-max-positions-negative", chat("--max-positions", "-3"), r"must be >= 1, got -3"),
    Case("chat-temperature-negative", chat("--temperature", "-1"), r"--temperature: must .*>= 0"),
    Case("chat-temperature-nan", chat("--temperature", "nan"), r"--temperature: must be"),
    Case("chat-top-p-zero", chat("--top-p", "0"), r"--top-p: must be a number in \(0, 1\]"),
    Case("chat-top-p-above-1", chat("--top-p", "1.5"), r"--top-p: must be a number in \(0, 1\]"),
    Case("chat-top-k-negative", chat("--top-k", "-1"), r"--top-k: must be >= 0"),
    Case("chat-out-under-a-file", chat_out(lambda t: a_file(t) / "a.wav"), r"is a file, not a"),
    Case("chat-out-is-a-folder", chat_out(lambda t: t), r"is a folder; --out needs a file name"),
    Case("chat-out-not-audio", chat_out(lambda t: t / "answer.mp3"), r"name it \.wav or \.flac"),
    # model folders and adapters: damaged or another model's, refused by name
    Case("folder-weights-cut-short", broken_model(cut_weights),
         r"broken/model\.safetensors cannot be read .*cut short"),
    Case("folder-weights-empty", broken_model(lambda f: (f / "model.safetensors").write_bytes(b"")),
         r"broken/model\.safetensors cannot be read"),
    Case("folder-other-models-weights", broken_model(other_weights),
         r"broken/model\.safetensors does not fit its config\.json"),
    Case("folder-shape-mismatch", broken_model(edit_config(intermediate_size=100)),
         r"wrong shape: srh\.transformer\.layers\.0\.mlp"),
    Case("folder-config-not-json",
         broken_model(lambda f: (f / "config.json").write_text("{nope")),
         r"broken/config\.json is not a valid DrVoice config"),
    Case("folder-text-tokenizer-garbage",
         broken_model(lambda f: (f / "text_tokenizer.json").write_text("garbage")),
         r"the text tokenizer of .*broken cannot be read"),
    Case("adapter-config-garbage", bad_adapter(None), r"adapter/adapter_config\.json is not valid"),
    Case("adapter-weights-garbage", bad_adapter(b"junk" * 8),
         r"adapter/adapter_model\.safetensors cannot be read"),
    # chat --audio: the same voice-activity check as the demo
    Case("chat-audio-pure-noise", recording(NOISE), r"rec\.wav: no speech detected"),
    Case("chat-audio-10-ms", recording(NOISE[:160]), r"rec\.wav: .*(too short|no speech)"),
    # eval
    Case("eval-no-corpus", eval_args(), r"no corpus at .*drvoice-lab data build", cli=True,
         empty_cache=True),
    Case("eval-limit-0", eval_args("--limit", "0"), r"--limit: must be >= 1"),
    Case("eval-unknown-mode", eval_args("--modes", "X2Y"), r"unknown --modes \['X2Y'\]"),
]
# fmt: on


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    """A copy of the shipped model: cases may point commands at it, never at the package."""
    return Path(shutil.copytree(tiny_checkpoint(), tmp_path_factory.mktemp("m") / "model"))


@pytest.fixture(scope="module")
def empty_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under ``root`` with its kind, size and content hash."""
    tree = {}
    for path in sorted(root.rglob("*")):
        if path.is_dir():
            tree[str(path.relative_to(root))] = ("dir",)
        else:
            data = path.read_bytes() if os.access(path, os.R_OK) else b""
            tree[str(path.relative_to(root))] = ("file", path.stat().st_size, hash(data))
    return tree


def run(case: Case, argv: list[str], cache: Path, capsys, monkeypatch) -> tuple[int, str, str]:
    if case.cli:
        if case.locked and IS_ROOT and not shutil.which("setpriv"):
            pytest.skip("root reads any file and setpriv is missing")
        env = {**os.environ, **({"DRVOICE_CACHE": str(cache)} if case.empty_cache else {})}
        prefix = NO_DAC if case.locked else []
        done = subprocess.run(
            [*prefix, str(BIN / "drvoice-lab"), *argv],
            env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        return done.returncode, done.stdout, done.stderr
    if case.empty_cache:
        monkeypatch.setenv("DRVOICE_CACHE", str(cache))
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse usage errors
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_refused_with_a_message(case, tmp_path, model, empty_cache, capsys,
                                             monkeypatch):  # fmt: skip
    argv = case.build(tmp_path, model)
    before = snapshot(tmp_path)
    code, out, err = run(case, argv, empty_cache, capsys, monkeypatch)
    assert code == 2, err
    assert re.search(case.expect, err), err
    assert "Traceback" not in err and "unsafely" not in err
    assert out == ""  # refused before any work: no answer, no half-done report
    assert snapshot(tmp_path) == before  # nothing created, changed or deleted


def test_export_replaces_only_an_earlier_export_and_only_with_force(tmp_path, model):
    run = run_folder(tmp_path, model)
    out = tmp_path / "shipped"
    export_model(run / "final", out)
    assert (out / MARKER).is_file() and (out / "model.safetensors").is_file()
    first = snapshot(tmp_path)
    with pytest.raises(ExportError, match="pass --force"):
        export_model(run / "final", out)
    assert snapshot(tmp_path) == first
    (out / "stale.txt").write_text("from the earlier export")
    export_model(run / "final", out, force=True)
    after = snapshot(tmp_path)
    assert "shipped/stale.txt" not in after  # replaced as a whole, not merged into
    outside = {k: v for k, v in first.items() if not k.startswith("shipped")}
    assert {k: v for k, v in after.items() if not k.startswith("shipped")} == outside
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left


def test_chat_prints_and_keeps_the_answer_when_the_wav_cannot_be_written(
    tmp_path, capsys, monkeypatch
):
    """--out passed the check, then the disk filled up: the text is printed, the audio kept."""
    import drvoice_lab.audio.io as audio_io

    real_write = audio_io.write_audio
    wanted = tmp_path / "answer.wav"

    def full_disk(path, samples, rate=16_000):
        if Path(path) == wanted:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_write(path, samples, rate)

    monkeypatch.setattr(audio_io, "write_audio", full_disk)
    code = main(["chat", "--text", "What is two plus two?", "--max-positions", "4",
                 "--out", str(wanted)])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 2 and captured.out.strip()  # the text answer
    match = re.search(r"could not write (\S+) .*No space left.*kept in (\S+\.wav)", captured.err)
    assert match and match[1] == str(wanted), captured.err
    kept = Path(match[2])
    assert not wanted.exists() and sf.info(kept).frames > 0
    kept.unlink()


def test_eval_without_out_writes_under_runs_not_into_the_package(tmp_path, capsys, monkeypatch):
    from drvoice_lab.data.corpus import CorpusConfig, build_corpus

    corpus = build_corpus(tmp_path / "corpus", CorpusConfig(num_dialogues=2, seed=3), workers=1,
                          progress=False)  # fmt: skip
    package_model = snapshot(tiny_checkpoint())
    monkeypatch.chdir(tmp_path)
    args = ["eval", "--corpus", str(corpus), "--split", "train", "--modes", "T2T", "--limit", "1"]
    assert main(args) == 0
    report = Path("runs/eval/tiny_model/train/eval.json")
    assert report.is_file() and f"written: {report}" in capsys.readouterr().out
    assert snapshot(tiny_checkpoint()) == package_model
