"""Speech Refined Head (SRH): one backbone hidden state -> k speech tokens at 25 Hz.

``W_p`` ungroups each hidden state h_t (width D) into k sub-states (width d_s). A small causal
transformer then runs over the whole 25 Hz stream; the input at each sub-position is
``sub-state + E_s(previous speech token)``, and its output is scored against the speech
embedding E_s itself (tied weights), so the k tokens of a group are produced one by one, each
seeing the ones before it. The transformer is any HF causal-LM body (Qwen2 by default: at
real scale it can start from a Qwen2.5-0.5B TTS model); its input embedding table *is* E_s.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel, Cache, PretrainedConfig, PreTrainedModel


class SpeechRefinedHead(nn.Module):
    def __init__(
        self,
        k: int,
        hidden_size: int,
        srh_config: PretrainedConfig,
        tie_embeddings: bool = True,
        transformer: PreTrainedModel | None = None,
    ) -> None:
        super().__init__()
        self.k = k
        self.transformer = transformer or AutoModel.from_config(srh_config)
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

    def substates(self, hidden: torch.Tensor) -> torch.Tensor:
        """(B, N, D) -> (B, N*k, d_s): ``H = split_k(W_p h)``, flattened onto the 25 Hz axis."""
        b, n, _ = hidden.shape
        return self.ungroup(hidden).view(b, n * self.k, -1)

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
        inputs = substates + self.speech_embedding(prev_tokens)  # (B, L, d_s)
        out = self.transformer(
            inputs_embeds=inputs,
            attention_mask=attention_mask,
            past_key_values=cache,
            use_cache=cache is not None,
        )
        states = out.last_hidden_state  # (B, L, d_s), after the final norm
        weight = (
            self.speech_embedding.weight if self.speech_head is None else self.speech_head.weight
        )
        return F.linear(states, weight)  # (B, L, V_s)
