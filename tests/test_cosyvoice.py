"""The CosyVoice2 adapter without its packages or weights: the install and download errors, and
its glue run against small fakes of the pinned APIs (CosyVoice ace7c47, s3tokenizer 0.2.0).

The fakes keep the pinned call signatures and refuse the old ones: the model has no ``vc``, the
frontend reads the prompt from a file path (at >= 16 kHz, like CosyVoice's ``load_wav``), and
``token2wav`` needs its ``token_offset`` and a ``hift_cache_dict`` entry set up by the caller.
The fake flow looks 3 tokens ahead and the fake HiFT holds back 8 mel frames per chunk, as the
real ones do, so chunked decoding must reproduce one-shot decoding exactly.
"""

from __future__ import annotations

import math
import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from drvoice_lab.audio.io import AudioTooLongError
from drvoice_lab.codec.cosyvoice import (
    COSYVOICE_COMMIT,
    ENV_DIR,
    SPEAKER_ID,
    WEIGHT_FILES,
    CosyVoice2Tokenizer,
    CosyVoiceUnavailable,
)
from drvoice_lab.codec.registry import load_speech_tokenizer

VOCAB = 6561
LOOKAHEAD = 3  # CosyVoice2's flow.pre_lookahead_len
MEL_PER_TOKEN = 2  # flow.token_mel_ratio
SAMPLES_PER_MEL = 480  # HiFT at 24 kHz
MEL_CACHE = 8  # CosyVoice2Model.mel_cache_len


# --------------------------------------------------------------------------- fake s3tokenizer


def fake_log_mel(audio, n_mels=128, padding=0, device=None):
    """(samples,) at 16 kHz -> (128, samples // 160): each hop's mean magnitude."""
    frames = len(audio) // 160
    level = audio[: frames * 160].abs().reshape(frames, 160).mean(1)
    return level[None].repeat(n_mels, 1)


def fake_padding(data):
    lens = torch.tensor([x.shape[1] for x in data], dtype=torch.int32)
    out = torch.zeros(len(data), data[0].shape[0], int(lens.max()))
    for i, x in enumerate(data):
        out[i, :, : x.shape[1]] = x
    return out, lens


class FakeS3TokenizerV2(torch.nn.Module):
    """s3tokenizer 0.2.0's S3TokenizerV2: 4 mel frames (10 ms each) per 25 Hz id."""

    offset = 0  # a test sets it to push ids out of range
    mels: list[tuple[int, ...]] = []  # the shapes quantize saw

    def __init__(self, name: str):
        super().__init__()
        assert "v2" in name and "v1" not in name

    def init_from_onnx(self, onnx_path: str):
        assert Path(onnx_path).name == "speech_tokenizer_v2.onnx" and Path(onnx_path).is_file()

    def quantize(self, mel, mel_len):
        assert mel.ndim == 3 and mel.shape[1] == 128 and mel_len.dtype == torch.int32
        self.mels.append(tuple(mel.shape))
        n = -(-int(mel_len[0]) // 4)
        level = torch.nn.functional.pad(mel[0, 0], (0, 4 * n - mel.shape[2]))
        codes = (level.reshape(n, 4).mean(1) * 1e4).long() % VOCAB + self.offset
        return codes[None], torch.tensor([n])


def fake_s3tokenizer() -> types.ModuleType:
    module = types.ModuleType("s3tokenizer")
    module.S3TokenizerV2 = FakeS3TokenizerV2
    module.log_mel_spectrogram = fake_log_mel
    module.padding = fake_padding
    return module


# --------------------------------------------------------------------------- fake CosyVoice


def read_prompt(prompt_wav) -> tuple[np.ndarray, int]:
    """What CosyVoice's load_wav accepts at the pin: a file path, at >= 16 kHz."""
    if not isinstance(prompt_wav, str | os.PathLike):
        raise TypeError(f"the pinned frontend reads a file path, got {type(prompt_wav).__name__}")
    speech, rate = sf.read(prompt_wav, dtype="float32")
    assert speech.ndim == 1 and rate >= 16_000, "load_wav refuses rates below 16 kHz"
    return speech, rate


class FakeFrontend:
    """CosyVoiceFrontEnd at the pin (prompt features from a file)."""

    def __init__(self):
        self.spk2info, self.read = {}, []

    def frontend_zero_shot(self, tts_text, prompt_text, prompt_wav, resample_rate, spk_id):
        speech, rate = read_prompt(prompt_wav)
        self.read.append((rate, len(speech)))
        tokens = len(speech) * 25 // rate
        level = float(np.sqrt(np.mean(speech**2)))
        return {
            "text": torch.zeros(1, 0, dtype=torch.int32), "text_len": torch.tensor([0]),
            "flow_prompt_speech_token": torch.full((1, tokens), 7, dtype=torch.int32),
            "prompt_speech_feat": torch.zeros(1, MEL_PER_TOKEN * tokens, 80),
            "flow_embedding": torch.full((1, 192), level),
        }  # fmt: skip

    def frontend_vc(self, source_speech_16k, prompt_wav, resample_rate):
        read_prompt(source_speech_16k)
        read_prompt(prompt_wav)
        raise AssertionError("the adapter has no use for frontend_vc")


def fake_frame(ids: list[int], i: int) -> float:
    """The fake flow's mel value of token i: it sees tokens i .. i + 3."""
    return ((ids[i] * 31 + 7 * sum(ids[i + 1 : i + 1 + LOOKAHEAD])) % 997) / 997 - 0.5


class FakeModel:
    """CosyVoice2Model at the pin: token2wav with an offset and a per-uuid HiFT cache; no vc."""

    mel_cache_len = MEL_CACHE

    def __init__(self):
        self.flow = types.SimpleNamespace(
            pre_lookahead_len=LOOKAHEAD, token_mel_ratio=MEL_PER_TOKEN
        )
        self.hift_cache_dict, self.calls = {}, []

    def token2wav(
        self, token, prompt_token, prompt_feat, embedding, token_offset, uuid,
        stream=False, finalize=False, speed=1.0,
    ):  # fmt: skip
        assert isinstance(token, torch.Tensor) and token.ndim == 2 and token.shape[0] == 1
        assert prompt_feat.shape[1] == MEL_PER_TOKEN * prompt_token.shape[1]
        assert stream is False and speed == 1.0
        ids = token[0].tolist()
        if max(ids) >= VOCAB or min(ids) < 0:
            raise IndexError("index out of range in self")  # the flow's nn.Embedding
        cache = self.hift_cache_dict[uuid]  # KeyError unless the caller set it up
        self.calls.append((len(ids), token_offset, finalize))
        kept = len(ids) if finalize else len(ids) - LOOKAHEAD  # the rest is look-ahead context
        mel = [fake_frame(ids, i) + float(embedding.mean()) for i in range(kept)]
        mel = np.repeat(mel, MEL_PER_TOKEN)[token_offset * MEL_PER_TOKEN :]
        if cache is not None:
            mel = np.concatenate([cache["mel"], mel])
        speech = np.repeat(mel, SAMPLES_PER_MEL)
        if cache is not None:  # cross-fade the re-synthesised, held-back tail
            n = len(cache["speech"])
            fade = np.linspace(0.0, 1.0, n)
            speech[:n] = fade * speech[:n] + (1 - fade) * cache["speech"]
        if not finalize:
            held = MEL_CACHE * SAMPLES_PER_MEL
            self.hift_cache_dict[uuid] = {"mel": mel[-MEL_CACHE:], "speech": speech[-held:]}
            speech = speech[:-held]
        return torch.from_numpy(speech[None].astype(np.float32))


class FakeCosyVoice2:
    """cosyvoice.cli.cosyvoice.CosyVoice2 at the pin."""

    made: list[FakeCosyVoice2] = []

    def __init__(
        self, model_dir, load_jit=False, load_trt=False, load_vllm=False, fp16=False,
        trt_concurrent=1,
    ):  # fmt: skip
        assert Path(model_dir).is_dir(), "a missing dir would trigger a modelscope download"
        self.sample_rate = 24_000
        self.frontend, self.model = FakeFrontend(), FakeModel()
        FakeCosyVoice2.made.append(self)

    def add_zero_shot_spk(self, prompt_text, prompt_wav, zero_shot_spk_id):
        assert zero_shot_spk_id != ""
        model_input = self.frontend.frontend_zero_shot(
            "", prompt_text, prompt_wav, self.sample_rate, ""
        )
        del model_input["text"], model_input["text_len"]
        self.frontend.spk2info[zero_shot_spk_id] = model_input
        return True


class OldCosyVoice2(FakeCosyVoice2):
    """A checkout from before 622a3a1 (2025-12-08): the prompt was a 16 kHz tensor."""

    def add_zero_shot_spk(self, prompt_text, prompt_speech_16k, zero_shot_spk_id):
        raise AssertionError("an old checkout must be refused before use")


def install_cosyvoice(monkeypatch, cls=FakeCosyVoice2):
    cli = types.ModuleType("cosyvoice.cli.cosyvoice")
    cli.CosyVoice2 = cls
    for name in ("cosyvoice", "cosyvoice.cli"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "cosyvoice.cli.cosyvoice", cli)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def model_dir(tmp_path):
    folder = tmp_path / "CosyVoice2-0.5B"
    for name in WEIGHT_FILES:
        if "." in name:
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(b"")
        else:
            (folder / name).mkdir(parents=True)
    return folder


@pytest.fixture
def s3(monkeypatch):
    monkeypatch.setitem(sys.modules, "s3tokenizer", fake_s3tokenizer())
    monkeypatch.setattr(FakeS3TokenizerV2, "offset", 0)
    monkeypatch.setattr(FakeS3TokenizerV2, "mels", [])


@pytest.fixture
def fakes(monkeypatch, s3):
    install_cosyvoice(monkeypatch)
    FakeCosyVoice2.made = []
    return FakeCosyVoice2.made


def tone(seconds: float, rate: int, channels: int = 1) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    wav = (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(
        np.float32
    )
    return np.stack([wav] * channels, 1) if channels > 1 else wav


@pytest.fixture
def tok(fakes, model_dir):
    return CosyVoice2Tokenizer(model_dir, prompt_wav=tone(2.0, 16_000))


def random_ids(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, VOCAB, n)


# --------------------------------------------------------------------------- missing pieces


def test_missing_s3tokenizer_names_the_pinned_install(monkeypatch, model_dir):
    monkeypatch.setitem(sys.modules, "s3tokenizer", None)  # import fails even if installed
    with pytest.raises(CosyVoiceUnavailable, match=r"pip install s3tokenizer==0\.2\.0") as err:
        load_speech_tokenizer(f"cosyvoice2:{model_dir}")
    assert isinstance(err.value, ImportError)


def test_missing_cosyvoice_names_the_pinned_checkout(monkeypatch, s3, model_dir):
    monkeypatch.setitem(sys.modules, "cosyvoice", None)
    tok = CosyVoice2Tokenizer(model_dir, prompt_wav=tone(1.0, 16_000))
    assert len(tok.encode(tone(1.0, 16_000))) == 25  # encoding needs no CosyVoice
    with pytest.raises(CosyVoiceUnavailable) as err:
        tok.decode(np.arange(10))
    message = str(err.value)
    assert f"git checkout {COSYVOICE_COMMIT}" in message and "Matcha-TTS" in message


def test_missing_weights_are_listed_with_where_to_get_them(s3, tmp_path):
    with pytest.raises(CosyVoiceUnavailable, match="CosyVoice2-0.5B") as err:
        CosyVoice2Tokenizer(tmp_path)
    assert all(name in str(err.value) for name in WEIGHT_FILES) and str(tmp_path) in str(err.value)


def test_env_dir_and_registry_name_find_the_weights(monkeypatch, s3, model_dir):
    monkeypatch.setenv(ENV_DIR, str(model_dir))
    assert load_speech_tokenizer("cosyvoice2").model_dir == model_dir
    monkeypatch.delenv(ENV_DIR)
    tok = load_speech_tokenizer(f"cosyvoice2:{model_dir}")
    assert isinstance(tok, CosyVoice2Tokenizer) and tok.model_dir == model_dir


def test_an_old_cosyvoice_checkout_is_refused(monkeypatch, s3, model_dir):
    install_cosyvoice(monkeypatch, OldCosyVoice2)
    tok = CosyVoice2Tokenizer(model_dir, prompt_wav=tone(1.0, 16_000))
    with pytest.raises(CosyVoiceUnavailable, match=COSYVOICE_COMMIT):
        tok.decode(np.arange(10))


def test_the_fakes_refuse_the_old_calls(model_dir):
    """What the old adapter did: model.vc, tensors into the frontend, no token_offset."""
    cosyvoice = FakeCosyVoice2(str(model_dir))
    wav = torch.from_numpy(tone(1.0, 16_000))[None]
    assert not hasattr(cosyvoice.model, "vc")
    with pytest.raises(TypeError, match="file path"):
        cosyvoice.frontend.frontend_vc(wav, wav, 24_000)
    with pytest.raises(TypeError, match="file path"):
        cosyvoice.add_zero_shot_spk("", wav, "x")
    empty = torch.zeros(1, 0, dtype=torch.int32)
    with pytest.raises(TypeError):  # CosyVoiceModel's signature, without token_offset
        cosyvoice.model.token2wav(empty, empty, torch.zeros(1, 0, 80), torch.zeros(1, 192), "u")


# --------------------------------------------------------------------------- encode


@pytest.mark.parametrize("samples", [1, 639, 640, 641, 16_000, 16_321])
def test_encode_gives_ceil_seconds_times_25_ids(tok, samples):
    ids = tok.encode(tone(samples / 16_000, 16_000))
    n = math.ceil(samples / 640)
    assert ids.shape == (n,) and ids.dtype == np.int64
    assert ids.min() >= 0 and ids.max() < VOCAB
    assert FakeS3TokenizerV2.mels == [(1, 128, 4 * n)]  # padded to whole tokens of 4 frames


def test_encode_of_nothing_is_nothing(tok):
    assert tok.encode(np.zeros(0, np.float32)).shape == (0,)


def test_encode_range_checks_what_the_model_returns(tok, monkeypatch):
    monkeypatch.setattr(FakeS3TokenizerV2, "offset", VOCAB)  # e.g. a wrong tokenizer file
    with pytest.raises(ValueError, match=r"0\.\.6560"):
        tok.encode(tone(1.0, 16_000))


# --------------------------------------------------------------------------- decode


@pytest.mark.parametrize("ids", [[0, 6561], [-1, 3], [[1, 2]], [0.5]])
def test_decode_range_checks_ids_before_loading_anything(tok, fakes, ids):
    with pytest.raises(ValueError):
        tok.decode(np.array(ids))
    with pytest.raises(ValueError):
        next(tok.decode_stream(np.array(ids)))
    assert fakes == []


def test_decode_is_one_finalized_token2wav_with_the_prompt_voice(tok, fakes):
    ids = random_ids(40)
    wav = tok.decode(ids)
    model = fakes[0].model
    assert wav.shape == (40 * 960,) and wav.dtype == np.float32
    assert model.calls == [(40, 0, True)]
    assert model.hift_cache_dict == {}  # the session's cache entry is removed
    assert SPEAKER_ID not in fakes[0].frontend.spk2info
    expected = np.array([fake_frame(ids.tolist(), i) for i in range(40)])
    embedding = wav[::960] - expected  # the fake adds the prompt's RMS level to every frame
    np.testing.assert_allclose(embedding, np.sqrt(np.mean(tone(2.0, 16_000) ** 2)), atol=1e-3)
    assert np.ptp(embedding) < 1e-6
    assert tok.decode([]).shape == (0,) and model.calls == [(40, 0, True)]


@pytest.mark.parametrize(
    ("rate", "channels", "file_rate"),
    [(8_000, 1, 16_000), (16_000, 1, 16_000), (24_000, 1, 24_000), (44_100, 2, 44_100)],
)
def test_prompt_reaches_cosyvoice_as_a_file_at_16k_or_more(
    fakes, model_dir, rate, channels, file_rate
):
    tok = CosyVoice2Tokenizer(model_dir, prompt_wav=tone(2.0, rate, channels), prompt_rate=rate)
    tok.decode(np.arange(5))
    ((read_rate, read_len),) = fakes[0].frontend.read
    assert read_rate == file_rate and abs(read_len - 2 * file_rate) <= 2


def test_prompt_file_is_read_mixed_down_and_kept_at_its_rate(fakes, model_dir, tmp_path):
    path = tmp_path / "voice.wav"
    sf.write(path, tone(1.5, 22_050, channels=2), 22_050)
    CosyVoice2Tokenizer(model_dir, prompt_wav=path).decode(np.arange(5))
    assert fakes[0].frontend.read == [(22_050, int(1.5 * 22_050))]


def test_default_prompt_is_the_hibari_voice_at_24k(fakes, model_dir, monkeypatch):
    hibari = types.ModuleType("hibari")
    hibari.Hibari = lambda: lambda text, seed: tone(3.0, 24_000)
    monkeypatch.setitem(sys.modules, "hibari", hibari)
    CosyVoice2Tokenizer(model_dir).decode(np.arange(5))
    assert fakes[0].frontend.read == [(24_000, 72_000)]


def test_prompt_over_30_s_is_refused_at_once(fakes, model_dir):
    with pytest.raises(AudioTooLongError):
        CosyVoice2Tokenizer(model_dir, prompt_wav=tone(31.0, 16_000))


# --------------------------------------------------------------------------- streaming


@pytest.mark.parametrize("n", [1, 4, 17, 18, 19, 33, 34, 100])
@pytest.mark.parametrize("chunk", [15, 4, 25])
def test_stream_equals_one_shot_decode(tok, fakes, n, chunk):
    ids = random_ids(n, seed=n)
    one_shot = tok.decode(ids)
    chunks = list(tok.decode_stream(ids, chunk_tokens=chunk))
    np.testing.assert_allclose(np.concatenate(chunks), one_shot, rtol=0, atol=1e-6)
    assert fakes[0].model.hift_cache_dict == {}


def test_stream_feeds_hop_plus_lookahead_tokens_like_fun_audio_chat(tok, fakes):
    """Hop 15, look-ahead 3: chunk i needs only the first 15 (i + 1) + 3 tokens."""
    list(tok.decode_stream(random_ids(46), chunk_tokens=15, lookahead=3))
    assert fakes[0].model.calls == [(18, 0, False), (33, 15, False), (46, 30, True)]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"chunk_tokens": 0}, ">= 1"), ({"chunk_tokens": 3}, ">= 4"), ({"lookahead": 2}, ">= 3")],
)
def test_stream_refuses_chunks_the_model_cannot_do(tok, kwargs, match):
    with pytest.raises(ValueError, match=match):
        next(tok.decode_stream(random_ids(40), **kwargs))


def test_an_abandoned_stream_frees_its_cache(tok, fakes):
    stream = tok.decode_stream(random_ids(60))
    first = next(stream)
    assert len(first) == 15 * 960 - MEL_CACHE * SAMPLES_PER_MEL  # HiFT holds back 8 frames
    assert len(fakes[0].model.hift_cache_dict) == 1
    stream.close()
    assert fakes[0].model.hift_cache_dict == {}
