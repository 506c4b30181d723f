"""The Gradio voice chat: speak (microphone or upload) or type, hear the answer as it streams.

``build_app()`` makes the Blocks app, ``launch()`` serves it (127.0.0.1 by default, upload size
limit, queue with a concurrency limit). All model work goes through ``VoiceChat.stream``; this
module only turns its events into page updates. Each browser session keeps its own dialogue
history in a ``gr.State``; the model weights are shared.
"""

from __future__ import annotations

import io
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from drvoice_lab.audio.io import MODEL_SAMPLE_RATE, AudioError, AudioLimits, load_audio
from drvoice_lab.data.com import MODES
from drvoice_lab.inference.pipeline import VoiceChat
from drvoice_lab.inference.sampling import SamplingConfig
from drvoice_lab.inference.timeline import latency_markdown, latency_summary, timeline_html
from drvoice_lab.model_folder import (
    CheckpointError,
    default_checkpoint,
    load_checkpoint,
    load_speech_tokenizer_for,
)

AUTO = "auto (S2M for speech, T2M for text)"
DEFAULT_MAX_SECONDS = 30.0  # longest spoken question accepted
DEFAULT_MAX_FILE_MB = 16  # upload limit enforced by the server before any decoding
UPDATE_SECONDS = 0.6  # streamed audio after the first chunk goes out in pieces this long
TEXT_UPDATE_PIECES = 3  # text-only answers update the page every few pieces
MAX_HISTORY_TURNS = 6  # earlier turns kept in context (each holds its encoder frames)
MAX_MODELS = 3  # checkpoints/adapters kept loaded; the least recently used one goes first
LOOPBACK = ("127.0.0.1", "localhost", "::1")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoSettings:
    checkpoint: str | None = None  # model folder; None = the shipped default model
    host: str = "127.0.0.1"
    port: int = 7860
    max_file_mb: int = DEFAULT_MAX_FILE_MB
    max_seconds: float = DEFAULT_MAX_SECONDS
    concurrency: int = 2  # turns computed at once; the rest wait in the queue
    queue_size: int = 64
    # Loading other model/adapter folders named in the page: default only on loopback, since
    # on a network it would let any visitor load any folder of the server.
    allow_model_paths: bool | None = None

    @property
    def model_paths_allowed(self) -> bool:
        if self.allow_model_paths is None:
            return self.host in LOOPBACK
        return self.allow_model_paths


class Engines:
    """Loaded models by (checkpoint, adapter), at most ``MAX_MODELS``; models with the same
    speech encoder share one. Thread-safe: a model loads outside the lookup lock, so turns on
    models already loaded never wait for it."""

    def __init__(self, default: str | Path | None, limits: AudioLimits, allow_paths: bool):
        self.default = (str(default or default_checkpoint()), "")
        self.limits, self.allow_paths = limits, allow_paths
        self._chats: OrderedDict[tuple[str, str], VoiceChat] = OrderedDict()
        self._encoders: dict[str, object] = {}  # encoder_name_or_path -> SpeechEncoder
        self._loading: dict[tuple[str, str], threading.Lock] = {}
        self._lock = threading.Lock()

    def get(self, checkpoint: str = "", adapter: str = "") -> VoiceChat:
        key = ((checkpoint or "").strip() or self.default[0], (adapter or "").strip())
        if key != self.default and not self.allow_paths:
            raise ValueError(
                "this demo serves only its own model (other folders can be loaded when it "
                "listens on 127.0.0.1, or when started with --allow-model-paths)"
            )
        with self._lock:
            if key in self._chats:
                self._chats.move_to_end(key)
                return self._chats[key]
            loading = self._loading.setdefault(key, threading.Lock())
        with loading:  # one load per key; concurrent requests for it wait here
            with self._lock:
                if key in self._chats:
                    return self._chats[key]
            chat = self._load(*key)
            with self._lock:
                self._chats[key] = chat
                self._loading.pop(key, None)
                while len(self._chats) > MAX_MODELS:
                    oldest = next(k for k in self._chats if k != self.default)
                    del self._chats[oldest]
            return chat

    def _load(self, checkpoint: str, adapter: str) -> VoiceChat:
        from drvoice_lab.audio.encoder import SpeechEncoder

        model, tokenizer = load_checkpoint(checkpoint, adapter or None)
        name = model.config.encoder_name_or_path
        with self._lock:
            encoder = self._encoders.get(name)
        if encoder is None:
            encoder = SpeechEncoder.from_pretrained(name)
            with self._lock:
                encoder = self._encoders.setdefault(name, encoder)
        speech_tokenizer = load_speech_tokenizer_for(checkpoint)
        return VoiceChat(model, tokenizer, encoder, speech_tokenizer, limits=self.limits)


def choose_mode(requested: str, has_audio: bool, has_text: bool) -> str:
    """The CoM mode of a turn: auto picks S2M for speech and T2M for text; an explicit mode
    must match the input given."""
    if not has_audio and not has_text:
        raise ValueError("record or upload a question, or type one")
    if requested in ("", None, AUTO):
        return "S2M" if has_audio else "T2M"
    if requested not in MODES:
        raise ValueError(f"unknown mode {requested!r}")
    if MODES[requested].speech_in and not has_audio:
        raise ValueError(f"mode {requested} answers a spoken question: record or upload one")
    if not MODES[requested].speech_in and not has_text:
        raise ValueError(f"mode {requested} answers a typed question: type one")
    return requested


def read_question(path: str, limits: AudioLimits, trim: bool) -> tuple[np.ndarray, str]:
    """An uploaded or recorded file -> 16 kHz mono (VAD-trimmed when ``trim``) and a note on
    what was done to it. Raises ``AudioError`` with a message for the page."""
    wav = load_audio(path, limits=limits)
    try:
        info = sf.info(path)
        source = f"{info.samplerate} Hz, {info.channels} channel{'s' * (info.channels > 1)}"
    except (sf.LibsndfileError, RuntimeError):
        source = "unknown format"
    note = f"spoken question: {len(wav) / MODEL_SAMPLE_RATE:.1f} s ({source}"
    if trim:
        from drvoice_lab.audio.vad import trim_silence

        trimmed = trim_silence(wav)
        wav = trimmed.audio
        note += f"; speech {trimmed.start_s:.2f}-{trimmed.end_s:.2f} s kept"
    return wav, note + ")"


def for_page(err: Exception, upload: str | None = None) -> str:
    """An error as the page shows it: the uploaded file by its name only, and no server path
    (the demo's upload folder or cache) in the text."""
    text = str(err)
    if upload:
        text = text.replace(str(upload), Path(upload).name)
    from drvoice_lab.paths import cache_dir

    for folder in (str(_temp_dir()), str(cache_dir())):
        text = text.replace(folder + os.sep, "").replace(folder, "<server cache>")
    return text


def wav_bytes(samples: np.ndarray, rate: int) -> bytes:
    """A chunk of audio as a small 16-bit wav file (the streamed audio output's unit)."""
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(samples, -1.0, 1.0), rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def warm_up(chat: VoiceChat) -> None:
    """The chat's warm-up turns and the VAD model's first call, before anyone is waiting."""
    from drvoice_lab.audio.vad import speech_spans

    tone = 0.3 * np.sin(2 * np.pi * 220 * np.arange(MODEL_SAMPLE_RATE) / MODEL_SAMPLE_RATE)
    speech_spans(tone.astype(np.float32))
    chat.warm_up()


def turn_updates(chat: VoiceChat, messages: list[dict], **stream_args) -> Iterator[dict]:
    """One turn of ``chat.stream(**stream_args)`` as page updates, independent of Gradio:
    ``{"messages"}`` with the answer written so far, ``{"chunk"}`` with the next piece of audio
    (wav bytes), and last ``{"messages", "result"}``. ``messages[-1]`` is the assistant's.

    Updates are batched: each one costs the server (and the decoding loop, which shares the
    interpreter) several ms, so the first audio chunk goes out at once and later audio in
    pieces of >= UPDATE_SECONDS, carrying the text written so far."""
    rate = chat.speech_tokenizer.sample_rate
    speech_out = MODES[stream_args["mode"]].speech_out
    audio: list[np.ndarray] = []  # chunks not sent yet
    started_audio, pieces = False, 0
    for event in chat.stream(**stream_args):
        if event.kind == "text":
            messages[-1] = {"role": "assistant", "content": messages[-1]["content"] + event.text}
            pieces += 1
            if not speech_out and pieces % TEXT_UPDATE_PIECES == 0:
                yield {"messages": messages}
        elif event.kind == "audio":
            audio.append(event.audio)
            if not started_audio or sum(map(len, audio)) >= UPDATE_SECONDS * rate:
                yield {"messages": messages, "chunk": wav_bytes(np.concatenate(audio), rate)}
                audio, started_audio = [], True
        elif event.kind == "done":
            if audio:
                yield {"messages": messages, "chunk": wav_bytes(np.concatenate(audio), rate)}
            messages[-1] = {"role": "assistant", "content": event.result.text or "(no text)"}
            yield {"messages": messages, "result": event.result}


def build_app(settings: DemoSettings = DemoSettings()):
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr

    limits = AudioLimits(max_seconds=settings.max_seconds)
    engines = Engines(settings.checkpoint, limits, settings.model_paths_allowed)
    warm_up(engines.get())  # the first visitor should not wait for loading and first calls

    def new_conversation():
        return [], [], None, "", "", ""

    # Uploaded and recorded questions and streamed answers are deleted after an hour.
    with gr.Blocks(title="DrVoice lab", delete_cache=(3600, 3600)) as app:
        gr.Markdown(
            "## DrVoice lab: parallel speech-text voice chat\n"
            "Ask by microphone, upload or text. The model listens at 5 Hz (25 Hz speech "
            "tokens grouped by k), writes text and speech in parallel, and the SRH ungroups "
            "each 5 Hz step into k speech tokens that stream out as audio."
        )
        history = gr.State([])
        with gr.Row():
            with gr.Column(scale=3):
                chatbot = gr.Chatbot(label="Conversation", height=360, elem_id="chat")
                audio_in = gr.Audio(
                    sources=["microphone", "upload"],
                    type="filepath",
                    label="Spoken question",
                    elem_id="question-audio",
                )
                text_in = gr.Textbox(
                    label="…or type a question",
                    placeholder="Which city is the capital of Japan?",
                    elem_id="question-text",
                )
                with gr.Row():
                    send = gr.Button("Send", variant="primary", elem_id="send")
                    stop = gr.Button("Stop", elem_id="stop")
                    clear = gr.Button("New conversation", elem_id="clear")
            with gr.Column(scale=2):
                status = gr.Markdown(label="Status", elem_id="status")
                stream_out = gr.Audio(
                    label="Spoken answer (streaming)",
                    streaming=True,
                    autoplay=True,
                    interactive=False,
                    elem_id="answer-stream",
                )
                full_out = gr.Audio(
                    label="Last spoken answer", interactive=False, elem_id="answer-audio"
                )
                latency = gr.Markdown(label="Latency", elem_id="latency")
        gr.Markdown("### Timeline of the last answer (text and 25 Hz tokens per 5 Hz position)")
        timeline = gr.HTML(label="Timeline", elem_id="timeline-box")
        with gr.Accordion("Settings", open=False):
            with gr.Row():
                mode = gr.Dropdown([AUTO, *MODES], value=AUTO, label="CoM mode", elem_id="mode")
                trim = gr.Checkbox(True, label="Trim silence (Silero VAD)")
                max_positions = gr.Slider(10, 200, value=120, step=5, label="Max 5 Hz positions")
            with gr.Row():
                text_t = gr.Slider(0.0, 1.5, value=0.0, step=0.05, label="Text temperature")
                text_p = gr.Slider(0.05, 1.0, value=1.0, step=0.05, label="Text top-p")
                speech_t = gr.Slider(0.0, 1.5, value=0.0, step=0.05, label="Speech temperature")
                speech_p = gr.Slider(0.05, 1.0, value=1.0, step=0.05, label="Speech top-p")
            with gr.Row():
                allowed = engines.allow_paths
                checkpoint = gr.Textbox(
                    label="Checkpoint folder",
                    placeholder=f"default: {engines.default[0]}",
                    interactive=allowed,
                )
                adapter = gr.Textbox(
                    label="LoRA adapter folder", placeholder="none", interactive=allowed
                )

        def answer(
            audio_path, typed, messages, turns, mode_name, text_temperature, text_top_p,
            speech_temperature, speech_top_p, vad, positions, checkpoint_path, adapter_path,
        ):  # fmt: skip
            """One turn as a stream of page updates ({component: value})."""
            received = time.perf_counter()
            messages, typed = list(messages or []), (typed or "").strip()
            try:
                mode_name = choose_mode(mode_name, bool(audio_path), bool(typed))
                spec = MODES[mode_name]
                chat = engines.get(checkpoint_path, adapter_path)
                chat = chat.fork((turns or [])[-MAX_HISTORY_TURNS:])
                wav, note = None, ""
                if spec.speech_in:
                    wav, note = read_question(audio_path, limits, vad)
                stream_args = dict(
                    audio=wav,
                    sample_rate=MODEL_SAMPLE_RATE,
                    text=None if spec.speech_in else typed,
                    mode=mode_name,
                    text_sampling=SamplingConfig(text_temperature, top_p=text_top_p),
                    speech_sampling=SamplingConfig(speech_temperature, top_p=speech_top_p),
                    max_positions=int(positions),
                )
            except Exception as err:  # bad input or settings: the page's own message
                if not isinstance(err, AudioError | CheckpointError | ValueError | OSError):
                    log.exception("turn could not start")
                yield {status: f"⚠️ {for_page(err, audio_path)}"}
                return
            user = f"[{note}]" if spec.speech_in else typed
            messages += [{"role": "user", "content": user}, {"role": "assistant", "content": ""}]
            said = f"{mode_name}: {spec.system_prompt}"
            yield {chatbot: messages, full_out: None, latency: "", timeline: "", status: said}
            prepared = time.perf_counter() - received  # file reading and VAD, before the model
            try:
                for update in turn_updates(chat, messages, **stream_args):
                    page = {chatbot: update["messages"]}
                    if "chunk" in update:
                        page[stream_out] = update["chunk"]
                    if "result" in update:
                        result = update["result"]
                        page |= {
                            full_out: None
                            if result.audio is None
                            else (result.sample_rate, result.audio),
                            latency: latency_markdown(latency_summary(result, prepared)),
                            timeline: timeline_html(result, chat.tokenizer, chat.config),
                            history: chat.history,
                            audio_in: None,
                            text_in: "",
                        }
                    yield page
            except Exception as err:  # a failure inside the model: a message, history intact
                log.exception("turn failed")
                failed = f"⚠️ the turn failed ({for_page(err, audio_path)}); nothing was kept"
                yield {chatbot: messages[:-2], status: failed}

        inputs = [
            audio_in, text_in, chatbot, history, mode, text_t, text_p, speech_t, speech_p,
            trim, max_positions, checkpoint, adapter,
        ]  # fmt: skip
        outputs = [
            chatbot, stream_out, full_out, latency, timeline, status, history, audio_in, text_in
        ]  # fmt: skip
        turn = send.click(answer, inputs, outputs, api_name="answer")
        typed_turn = text_in.submit(answer, inputs, outputs, api_name=False)
        stop.click(None, cancels=[turn, typed_turn])
        clear.click(
            new_conversation,
            None,
            [chatbot, history, full_out, latency, timeline, status],
            api_name="new_conversation",
            cancels=[turn, typed_turn],  # a running turn would write the old history back
        )
    app.queue(default_concurrency_limit=settings.concurrency, max_size=settings.queue_size)
    return app


def launch(settings: DemoSettings = DemoSettings(), block: bool = True):
    """Serve the app; ``block=False`` returns the running app (tests)."""
    os.environ.setdefault("GRADIO_TEMP_DIR", str(_temp_dir()))
    app = build_app(settings)
    app.launch(
        server_name=settings.host,
        server_port=settings.port,
        max_file_size=f"{settings.max_file_mb}mb",
        prevent_thread_lock=not block,
        show_error=True,
        quiet=not block,
    )
    return app


def _temp_dir() -> Path:
    from drvoice_lab.paths import cache_dir

    return cache_dir("gradio")
