"""The DrVoice model: a causal LLM over 5 Hz positions that each carry text and grouped speech.

Follow one training example through ``DrVoiceModel.forward``:

1. ``align_channels`` pads the shorter channel (text with ``text_pad``, speech with the
   pad/silence token) so text has N positions and speech N*k tokens.
2. ``embed_inputs`` builds ``c_t = E_text(text_t) + G(speech group_t)``; at user-speech
   positions the grouped adapter output of the Whisper frames replaces ``G(...)``.
3. ``run_backbone`` runs the HF causal LM on ``inputs_embeds`` -> hidden h_t and text logits.
4. The SRH turns h_t into logits for the k tokens of group t+1 (25 Hz, autoregressive).
5. Loss ``lambda * L_text + mu * L_SRH``, both next-position, both masked with -100.

``config.use_kernels`` routes steps 2 (speech grouping), 4 (SRH input) and the SRH loss
through the fused ops of ``drvoice_kernels``; the SRH loss then skips the speech logits.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, Cache, PreTrainedModel
from transformers.utils import ModelOutput

from drvoice_lab.config import DrVoiceConfig
from drvoice_lab.modeling import base_model
from drvoice_lab.modeling.base_model import CheckpointError
from drvoice_lab.modeling.grouping import SpeechAdapter, SpeechGrouping
from drvoice_lab.modeling.srh import SpeechRefinedHead

IGNORE_INDEX = -100


@dataclass
class AlignedChannels:
    """Both channels padded to a common number of positions N (speech: N*k tokens)."""

    text_ids: torch.Tensor  # (B, N)
    speech_ids: torch.Tensor  # (B, N*k)
    attention_mask: torch.Tensor  # (B, N)
    text_labels: torch.Tensor | None = None  # (B, N)
    speech_labels: torch.Tensor | None = None  # (B, N*k)


@dataclass
class DrVoiceOutput(ModelOutput):
    """Model outputs. ``speech_logits[:, j]`` scores ``speech_ids[:, k + j]``: the SRH covers
    groups 1..N-1, made from hidden states h_0..h_{N-2}. With ``config.use_kernels`` and
    speech labels, the SRH loss is computed without logits and ``speech_logits`` is None.
    Given speech labels where some rows have none, ``speech_logits`` holds only the rows
    that have some (in batch order)."""

    loss: torch.Tensor | None = None
    text_loss: torch.Tensor | None = None
    speech_loss: torch.Tensor | None = None
    text_logits: torch.Tensor | None = None  # (B, N, V_text)
    speech_logits: torch.Tensor | None = None  # (B, (N-1)*k, V_s)
    hidden_states: torch.Tensor | None = None  # (B, N, D), last backbone layer


def _pad_right(x: torch.Tensor | None, length: int, value: int) -> torch.Tensor | None:
    if x is None or x.shape[1] >= length:
        return x
    pad = x.new_full((x.shape[0], length - x.shape[1]), value)
    return torch.cat([x, pad], dim=1)


def masked_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean CE over labels != -100; exactly 0 (with a graph) when nothing is labelled."""
    flat_logits = logits.reshape(-1, logits.shape[-1]).float()
    flat_labels = labels.reshape(-1)
    total = F.cross_entropy(flat_logits, flat_labels, ignore_index=IGNORE_INDEX, reduction="sum")
    count = (flat_labels != IGNORE_INDEX).sum().clamp(min=1)
    return total / count


def masked_linear_cross_entropy(
    states: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """``masked_cross_entropy(F.linear(states, weight), labels)`` without the (..., V) logits:
    the chunked fused linear + cross-entropy of ``drvoice_kernels``."""
    from drvoice_kernels import fused_linear_cross_entropy

    return fused_linear_cross_entropy(states, weight, labels, ignore_index=IGNORE_INDEX)


@torch.no_grad()
def greedy_speech(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Teacher-forced greedy speech: the (B, (N-1)*k) most likely tokens of groups 1..N-1 of
    every row, each given the reference before it. Labels are dropped, so every row runs the
    SRH and a model on the fused kernels still returns its logits."""
    inputs = {key: v for key, v in batch.items() if key not in ("text_labels", "speech_labels")}
    return model(**inputs).speech_logits.argmax(-1)


class DrVoicePreTrainedModel(PreTrainedModel):
    config_class = DrVoiceConfig
    base_model_prefix = "drvoice"
    main_input_name = "text_ids"
    supports_gradient_checkpointing = True
    _supports_sdpa = True

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        # The backbone and SRH transformer are PreTrainedModels and initialise themselves;
        # this covers the DrVoice-specific linears (grouping, adapter, W_p, untied head).
        if isinstance(module, PreTrainedModel) and module is not self:
            return
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.RMSNorm):  # the adapter's output norm
            scale = getattr(self.config.backbone_config, "initializer_range", 0.02)
            nn.init.constant_(module.weight, scale)  # text embeddings start at this std


class DrVoiceModel(DrVoicePreTrainedModel):
    """Backbone + grouping + user-speech adapter + SRH. See the module docstring for the flow."""

    def __init__(
        self,
        config: DrVoiceConfig,
        backbone: PreTrainedModel | None = None,
        srh_transformer: PreTrainedModel | None = None,
    ) -> None:
        super().__init__(config)
        k = config.group_size
        self.backbone = backbone or AutoModelForCausalLM.from_config(config.backbone_config)
        self.grouping = SpeechGrouping(
            k, config.speech_embed_dim, config.hidden_size, config.grouping_mode
        )
        self.adapter = SpeechAdapter(
            config.encoder_hidden_size,
            config.adapter_hidden_size,
            config.hidden_size,
            k,
            pool=config.frames_per_token,
            mode=config.grouping_mode,
            output_norm=config.adapter_output_norm,
        )
        self.srh = SpeechRefinedHead(
            k,
            config.hidden_size,
            config.srh_config,
            tie_embeddings=config.tie_srh_embeddings,
            transformer=srh_transformer,
            parallel=config.speech_head == "parallel",
            unit_input=config.srh_unit_input,
        )
        self.post_init()
        self._add_backbone_lora()  # after post_init, which would re-draw LoRA's zero B

    def _add_backbone_lora(self) -> None:
        if self.config.backbone_lora is not None and not self.has_backbone_lora:
            base_model.add_backbone_lora(self.backbone, self.config)

    @property
    def has_backbone_lora(self) -> bool:
        return any(base_model.is_lora_key(n) for n, _ in self.backbone.named_parameters())

    @property
    def keeps_base_frozen(self) -> bool:
        """The base LLM's own weights never train: folders hold only what DrVoice adds."""
        return self.config.backbone_source is not None and self.config.backbone_lora is not None

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_parts(
        cls,
        config: DrVoiceConfig,
        backbone: str | None = None,
        srh: str | None = None,
        **load_kwargs,
    ) -> DrVoiceModel:
        """Build a DrVoice model around pretrained parts (HF hub id or local path).

        ``backbone`` is any HF causal LM (e.g. ``Qwen/Qwen2.5-7B-Instruct``); ``srh`` any HF
        decoder whose width matches the SRH config (e.g. a 25 Hz TTS LM). The grouping,
        adapter and W_p start fresh. Widths must agree with ``config``: a mismatch raises
        ValueError instead of silently building a different model.
        """
        from drvoice_lab.modeling.backbones import backbone_folder, check_width

        backbone_model = srh_model = None
        if backbone is not None:
            folder = backbone_folder(backbone)  # a packaged GGUF: converted once, cached
            loaded_config = AutoConfig.from_pretrained(folder, **load_kwargs)
            check_width("backbone", config.backbone_config, loaded_config)
            backbone_model = AutoModelForCausalLM.from_pretrained(folder, **load_kwargs)
            base_model.grow_vocabulary(backbone_model, config)
            config.backbone_config = backbone_model.config
        if srh is not None:
            loaded_config = AutoConfig.from_pretrained(srh, **load_kwargs)
            check_width("srh", config.srh_config, loaded_config)
            srh_model = AutoModel.from_pretrained(srh, **load_kwargs)
            if srh_model.get_input_embeddings().num_embeddings != config.speech_vocab_size:
                srh_model.resize_token_embeddings(config.speech_vocab_size)
            srh_model.config.vocab_size = config.speech_vocab_size
            config.srh_config = srh_model.config
        config.validate()
        return cls(config, backbone=backbone_model, srh_transformer=srh_model)

    @classmethod
    def from_base(cls, config: DrVoiceConfig, dtype: torch.dtype = torch.float32) -> DrVoiceModel:
        """Wrap the pretrained LLM that ``config.backbone_reference`` names (checked by sha256
        where the reference has one). Grouping, adapter, SRH and LoRA start fresh; added tokens
        start at the mean embedding; text-only input gives the bare LLM's logits."""
        from drvoice_lab.modeling.backbones import check_reference

        config = copy.deepcopy(config)
        source = check_reference(config.backbone_reference, "the config")
        model = cls.from_parts(config, backbone=source, dtype=dtype)
        return model.to(dtype)

    def save_pretrained(self, save_directory, *args, **kwargs) -> None:
        """As transformers does; a model on a frozen base keeps only what DrVoice adds."""
        if not self.keeps_base_frozen:
            return super().save_pretrained(save_directory, *args, **kwargs)
        if not kwargs.get("is_main_process", True):
            return None
        base_model.save_delta(self, Path(save_directory))
        return None

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """As transformers does, with two checks: a model on a frozen base is rebuilt from its
        base plus the folder's weights, and weights that are missing, unexpected or of the
        wrong shape raise :class:`CheckpointError` instead of being initialised at random."""
        folder = Path(pretrained_model_name_or_path)
        config = kwargs.pop("config", None)
        if config is None and (folder / "config.json").is_file():
            config = DrVoiceConfig.from_pretrained(folder)
        if config is not None and config.backbone_source and config.backbone_lora:
            dtype = kwargs.get("dtype") or torch.float32
            model = cls.from_base(config, dtype=dtype)
            base_model.load_delta(model, base_model.read_weights(folder), str(folder))
            return model.eval()
        if config is not None:
            kwargs["config"] = config
        if (folder / "model.safetensors").is_file():
            base_model.check_header(folder / "model.safetensors")  # damaged: a clear error
        try:
            model, info = super().from_pretrained(
                pretrained_model_name_or_path, *args, output_loading_info=True, **kwargs
            )
        except RuntimeError as err:  # a tensor of another shape than the config's
            with torch.device("meta"):
                expected = cls(config or DrVoiceConfig.from_pretrained(folder)).state_dict()
            wrong = base_model.wrong_shapes(folder / "model.safetensors", expected)
            raise CheckpointError(
                f"{folder}/model.safetensors does not fit its config.json (wrong shape: "
                f"{wrong or err}); the folder holds another model's weights"
            ) from err
        base_model.check_loading_info(info, folder)
        return model

    # ------------------------------------------------------------------ embeddings
    @property
    def speech_embedding(self) -> nn.Embedding:
        return self.srh.speech_embedding

    def get_input_embeddings(self) -> nn.Module:
        return self.backbone.get_input_embeddings()

    def align_channels(
        self,
        text_ids: torch.Tensor,
        speech_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        text_labels: torch.Tensor | None = None,
        speech_labels: torch.Tensor | None = None,
    ) -> AlignedChannels:
        """Pad the shorter channel so text holds N positions and speech N*k tokens.

        Speech lengths that are not a multiple of k are padded with the pad/silence token;
        padded label slots get -100. ``attention_mask`` (if given) must cover N positions.
        """
        cfg = self.config
        k = cfg.group_size
        b = text_ids.shape[0]
        if speech_ids is None:
            speech_ids = text_ids.new_full((b, text_ids.shape[1] * k), cfg.speech_pad_token_id)
        if speech_ids.shape[0] != b:
            raise ValueError(f"text_ids has batch {b} but speech_ids has {speech_ids.shape[0]}")
        n = max(text_ids.shape[1], -(-speech_ids.shape[1] // k))
        if attention_mask is None:
            attention_mask = text_ids.new_ones((b, n))
        elif attention_mask.shape != (b, n):
            raise ValueError(
                f"attention_mask has shape {tuple(attention_mask.shape)} but the aligned "
                f"channels have {(b, n)} positions (max of text length and speech length / k)."
            )
        return AlignedChannels(
            text_ids=_pad_right(text_ids, n, cfg.text_pad_token_id),
            speech_ids=_pad_right(speech_ids, n * k, cfg.speech_pad_token_id),
            attention_mask=attention_mask,
            text_labels=_pad_right(text_labels, n, IGNORE_INDEX),
            speech_labels=_pad_right(speech_labels, n * k, IGNORE_INDEX),
        )

    def embed_inputs(
        self,
        text_ids: torch.Tensor,
        speech_ids: torch.Tensor,
        user_features: torch.Tensor | None = None,
        user_feature_lengths: torch.Tensor | None = None,
        user_position_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Aligned (B, N) text and (B, N*k) speech -> (B, N, D) backbone inputs.

        User speech: ``user_features`` (B, F, d_enc) are 50 Hz encoder frames; the j-th True
        entry of ``user_position_mask`` (B, N) in a row takes that row's j-th grouped frame.
        """
        speech = self.grouping.group_tokens(
            speech_ids, self.speech_embedding, fused=self.config.use_kernels
        )  # (B, N, D)
        if self.config.skip_silent_groups:  # positions without speech get no speech term
            k = self.config.group_size
            silent = (speech_ids == self.config.speech_pad_token_id).view(*text_ids.shape, k)
            speech = speech.masked_fill(silent.all(-1, keepdim=True), 0.0)  # (B, N, D)
        if user_features is not None:
            speech = self._insert_user_speech(
                speech, user_features, user_feature_lengths, user_position_mask
            )
        text = self.get_input_embeddings()(text_ids)  # (B, N, D)
        return text + speech

    def _insert_user_speech(
        self,
        speech: torch.Tensor,
        features: torch.Tensor,
        lengths: torch.Tensor | None,
        position_mask: torch.Tensor | None,
    ) -> torch.Tensor:
        if position_mask is None:
            raise ValueError("user_features need a user_position_mask saying where they go.")
        grouped, valid = self.adapter(features.to(speech.dtype), lengths)  # (B, M, D), (B, M)
        wanted, have = position_mask.sum(1), valid.sum(1)
        if not torch.equal(wanted, have):
            raise ValueError(
                f"user_position_mask marks {wanted.tolist()} positions per row but the user "
                f"speech fills {have.tolist()} (one position per "
                f"{self.adapter.pool * self.config.group_size} encoder frames)."
            )
        speech = speech.clone()
        speech[position_mask] = grouped[valid]
        return speech

    # ------------------------------------------------------------------ forward pieces
    def run_backbone(
        self,
        inputs_embeds: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        cache: Cache | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, N, D) inputs -> last hidden states (B, N, D) and text logits (B, N, V_text)."""
        out = self.backbone(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            past_key_values=cache,
            use_cache=cache is not None,
            output_hidden_states=True,
        )
        return out.hidden_states[-1], out.logits

    def forward(
        self,
        text_ids: torch.Tensor,
        speech_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        text_labels: torch.Tensor | None = None,
        speech_labels: torch.Tensor | None = None,
        user_features: torch.Tensor | None = None,
        user_feature_lengths: torch.Tensor | None = None,
        user_position_mask: torch.Tensor | None = None,
        **kwargs,
    ) -> DrVoiceOutput:
        """Teacher-forced pass over both channels.

        Args:
            text_ids: (B, N_text) text token per 5 Hz position.
            speech_ids: (B, T) 25 Hz speech tokens; grouped k per position.
            text_labels / speech_labels: same shapes as the ids, -100 where no loss is taken;
                labels are aligned with the ids (the shift happens here).
        """
        k = self.config.group_size
        ch = self.align_channels(text_ids, speech_ids, attention_mask, text_labels, speech_labels)
        if user_position_mask is not None:
            user_position_mask = _pad_right(user_position_mask, ch.text_ids.shape[1], False)
        inputs = self.embed_inputs(
            ch.text_ids, ch.speech_ids, user_features, user_feature_lengths, user_position_mask
        )
        hidden, text_logits = self.run_backbone(inputs, ch.attention_mask)  # (B, N, D), (B, N, V)

        # SRH over groups 1..N-1: sub-states from h_0..h_{N-2}, previous tokens shifted by one.
        # In training, rows without any speech label (text-out modes) would only add zeros to
        # the loss: they skip the SRH (rows are independent, so the loss is unchanged).
        fused = self.config.use_kernels
        rows = slice(None)
        speech_labels = ch.speech_labels
        if speech_labels is not None:
            has_speech = (speech_labels[:, k:] != IGNORE_INDEX).any(dim=1)  # (B,)
            if not has_speech.all():
                rows = has_speech.nonzero().squeeze(1)
                speech_labels = speech_labels[rows]
        text_loss = speech_loss = loss = speech_logits = None
        if ch.text_labels is not None:
            text_loss = masked_cross_entropy(text_logits[:, :-1], ch.text_labels[:, 1:])
        if speech_labels is not None and speech_labels.shape[0] == 0:
            speech_loss = hidden.new_zeros(())  # a text-only batch: no SRH work at all
        else:
            prev_tokens = ch.speech_ids[rows, k - 1 : -1]  # (B', (N-1)*k)
            srh_inputs = self.srh.inputs(hidden[rows, :-1], prev_tokens, fused)  # (B', L, d_s)
            srh_mask = ch.attention_mask[rows, 1:].repeat_interleave(k, dim=1)
            srh_states = self.srh.states(srh_inputs, srh_mask)  # (B', (N-1)*k, d_s)
            if fused and speech_labels is not None and self.srh.fusable_output:
                speech_loss = masked_linear_cross_entropy(
                    srh_states, self.srh.output_weight, speech_labels[:, k:]
                )  # no (B', L, V_s) logits
            else:
                speech_logits = self.srh.logits(srh_states)  # (B', (N-1)*k, V_s)
                if speech_labels is not None:
                    speech_loss = masked_cross_entropy(speech_logits, speech_labels[:, k:])
        if text_loss is not None or speech_loss is not None:
            zero = hidden.new_zeros(())
            loss = self.config.text_loss_weight * (
                text_loss if text_loss is not None else zero
            ) + self.config.speech_loss_weight * (speech_loss if speech_loss is not None else zero)
        return DrVoiceOutput(
            loss=loss,
            text_loss=text_loss,
            speech_loss=speech_loss,
            text_logits=text_logits,
            speech_logits=speech_logits,
            hidden_states=hidden,
        )


def register_auto_classes() -> None:
    """Make ``AutoConfig``/``AutoModel`` resolve model_type ``drvoice``."""
    try:
        AutoConfig.register("drvoice", DrVoiceConfig)
        AutoModel.register(DrVoiceConfig, DrVoiceModel)
    except ValueError:  # already registered (module re-import)
        pass
