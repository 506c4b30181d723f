"""One spoken or typed turn, end to end: audio -> encoder -> model -> text + speech -> audio.

``VoiceChat`` bundles a trained DrVoice model folder (``drvoice_lab.model_folder``), the
frozen speech encoder and the speech tokenizer/detokenizer, and keeps the dialogue
history so later turns see earlier ones exactly as the model produced them.
"""

from __future__ import annotations

import copy
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from drvoice_lab.audio.io import AudioLimits, load_audio
from drvoice_lab.data.collator import DrVoiceCollator
from drvoice_lab.data.com import MODES, TurnInput, format_dialogue, shared_prefix, spoken_answer
from drvoice_lab.data.text_tokenizer import TextTokenizer
from drvoice_lab.inference.decoding import PromptPrefix, iter_joint, prefill_prefix
from drvoice_lab.inference.sampling import SamplingConfig
from drvoice_lab.model_folder import load_checkpoint, load_speech_tokenizer_for
from drvoice_lab.modeling import DrVoiceModel


@dataclass
class TurnResult:
    mode: str
    text: str  # the answer (for chain modes: the spoken part)
    full_text: str  # everything the text channel wrote (transcript, <|speak|>, ...)
    speech_ids: np.ndarray  # 25 Hz codebook ids of the spoken answer (pads/eos removed)
    audio: np.ndarray | None  # decoded answer at ``sample_rate`` (speech-out modes)
    sample_rate: int
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    # What the model wrote at each generated 5 Hz position, specials included (the timeline):
    text_channel: np.ndarray | None = None  # (P,) text token id per position (pad after the end)
    speech_channel: np.ndarray | None = None  # (P, k) 25 Hz ids per position (speech-out modes)


class VoiceChat:
    def __init__(
        self,
        model: DrVoiceModel,
        tokenizer: TextTokenizer,
        encoder=None,
        speech_tokenizer=None,
        limits: AudioLimits = AudioLimits(),
    ) -> None:
        from drvoice_lab.audio.encoder import SpeechEncoder
        from drvoice_lab.codec.registry import load_speech_tokenizer

        self.model, self.tokenizer = model.eval(), tokenizer
        self.config = model.config
        self.encoder = encoder or SpeechEncoder.from_pretrained(self.config.encoder_name_or_path)
        self.speech_tokenizer = speech_tokenizer or load_speech_tokenizer()
        if self.speech_tokenizer.vocab_size != self.config.speech_codebook_size:
            raise ValueError(
                f"speech tokenizer has {self.speech_tokenizer.vocab_size} tokens but the model "
                f"expects {self.config.speech_codebook_size}"
            )
        self.limits = limits
        self.collate = DrVoiceCollator(self.config, text_pad_id=tokenizer.pad_id)
        self.history: list[tuple[TurnInput, np.ndarray | None]] = []  # (turn, user frames)
        self.prefixes: dict[str, PromptPrefix] = {}  # per mode, shared by forks

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, adapter: str | Path | None = None, **kwargs
    ) -> VoiceChat:
        model, tokenizer = load_checkpoint(path, adapter)
        kwargs.setdefault("speech_tokenizer", load_speech_tokenizer_for(path))
        return cls(model, tokenizer, **kwargs)

    def reset(self) -> None:
        self.history = []

    def prefix(self, mode: str) -> PromptPrefix:
        """The states of the positions every prompt of ``mode`` starts with (its system
        message), computed once: a turn then prefills only its own positions."""
        if mode not in self.prefixes:
            ids = shared_prefix(self.config, self.tokenizer, mode)
            self.prefixes[mode] = prefill_prefix(self.model, torch.tensor([ids]))
        return self.prefixes[mode]

    def warm_up(self) -> float:
        """Every mode's prompt prefix, then one short spoken and one short typed turn on a
        fork, so that first-call costs (allocations, kernel choices, lazy imports) are paid
        while loading, before anyone waits for an answer. Returns the seconds it took."""
        started = time.perf_counter()
        for mode in MODES:
            self.prefix(mode)
        rate = self.encoder.sample_rate  # 16 kHz
        tone = 0.3 * np.sin(2 * np.pi * 220 * np.arange(rate) / rate)
        self.fork().respond(audio=tone.astype(np.float32), sample_rate=rate, mode="S2M",
                            max_positions=3)  # fmt: skip
        self.fork().respond(text="Hello?", mode="T2M", max_positions=3)
        return time.perf_counter() - started

    def fork(self, history: list | None = None) -> VoiceChat:
        """Another conversation on the same model, encoder and tokenizers (no copies): one per
        demo session, each with its own ``history``."""
        chat = copy.copy(self)
        chat.history = list(history or [])
        return chat

    def respond(self, *args, **kwargs) -> TurnResult:
        """Answer one user turn and return the whole result (``stream`` run to the end; same
        arguments)."""
        for event in self.stream(*args, **kwargs):
            if event.kind == "done":
                return event.result
        raise RuntimeError("the turn was cancelled")

    def stream(
        self,
        audio: str | Path | bytes | np.ndarray | None = None,
        sample_rate: int | None = None,
        text: str | None = None,
        mode: str = "S2M",
        text_sampling: SamplingConfig = SamplingConfig(),
        speech_sampling: SamplingConfig = SamplingConfig(),
        max_positions: int = 120,
        decode_audio: bool = True,
        generator: torch.Generator | None = None,
        cancel: threading.Event | None = None,
    ) -> Iterator[TurnEvent]:
        """Answer one user turn (``audio`` for speech-in modes, ``text`` for text-in modes),
        yielding events as they are produced: ``text`` (the new piece of the text answer),
        ``speech`` (the step's 25 Hz ids), ``audio`` (the next chunk of the spoken answer) and
        finally ``done`` with the :class:`TurnResult`. Setting ``cancel`` (or closing the
        generator) stops the turn; a cancelled turn is not added to the history.

        The audio chunks concatenated equal a one-shot decode of the same ids: each chunk is
        released only once the detokenizer's look-ahead tokens are known."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; choose one of {sorted(MODES)}")
        spec = MODES[mode]
        turn = _Turn(mode, time.perf_counter())
        frames = self._listen(audio, sample_rate, text, spec, turn.timings)  # wav -> 50 Hz
        current = TurnInput(
            text or "",
            "",
            user_frames=0 if frames is None else len(frames),
            answer_speech=np.zeros(0, dtype=np.int64),
            mode=mode,
        )
        example, batch = self._prompt(current, frames, max_positions)  # history + this turn
        p, k = example.prompt_positions, self.config.group_size
        steps = iter_joint(  # 5 Hz steps: one text token + k speech tokens each
            self.model,
            batch["text_ids"][:, :p],
            batch["speech_ids"][:, : p * k],
            user_features=batch.get("user_features"),
            user_feature_lengths=batch.get("user_feature_lengths"),
            user_position_mask=batch["user_position_mask"][:, :p] if example.user_frames else None,
            max_new_positions=max_positions,
            text_sampling=text_sampling,
            speech_sampling=speech_sampling,
            generate_speech=spec.speech_out,
            generator=generator,
            prefix=self.prefix(mode),
        )
        if spec.speech_out and decode_audio:
            turn.detok = _Detokenizer(self.speech_tokenizer)
        for index, step in enumerate(steps):
            if cancel is not None and cancel.is_set():
                steps.close()
                return  # a cancelled turn leaves the history as it was
            yield from self._take_step(turn, index, step, spec.speech_out)
        yield from turn.flush()
        result = self._finish(turn, current, frames)
        yield TurnEvent("done", result=result)

    def _listen(self, audio, sample_rate, text, spec, timings: dict) -> np.ndarray | None:
        """Load and encode the user's speech: (F, d_enc) 50 Hz frames; None for typed turns."""
        if not spec.speech_in:
            if not text or not text.strip():
                raise ValueError(f"mode {spec.name} needs typed input (text)")
            return None
        if audio is None:
            raise ValueError(f"mode {spec.name} needs spoken input (audio)")
        started = time.perf_counter()
        wav = load_audio(audio, sample_rate, limits=self.limits)
        timings["audio_load"] = time.perf_counter() - started
        started = time.perf_counter()
        with torch.no_grad():
            encoded, lengths = self.encoder.encode([wav])
        timings["encoder"] = time.perf_counter() - started
        return encoded[0, : int(lengths[0])].float().numpy()  # (F, d_enc)

    def _take_step(self, turn: _Turn, index: int, step, speech_out: bool) -> Iterator[TurnEvent]:
        """Record one decoding step and yield what it adds: text, speech ids, audio."""
        cfg, timings = self.config, turn.timings
        timings["prefill" if index == 0 else "backbone_steps"] += step.seconds["backbone"]
        timings["srh"] += step.seconds["srh"]
        timings["srh_prefill"] += step.seconds.get("srh_prefill", 0.0)  # in "srh" too
        timings["positions"] = index + 1
        token = int(step.text[0])  # pad after the text ended
        turn.text_channel.append(token)
        if token not in (cfg.text_pad_token_id, cfg.text_eos_token_id):
            turn.text_ids.append(token)
            decoded = self.tokenizer.decode(turn.text_ids)
            if decoded.startswith(turn.shown) and len(decoded) > len(turn.shown):
                yield TurnEvent("text", text=decoded[len(turn.shown) :])
                turn.shown = decoded
        if speech_out:  # specials (pad/silence, eos) are not codebook tokens
            turn.speech_channel.append(step.speech[0].tolist())
            group = [t for t in step.speech[0].tolist() if t < cfg.speech_codebook_size]
            turn.speech += group
            yield TurnEvent("speech", speech_ids=np.asarray(group, dtype=np.int64))
            if turn.detok is not None and group:
                yield from turn.audio(turn.detok.push(group))

    def _finish(self, turn: _Turn, current: TurnInput, frames) -> TurnResult:
        """The turn's result; the turn joins the history as the model produced it."""
        full_text, answer = spoken_answer(turn.text_ids, self.tokenizer)
        speech_ids = np.asarray(turn.speech, dtype=np.int64)
        wav = turn.detok.audio() if turn.detok is not None and len(speech_ids) else None
        turn.timings["total"] = time.perf_counter() - turn.started
        self.history.append(
            (
                TurnInput(current.question, answer, current.user_frames, speech_ids, turn.mode),
                frames,
            )
        )
        k = self.config.group_size
        return TurnResult(
            turn.mode,
            answer,
            full_text,
            speech_ids,
            wav,
            self.speech_tokenizer.sample_rate,
            turn.timings,
            np.asarray(turn.text_channel, dtype=np.int64),
            np.asarray(turn.speech_channel, dtype=np.int64).reshape(-1, k),
        )

    def _prompt(self, current: TurnInput, frames, max_positions: int):
        """The dialogue so far plus ``current``, formatted and collated. Each history turn keeps
        its own mode and inputs; the oldest turns are dropped (with a warning) when the prompt
        and the answer would not fit the backbone's context."""
        limit = getattr(self.config.backbone_config, "max_position_embeddings", None) or 10**9
        history = list(self.history)
        while True:
            turns = [t for t, _ in history] + [current]
            example = format_dialogue(turns, current.mode, self.config, self.tokenizer)
            if example.prompt_positions + max_positions <= limit or not history:
                break
            history = history[1:]
            warnings.warn(
                f"the conversation is longer than the model's context ({limit} positions): "
                "its oldest turn is left out of the prompt",
                stacklevel=3,
            )
        if example.prompt_positions + max_positions > limit:
            raise ValueError(
                f"this turn needs {example.prompt_positions} prompt positions and up to "
                f"{max_positions} for the answer, more than the model's context ({limit}); "
                "ask a shorter question or lower max_positions"
            )
        features = [f for _, f in history if f is not None]
        features += [frames] if frames is not None else []
        batch = self.collate([example], [features] if example.user_frames else None)
        return example, batch


class _Turn:
    """What one turn has produced so far (text, speech, audio chunks, timings)."""

    def __init__(self, mode: str, started: float) -> None:
        self.mode, self.started = mode, started
        self.timings: dict[str, float] = dict.fromkeys(
            ("prefill", "backbone_steps", "srh", "srh_prefill", "detokenizer", "positions"), 0.0
        )
        self.text_ids: list[int] = []
        self.speech: list[int] = []
        self.text_channel: list[int] = []
        self.speech_channel: list[list[int]] = []
        self.shown = ""
        self.detok: _Detokenizer | None = None

    def audio(self, chunk: np.ndarray) -> Iterator[TurnEvent]:
        if len(chunk):
            self.timings.setdefault("first_audio", time.perf_counter() - self.started)
            yield TurnEvent("audio", audio=chunk)

    def flush(self) -> Iterator[TurnEvent]:
        """The detokenizer's last chunk (its look-ahead is over)."""
        if self.detok is not None:
            yield from self.audio(self.detok.flush())
            self.timings["detokenizer"] = self.detok.seconds


@dataclass
class TurnEvent:
    """One streamed event of a turn (see :meth:`VoiceChat.stream`)."""

    kind: str  # "text" | "speech" | "audio" | "done"
    text: str = ""  # kind "text": the new piece of the text channel
    speech_ids: np.ndarray | None = None  # kind "speech": this step's 25 Hz codebook ids
    audio: np.ndarray | None = None  # kind "audio": the next samples of the spoken answer
    result: TurnResult | None = None  # kind "done"


class _Detokenizer:
    """Chunked detokenization with look-ahead (streaming tokenizers) or, for tokenizers without
    a stream, one decode at the end; keeps every chunk and the time spent."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.live = tokenizer.stream() if hasattr(tokenizer, "stream") else None
        self.ids: list[int] = []
        self.chunks: list[np.ndarray] = []
        self.seconds = 0.0

    def push(self, ids: list[int]) -> np.ndarray:
        self.ids += ids
        if self.live is None:
            return np.zeros(0, dtype=np.float32)
        return self._timed(lambda: self.live.push(np.asarray(ids, dtype=np.int64)))

    def flush(self) -> np.ndarray:
        if self.live is not None:
            return self._timed(self.live.flush)
        if not self.ids:
            return np.zeros(0, dtype=np.float32)
        return self._timed(lambda: self.tokenizer.decode(np.asarray(self.ids, dtype=np.int64)))

    def audio(self) -> np.ndarray:
        return np.concatenate(self.chunks) if self.chunks else np.zeros(0, dtype=np.float32)

    def _timed(self, work) -> np.ndarray:
        t0 = time.perf_counter()
        chunk = np.asarray(work(), dtype=np.float32)
        self.seconds += time.perf_counter() - t0
        self.chunks.append(chunk)
        return chunk
