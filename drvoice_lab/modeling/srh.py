"""Speech Refined Head (SRH): one backbone hidden state -> k speech tokens at 25 Hz.

``W_p`` ungroups each hidden state h_t (width D) into k sub-states (width d_s). A small causal
transformer then runs over the whole 25 Hz stream; the input at each sub-position is
``sub-state + E_s(previous speech token)``, and its output is scored against the speech
embedding E_s itself (tied weights), so the k tokens of a group are produced one by one, each
seeing the ones before it. The transformer is any HF causal-LM body (Qwen2 by default: at
real scale it can start from a Qwen2.5-0.5B TTS model); its input embedding table *is* E_s.

``parallel=True`` is the paper's "without SRH" ablation: k parallel linear heads. The
transformer keeps no layers (only E_s and the final norm) and the previous token is not an
input, so the k tokens of a group are predicted independently from h_t alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel, Cache, PretrainedConfig, PreTrainedModel

from drvoice_lab.config import without_layers


class SpeechRefinedHead(nn.Module):
    def __init__(
        self,
        k: int,
        hidden_size: int,
        srh_config: PretrainedConfig,
        tie_embeddings: bool = True,
        transformer: PreTrainedModel | None = None,
        parallel: bool = False,
        unit_input: bool = False,
    ) -> None:
        super().__init__()
        self.k = k
        self.parallel = parallel
        self.unit_input = unit_input  # read h / |h| (DrVoiceConfig.srh_unit_input)
        if parallel and transformer is not None:
            raise ValueError("the parallel-heads ablation has no SRH transformer to load")
        self.transformer = transformer or AutoModel.from_config(
            without_layers(srh_config) if parallel else srh_config
        )
        embed_dim = srh_config.hidden_size
        self.ungroup = nn.Linear(hidden_size, k * embed_dim)  # W_p
        # Named `speech_head` (not `lm_head`/`out`) so peft's suffix matching stays unambiguous.
        self.speech_head = (
            None if tie_embeddings else nn.Linear(embed_dim, srh_config.vocab_size, bias=False)
        )

    @property
    def speech_embedding(self) -> nn.Embedding:
        """E_s: (V_s, d_s), shared by grouping input, SRH input and SRH output."""
        return self.transformer.get_input_embeddings()

    def read(self, hidden: torch.Tensor) -> torch.Tensor:
        """(B, N, D) -> (B, N, D): what W_p reads, h or h / |h| (``unit_input``)."""
        return F.normalize(hidden, dim=-1) if self.unit_input else hidden

    def substates(self, hidden: torch.Tensor) -> torch.Tensor:
        """(B, N, D) -> (B, N*k, d_s): ``H = split_k(W_p h)``, flattened onto the 25 Hz axis."""
        b, n, _ = hidden.shape
        return self.ungroup(self.read(hidden)).view(b, n * self.k, -1)

    def inputs(
        self, hidden: torch.Tensor, prev_tokens: torch.Tensor, fused: bool = False
    ) -> torch.Tensor:
        """(B, N, D) hidden states, (B, N*k) previous tokens -> (B, N*k, d_s) SRH inputs,
        ``split_k(W_p h) + E_s(prev)``. ``fused`` does it in one kernel (``drvoice_kernels``);
        layers wrapped by adapters (e.g. LoRA) fall back to the plain path."""
        if self.parallel:
            return self.substates(hidden)  # no previous-token input: k independent heads
        embedding = self.speech_embedding
        if fused and type(self.ungroup) is nn.Linear and type(embedding) is nn.Embedding:
            from drvoice_kernels import fused_ungroup

            return fused_ungroup(
                self.read(hidden),
                self.ungroup.weight,
                self.ungroup.bias,
                prev_tokens,
                embedding.weight,
                padding_idx=embedding.padding_idx,
            )
        return self.substates(hidden) + embedding(prev_tokens)

    def states(
        self,
        inputs: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        cache: Cache | None = None,
    ) -> torch.Tensor:
        """(B, L, d_s) inputs -> (B, L, d_s) last hidden states of the SRH transformer."""
        if self.parallel:
            cache = None  # no layers, nothing to remember: positions are independent
        out = self.transformer(
            inputs_embeds=inputs,
            attention_mask=attention_mask,
            past_key_values=cache,
            use_cache=cache is not None,
        )
        return out.last_hidden_state  # after the final norm

    @property
    def output_weight(self) -> torch.Tensor:
        """(V_s, d_s) output projection: E_s itself when tied."""
        return self.speech_embedding.weight if self.speech_head is None else self.speech_head.weight

    @property
    def fusable_output(self) -> bool:
        """True when the output projection is a plain weight that the fused linear +
        cross-entropy may read directly (not wrapped by an adapter such as LoRA)."""
        head = self.speech_embedding if self.speech_head is None else self.speech_head
        return type(head) in (nn.Embedding, nn.Linear)

    def logits(self, states: torch.Tensor) -> torch.Tensor:
        """(B, L, d_s) states -> (B, L, V_s) speech logits."""
        return F.linear(states, self.output_weight)

    def forward(
        self,
        substates: torch.Tensor,
        prev_tokens: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        cache: Cache | None = None,
    ) -> torch.Tensor:
        """(B, L, d_s) sub-states and (B, L) previous tokens -> (B, L, V_s) logits.

        With ``cache`` the call continues the 25 Hz stream where the cache left off.
        """
        inputs = substates
        if not self.parallel:
            inputs = substates + self.speech_embedding(prev_tokens)  # (B, L, d_s)
        return self.logits(self.states(inputs, attention_mask, cache))  # (B, L, V_s)
