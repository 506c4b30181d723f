"""``MelCodecConfig``: everything that defines the default mel codec besides its tensors."""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass
class MelCodecConfig:
    """Features, token -> mel net and vocoder settings (saved as the codec's config.json)."""

    vocab_size: int = 1024
    sample_rate: int = 16_000
    n_fft: int = 400
    hop_length: int = 160  # 10 ms
    n_mels: int = 80
    frames_per_token: int = 4  # 4 x 10 ms = one 25 Hz token
    log_floor: float = 1e-5  # log(max(mel, floor))
    # token -> mel decoder
    channels: int = 256
    layers: int = 4
    kernel_size: int = 3
    centered_layers: int = 1  # the first layers see kernel//2 future tokens, the rest are causal
    # streaming Griffin-Lim
    gl_iters: int = 8  # per token; every frame is iterated in two consecutive tokens
    gl_lookahead_frames: int = 4
    gl_momentum: float = 0.99  # fast Griffin-Lim (Perraudin et al. 2013)

    @property
    def token_dim(self) -> int:
        return self.n_mels * self.frames_per_token

    @property
    def right_context(self) -> int:
        """Future tokens one token's mel depends on."""
        return self.centered_layers * (self.kernel_size // 2)

    @property
    def left_context(self) -> int:
        """Past tokens one token's mel depends on."""
        half = self.kernel_size // 2
        return self.centered_layers * half + (self.layers - self.centered_layers) * 2 * half

    @property
    def lookahead_tokens(self) -> int:
        """Future tokens needed before the audio of a token is final: the next token (its first
        frames overlap this one's last samples), the vocoder's look-ahead, the net's context."""
        k = self.frames_per_token
        return 1 + (k - 1 + self.gl_lookahead_frames) // k + self.right_context

    @classmethod
    def from_dict(cls, data: dict) -> MelCodecConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
