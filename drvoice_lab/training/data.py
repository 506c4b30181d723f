"""Training data: corpus dialogues -> CoM-formatted, collated batches, in a resumable order.

Speech is turned into model inputs once and cached next to the corpus:

* user turns: frozen Whisper-encoder frames (50 Hz), ``features/<encoder>/<utt>.npy`` (fp16);
* assistant turns: 25 Hz speech-token ids, ``speech_tokens/<tokenizer>/<utt>.npy``.

The order of examples is a pure function of (seed, position): micro-batch ``m`` of the run
takes global positions ``m*B .. m*B+B-1`` of an endless sequence of seeded permutations, and
each position draws its CoM mode from its own seeded generator. Resuming therefore only needs
the micro-batch counter, and process ``rank`` of ``num_processes`` simply takes every
``num_processes``-th example.
"""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from drvoice_lab.config import DrVoiceConfig
from drvoice_lab.data.collator import DrVoiceCollator
from drvoice_lab.data.com import MODES, TurnInput, format_dialogue, sample_mode
from drvoice_lab.data.corpus import Dialogue, load_dialogues, load_utterance
from drvoice_lab.data.text_tokenizer import TextTokenizer


def _slug(name: str) -> str:
    return hashlib.sha1(name.encode()).hexdigest()[:10]


class FeatureStore:
    """Cached encoder frames and speech-token ids for a corpus's utterances."""

    def __init__(
        self,
        corpus_dir: str | Path,
        encoder=None,
        speech_tokenizer=None,
        encoder_name: str = "encoder",
        tokenizer_name: str = "speech_tokenizer",
    ) -> None:
        self.corpus = Path(corpus_dir)
        self.encoder, self.speech_tokenizer = encoder, speech_tokenizer
        self.frame_dir = self.corpus / "features" / _slug(encoder_name)
        self.token_dir = self.corpus / "speech_tokens" / _slug(tokenizer_name)

    def _path(self, folder: Path, rel_audio: str) -> Path:
        return folder / (Path(rel_audio).stem + ".npy")

    def user_frames(self, rel_audio: str) -> np.ndarray:
        """(F, d_enc) float32 encoder frames of one user utterance."""
        path = self._path(self.frame_dir, rel_audio)
        if not path.exists():
            if self.encoder is None:
                raise FileNotFoundError(f"no cached encoder frames for {rel_audio}; run prepare()")
            self._encode_users([rel_audio])
        return np.load(path).astype(np.float32)

    def answer_tokens(self, rel_audio: str) -> np.ndarray:
        path = self._path(self.token_dir, rel_audio)
        if not path.exists():
            if self.speech_tokenizer is None:
                raise FileNotFoundError(f"no cached speech tokens for {rel_audio}; run prepare()")
            self._tokenize([rel_audio])
        return np.load(path).astype(np.int64)

    def prepare(
        self,
        dialogues: list[Dialogue],
        progress: bool = True,
        batch: int = 16,
        answers_only: bool = False,
    ) -> int:
        """Compute everything missing, with a progress bar; ``answers_only``: only the speech
        tokens of the assistant's audio (no encoder needed). Returns how many were new."""
        users = [] if answers_only else sorted({t.user_audio for d in dialogues for t in d.turns})
        answers = sorted({t.assistant_audio for d in dialogues for t in d.turns})
        users = [u for u in users if not self._path(self.frame_dir, u).exists()]
        answers = [a for a in answers if not self._path(self.token_dir, a).exists()]
        bar = tqdm(
            total=len(users) + len(answers),
            desc="encoding corpus speech",
            unit="utt",
            disable=not progress or not (users or answers),
        )
        for i in range(0, len(users), batch):
            self._encode_users(users[i : i + batch])
            bar.update(len(users[i : i + batch]))
        for i in range(0, len(answers), batch):
            self._tokenize(answers[i : i + batch])
            bar.update(len(answers[i : i + batch]))
        bar.close()
        return len(users) + len(answers)

    def _encode_users(self, rels: list[str]) -> None:
        self.frame_dir.mkdir(parents=True, exist_ok=True)
        wavs = [load_utterance(self.corpus, r) for r in rels]
        with torch.no_grad():
            frames, lengths = self.encoder.encode(wavs)  # (B, F, d), (B,)
        for rel, f, n in zip(rels, frames, lengths, strict=True):
            _save_atomic(self._path(self.frame_dir, rel), f[: int(n)].numpy().astype(np.float16))

    def _tokenize(self, rels: list[str]) -> None:
        self.token_dir.mkdir(parents=True, exist_ok=True)
        for rel in rels:
            ids = self.speech_tokenizer.encode(load_utterance(self.corpus, rel))
            _save_atomic(self._path(self.token_dir, rel), np.asarray(ids, dtype=np.int16))


def _save_atomic(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(path.stem + ".tmp.npy")
    np.save(tmp, array)
    tmp.replace(path)


class DialogueBatches:
    """Deterministic, shardable batches of CoM-formatted dialogues from one split."""

    def __init__(
        self,
        corpus_dir: str | Path,
        split: str,
        config: DrVoiceConfig,
        tokenizer: TextTokenizer,
        features: FeatureStore,
        seed: int = 0,
    ) -> None:
        self.dialogues = load_dialogues(corpus_dir, split)
        # examples in ``world_modes`` come from ``world_dialogues`` instead (see with_world)
        self.world_dialogues: list[Dialogue] = []
        self.world_modes: frozenset[str] = frozenset()
        if not self.dialogues:
            raise ValueError(f"split {split!r} of {corpus_dir} has no dialogues")
        self.config, self.tokenizer, self.features = config, tokenizer, features
        self.seed = seed
        self.collate = DrVoiceCollator(config, text_pad_id=tokenizer.pad_id)
        self._perms: dict[tuple[bool, int], np.ndarray] = {}  # (world?, epoch) -> order

    def with_world(self, dialogues: list[Dialogue], modes) -> DialogueBatches:
        """The same batches, but examples in ``modes`` drawn from ``dialogues`` (dialogues
        drawn from the task world, ``drvoice_lab.data.corpus.world_dialogues``)."""
        batches = copy.copy(self)
        batches.world_dialogues, batches.world_modes = dialogues, frozenset(modes)
        batches._perms = {}
        return batches

    def _dialogue_at(self, position: int, world: bool = False) -> Dialogue:
        pool = self.world_dialogues if world else self.dialogues
        epoch, offset = divmod(position, len(pool))
        if (world, epoch) not in self._perms:  # keep one epoch's order per pool
            self._perms = {k: v for k, v in self._perms.items() if k[0] != world}
            order = np.random.default_rng([self.seed, epoch]).permutation(len(pool))
            self._perms[(world, epoch)] = order
        return pool[self._perms[(world, epoch)][offset]]

    def example(self, dialogue: Dialogue, mode: str):
        spec = MODES[mode]
        turns, feats = [], []
        for t in dialogue.turns:
            frames = self.features.user_frames(t.user_audio) if spec.speech_in else None
            speech = self.features.answer_tokens(t.assistant_audio) if spec.speech_out else None
            turns.append(
                TurnInput(
                    t.question,
                    t.answer,
                    user_frames=0 if frames is None else len(frames),
                    answer_speech=speech,
                )
            )
            if frames is not None:
                feats.append(frames)
        return format_dialogue(turns, mode, self.config, self.tokenizer), feats

    def batch(
        self,
        micro_batch: int,
        batch_size: int,
        modes: dict[str, float],
        rank: int = 0,
        num_processes: int = 1,
        mix: str = "example",
    ) -> dict[str, torch.Tensor]:
        """Global micro-batch ``micro_batch`` (``batch_size`` examples), this rank's share.

        ``mix="example"``: each example draws its CoM mode; ``"batch"``: the whole micro-batch
        (every rank's share) takes one mode drawn for it."""
        examples, feats = [], []
        for i in range(rank, batch_size, num_processes):
            position = micro_batch * batch_size + i
            draw = [self.seed, 1, position] if mix == "example" else [self.seed, 3, micro_batch]
            mode = sample_mode(np.random.default_rng(draw), modes)
            dialogue = self._dialogue_at(position, world=mode in self.world_modes)
            ex, f = self.example(dialogue, mode)
            examples.append(ex)
            feats.append(f)
        return self.collate(examples, feats)


class UtteranceBatches:
    """Deterministic batches of (user encoder frames, transcript ids) from one split's distinct
    user utterances, for adapter alignment (same position -> same batch, shardable)."""

    def __init__(self, dialogues: list[Dialogue], tokenizer: TextTokenizer, features, seed=0):
        pairs = {(t.user_audio, t.question) for d in dialogues for t in d.turns}
        self.items = sorted(pairs)
        self.tokenizer, self.features, self.seed = tokenizer, features, seed

    def batch(self, index: int, batch_size: int, rank: int = 0, num_processes: int = 1):
        """Global batch ``index``: this rank's share as (frames (B, F, d), frame lengths (B,),
        targets (B, L), target lengths (B,))."""
        order = np.random.default_rng([self.seed, 2, index]).choice(
            len(self.items), size=batch_size, replace=False
        )
        items = [self.items[i] for i in order[rank::num_processes]]
        frames = [torch.from_numpy(self.features.user_frames(a)) for a, _ in items]
        targets = [torch.tensor(self.tokenizer.encode(q)) for _, q in items]
        padded = torch.zeros(len(frames), max(len(f) for f in frames), frames[0].shape[1])
        for i, f in enumerate(frames):
            padded[i, : len(f)] = f
        return (
            padded,
            torch.tensor([len(f) for f in frames]),
            torch.nn.utils.rnn.pad_sequence(targets, batch_first=True),
            torch.tensor([len(t) for t in targets]),
        )
