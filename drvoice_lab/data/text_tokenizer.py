"""Text tokenizer for the text channel: a small byte-level BPE for the tiny preset (trained with
HF ``tokenizers`` on the corpus text), or any HF tokenizer at real scale.

Both expose the same few things the CoM formatter needs: ``encode``/``decode``, the pad and
end-of-turn ids (which must match ``DrVoiceConfig.text_pad_token_id`` / ``text_eos_token_id``)
and the role markers that open a system / user / assistant segment.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerBase

ROLES = ("system", "user", "assistant")
# Order fixes the ids: pad = 0 and end-of-turn = 1 match the tiny preset's config defaults.
# <|speak|> closes the text-first part of a chain-of-modality answer (STC, SAC): the parallel
# speech + text part follows it.
SPECIAL_TOKENS = ("<|pad|>", "<|eot|>", "<|system|>", "<|user|>", "<|assistant|>", "<|speak|>")


class TextTokenizer:
    """Thin wrapper giving a BPE ``Tokenizer`` and HF tokenizers one interface."""

    def __init__(
        self,
        encode_fn,
        decode_fn,
        pad_id: int,
        eos_id: int,
        role_ids: dict[str, list[int]],
        speak_ids: list[int],
        vocab_size: int,
    ) -> None:
        self._encode, self._decode = encode_fn, decode_fn
        self.pad_id, self.eos_id = pad_id, eos_id
        self.role_ids = role_ids
        self.speak_ids = speak_ids
        self.vocab_size = vocab_size
        self._backend = None

    def encode(self, text: str) -> list[int]:
        return list(self._encode(text))

    def decode(self, ids: Iterable[int]) -> str:
        return self._decode([i for i in ids if i not in (self.pad_id, self.eos_id)])

    def role(self, name: str) -> list[int]:
        """Ids that open a segment of role ``name`` (system / user / assistant)."""
        return list(self.role_ids[name])

    # --------------------------------------------------------------- the project's BPE
    @classmethod
    def train_bpe(cls, texts: Iterable[str], vocab_size: int = 2048) -> TextTokenizer:
        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=list(SPECIAL_TOKENS),
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tokenizer.train_from_iterator(texts, trainer)
        return cls.from_bpe(tokenizer)

    @classmethod
    def from_bpe(cls, tokenizer: Tokenizer) -> TextTokenizer:
        ids = {tok: tokenizer.token_to_id(tok) for tok in SPECIAL_TOKENS}
        out = cls(
            encode_fn=lambda text: tokenizer.encode(text).ids,
            decode_fn=lambda ids_: tokenizer.decode(ids_),
            pad_id=ids["<|pad|>"],
            eos_id=ids["<|eot|>"],
            role_ids={role: [ids[f"<|{role}|>"]] for role in ROLES},
            speak_ids=[ids["<|speak|>"]],
            vocab_size=tokenizer.get_vocab_size(),
        )
        out._backend = tokenizer
        return out

    def save(self, path: str | Path) -> Path:
        if self._backend is None:
            raise ValueError(
                "only the project's BPE tokenizer is saved this way; HF tokenizers "
                "keep their own files"
            )
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._backend.save(str(path))
        return path

    @classmethod
    def load(cls, path: str | Path) -> TextTokenizer:
        if not Path(path).exists():
            raise FileNotFoundError(f"no text tokenizer at {path}")
        return cls.from_bpe(Tokenizer.from_file(str(path)))

    # --------------------------------------------------------------- any HF tokenizer
    @classmethod
    def from_hf(
        cls,
        name_or_path: str | PreTrainedTokenizerBase,
        pad_token: str = "<|endoftext|>",
        eos_token: str = "<|im_end|>",
        role_template: str = "<|im_start|>{role}\n",
        speak_marker: str = "\n<speak>\n",
    ) -> TextTokenizer:
        """Wrap an HF tokenizer (Qwen2.5's chat markers by default)."""
        hf = (
            AutoTokenizer.from_pretrained(name_or_path)
            if isinstance(name_or_path, str)
            else name_or_path
        )
        pad_id, eos_id = hf.convert_tokens_to_ids(pad_token), hf.convert_tokens_to_ids(eos_token)
        if pad_id is None or eos_id is None or pad_id == hf.unk_token_id:
            raise ValueError(f"tokenizer has no {pad_token!r} / {eos_token!r}; pass the right ones")
        roles = {
            r: hf.encode(role_template.format(role=r), add_special_tokens=False) for r in ROLES
        }
        return cls(
            encode_fn=lambda text: hf.encode(text, add_special_tokens=False),
            decode_fn=lambda ids_: hf.decode(ids_, skip_special_tokens=False),
            pad_id=pad_id,
            eos_id=eos_id,
            role_ids=roles,
            speak_ids=hf.encode(speak_marker, add_special_tokens=False),
            vocab_size=len(hf),
        )
