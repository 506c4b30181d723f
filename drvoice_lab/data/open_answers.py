"""Answers to open questions from the base LLM itself (issue 24), and their JSONL files.

DrVoice-smol should keep what SmolLM2 knows, so its training answers are the base model's own
greedy answers under the short-answer system prompt that the chat also uses at run time. The
caller passes that prompt; nothing here hard-codes it. Answers are made in left-padded batches
(one at a time costs about two seconds each on two cores) and trimmed to what a voice says in
about twelve seconds.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from tqdm.auto import tqdm

ROW_KEYS = ("question", "topic", "split", "answer")


def short_answer(text: str, max_sentences: int = 2, max_words: int = 30) -> str:
    """At most ``max_sentences`` whole sentences and ``max_words`` words (~12 s of speech).

    An unfinished last sentence (generation stopped at the token limit) is dropped when a
    finished one precedes it; a single over-long sentence is cut at ``max_words`` words.
    """
    text = " ".join(text.replace("*", " ").split())
    if not text:
        return ""
    sentences = re.split(r"(?<=[.!?])\s+", text)
    if len(sentences) > 1 and not sentences[-1].endswith((".", "!", "?")):
        sentences = sentences[:-1]
    kept: list[str] = []
    for sentence in sentences[:max_sentences]:
        if len(" ".join(kept + [sentence]).split()) > max_words:
            break
        kept.append(sentence)
    if kept:
        return " ".join(kept)
    words = sentences[0].split()[:max_words]
    return " ".join(words).rstrip(",;:-") + "."


def chat_prompt_ids(question: str, tokenizer, system_prompt: str) -> list[int]:
    """Token ids of one chat turn up to the assistant's first token, via the chat template."""
    messages = [
        {"role": "system", "content": system_prompt},
        {"role": "user", "content": question},
    ]
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True)
    if hasattr(ids, "keys"):  # transformers 5 returns a BatchEncoding, 4.x a list
        ids = ids["input_ids"]
    return list(ids)


def left_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded ids and attention mask, so every row's last prompt token is at the end."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)  # (B, T)
    mask = torch.zeros((len(rows), width), dtype=torch.long)  # (B, T), 1 = real token
    for i, row in enumerate(rows):
        if row:
            ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
            mask[i, width - len(row) :] = 1
    return ids, mask


def _pad_id(tokenizer) -> int:
    pad = tokenizer.pad_token_id
    return tokenizer.eos_token_id if pad is None else pad


@torch.inference_mode()
def answer_questions(
    questions: Sequence[str],
    model,
    tokenizer,
    system_prompt: str,
    batch_size: int = 32,
    max_new_tokens: int = 48,
    progress: bool = True,
    trim: bool = True,
) -> list[str]:
    """Greedy answers of a Hugging Face causal LM to each question, in the questions' order.

    Questions are batched by prompt length (less padding), left-padded, and decoded with
    ``do_sample=False``; ``trim`` applies ``short_answer``. Greedy decoding makes the answers
    the same whatever the batch size (up to float rounding), which the tests check.
    """
    prompts = [chat_prompt_ids(q, tokenizer, system_prompt) for q in questions]
    order = sorted(range(len(prompts)), key=lambda i: (len(prompts[i]), i))
    pad_id = _pad_id(tokenizer)
    device = next(model.parameters()).device
    answers = [""] * len(prompts)
    with tqdm(total=len(prompts), desc="answering", unit="q", disable=not progress) as bar:
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            ids, mask = left_pad([prompts[i] for i in batch], pad_id)  # (B, T) each
            out = model.generate(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                do_sample=False,
                max_new_tokens=max_new_tokens,
                pad_token_id=pad_id,
            )  # (B, T + new)
            for i, row in zip(batch, out[:, ids.shape[1] :].tolist(), strict=True):
                text = tokenizer.decode(row, skip_special_tokens=True)
                answers[i] = short_answer(text) if trim else text.strip()
            bar.update(len(batch))
    return answers


def answer_rows(questions: Sequence, answers: Sequence[str]) -> list[dict]:
    """JSONL rows for ``Question``/``ProbeQuestion`` objects and their answers."""
    if len(questions) != len(answers):
        raise ValueError(f"{len(answers)} answers for {len(questions)} questions")
    return [
        {"question": q.text, "topic": q.topic, "split": getattr(q, "split", "probe"), "answer": a}
        for q, a in zip(questions, answers, strict=True)
    ]


def write_answers_jsonl(rows: Iterable[dict], path: str | Path) -> Path:
    """Write rows atomically (temp file in the same folder, then rename): a reader never sees
    half a file, even if generation is interrupted while writing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for row in rows:
                missing = [k for k in ROW_KEYS if k not in row]
                if missing:
                    raise ValueError(f"row {row!r} lacks {missing}")
                f.write(json.dumps({k: row[k] for k in ROW_KEYS}, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_answers_jsonl(path: str | Path) -> list[dict]:
    """Rows written by ``write_answers_jsonl``."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
