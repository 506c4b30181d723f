"""Fit the default 25 Hz mel codec on the project's own hibari-voice audio.

    python -m drvoice_lab.audio.codec_training --out drvoice_lab/assets/speech_tokenizer

Steps: template sentences (spoken QA: numbers, arithmetic, days, months, colours, capitals,
opposites, counts, common phrases; plus everyday subject-verb-object sentences for phonetic
variety), deterministic from a seed -> hibari TTS at a few speeds -> 16 kHz -> stacked log-mel
per 25 Hz token -> k-means codebook -> train the token -> mel conv decoder on the codebook's
own encodings -> save (safetensors + json). About 11 minutes on a shared 2-core CPU.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from drvoice_lab.audio.speech_tokenizer import MelCodecConfig, MelCodecTokenizer, nearest
from drvoice_lab.data.tasks import DAYS, MONTHS, TENS
from drvoice_lab.data.tasks import number_words as spoken_number

# --------------------------------------------------------------------------- sentences

CAPITALS = {
    "France": "Paris", "Germany": "Berlin", "Italy": "Rome", "Spain": "Madrid",
    "Japan": "Tokyo", "China": "Beijing", "Canada": "Ottawa", "Egypt": "Cairo",
    "Kenya": "Nairobi", "Peru": "Lima", "Norway": "Oslo", "Sweden": "Stockholm",
    "Greece": "Athens", "Russia": "Moscow", "India": "New Delhi", "Brazil": "Brasilia",
    "Mexico": "Mexico City", "Australia": "Canberra", "Ireland": "Dublin",
    "Portugal": "Lisbon", "Austria": "Vienna", "Poland": "Warsaw", "Turkey": "Ankara",
    "Argentina": "Buenos Aires", "Chile": "Santiago", "Thailand": "Bangkok",
    "Vietnam": "Hanoi", "Cuba": "Havana", "Finland": "Helsinki", "Denmark": "Copenhagen",
    "Hungary": "Budapest", "Belgium": "Brussels", "Morocco": "Rabat",
    "South Korea": "Seoul", "the United States": "Washington", "England": "London",
}  # fmt: skip
OPPOSITES = {
    "hot": "cold", "big": "small", "fast": "slow", "up": "down", "open": "closed",
    "light": "dark", "happy": "sad", "early": "late", "full": "empty", "old": "young",
    "high": "low", "hard": "soft", "wet": "dry", "loud": "quiet", "long": "short",
    "rich": "poor", "strong": "weak", "thick": "thin", "near": "far", "clean": "dirty",
    "heavy": "light", "inside": "outside", "left": "right", "day": "night", "win": "lose",
    "push": "pull", "buy": "sell", "first": "last", "north": "south", "east": "west",
}  # fmt: skip
COLOURS = {
    "the sky": "blue", "grass": "green", "snow": "white", "a banana": "yellow",
    "coal": "black", "a tomato": "red", "an orange": "orange", "a lemon": "yellow",
    "chocolate": "brown", "a strawberry": "red", "the sea": "blue", "milk": "white",
    "a carrot": "orange", "a frog": "green", "a crow": "black", "an aubergine": "purple",
}  # fmt: skip
MIXES = {
    ("blue", "yellow"): "green", ("red", "white"): "pink", ("red", "yellow"): "orange",
    ("blue", "red"): "purple", ("black", "white"): "grey",
}  # fmt: skip
COUNTS = [
    ("days are in a week", "There are seven days in a week"),
    ("months are in a year", "There are twelve months in a year"),
    ("legs does a spider have", "A spider has eight legs"),
    ("legs does a dog have", "A dog has four legs"),
    ("sides does a triangle have", "A triangle has three sides"),
    ("sides does a square have", "A square has four sides"),
    ("hours are in a day", "There are twenty four hours in a day"),
    ("minutes are in an hour", "There are sixty minutes in an hour"),
    ("seconds are in a minute", "There are sixty seconds in a minute"),
    ("wheels does a bicycle have", "A bicycle has two wheels"),
    ("continents are there", "There are seven continents"),
    ("letters are in the alphabet", "There are twenty six letters in the alphabet"),
]
COMMON = [
    "Good morning, how can I help you today?", "Sure, I can help with that.",
    "Let me think about that for a moment.", "That is a great question.",
    "I am not sure, but I can try.", "Yes, that is correct.", "No, that is not right.",
    "Could you say that again, please?", "Thank you for asking.", "Here is the answer.",
    "Of course, here you go.", "I hope that helps.", "Is there anything else?",
    "Have a nice day.", "The weather is lovely today.", "It might rain this afternoon.",
    "Please speak a little more slowly.", "I did not catch that.", "Good night and sleep well.",
    "See you tomorrow.", "That sounds like a good plan.", "Let us try another one.",
    "Well done, that is the right answer.", "Take your time.", "I am happy to help.",
    "The train leaves at nine in the morning.", "Water boils at one hundred degrees.",
    "The sun rises in the east.", "Cats like to sleep in the sun.", "Bread is made from flour.",
    "Bees make honey.", "The moon goes around the earth.", "Fish live in water.",
    "Apples grow on trees.", "My favourite colour is blue.", "The shop opens at ten.",
    "Remember to drink some water.", "The library is closed on Sunday.",
]  # fmt: skip
PREFIXES = ["", "", "", "Sure. ", "Well, ", "Okay. ", "Good question. ", "Let me see. ", "Yes. "]
# everyday sentences, for phonetic variety beyond the question-answer templates
SUBJECTS = [
    "The teacher", "My sister", "Our neighbour", "The young doctor", "A tall man", "The twins",
    "Her father", "The farmer", "My best friend", "The captain", "The little girl", "Your uncle",
    "The students", "A friendly nurse", "The police officer", "Grandma", "The chef", "Everyone",
    "Nobody", "The shopkeeper", "The baby", "Our coach", "The engineer", "A quiet boy",
]  # fmt: skip
PREDICATES = [
    "bought a new bicycle", "cooked a spicy curry", "painted the kitchen blue", "found a wallet",
    "wrote a short poem", "visited an old castle", "fixed the broken chair", "played chess",
    "planted some tomatoes", "watched a funny film", "carried the heavy boxes", "won the race",
    "opened a small shop", "sang a cheerful song", "lost the car keys", "climbed the steep hill",
    "caught a huge salmon", "built a sandcastle", "borrowed some pencils", "drank hot cocoa",
    "ordered a cup of tea", "moved to a quiet town", "learned to swim", "answered the phone",
    "drew a picture of a horse", "washed the dishes", "missed the ferry", "baked a lemon pie",
    "fed the ducks", "knitted a woolly scarf", "repaired the fence", "juggled three oranges",
    "checked the weather", "typed a long email", "hummed a tune", "swept the yard",
]  # fmt: skip
PLACES = [
    "", "", " at the station", " near the river", " at the zoo", " in the city centre",
    " on the beach", " at the office", " in the village", " behind the house", " upstairs",
    " in the mountains", " at the airport", " by the lake", " in the kitchen",
]  # fmt: skip
TIMES = [
    "", "", " yesterday", " last week", " this morning", " on Saturday", " every evening",
    " after lunch", " in the summer", " at midnight", " two days ago", " last year",
]  # fmt: skip


def number_words(n: int) -> str:
    """0..999 in words without the British "and": 123 -> 'one hundred twenty three'."""
    return spoken_number(n).replace(" hundred and ", " hundred ")


def ordinal_words(n: int) -> str:
    """1..99 as an ordinal: 21 -> 'twenty first'."""
    special = {1: "first", 2: "second", 3: "third", 5: "fifth", 8: "eighth", 9: "ninth",
               12: "twelfth"}  # fmt: skip
    tens, ones = divmod(n, 10)
    if n in special:
        return special[n]
    if n >= 20 and ones:
        return TENS[tens] + " " + ordinal_words(ones)
    word = number_words(n)
    return word[:-1] + "ieth" if word.endswith("y") else word + "th"


def _arithmetic(rng: random.Random) -> list[str]:
    op = rng.choice(["plus", "minus", "times", "divided by"])
    a, b = rng.randint(0, 20), rng.randint(1, 12)
    if op == "plus":
        c = a + b
    elif op == "minus":
        a, b = max(a, b), min(a, b)
        c = a - b
    elif op == "times":
        c = a * b
    else:  # a whole-number quotient
        a, c = a * b, a
    a_, b_, c_ = number_words(a), number_words(b), number_words(c)
    return [
        f"What is {a_} {op} {b_}?",
        f"{a_.capitalize()} {op} {b_} is {c_}.",
        f"The answer is {c_}.",
        f"{a_.capitalize()} {op} {b_} equals {c_}.",
    ]


def _numbers(rng: random.Random) -> list[str]:
    n = rng.choice([rng.randint(1, 30), rng.randint(1, 998)])
    w, after, before = number_words(n), number_words(n + 1), number_words(n - 1)
    return [
        f"What number comes after {w}?",
        f"The number after {w} is {after}.",
        f"What number comes before {w}?",
        f"The number before {w} is {before}.",
        f"Is {w} an even number?",
        f"{w.capitalize()} is {'an even' if n % 2 == 0 else 'an odd'} number.",
        f"Count from {w} to {number_words(min(n + 3, 999))}.",
    ]


def _calendar(rng: random.Random) -> list[str]:
    i, j = rng.randrange(7), rng.randrange(12)
    day, nxt, prev = DAYS[i], DAYS[(i + 1) % 7], DAYS[i - 1]
    month, mnext, mprev = MONTHS[j], MONTHS[(j + 1) % 12], MONTHS[j - 1]
    return [
        f"What day comes after {day}?",
        f"The day after {day} is {nxt}.",
        f"What day comes before {day}?",
        f"The day before {day} is {prev}.",
        f"Which month comes after {month}?",
        f"The month after {month} is {mnext}.",
        f"The month before {month} is {mprev}.",
        f"Today is {day}, the {ordinal_words(rng.randint(1, 31))} of {month}.",
        f"My birthday is in {month}.",
    ]


def _capitals(rng: random.Random) -> list[str]:
    country = rng.choice(sorted(CAPITALS))
    city = CAPITALS[country]
    return [
        f"What is the capital of {country}?",
        f"The capital of {country} is {city}.",
        f"{city} is the capital of {country}.",
        f"Which country has {city} as its capital?",
    ]


def _opposites(rng: random.Random) -> list[str]:
    word = rng.choice(sorted(OPPOSITES))
    other = OPPOSITES[word]
    return [
        f"What is the opposite of {word}?",
        f"The opposite of {word} is {other}.",
        f"{other.capitalize()} is the opposite of {word}.",
    ]


def _colours(rng: random.Random) -> list[str]:
    thing = rng.choice(sorted(COLOURS))
    (a, b), mix = rng.choice(sorted(MIXES.items()))
    return [
        f"What colour is {thing}?",
        f"{thing[0].upper() + thing[1:]} is {COLOURS[thing]}.",
        f"What do you get when you mix {a} and {b}?",
        f"If you mix {a} and {b}, you get {mix}.",
    ]


def _counts(rng: random.Random) -> list[str]:
    question, answer = rng.choice(COUNTS)
    return [f"How many {question}?", f"{answer}."]


def _everyday(rng: random.Random) -> list[str]:
    clause = f"{rng.choice(SUBJECTS)} {rng.choice(PREDICATES)}"
    clause += rng.choice(PLACES) + rng.choice(TIMES)
    inner = clause if clause.startswith("Grandma") else clause[0].lower() + clause[1:]
    return [
        f"{clause}.",
        f"I think {inner}.",
        f"Did you know that {inner}?",
        f"Repeat after me: {clause}.",
    ]


GENERATORS = [_arithmetic, _arithmetic, _numbers, _calendar, _capitals, _opposites, _colours,
              _counts, _everyday, _everyday, _everyday]  # fmt: skip


def spoken_qa_sentences(count: int, seed: int = 0, exclude: Sequence[str] = ()) -> list[str]:
    """``count`` distinct sentences from the spoken-QA templates, deterministic in ``seed``."""
    rng = random.Random(seed)
    seen, out = set(exclude), []
    for _ in range(count * 50):
        if len(out) == count:
            break
        if rng.random() < 0.12:
            sentence = rng.choice(COMMON)
        else:
            sentence = rng.choice(rng.choice(GENERATORS)(rng))
        prefix = rng.choice(PREFIXES)
        if prefix.endswith(", ") and not sentence.startswith("I "):
            sentence = sentence[0].lower() + sentence[1:]
        sentence = prefix + sentence
        if sentence not in seen:
            seen.add(sentence)
            out.append(sentence)
    if len(out) < count:
        raise ValueError(f"the templates gave only {len(out)} distinct sentences, not {count}")
    return out


# --------------------------------------------------------------------------- audio


def synthesize(
    sentences: Sequence[str], seed: int = 0, speeds: Sequence[float] = (1.0,), progress=True
) -> list[np.ndarray]:
    """The assistant's (hibari) voice -> float32 16 kHz; one speed per sentence, by seed."""
    from drvoice_lab.data.voices import Voice

    rng = random.Random(seed)
    out = []
    for i, text in enumerate(tqdm(sentences, desc="hibari", disable=not progress)):
        voice = Voice("hibari", "heart", rng.choice(list(speeds)))
        out.append(voice.synthesize(text, seed=seed + i))
    return out


# --------------------------------------------------------------------------- k-means


def kmeans(
    x: torch.Tensor, k: int, iters: int = 20, seed: int = 0, progress: bool = True
) -> torch.Tensor:
    """(N, D) -> (k, D) centroids: k-means++ init on a subsample, then Lloyd iterations.

    Empty clusters are re-seeded with the points farthest from their centroid.
    """
    gen = torch.Generator().manual_seed(seed)
    if len(x) < k:
        raise ValueError(f"k-means needs at least k={k} points, got {len(x)}")
    centroids = _kmeans_pp(x[torch.randperm(len(x), generator=gen)[: 20 * k]], k, gen)
    for _ in tqdm(range(iters), desc=f"k-means K={k}", disable=not progress):
        assign = _assign(x, centroids)  # (N,)
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k).to(x.dtype)
        empty = counts == 0
        centroids = torch.where(empty[:, None], centroids, sums / counts.clamp_min(1)[:, None])
        if empty.any():
            err = ((x - centroids[assign]) ** 2).sum(1)
            centroids[empty] = x[err.topk(int(empty.sum())).indices]
    return centroids


def _assign(x: torch.Tensor, centroids: torch.Tensor, batch: int = 8192) -> torch.Tensor:
    """(N, D), (K, D) -> (N,) index of the nearest centroid."""
    c_sq = (centroids**2).sum(1)
    return torch.cat([(c_sq - 2 * xb @ centroids.T).argmin(1) for xb in x.split(batch)])


def _kmeans_pp(x: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    """k-means++ seeding: each new centre drawn with probability ~ squared distance."""
    centres = [x[torch.randint(len(x), (1,), generator=gen)].squeeze(0)]
    dist = ((x - centres[0]) ** 2).sum(1)
    for _ in range(1, k):
        idx = torch.multinomial(dist.clamp_min(1e-12), 1, generator=gen)
        centres.append(x[idx].squeeze(0))
        dist = torch.minimum(dist, ((x - centres[-1]) ** 2).sum(1))
    return torch.stack(centres)


# --------------------------------------------------------------------------- decoder


class ConvBlock(nn.Module):
    """Residual block: LayerNorm -> pad (left, right) -> conv k -> SiLU -> conv 1."""

    def __init__(self, channels: int, kernel_size: int, right: int):
        super().__init__()
        self.left, self.right = kernel_size - 1 - right, right
        self.norm = nn.LayerNorm(channels)  # over channels, per time step
        self.conv = nn.Conv1d(channels, channels, kernel_size)
        self.mix = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T)
        h = self.norm(x.transpose(1, 2)).transpose(1, 2)
        h = nn.functional.pad(h, (self.left, self.right))
        return x + self.mix(nn.functional.silu(self.conv(h)))


class TokenToMel(nn.Module):
    """ids (B, T) -> stacked log-mel (B, T, k * n_mels): centroid + learned correction.

    The torch twin of ``speech_tokenizer.TokenToMelNumpy`` (same weight names). Each output
    sees ``cfg.left_context`` past and ``cfg.right_context`` future tokens, no more.
    """

    def __init__(self, cfg: MelCodecConfig):
        super().__init__()
        half = cfg.kernel_size // 2
        self.embed = nn.Embedding(cfg.vocab_size, cfg.channels)
        self.codebook_in = nn.Linear(cfg.token_dim, cfg.channels)
        self.blocks = nn.ModuleList(
            ConvBlock(cfg.channels, cfg.kernel_size, half if i < cfg.centered_layers else 0)
            for i in range(cfg.layers)
        )
        self.norm = nn.LayerNorm(cfg.channels)
        self.out = nn.Linear(cfg.channels, cfg.token_dim)
        nn.init.normal_(self.embed.weight, std=0.02)
        nn.init.zeros_(self.out.weight)  # starts as plain centroid lookup
        nn.init.zeros_(self.out.bias)
        # k-means centroids (raw log-mel) and per-dimension statistics of the features
        self.register_buffer("codebook", torch.zeros(cfg.vocab_size, cfg.token_dim))
        self.register_buffer("mean", torch.zeros(cfg.token_dim))
        self.register_buffer("std", torch.ones(cfg.token_dim))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        base = self.codebook[ids]  # (B, T, D)
        x = self.embed(ids) + self.codebook_in((base - self.mean) / self.std)  # (B, T, C)
        x = x.transpose(1, 2)  # (B, C, T)
        for block in self.blocks:
            x = block(x)
        x = self.norm(x.transpose(1, 2))  # (B, T, C)
        return base + self.out(x) * self.std  # (B, T, D)

    def numpy_weights(self) -> dict[str, np.ndarray]:
        return {k: v.detach().numpy().copy() for k, v in self.state_dict().items()}


def train_decoder(
    net: TokenToMel,
    ids: Sequence[np.ndarray],
    feats: Sequence[np.ndarray],
    steps: int = 1500,
    batch: int = 32,
    window: int = 64,
    lr: float = 2e-3,
    seed: int = 0,
    progress: bool = True,
) -> list[float]:
    """Fit ``net`` (ids -> stacked log-mel) with L1 on random windows. Returns the losses."""
    gen = np.random.default_rng(seed)
    torch.manual_seed(seed)
    lengths = np.array([len(i) for i in ids])
    ids_all = np.concatenate(ids)
    feats_all = np.concatenate(feats)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps, pct_start=0.05)
    losses = []
    net.train()
    bar = tqdm(range(steps), desc="token->mel decoder", disable=not progress)
    for _ in bar:
        x, y = _batch(gen, ids_all, feats_all, starts, lengths, batch, window)
        loss = (net(x) - y).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        bar.set_postfix(l1=f"{np.mean(losses[-50:]):.3f}")
    net.eval()
    return losses


def _batch(gen, ids_all, feats_all, starts, lengths, batch, window):
    """Random windows of ``window`` tokens (whole utterance when shorter, padded by repeat)."""
    utt = gen.integers(len(lengths), size=batch)
    offs = starts[utt] + gen.integers(np.maximum(lengths[utt] - window, 0) + 1)  # (B,)
    last = starts[utt] + lengths[utt] - 1
    idx = np.minimum(offs[:, None] + np.arange(window), last[:, None])  # (B, W)
    return torch.from_numpy(ids_all[idx]), torch.from_numpy(feats_all[idx])  # (B, W), (B, W, D)


def decoder_error(tok: MelCodecTokenizer, ids: Sequence[np.ndarray], feats) -> dict[str, float]:
    """Mean absolute log-mel error of centroid lookup and of the trained decoder."""
    cent, net = [], []
    for i, f in zip(ids, feats, strict=True):
        cent.append(np.abs(tok.codebook[i] - f).mean())
        net.append(np.abs(tok.token_mel(i).reshape(f.shape) - f).mean())
    return {"centroid_l1": float(np.mean(cent)), "decoder_l1": float(np.mean(net))}


# --------------------------------------------------------------------------- fit


def fit_tokenizer(
    wavs: Sequence[np.ndarray],
    config: MelCodecConfig,
    kmeans_iters: int = 20,
    steps: int = 1500,
    seed: int = 0,
    progress: bool = True,
) -> MelCodecTokenizer:
    """Fit codebook and decoder on 16 kHz audio."""
    torch.manual_seed(seed)
    net = TokenToMel(config)
    untrained = MelCodecTokenizer(config, net.numpy_weights())
    feats = [untrained.features(w) for w in wavs]  # each (T, D)
    x = torch.from_numpy(np.concatenate(feats))  # (N, D)
    net.codebook.copy_(kmeans(x, config.vocab_size, kmeans_iters, seed, progress))
    net.mean.copy_(x.mean(0))
    net.std.copy_(x.std(0).clamp_min(1e-3))
    codebook = net.codebook.numpy()
    ids = [nearest(f, codebook) for f in feats]  # exactly what encode will give
    train_decoder(net, ids, feats, steps=steps, seed=seed, progress=progress)
    return MelCodecTokenizer(config, net.numpy_weights())


def fit_default_tokenizer(
    out_dir: str | Path,
    vocab_size: int = 1024,
    num_sentences: int = 2000,
    speeds: Sequence[float] = (0.9, 1.0, 1.1),
    kmeans_iters: int = 20,
    steps: int = 1500,
    seed: int = 0,
    progress: bool = True,
    threads: int | None = 1,
    **config_overrides,
) -> MelCodecTokenizer:
    """Synthesize the corpus, fit, save to ``out_dir`` and return the tokenizer.

    ``threads``: torch threads while fitting (restored after; None keeps the setting). 1 is
    the default because on a shared 2-core machine torch's OpenMP workers spin-wait for a
    descheduled peer and a training step gets ~20x slower with 2 threads.
    """
    t0 = time.perf_counter()
    config = MelCodecConfig(vocab_size=vocab_size, **config_overrides)
    sentences = spoken_qa_sentences(num_sentences, seed)
    wavs = synthesize(sentences, seed, speeds, progress)
    before = torch.get_num_threads()
    torch.set_num_threads(threads or before)
    try:
        tok = fit_tokenizer(wavs, config, kmeans_iters, steps, seed, progress)
    finally:
        torch.set_num_threads(before)
    tok.info = {
        "corpus": "hibari-tts voice 'heart', spoken-QA and everyday template sentences",
        "num_sentences": num_sentences,
        "speeds": list(speeds),
        "seconds_of_audio": round(sum(len(w) for w in wavs) / 16_000, 1),
        "seed": seed,
        "kmeans_iters": kmeans_iters,
        "decoder_steps": steps,
        "fit_seconds": round(time.perf_counter() - t0, 1),
        "torch_threads": threads or before,
    }
    tok.save(out_dir)
    return tok


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", required=True, help="directory to write config.json + weights")
    p.add_argument("--vocab-size", type=int, default=1024)
    p.add_argument("--sentences", type=int, default=2000)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--kmeans-iters", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: see docstring)")
    args = p.parse_args(argv)
    tok = fit_default_tokenizer(
        args.out,
        args.vocab_size,
        args.sentences,
        kmeans_iters=args.kmeans_iters,
        steps=args.steps,
        seed=args.seed,
        threads=args.threads,
    )
    print(f"saved to {args.out}: {tok.info}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
