"""Text tokenizer for the text channel: a small byte-level BPE for the tiny preset (trained with
HF ``tokenizers`` on the corpus text), or the backbone's own HF tokenizer and chat template.

Both expose the same few things the CoM formatter needs: ``encode``/``decode``, the pad and
end-of-turn ids (which must match ``DrVoiceConfig.text_pad_token_id`` / ``text_eos_token_id``)
and the role markers that open a system / user / assistant segment.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
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
        role_end: dict[str, list[int]] | None = None,
        turn_sep: list[int] | None = None,
    ) -> None:
        self._encode, self._decode = encode_fn, decode_fn
        # ids that close a system / user turn after its content, and that follow the end of an
        # answer before the next turn: empty for the BPE, the chat template's for HF tokenizers
        self.role_end = role_end or {}
        self.turn_sep = list(turn_sep or [])
        self.hf = None  # the wrapped HF tokenizer, if any
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

    def end(self, name: str) -> list[int]:
        """Ids that close a system or user segment after its content."""
        return list(self.role_end.get(name, []))

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
        special_tokens: Sequence[str] = ("<|speak|>",),
        pad_token: str = "<|endoftext|>",
        speak_token: str = "<|speak|>",
    ) -> TextTokenizer:
        """Wrap an HF tokenizer with a chat template (Qwen2.5, SmolLM2, ...): role markers and
        turn ends come from the template itself, so a typed T2T prompt is token for token what
        ``apply_chat_template`` gives the bare LLM. ``special_tokens`` are added (as special
        tokens, in order) when the tokenizer lacks them."""
        hf = (
            AutoTokenizer.from_pretrained(name_or_path)
            if isinstance(name_or_path, str)
            else name_or_path
        )
        add_special_tokens(hf, special_tokens)
        pad_id, speak_id = (
            hf.convert_tokens_to_ids(pad_token),
            hf.convert_tokens_to_ids(speak_token),
        )
        for name, value in ((pad_token, pad_id), (speak_token, speak_id)):
            if value is None or value == hf.unk_token_id:
                raise ValueError(f"tokenizer has no {name!r}; add it to special_tokens")
        pieces = chat_pieces(hf)
        encode = lambda text: hf.encode(text, add_special_tokens=False)  # noqa: E731
        eos = encode(pieces["eos"])
        if len(eos) != 1:
            raise ValueError(f"the chat template ends turns with {pieces['eos']!r}, not one token")
        out = cls(
            encode_fn=encode,
            decode_fn=lambda ids_: hf.decode(ids_, skip_special_tokens=False),
            pad_id=pad_id,
            eos_id=eos[0],
            role_ids={r: encode(pieces[f"{r}_open"]) for r in ROLES},
            speak_ids=[speak_id],
            vocab_size=len(hf),
            role_end={r: encode(pieces["close"]) for r in ("system", "user")},
            turn_sep=encode(pieces["after_eos"]),
        )
        out.hf = hf
        return out

    @classmethod
    def for_config(cls, config, corpus: str | Path | None = None) -> TextTokenizer:
        """The text tokenizer a model config asks for: the corpus's BPE (``corpus`` folder, or
        a model folder holding ``text_tokenizer.json``) or the backbone's own tokenizer with
        DrVoice's added tokens, checked against the config's ids."""
        if config.text_tokenizer == "corpus_bpe":
            if corpus is None:
                raise ValueError("the corpus BPE tokenizer needs the folder holding it")
            return cls.load(Path(corpus) / "text_tokenizer.json")
        from drvoice_lab.modeling.backbones import load_backbone_tokenizer

        specials = config.text_special_tokens
        hf = load_backbone_tokenizer(config.backbone_source)
        add_special_tokens(hf, specials)
        pad = hf.convert_ids_to_tokens(config.text_pad_token_id)  # the config says which
        tokenizer = cls.from_hf(hf, specials, pad)
        ids = [tokenizer.hf.convert_tokens_to_ids(t) for t in specials]
        wanted = list(range(config.base_vocab_size, config.base_vocab_size + len(specials)))
        if ids != wanted:
            raise ValueError(
                f"the backbone tokenizer gives the added tokens {specials} ids {ids}, but the "
                f"config expects {wanted} (base_vocab_size {config.base_vocab_size}); set "
                "base_vocab_size to the tokenizer's size without them"
            )
        return tokenizer


def add_special_tokens(hf: PreTrainedTokenizerBase, tokens: Sequence[str]) -> None:
    """Add ``tokens`` (in order, as special tokens) that the tokenizer does not have yet."""
    new = [t for t in tokens if t not in hf.get_vocab()]
    if new:
        hf.add_special_tokens({"extra_special_tokens": new}, replace_extra_special_tokens=False)


# Sentinel contents: rendering them through a chat template reveals its role markers.
_SENTINELS = {"system": "SYSXQ", "user": "USRXQ", "assistant": "ASTXQ", "user2": "USRYQ"}


def chat_pieces(hf: PreTrainedTokenizerBase) -> dict[str, str]:
    """Split a chat template into the strings around each message: ``<role>_open`` before the
    content, ``close`` after system/user content, ``eos`` + ``after_eos`` after an answer."""
    if not getattr(hf, "chat_template", None):
        raise ValueError("the tokenizer has no chat template; pick an instruct (chat) model")
    s = _SENTINELS
    msgs = [
        {"role": "system", "content": s["system"]},
        {"role": "user", "content": s["user"]},
        {"role": "assistant", "content": s["assistant"]},
        {"role": "user", "content": s["user2"]},
    ]
    full = hf.apply_chat_template(msgs, tokenize=False)
    prompt = hf.apply_chat_template(msgs[:2], tokenize=False, add_generation_prompt=True)
    head, rest = full.split(s["system"], 1)
    after_system, rest = rest.split(s["user"], 1)
    between, rest = rest.split(s["assistant"], 1)
    after_answer, close = rest.split(s["user2"], 1)
    assistant_open = prompt.split(s["user"], 1)[1][len(close) :]
    user_open = after_system[len(close) :]
    if not (
        between == close + assistant_open
        and after_system.startswith(close)
        and after_answer.endswith(user_open)
        and prompt.split(s["user"], 1)[1].startswith(close)
    ):
        raise ValueError("unsupported chat template: its turns are not <open> content <close>")
    answer_end = after_answer[: len(after_answer) - len(user_open)]
    eos = hf.convert_ids_to_tokens(hf.encode(answer_end, add_special_tokens=False)[0])
    return {
        "system_open": head,
        "user_open": user_open,
        "assistant_open": assistant_open,
        "close": close,
        "eos": eos,
        "after_eos": answer_end[len(eos) :],
    }
