"""CoM-Mixing: the seven chain-of-modality modes, each chosen by its system prompt.

A dialogue becomes one sequence of 5 Hz positions; every position holds one text token and one
group of k speech tokens. Segments, in order::

    <|system|> prompt                       text only (speech channel = pad)
    per turn:
      <|user|> question                     text-in modes: question text
      <|user|> [user speech positions]      speech-in modes: adapter output, text channel = pad
      <|assistant|> answer                  shaped by the mode, below

The assistant's answer per mode (``|`` = parallel text + speech, ``->`` = then):

    S2M, T2M   answer | answer speech                  (parallel from the first position)
    S2T, T2T   answer                                  (text only)
    STC        transcript + answer <|speak|> -> answer | answer speech
    SAC        answer <|speak|> -> answer | answer speech
    SUC        transcript                              (text only)

The paper's sources name SAC and SUC without defining them; here SAC is the *answer-first
chain* (STC without the transcript: write the full text answer, then speak it in parallel) and
SUC is *speech understanding* (transcribe the user's speech). Labels (aligned with ids; the
model shifts them) cover the assistant's outputs only: text tokens up to and including
end-of-turn, speech tokens up to and including speech-eos. In the text-first part of STC/SAC
the speech label is the pad/silence token, so the model learns to stay silent until it speaks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from drvoice_lab.config import DrVoiceConfig
from drvoice_lab.data.text_tokenizer import TextTokenizer
from drvoice_lab.modeling.drvoice import IGNORE_INDEX


@dataclass(frozen=True)
class Mode:
    name: str
    speech_in: bool
    answer: str  # "parallel" | "text" | "chain" | "transcript"
    transcript_first: bool
    system_prompt: str

    @property
    def speech_out(self) -> bool:
        return self.answer in ("parallel", "chain")


MODES: dict[str, Mode] = {
    m.name: m
    for m in (
        Mode("S2M", True, "parallel", False, "Listen, then answer in speech and text together."),
        Mode("S2T", True, "text", False, "Listen, then answer in text."),
        Mode("T2M", False, "parallel", False, "Read, then answer in speech and text together."),
        Mode("T2T", False, "text", False, "Read, then answer in text."),
        Mode(
            "STC",
            True,
            "chain",
            True,
            "Listen, write what was said, write the answer, then speak it.",
        ),
        Mode("SAC", True, "chain", False, "Listen, write the answer, then speak it."),
        Mode("SUC", True, "transcript", False, "Listen, then write down what was said."),
    )
}


@dataclass
class TurnInput:
    """One exchange. ``user_frames``: 50 Hz encoder frames of the spoken question (speech-in
    modes); ``answer_speech``: 25 Hz token ids of the spoken answer (speech-out modes)."""

    question: str
    answer: str
    user_frames: int = 0
    answer_speech: np.ndarray | None = None
    mode: str | None = None  # this turn's own CoM mode (None: the dialogue's)


@dataclass
class Example:
    """One formatted dialogue. Arrays are int64 (bool for the mask); N positions, N*k speech."""

    mode: str
    text_ids: np.ndarray  # (N,)
    text_labels: np.ndarray  # (N,)
    speech_ids: np.ndarray  # (N*k,)
    speech_labels: np.ndarray  # (N*k,)
    user_position_mask: np.ndarray  # (N,)
    user_frames: list[int] = field(default_factory=list)  # per spoken user turn, in order
    prompt_positions: int = 0  # positions up to and including the last <|assistant|> marker

    @property
    def num_positions(self) -> int:
        return len(self.text_ids)


class _Builder:
    """Appends positions to both channels, keeping them aligned."""

    def __init__(self, config: DrVoiceConfig, tokenizer: TextTokenizer) -> None:
        self.config, self.k = config, config.group_size
        self.pad_text, self.pad_speech = tokenizer.pad_id, config.speech_pad_token_id
        self.speech_eos = config.speech_eos_token_id
        self.text, self.text_labels, self.user = [], [], []
        self.speech, self.speech_labels = [], []

    def text_only(self, ids: list[int], learn: bool = False, silence: bool = False) -> None:
        """Text positions; speech channel pad. ``silence`` labels the pads (learn to be quiet)."""
        for token in ids:
            self.text.append(token)
            self.text_labels.append(token if learn else IGNORE_INDEX)
            self.user.append(False)
            self.speech.extend([self.pad_speech] * self.k)
            self.speech_labels.extend([self.pad_speech if silence else IGNORE_INDEX] * self.k)

    def user_speech(self, frames: int) -> None:
        for _ in range(self.config.user_positions(frames)):
            self.text.append(self.pad_text)
            self.text_labels.append(IGNORE_INDEX)
            self.user.append(True)
            self.speech.extend([self.pad_speech] * self.k)
            self.speech_labels.extend([IGNORE_INDEX] * self.k)

    def parallel(self, text_ids: list[int], speech_ids: np.ndarray) -> None:
        """Answer text and speech side by side; the shorter channel is padded (unlabelled)."""
        speech = [int(t) for t in speech_ids] + [self.speech_eos]
        n = max(len(text_ids), -(-len(speech) // self.k))
        for i in range(n):
            token = text_ids[i] if i < len(text_ids) else None
            self.text.append(self.pad_text if token is None else token)
            self.text_labels.append(IGNORE_INDEX if token is None else token)
            self.user.append(False)
        padded = speech + [self.pad_speech] * (n * self.k - len(speech))
        self.speech.extend(padded)
        self.speech_labels.extend(speech + [IGNORE_INDEX] * (n * self.k - len(speech)))


def system_text(config: DrVoiceConfig, mode: str) -> str:
    """The system message of ``mode``: the config's persona, then the mode's own prompt."""
    return f"{config.system_prompt} {MODES[mode].system_prompt}".strip()


def shared_prefix(config: DrVoiceConfig, tokenizer: TextTokenizer, mode: str) -> list[int]:
    """The text ids every prompt of ``mode`` starts with (system message, then the first user
    turn's role marker): text-only positions whose states can be computed once and reused."""
    tok = tokenizer
    system = tok.role("system") + tok.encode(system_text(config, mode)) + tok.end("system")
    return system + tok.role("user")


def format_dialogue(
    turns: list[TurnInput],
    mode: str,
    config: DrVoiceConfig,
    tokenizer: TextTokenizer,
) -> Example:
    """Lay out a dialogue (see the module docstring). ``mode`` picks the system prompt and lays
    out every turn that names no mode of its own, so typed and spoken turns can alternate."""
    if mode not in MODES:
        raise ValueError(f"unknown CoM mode {mode!r}; choose one of {sorted(MODES)}")
    if not turns:
        raise ValueError("a dialogue needs at least one turn")
    check_compatible(config, tokenizer)
    tok = tokenizer
    b = _Builder(config, tok)
    b.text_only(tok.role("system") + tok.encode(system_text(config, mode)) + tok.end("system"))
    user_frames, prompt_positions = [], 0
    for index, turn in enumerate(turns):
        if index:
            b.text_only(tok.turn_sep)  # what the chat template puts after an answer's end
        turn_mode = turn.mode or mode
        if turn_mode not in MODES:
            raise ValueError(f"unknown CoM mode {turn_mode!r}; choose one of {sorted(MODES)}")
        spec = MODES[turn_mode]
        if spec.speech_in:
            if turn.user_frames <= 0:
                raise ValueError(f"mode {turn_mode} needs the user's speech (user_frames > 0)")
            b.text_only(tok.role("user"))
            b.user_speech(turn.user_frames)
            b.text_only(tok.end("user"))
            user_frames.append(turn.user_frames)
        else:
            b.text_only(tok.role("user") + tok.encode(turn.question) + tok.end("user"))
        b.text_only(tok.role("assistant"))
        prompt_positions = len(b.text)
        answer = tok.encode(turn.answer)
        if spec.speech_out and turn.answer_speech is None:
            raise ValueError(f"mode {turn_mode} needs the spoken answer's tokens (answer_speech)")
        if spec.answer == "parallel":
            b.parallel(answer + [tok.eos_id], turn.answer_speech)
        elif spec.answer == "text":
            b.text_only(answer + [tok.eos_id], learn=True)
        elif spec.answer == "transcript":
            b.text_only(tok.encode(turn.question) + [tok.eos_id], learn=True)
        else:  # chain: the full text first, then the parallel part
            first = tok.encode(turn.question + "\n") if spec.transcript_first else []
            b.text_only(first + answer + tok.speak_ids, learn=True, silence=True)
            b.parallel(answer + [tok.eos_id], turn.answer_speech)

    as_array = lambda xs: np.asarray(xs, dtype=np.int64)  # noqa: E731
    return Example(
        mode=mode,
        text_ids=as_array(b.text),
        text_labels=as_array(b.text_labels),
        speech_ids=as_array(b.speech),
        speech_labels=as_array(b.speech_labels),
        user_position_mask=np.asarray(b.user, dtype=bool),
        user_frames=user_frames,
        prompt_positions=prompt_positions,
    )


def spoken_answer(text_ids: list[int], tokenizer: TextTokenizer) -> tuple[str, str]:
    """Read back what the text channel of an answer wrote: (everything, the answer). In chain
    modes (STC, SAC) the answer is the part after the last ``<|speak|>``."""
    speak = tokenizer.speak_ids
    answer_ids = text_ids
    for i in range(len(text_ids) - len(speak), -1, -1):
        if text_ids[i : i + len(speak)] == speak:
            answer_ids = text_ids[i + len(speak) :]
            break
    return tokenizer.decode(text_ids), tokenizer.decode(answer_ids).strip()


def check_compatible(config: DrVoiceConfig, tokenizer: TextTokenizer) -> None:
    """The tokenizer's pad / end-of-turn ids and size must agree with the model config."""
    if (tokenizer.pad_id, tokenizer.eos_id) != (config.text_pad_token_id, config.text_eos_token_id):
        raise ValueError(
            f"text tokenizer pad/eos ids ({tokenizer.pad_id}, {tokenizer.eos_id}) differ from the "
            f"config's text_pad_token_id/text_eos_token_id ({config.text_pad_token_id}, "
            f"{config.text_eos_token_id}); set the config from the tokenizer"
        )
    if tokenizer.vocab_size > config.text_vocab_size:
        raise ValueError(
            f"text tokenizer has {tokenizer.vocab_size} tokens but the backbone's vocabulary is "
            f"{config.text_vocab_size}; raise backbone_config.vocab_size"
        )


def sample_mode(rng: np.random.Generator, ratios: dict[str, float]) -> str:
    """Draw a CoM mode from recipe ratios (normalised here)."""
    unknown = set(ratios) - set(MODES)
    if unknown:
        raise ValueError(f"unknown CoM modes in ratios: {sorted(unknown)}")
    names = sorted(ratios)
    weights = np.asarray([ratios[n] for n in names], dtype=float)
    if weights.sum() <= 0 or (weights < 0).any():
        raise ValueError(f"mode ratios must be >= 0 and not all zero, got {ratios}")
    return names[rng.choice(len(names), p=weights / weights.sum())]
