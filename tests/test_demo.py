"""The Gradio demo, served for real on 127.0.0.1 and driven by gradio_client and by Playwright
with Debian's chromium (headless): spoken and typed turns, bad input, concurrent sessions."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("gradio", reason="the demo extra is not installed")
from gradio_client import Client, handle_file  # noqa: E402

from drvoice_lab.data.corpus import CorpusConfig, build_corpus, load_dialogues  # noqa: E402
from drvoice_lab.data.voices import HELDOUT_USER_VOICES  # noqa: E402
from drvoice_lab.demo import AUTO, DemoSettings, choose_mode, launch  # noqa: E402
from drvoice_lab.evaluation.evaluate import WhisperASR  # noqa: E402
from drvoice_lab.evaluation.metrics import word_error_rate  # noqa: E402
from drvoice_lab.inference.pipeline import VoiceChat  # noqa: E402
from drvoice_lab.model_folder import tiny_checkpoint

ROOT = Path(__file__).resolve().parents[1]
README_SCREENSHOT = ROOT / "docs" / "images" / "demo.png"  # refreshed on request only
CHROMIUM = Path("/usr/bin/chromium")
MAX_SECONDS = 20.0
MAX_FILE_MB = 1
OUTPUTS = ("chat", "stream", "audio", "latency", "timeline", "status", "question", "typed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory, monkeypatch_module):
    monkeypatch_module.setenv("GRADIO_TEMP_DIR", str(tmp_path_factory.mktemp("gradio")))
    monkeypatch_module.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    settings = DemoSettings(
        checkpoint=str(tiny_checkpoint()),  # the fast fixture; the default: see the last test
        port=_free_port(),
        max_file_mb=MAX_FILE_MB,
        max_seconds=MAX_SECONDS,
        concurrency=2,
    )
    app = launch(settings, block=False)
    yield f"http://{settings.host}:{settings.port}"
    app.close()


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


@pytest.fixture(scope="module")
def questions(tmp_path_factory):
    """Held-out wording spoken by held-out user voices (as in the default model's floor)."""
    config = CorpusConfig(num_dialogues=4, max_turns=1, heldout_voice_fraction=1.0, seed=11)
    corpus = build_corpus(tmp_path_factory.mktemp("demo-corpus"), config, progress=False)
    turns = [d.turns[0] for d in load_dialogues(corpus)]
    assert {t.user_voice for t in turns} <= {v.spec for v in HELDOUT_USER_VOICES}
    return [(corpus / t.user_audio, t.question) for t in turns]


def ask(client: Client, audio=None, text: str = "", mode: str = AUTO, adapter: str = "",
        checkpoint: str = "") -> dict:  # fmt: skip
    """One /answer call; the outputs by name."""
    values = client.predict(
        handle_file(str(audio)) if audio is not None else None,
        text, [], mode, 0.0, 1.0, 0.0, 1.0, True, 120, checkpoint, adapter,
        api_name="/answer",
    )  # fmt: skip
    return dict(zip(OUTPUTS, values, strict=True))


def answer_text(outputs: dict) -> str:
    chat = outputs["chat"]
    assert chat and chat[-1]["role"] == "assistant", outputs["status"]
    return " ".join(part["text"] for part in chat[-1]["content"] if part.get("type") == "text")


def test_choose_mode_matches_the_input():
    assert choose_mode(AUTO, True, False) == "S2M"
    assert choose_mode(AUTO, False, True) == "T2M"
    assert choose_mode("STC", True, True) == "STC"
    for requested, audio, text in (
        (AUTO, False, False),
        ("S2T", False, True),
        ("T2T", True, False),
    ):
        with pytest.raises(ValueError):
            choose_mode(requested, audio, text)


def test_spoken_question_gets_text_and_matching_speech(server, questions):
    client = Client(server, verbose=False)
    asr = WhisperASR()
    texts, heard = [], []
    for path, _question in questions:
        out = ask(client, path)
        text = answer_text(out)
        wav, rate = sf.read(out["audio"], dtype="float32")
        assert rate > 0 and len(wav) / rate > 0.5, "the spoken answer is missing or too short"
        assert "first audio" in out["latency"] and "RTF" in out["latency"]
        assert 'id="timeline"' in out["timeline"] and "25 Hz tokens" in out["timeline"]
        texts.append(text)
        heard.append(asr.transcribe(_to_16k(wav, rate)))
    # What Whisper hears in the spoken answer is what the text channel wrote. The default
    # model's S2M speech-text WER is 22 % on 60 held-out dialogues, with a wide spread over 4
    # answers: the bound catches a missing or mismatched audio stream (~100 %), while
    # tests/test_tiny_model.py tracks the model's own consistency.
    assert word_error_rate(heard, texts) <= 0.6, list(zip(texts, heard, strict=True))


def _to_16k(wav: np.ndarray, rate: int) -> np.ndarray:
    import soxr

    mono = wav.mean(axis=1) if wav.ndim == 2 else wav
    return soxr.resample(mono, rate, 16_000)


def _write(path: Path, samples: np.ndarray, rate: int) -> Path:
    sf.write(path, samples, rate, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory, questions):
    """name -> (file, expected words in the page's status, or None when it must be answered)."""
    d = tmp_path_factory.mktemp("bad")
    speech, rate = sf.read(questions[0][0], dtype="float32")
    loud = 0.5 * np.sin(2 * np.pi * 200 * np.arange(int(MAX_SECONDS + 5) * 8000) / 8000)
    corrupted = d / "corrupted.wav"
    corrupted.write_bytes(_write(d / "ok.wav", speech, rate).read_bytes()[:30])
    (d / "notes.txt").write_text("this is not audio\n" * 20)
    (d / "fake.wav").write_bytes(b"RIFF-but-not-really" * 40)
    import soxr

    return {
        "empty": (_write(d / "empty.wav", np.zeros(0, np.float32), rate), "empty"),
        "silent": (_write(d / "silent.wav", np.zeros(2 * rate, np.float32), rate), "silent"),
        "corrupted": (corrupted, "cannot read"),
        "non-audio text file": (d / "notes.txt", "cannot read"),
        "non-audio .wav": (d / "fake.wav", "cannot read"),
        "too long": (_write(d / "long.wav", loud, 8000), "limit"),
        "stereo 44.1 kHz": (
            _write(d / "stereo.wav", np.stack([soxr.resample(speech, rate, 44100)] * 2, 1), 44100),
            None,
        ),
        "8 kHz": (_write(d / "8k.wav", soxr.resample(speech, rate, 8000), 8000), None),
        "96 kHz": (_write(d / "96k.wav", soxr.resample(speech, rate, 96000), 96000), None),
    }


@pytest.mark.parametrize(
    "name",
    [
        "empty", "silent", "corrupted", "non-audio text file", "non-audio .wav", "too long",
        "stereo 44.1 kHz", "8 kHz", "96 kHz",
    ],
)  # fmt: skip
def test_bad_input_gets_a_message_and_the_app_keeps_serving(server, bad_inputs, questions, name):
    client = Client(server, verbose=False)
    path, expected = bad_inputs[name]
    out = ask(client, path)
    if expected is None:  # usable after conversion: answered, and the page says what it got
        assert answer_text(out), out["status"]
        assert "Hz" in out["chat"][0]["content"][0]["text"]
    else:
        assert out["status"].startswith("⚠️") and expected in out["status"].lower(), out["status"]
        assert "Traceback" not in out["status"]
    assert answer_text(ask(client, questions[1][0]))  # the next good request still works


def test_uploads_over_the_size_limit_are_refused(server, tmp_path, questions):
    big = _write(tmp_path / "big.wav", np.random.default_rng(0).uniform(-0.5, 0.5, 600_000), 48000)
    assert big.stat().st_size > MAX_FILE_MB * 1024 * 1024
    client = Client(server, verbose=False)
    with pytest.raises(Exception, match="(?i)size|large|exceed"):
        ask(client, big)
    assert answer_text(ask(client, questions[2][0]))


def test_typed_question_without_text_or_audio_is_a_message(server):
    out = ask(Client(server, verbose=False))
    assert out["status"].startswith("⚠️") and "type" in out["status"]


def test_a_lora_adapter_folder_is_used_and_a_wrong_one_explained(server, tmp_path):
    """Adapters saved in peft format load in the demo: a fresh one (B = 0, the merged model is
    the base) gives the base answer, one with random B another answer; a folder that is no
    adapter is a message."""
    import torch

    from drvoice_lab.model_folder import load_checkpoint
    from drvoice_lab.modeling.lora import apply_lora, save_adapter
    from drvoice_lab.training.recipe import LoraSettings

    model, _ = load_checkpoint(tiny_checkpoint())
    peft_model = apply_lora(model, LoraSettings())
    identity = save_adapter(peft_model, tmp_path / "identity")
    torch.manual_seed(0)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.5)
    shifted = save_adapter(peft_model, tmp_path / "shifted")
    client = Client(server, verbose=False)
    question = "What is the opposite of hot?"

    def reply(adapter: str) -> str:
        return answer_text(ask(client, text=question, mode="T2T", adapter=adapter))

    base = reply("")
    assert reply(str(identity)) == base
    assert reply(str(shifted)) != base
    out = ask(client, text=question, mode="T2T", adapter=str(tmp_path))
    assert out["status"].startswith("⚠️") and "not a LoRA adapter" in out["status"]


# Session i asks TYPED[i], then TYPED[i + 3]. For the default model, the banana question
# changes its answer to the Monday one (session 3), which gives the history check its teeth.
TYPED = [
    "What is the capital of France?",
    "What is three plus four?",
    "What is the opposite of hot?",
    "What color is a banana?",
    "What is two plus five?",
    "What is the capital of Japan?",
    "What comes after Monday?",
    "What is the opposite of big?",
]


def test_eight_concurrent_sessions_keep_their_own_history(server, questions):
    """Eight clients at once, three turns each that alternate typed and spoken input (T2T, S2T,
    T2T): every answer equals what the same model says to that session alone (greedy
    decoding), so no history leaked between sessions and mixed modes keep working."""
    from drvoice_lab.audio.io import AudioLimits
    from drvoice_lab.demo import read_question

    chat = VoiceChat.from_checkpoint(tiny_checkpoint())
    plans = [
        [(None, TYPED[i], "T2T"), (questions[i % len(questions)][0], "", "S2T"),
         (None, TYPED[(i + 3) % len(TYPED)], "T2T")]
        for i in range(len(TYPED))
    ]  # fmt: skip
    expected, without_history = [], []
    for plan in plans:
        session, answers = chat.fork(), []
        for audio, text, mode in plan:
            wav = read_question(str(audio), AudioLimits(), True)[0] if audio else None
            answers.append(session.respond(audio=wav, sample_rate=16000, text=text or None,
                                           mode=mode).text)  # fmt: skip
        expected.append(answers)
        alone = chat.fork()
        alone.respond(text=plan[2][1], mode="T2T")  # the typed turns alone, no spoken one
        without_history.append(alone.respond(text=plan[0][1], mode="T2T").text)
    # The check has teeth: for some session the history changes an answer (here: the same
    # typed question after another history), so a dropped or swapped history would show.
    firsts = [chat.fork().respond(text=plan[0][1], mode="T2T").text for plan in plans]
    assert any(f != w for f, w in zip(firsts, without_history, strict=True))
    got: list[list[str] | None] = [None] * len(plans)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            client = Client(server, verbose=False)
            got[i] = [answer_text(ask(client, audio, text, mode)) for audio, text, mode in plans[i]]
        except BaseException as err:  # reported below with the others
            errors.append(err)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(plans))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not errors, errors
    assert got == expected


def test_a_bad_model_folder_in_the_settings_is_a_message_without_server_paths(server, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{nope")
    (broken / "model.safetensors").write_bytes(b"")
    client = Client(server, verbose=False)
    out = ask(client, text="What is two plus two?", mode="T2T", checkpoint=str(broken))
    assert out["status"].startswith("⚠️") and "config.json is not a valid" in out["status"]
    out = ask(client, text="Hi?", mode="T2T", adapter=str(tmp_path))
    assert out["status"].startswith("⚠️") and "not a LoRA adapter" in out["status"]
    from drvoice_lab.demo import _temp_dir

    assert str(_temp_dir()) not in out["status"]


def test_page_messages_name_uploads_by_file_name_only():
    from drvoice_lab.demo import _temp_dir, for_page

    upload = str(_temp_dir() / "abc123" / "question.wav")
    err = ValueError(f"{upload}: no speech detected in 2.0 s of audio")
    assert for_page(err, upload) == "question.wav: no speech detected in 2.0 s of audio"
    assert str(_temp_dir()) not in for_page(ValueError(f"cannot read {_temp_dir()}/x/y.wav"))


# --- the real browser --------------------------------------------------------------------

BROWSER_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
    "--disable-background-networking", "--disable-component-update", "--no-first-run",
    "--disable-sync",
]  # fmt: skip


@pytest.fixture(scope="module")
def browser_kind():
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed (scripts/bootstrap.sh installs it)")
    return pytest.importorskip("playwright.sync_api")


def _open(playwright, url: str, extra_flags=()):
    browser = playwright.chromium.launch(
        executable_path=str(CHROMIUM), args=[*BROWSER_FLAGS, *extra_flags]
    )
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(url, wait_until="load")
    page.wait_for_selector("#send", timeout=60_000)
    return browser, page


def _upload_done(page):
    """Waits (as a context manager) for the page's upload of the question to the server: the
    waveform shows before the file has arrived, and Send would go out without it."""
    return page.expect_response(
        lambda r: "/upload" in r.url and r.request.method == "POST", timeout=60_000
    )


def _send_and_read_answer(page) -> tuple[str, list[str]]:
    page.click("#send")
    try:
        page.locator("#answer-audio").get_by_text("1x").wait_for(timeout=120_000)  # player ready
    except Exception as err:
        status = page.locator("#status").inner_text()
        raise AssertionError(f"no spoken answer; the page says {status!r}") from err
    sources = [a.get_attribute("src") or "" for a in page.locator("#answer-audio audio").all()]
    return page.locator("#chat").inner_text(), [s for s in sources if s]


def test_browser_upload_turn_shows_answer_and_playable_audio(
    server, browser_kind, questions, tmp_path
):
    path, _ = questions[0]
    update = os.environ.get("DRVOICE_UPDATE_SCREENSHOT") == "1"
    screenshot = README_SCREENSHOT if update else tmp_path / "demo.png"
    with browser_kind.sync_playwright() as pw:
        browser, page = _open(pw, server)
        page.click('#question-audio button[aria-label="Upload file"]')
        page.wait_for_timeout(500)
        with _upload_done(page):
            page.locator("#question-audio input[type=file]").set_input_files(str(path))
        page.locator("#question-audio").get_by_text("1x").wait_for(timeout=30_000)
        chat_text, sources = _send_and_read_answer(page)
        assert "spoken question" in chat_text and "Hz" in chat_text
        assert len(chat_text.split("\n")) >= 3, chat_text  # a non-empty assistant bubble
        assert sources and all(s.startswith(("blob:", "http")) for s in sources)
        assert page.locator("#timeline-box table").count() == 1
        assert "first audio" in page.locator("#latency").inner_text()
        page.screenshot(path=str(screenshot), full_page=True)
        browser.close()
    assert screenshot.stat().st_size > 10_000


def test_browser_microphone_turn_with_fake_capture(server, browser_kind, questions, tmp_path):
    speech, rate = sf.read(questions[1][0], dtype="float32")
    path = _write(tmp_path / "mic.wav", speech, rate)  # chromium's fake capture reads wav only
    fake = [
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        f"--use-file-for-fake-audio-capture={path}",
    ]
    with browser_kind.sync_playwright() as pw:
        browser, page = _open(pw, server, fake)
        page.click("#question-audio button.record-button")
        page.wait_for_timeout(3000)
        with _upload_done(page):
            page.locator("#question-audio button.stop-button").first.click()
        page.locator("#question-audio").get_by_text("1x").wait_for(timeout=30_000)
        chat_text, sources = _send_and_read_answer(page)
        assert "spoken question" in chat_text, chat_text
        assert sources
        browser.close()


def test_the_demo_serves_the_default_model_unless_told_otherwise(questions):
    """Without --checkpoint the demo's engine is the shipped default (DrVoice-smol); one
    spoken turn through the page's own turn function streams its text and audio."""
    from drvoice_lab.audio.io import AudioLimits
    from drvoice_lab.demo import Engines, read_question, turn_updates
    from drvoice_lab.model_folder import default_checkpoint

    engines = Engines(None, AudioLimits(), allow_paths=False)
    assert engines.default == (str(default_checkpoint()), "")
    chat = engines.get()
    wav = read_question(str(questions[0][0]), AudioLimits(), True)[0]
    messages = [{"role": "assistant", "content": ""}]  # the page's bubble being written
    updates = list(turn_updates(chat.fork(), messages, audio=wav, sample_rate=16_000, mode="S2M"))
    assert any("chunk" in u for u in updates)
    assert updates[-1]["result"].text and updates[-1]["result"].audio is not None
