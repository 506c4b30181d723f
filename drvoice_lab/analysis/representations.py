"""5 Hz vs 25 Hz: what the representations of a trained model carry (the analysis notebook).

* rate statistics: text tokens per second of speech against backbone positions per second;
* three views of the same spoken answer: the 25 Hz speech-token embeddings E_s, the 5 Hz
  grouped inputs W_g[E_s...] and the backbone's last hidden states over those groups (text
  channel all pad, so the backbone sees speech only);
* a linear CTC probe per view that recovers the answer's text tokens, scored on answers
  held out of the probe's training;
* word labels per 5 Hz position from Whisper word timestamps (for the structure plots);
* backbone attention over the 5 Hz positions of one turn.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

VIEWS = ("25 Hz tokens", "5 Hz grouped", "backbone hidden")


# ---------------------------------------------------------------------------- rates
def rate_statistics(dialogues, tokenizer, ks=(1, 2, 5), token_rate: int = 25) -> dict:
    """Per spoken utterance (questions and answers): text tokens per second, and backbone
    positions per second at each k (a partial last group still takes a position)."""
    texts, seconds = [], []
    for d in dialogues:
        for t in d.turns:
            texts += [t.question, t.answer]
            seconds += [t.user_seconds, t.assistant_seconds]
    seconds = np.asarray(seconds)
    tokens = np.asarray([len(tokenizer.encode(x)) for x in texts])
    out = {"text tokens/s": tokens / seconds}
    for k in ks:
        out[f"positions/s k={k}"] = np.ceil(seconds * token_rate / k) / seconds
    return out


# ---------------------------------------------------------------------------- views
@dataclass
class Utterance:
    text: str
    text_ids: list[int]
    speech_ids: torch.Tensor  # (T,) 25 Hz tokens
    heldout: bool  # kept out of the probe's training (by a hash of the text)


def answer_utterances(dialogues, corpus_dir, speech_tokenizer, tokenizer, limit: int,
                      heldout_fraction: float = 0.25) -> list[Utterance]:  # fmt: skip
    """Distinct spoken answers of ``dialogues`` (first ``limit``), tokenized both ways."""
    from drvoice_lab.data.corpus import load_utterance

    seen, out = set(), []
    for d in dialogues:
        for t in d.turns:
            if t.answer in seen or len(out) >= limit:
                continue
            seen.add(t.answer)
            tokens = speech_tokenizer.encode(load_utterance(corpus_dir, t.assistant_audio))
            digest = int(hashlib.sha1(t.answer.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
            out.append(Utterance(t.answer, tokenizer.encode(t.answer),
                                 torch.as_tensor(np.asarray(tokens), dtype=torch.long),
                                 digest < heldout_fraction))  # fmt: skip
    return out


@torch.no_grad()
def views(model, speech_ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """(T,) speech tokens -> {view: (L, width)}: E_s at 25 Hz, the grouped 5 Hz inputs, and
    the backbone's last hidden states with a pad text channel."""
    cfg = model.config
    speech = speech_ids[None]  # (1, T)
    n = math.ceil(speech.shape[1] / cfg.group_size)
    text = torch.full((1, n), cfg.text_pad_token_id, dtype=torch.long)
    ch = model.align_channels(text, speech)
    grouped = model.grouping.group_tokens(ch.speech_ids, model.speech_embedding)  # (1, N, D)
    hidden, _ = model.run_backbone(model.embed_inputs(ch.text_ids, ch.speech_ids))  # (1, N, D)
    return {
        VIEWS[0]: model.speech_embedding(speech)[0],  # (T, d_s)
        VIEWS[1]: grouped[0],
        VIEWS[2]: hidden[0],
    }


# ---------------------------------------------------------------------------- probes
def ctc_probe(features: list[torch.Tensor], targets: list[list[int]], heldout: list[bool],
              steps: int = 300, lr: float = 1e-2, seed: int = 0) -> dict:  # fmt: skip
    """Train a linear CTC probe (features -> text tokens) on the non-held-out utterances and
    score greedy decoding on the held-out ones: token accuracy = 1 - token error rate."""
    import jiwer

    vocab = sorted({t for ids in targets for t in ids})
    index = {t: i + 1 for i, t in enumerate(vocab)}  # 0 = CTC blank
    train = [i for i, h in enumerate(heldout) if not h]
    test = [i for i, h in enumerate(heldout) if h]
    torch.manual_seed(seed)
    probe = nn.Linear(features[0].shape[1], len(vocab) + 1)
    optimizer = torch.optim.Adam(probe.parameters(), lr=lr)
    x, x_len = _pad([features[i] for i in train])  # (B, L, W), (B,)
    y = [torch.tensor([index[t] for t in targets[i]]) for i in train]
    y_len = torch.tensor([len(t) for t in y])
    loss_fn = nn.CTCLoss(zero_infinity=True)
    for _ in range(steps):
        log_probs = probe(x).log_softmax(-1).transpose(0, 1)  # (L, B, C)
        loss = loss_fn(log_probs, torch.cat(y), x_len, y_len)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        hyps, refs = [], []
        for i in test:
            best = probe(features[i]).argmax(-1).tolist()
            ids = [b for j, b in enumerate(best) if b and (j == 0 or b != best[j - 1])]
            hyps.append(" ".join(map(str, ids)) or "<none>")
            refs.append(" ".join(str(index.get(t, -1)) for t in targets[i]))
    feasible = float(np.mean([len(features[i]) >= len(targets[i]) for i in range(len(targets))]))
    return {
        "token_accuracy": max(0.0, 1.0 - jiwer.wer(refs, hyps)),
        "train_ctc_loss": float(loss.detach()),
        "train": len(train),
        "held_out": len(test),
        "positions_per_token": float(np.mean([len(f) / max(1, len(t))
                                              for f, t in zip(features, targets, strict=True)])),
        "long_enough": feasible,  # share of utterances with at least one frame per token
    }  # fmt: skip


def _pad(rows: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(r) for r in rows])
    out = rows[0].new_zeros(len(rows), int(lengths.max()), rows[0].shape[1])
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out, lengths


# ---------------------------------------------------------------------------- structure
def position_words(words: list[tuple[str, float, float]], positions: int,
                   seconds_per_position: float) -> list[str]:  # fmt: skip
    """The word spoken at the middle of each position ('' in pauses)."""
    labels = []
    for p in range(positions):
        mid = (p + 0.5) * seconds_per_position
        labels.append(next((w for w, s, e in words if s <= mid < e), ""))
    return labels


def pca_2d(x: np.ndarray) -> np.ndarray:
    """(M, W) -> (M, 2): the first two principal components."""
    centred = x - x.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:2].T


def cosine_matrix(x: torch.Tensor) -> np.ndarray:
    """(L, W) -> (L, L) cosine similarity."""
    unit = torch.nn.functional.normalize(x.float(), dim=-1)
    return (unit @ unit.T).numpy()


def word_separation(x: torch.Tensor, words: list[str]) -> dict[str, float]:
    """Mean cosine similarity of positions spoken within the same word vs within different
    words ((M, W) features, one word label per row; pauses, labelled '', are left out)."""
    keep = [i for i, w in enumerate(words) if w]
    sims = cosine_matrix(x[keep])
    labels = np.array([words[i] for i in keep])
    same = labels[:, None] == labels[None, :]
    off_diagonal = ~np.eye(len(keep), dtype=bool)
    return {
        "same word": float(sims[same & off_diagonal].mean()),
        "different words": float(sims[~same].mean()),
    }


def attention_share(attention: torch.Tensor, segments, query: str, key: str) -> np.ndarray:
    """Per layer: the share of attention that ``query`` positions give to ``key`` positions
    (averaged over heads and query positions)."""
    spans = {name: (start, end) for name, start, end in segments}
    (q0, q1), (k0, k1) = spans[query], spans[key]
    return attention[:, :, q0:q1, k0:k1].sum(-1).mean((1, 2)).numpy()


@torch.no_grad()
def backbone_attention(model, inputs_embeds: torch.Tensor) -> torch.Tensor:
    """(1, N, D) inputs -> (layers, heads, N, N) attention weights of the backbone (eager
    attention for this call only)."""
    backbone = model.backbone
    before = backbone.config._attn_implementation
    backbone.config._attn_implementation = "eager"
    try:
        out = backbone(inputs_embeds=inputs_embeds, output_attentions=True)
    finally:
        backbone.config._attn_implementation = before
    return torch.stack([a[0] for a in out.attentions])


@torch.no_grad()
def spoken_turn_attention(chat, question_wav: np.ndarray, question: str, answer: str,
                          answer_wav: np.ndarray):  # fmt: skip
    """One S2M turn laid out as in training (system prompt, spoken question, the answer's
    text and speech in parallel) -> (layers, heads, N, N) attention and the segments
    [(name, first position, end position)]."""
    from drvoice_lab.data.collator import DrVoiceCollator
    from drvoice_lab.data.com import TurnInput, format_dialogue

    model, cfg = chat.model, chat.model.config
    frames, lengths = chat.encoder.encode([question_wav])  # (1, F, d_enc)
    frames = frames[0, : int(lengths[0])].float().numpy()
    tokens = np.asarray(chat.speech_tokenizer.encode(answer_wav))
    turn = TurnInput(question, answer, user_frames=len(frames), answer_speech=tokens)
    example = format_dialogue([turn], "S2M", cfg, chat.tokenizer)
    batch = DrVoiceCollator(cfg, text_pad_id=chat.tokenizer.pad_id)([example], [[frames]])
    keys = ("text_ids", "speech_ids", "user_features", "user_feature_lengths",
            "user_position_mask")  # fmt: skip
    inputs = model.embed_inputs(*(batch[key] for key in keys))  # (1, N, D)
    user = np.flatnonzero(example.user_position_mask)
    segments = [
        ("prompt", 0, int(user[0])),
        ("user speech", int(user[0]), int(user[-1]) + 1),
        ("answer", example.prompt_positions, example.num_positions),
    ]
    return backbone_attention(model, inputs), segments
