"""Real data in: `drvoice-lab data import` of a JSONL manifest the tests write themselves."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from drvoice_lab.audio.io import load_audio
from drvoice_lab.cli import main
from drvoice_lab.data.corpus import load_dialogues
from drvoice_lab.data.manifest import RECORDED, import_manifest
from drvoice_lab.data.voices import HELDOUT_USER_VOICES


def tone(path: Path, seconds: float, rate: int, channels: int = 1, level: float = 0.3) -> str:
    """A gliding tone with a syllable-like envelope: valid, non-silent, unclipped audio."""
    t = np.arange(int(seconds * rate)) / rate
    wav = level * np.sin(2 * np.pi * (180 + 120 * t) * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    sf.write(path, np.repeat(wav[:, None], channels, axis=1), rate, subtype="PCM_16")
    return path.name


def write_manifest(folder: Path, rows: list) -> Path:
    """Rows are dicts (written as JSON) or raw strings (written as they are)."""
    lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
    path = folder / "manifest.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def qa(question: str, answer: str, **extra) -> dict:
    return {"user_text": question, "assistant_text": answer, **extra}


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> tuple[Path, dict[str, float]]:
    """A manifest with good rows (rates 8-48 kHz, stereo, typed and multi-turn users, missing
    assistant audio) and bad rows; returns it and the seconds of each good audio file."""
    folder = tmp_path_factory.mktemp("data")
    (folder / "wav").mkdir()
    seconds = {"wav/u1.wav": 1.0, "wav/a1.wav": 1.5, "wav/a2.wav": 1.2, "wav/u3.wav": 0.8,
               "wav/u4.wav": 0.9, "wav/a4.wav": 1.1}  # fmt: skip
    rates = {"wav/u1.wav": (8000, 1), "wav/a1.wav": (44100, 2), "wav/a2.wav": (22050, 1),
             "wav/u3.wav": (48000, 2), "wav/u4.wav": (16000, 1),
             "wav/a4.wav": (24000, 1)}  # fmt: skip
    for rel, (rate, channels) in rates.items():
        tone(folder / rel, seconds[rel], rate, channels)
    (folder / "wav/broken.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEjunk" + bytes(range(200)))
    tone(folder / "wav/silent.wav", 1.0, 16000, level=0.0)
    tone(folder / "wav/long.wav", 61.0, 8000)
    rows = [
        {"id": "a", **qa("What is two plus two?", "Two plus two is four."),
         "user_audio": "wav/u1.wav", "assistant_audio": "wav/a1.wav"},  # 1
        {"id": "b", "split": "test_question", **qa("Name a colour.", "Blue is a colour."),
         "assistant_audio": str(folder / "wav/a2.wav")},  # 2: typed user, absolute path
        {"id": "c", "split": "test_voice", **qa("Where is Lima?", "Lima is in Peru."),
         "user_audio": "wav/u3.wav"},  # 3: the assistant is synthesized
        "",  # a blank line is no row
        {"id": "d", "turns": [
            qa("Hello there.", "Hello.", user_audio="wav/u4.wav", assistant_audio="wav/a4.wav"),
            qa("What day follows Monday?", "Tuesday follows Monday.", family="sequences")]},  # 5
        {"id": "e", **qa("Q?", "A.", user_audio="wav/nope.wav")},  # 6: missing file
        {"id": "f", **qa("Q?", "A.", user_audio="wav/broken.wav")},  # 7: corrupted wav
        {"id": "g", "user_text": "Q?"},  # 8: missing field
        {"id": "h", "split": "dev", **qa("Q?", "A.")},  # 9: bad split
        '{"id": "i", "user_text": "Q?"',  # 10: not JSON
        {"id": "j", **qa("Q?", "A.", assistant_audio="wav/silent.wav")},  # 11: silent
        {"id": "k", **qa("Q?", "A.", user_audio="wav/long.wav")},  # 12: too long
        {"id": "a", **qa("Again?", "Yes.")},  # 13: duplicate id
    ]  # fmt: skip
    return write_manifest(folder, rows), seconds


@pytest.fixture(scope="module")
def imported(source, tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus")
    return out, import_manifest(source[0], out, workers=1, progress=False)


def test_good_rows_become_a_corpus_with_their_splits_and_durations(source, imported):
    out, report = imported
    _, seconds = source
    for name in ("dialogues.jsonl", "manifest.json", "text_tokenizer.json", "import_report.json"):
        assert (out / name).is_file(), name
    dialogues = {d.id: d for d in load_dialogues(out)}
    assert {k: d.split for k, d in dialogues.items()} == {
        "a": "train", "b": "test_question", "c": "test_voice", "d": "train"}  # fmt: skip
    assert [d.id for d in load_dialogues(out, "test_voice")] == ["c"]
    a, b, c, d = (dialogues[k] for k in "abcd")
    assert a.turns[0].user_seconds == pytest.approx(seconds["wav/u1.wav"], abs=0.01)
    assert a.turns[0].assistant_seconds == pytest.approx(seconds["wav/a1.wav"], abs=0.01)
    assert b.turns[0].assistant_seconds == pytest.approx(seconds["wav/a2.wav"], abs=0.01)
    assert c.turns[0].user_seconds == pytest.approx(seconds["wav/u3.wav"], abs=0.01)
    assert len(d.turns) == 2 and d.turns[1].family == "sequences"
    # typed users and missing assistant audio are synthesized: speech that lasts a while
    assert b.turns[0].user_voice != RECORDED and b.turns[0].user_seconds > 0.4
    assert c.turns[0].assistant_seconds > 0.4 and d.turns[1].assistant_seconds > 0.4
    assert [t.user_voice for t in (a.turns[0], c.turns[0], d.turns[0])] == [RECORDED] * 3
    for turn in (t for dialogue in dialogues.values() for t in dialogue.turns):
        for rel in (turn.user_audio, turn.assistant_audio):
            info = sf.info(str(out / rel))
            assert (info.samplerate, info.channels, info.format) == (16000, 1, "FLAC")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["splits"] == {"train": 2, "test_question": 1, "test_voice": 1}
    assert manifest["turns"] == 5 and manifest["source"] == "manifest"
    assert (report.imported, report.rows, report.recorded_audio) == (4, 12, 6)
    assert (report.synthesized_user_turns, report.synthesized_assistant_turns) == (2, 2)
    assert not list((out / "audio").glob("*.tmp*"))  # atomic writes leave nothing behind


def test_a_typed_question_in_the_held_out_voice_split_gets_a_held_out_voice(tmp_path):
    manifest = write_manifest(tmp_path, [{"split": "test_voice", **qa("Hi?", "Hello.")}])
    import_manifest(manifest, tmp_path / "out", workers=1, progress=False)
    (dialogue,) = load_dialogues(tmp_path / "out")
    assert dialogue.id == "m000001"  # the default id names the line
    assert dialogue.turns[0].user_voice in {v.spec for v in HELDOUT_USER_VOICES}


def test_each_bad_row_is_reported_by_line_number(imported):
    out, report = imported
    saved = json.loads((out / "import_report.json").read_text())
    assert saved["bad_rows"] == report.bad_rows
    errors = {b["line"]: " ".join(b["errors"]) for b in report.bad_rows}
    assert sorted(errors) == [6, 7, 8, 9, 10, 11, 12, 13]
    expected = {
        6: "user_audio: missing file", 7: "user_audio: cannot read", 8: "missing field "
        "assistant_text", 9: "split 'dev' is not one of", 10: "not valid JSON",
        11: "assistant_audio: the audio is silent", 12: "user_audio: the audio is 61.0 s long",
        13: "duplicate id 'a' (first on line 1)",
    }  # fmt: skip
    for line, text in expected.items():
        assert text in errors[line], (line, errors[line])
    assert [b["id"] for b in report.bad_rows] == ["e", "f", "g", "h", None, "j", "k", "a"]
    assert "line 7: user_audio: cannot read" in report.summary()


def test_re_running_reuses_the_audio_on_disk(source, imported, monkeypatch):
    out, _ = imported
    before = {p.name: p.stat().st_mtime_ns for p in (out / "audio").iterdir()}
    jsonl = (out / "dialogues.jsonl").read_text()

    def refuse(*args, **kwargs):
        raise AssertionError("re-running read or synthesized audio again")

    def load_bad_only(path, *args, **kwargs):  # bad files are tried again: they may be fixed
        if Path(path).name not in {"broken.wav", "silent.wav", "long.wav"}:
            refuse()
        return load_audio(path, *args, **kwargs)

    monkeypatch.setattr("drvoice_lab.data.manifest.load_audio", load_bad_only)
    monkeypatch.setattr("drvoice_lab.data.voices.Voice.synthesize", refuse)
    report = import_manifest(source[0], out, workers=1, progress=False)
    assert report.imported == 4 and len(report.bad_rows) == 8
    assert {p.name: p.stat().st_mtime_ns for p in (out / "audio").iterdir()} == before
    assert (out / "dialogues.jsonl").read_text() == jsonl


def test_the_command_exits_0_with_good_rows_and_2_with_none(source, imported, tmp_path, capsys):
    out, _ = imported
    assert main(["data", "import", str(source[0]), "--out", str(out), "--workers", "1"]) == 0
    printed = capsys.readouterr().out
    assert "imported 4 of 12 rows" in printed and "line 10: not valid JSON" in printed
    assert "corpus at" in printed  # the usual corpus summary follows
    bad = write_manifest(tmp_path, ['{"user_text": "Q?"}', "nonsense"])
    assert main(["data", "import", str(bad), "--out", str(tmp_path / "none")]) == 2
    assert "imported 0 of 2 rows" in capsys.readouterr().out
    assert not (tmp_path / "none" / "dialogues.jsonl").exists()
    report = json.loads((tmp_path / "none" / "import_report.json").read_text())
    assert [b["line"] for b in report["bad_rows"]] == [1, 2]
    assert main(["data", "import", str(tmp_path / "absent.jsonl"), "--out", str(tmp_path)]) == 2


def test_training_features_for_an_imported_corpus(source, tmp_path):
    """The shipped default model's encoder and speech tokenizer prepare an imported corpus,
    and its examples lay out in a speech-in and a text-in mode."""
    from drvoice_lab.audio.encoder import SpeechEncoder
    from drvoice_lab.config import DrVoiceConfig
    from drvoice_lab.data.text_tokenizer import TextTokenizer
    from drvoice_lab.model_folder import load_speech_tokenizer_for, tiny_checkpoint
    from drvoice_lab.training.data import DialogueBatches, FeatureStore

    folder = source[0].parent
    manifest = write_manifest(folder / "wav", [
        qa("What is two plus two?", "Two plus two is four.", user_audio="u1.wav"),
        qa("Name a colour.", "Blue is a colour.", assistant_audio="a2.wav"),
    ])  # fmt: skip
    out = tmp_path / "corpus"
    assert import_manifest(manifest, out, workers=1, progress=False).imported == 2
    model = tiny_checkpoint()
    config = DrVoiceConfig.from_pretrained(model)
    speech_tokenizer = load_speech_tokenizer_for(model)
    tokens_only = FeatureStore(out, None, speech_tokenizer, tokenizer_name="default")
    dialogues = load_dialogues(tokens_only.corpus)
    assert tokens_only.prepare(dialogues, progress=False, answers_only=True) == 2
    assert tokens_only.prepare(dialogues, progress=False, answers_only=True) == 0  # cached
    encoder = SpeechEncoder.from_pretrained(config.encoder_name_or_path)
    features = FeatureStore(out, encoder, None, encoder_name=config.encoder_name_or_path,
                            tokenizer_name="default")  # fmt: skip
    dialogues = load_dialogues(out)
    features.prepare(dialogues, progress=False)  # the tokens are cached: no tokenizer needed
    for turn in (t for d in dialogues for t in d.turns):
        frames = features.user_frames(turn.user_audio)
        assert frames.shape[1] == config.encoder_config.d_model
        assert abs(len(frames) - 50 * turn.user_seconds) <= 2
        tokens = features.answer_tokens(turn.assistant_audio)
        assert abs(len(tokens) - 25 * turn.assistant_seconds) <= 2
        assert tokens.max() < config.speech_codebook_size
    tokenizer = TextTokenizer.load(model / "text_tokenizer.json")
    batches = DialogueBatches(out, "train", config, tokenizer, features)
    for mode in ("S2M", "T2T"):
        example, feats = batches.example(dialogues[1], mode)
        assert len(feats) == (mode == "S2M")
