"""One spoken or typed turn, end to end: audio -> encoder -> model -> text + speech -> audio.

``VoiceChat`` bundles a trained DrVoice checkpoint folder (model + ``text_tokenizer.json``),
the frozen speech encoder and the speech tokenizer/detokenizer, and keeps the dialogue
history so later turns see earlier ones exactly as the model produced them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from drvoice_lab.audio.io import AudioLimits, load_audio
from drvoice_lab.data.collator import DrVoiceCollator
from drvoice_lab.data.com import MODES, TurnInput, format_dialogue
from drvoice_lab.data.text_tokenizer import TextTokenizer
from drvoice_lab.inference.decoding import generate_joint
from drvoice_lab.inference.sampling import SamplingConfig
from drvoice_lab.modeling import DrVoiceModel


class CheckpointError(ValueError):
    """A checkpoint folder is missing or incomplete."""


@dataclass
class TurnResult:
    mode: str
    text: str  # the answer (for chain modes: the spoken part)
    full_text: str  # everything the text channel wrote (transcript, <|speak|>, ...)
    speech_ids: np.ndarray  # 25 Hz codebook ids of the spoken answer (pads/eos removed)
    audio: np.ndarray | None  # decoded answer at ``sample_rate`` (speech-out modes)
    sample_rate: int
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage


def default_checkpoint() -> Path:
    """The shipped default model (trained by `drvoice-lab train --recipe tiny`)."""
    from drvoice_lab.paths import ASSETS_DIR

    return ASSETS_DIR / "default_model"


def load_checkpoint(path: str | Path) -> tuple[DrVoiceModel, TextTokenizer]:
    """A DrVoice model folder: config.json + model.safetensors + text_tokenizer.json."""
    folder = Path(path)
    missing = [
        n
        for n in ("config.json", "model.safetensors", "text_tokenizer.json")
        if not (folder / n).exists()
    ]
    if missing:
        raise CheckpointError(
            f"{folder} is not a DrVoice checkpoint (missing {missing}); "
            "train one with `drvoice-lab train` or pass --checkpoint"
        )
    model = DrVoiceModel.from_pretrained(folder).eval()
    return model, TextTokenizer.load(folder / "text_tokenizer.json")


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
        from drvoice_lab.audio.speech_tokenizer import load_speech_tokenizer

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

    @classmethod
    def from_checkpoint(cls, path: str | Path, **kwargs) -> VoiceChat:
        model, tokenizer = load_checkpoint(path)
        return cls(model, tokenizer, **kwargs)

    def reset(self) -> None:
        self.history = []

    def respond(
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
    ) -> TurnResult:
        """Answer one user turn (``audio`` for speech-in modes, ``text`` for text-in modes)."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; choose one of {sorted(MODES)}")
        spec = MODES[mode]
        timings: dict[str, float] = {}
        frames = None
        if spec.speech_in:
            if audio is None:
                raise ValueError(f"mode {mode} needs spoken input (audio)")
            t0 = time.perf_counter()
            wav = load_audio(audio, sample_rate, limits=self.limits)
            timings["audio_load"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            with torch.no_grad():
                encoded, lengths = self.encoder.encode([wav])
            frames = encoded[0, : int(lengths[0])].float().numpy()  # (F, d_enc)
            timings["encoder"] = time.perf_counter() - t0
        elif not text or not text.strip():
            raise ValueError(f"mode {mode} needs typed input (text)")

        t0 = time.perf_counter()
        current = TurnInput(
            text or "",
            "",
            user_frames=0 if frames is None else len(frames),
            answer_speech=np.zeros(0, dtype=np.int64),
        )
        turns = [t for t, _ in self.history] + [current]
        example = format_dialogue(turns, mode, self.config, self.tokenizer)
        features = [f for _, f in self.history if f is not None and spec.speech_in]
        features += [frames] if frames is not None else []
        batch = self.collate([example], [features] if spec.speech_in else None)
        p = example.prompt_positions
        k = self.config.group_size
        out = generate_joint(
            self.model,
            batch["text_ids"][:, :p],
            batch["speech_ids"][:, : p * k],
            user_features=batch.get("user_features"),
            user_feature_lengths=batch.get("user_feature_lengths"),
            user_position_mask=batch["user_position_mask"][:, :p] if spec.speech_in else None,
            max_new_positions=max_positions,
            text_sampling=text_sampling,
            speech_sampling=speech_sampling,
            generate_speech=spec.speech_out,
            generator=generator,
        )
        timings["generate"] = time.perf_counter() - t0
        timings["positions"] = out.steps

        full_text = self.tokenizer.decode(out.text[0])
        answer_ids = out.text[0]
        speak = self.tokenizer.speak_ids
        for i in range(len(answer_ids) - len(speak), -1, -1):  # the part after <|speak|>
            if answer_ids[i : i + len(speak)] == speak:
                answer_ids = answer_ids[i + len(speak) :]
                break
        answer = self.tokenizer.decode(answer_ids).strip()
        codebook = self.config.speech_codebook_size
        speech = np.asarray([t for t in out.speech[0] if t < codebook], dtype=np.int64)

        wav = None
        if spec.speech_out and decode_audio and len(speech):
            t0 = time.perf_counter()
            wav = self.speech_tokenizer.decode(speech)
            timings["detokenizer"] = time.perf_counter() - t0
        self.history.append(
            (TurnInput(current.question, answer, current.user_frames, speech), frames)
        )
        return TurnResult(
            mode, answer, full_text, speech, wav, self.speech_tokenizer.sample_rate, timings
        )
