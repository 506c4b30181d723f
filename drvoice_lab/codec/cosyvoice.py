"""CosyVoice2 speech tokens behind the ``SpeechTokenizer`` interface (the real-scale setting).

Encode: S3Tokenizer v2 (25 Hz, 6561 ids) from ``speech_tokenizer_v2.onnx``, run by the
``s3tokenizer`` package (pinned 0.2.0: ``S3TokenizerV2``, ``log_mel_spectrogram``, ``padding``,
``quantize``). Decode: CosyVoice2's flow matching + HiFT (24 kHz), conditioned on a prompt
recording of the target voice (default: the hibari voice).

The decoder calls follow CosyVoice commit ``ace7c47f41bb`` (2026-03-16), the newest read:
``CosyVoice2(model_dir, load_jit=, load_trt=, fp16=)``; ``add_zero_shot_spk(prompt_text,
prompt_wav, spk_id)``, which reads the prompt from a file path (since 622a3a1, 2025-12-08);
and ``model.token2wav(token, prompt_token, prompt_feat, embedding, token_offset, uuid, stream,
finalize, speed)`` with ``model.hift_cache_dict[uuid]`` set up by the caller. ``model.vc`` is
gone (37e48dd, 2025-04-15); ``model.tts(source_speech_token=...)`` replaced it, but it streams
with its own growing hop and polls, so the adapter drives ``token2wav`` itself, with a fixed
hop and the flow's 3-token look-ahead, as Fun-Audio-Chat's web demo does (hop 15, look-ahead 3).

Encoding needs only ``s3tokenizer`` and the weights; decoding also needs the CosyVoice checkout,
which pins torch 2.3.1 and transformers 4.51.3, so it is best run in its own environment.
Without a package or the weights, ``CosyVoiceUnavailable`` names what to install or download.
"""

from __future__ import annotations

import importlib
import inspect
import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from drvoice_lab.audio.io import AudioLimits, load_audio, read_audio, write_audio
from drvoice_lab.codec.interface import SpeechTokenizer, check_wav
from drvoice_lab.paths import cache_dir

ENV_DIR = "DRVOICE_COSYVOICE2_DIR"
COSYVOICE_COMMIT = "ace7c47f41bbd303aa6bf1ea80e6f9fbd595cd40"
S3TOKENIZER_VERSION = "0.2.0"
TOKENIZER_FILE = "speech_tokenizer_v2.onnx"
WEIGHT_FILES = (
    TOKENIZER_FILE, "cosyvoice2.yaml", "campplus.onnx", "llm.pt", "flow.pt", "hift.pt",
    "CosyVoice-BlankEN",  # the text tokenizer folder the config loads
)  # fmt: skip
ENCODER_HINT = f"install it with `pip install s3tokenizer=={S3TOKENIZER_VERSION}`"
DECODER_HINT = (
    "in an environment of its own (CosyVoice pins torch==2.3.1), run `git clone "
    f"https://github.com/FunAudioLLM/CosyVoice && cd CosyVoice && git checkout {COSYVOICE_COMMIT}"
    " && git submodule update --init --recursive && pip install -r requirements.txt && "
    'export PYTHONPATH="$PWD:$PWD/third_party/Matcha-TTS:$PYTHONPATH"`'
)
WEIGHTS_HINT = (
    "download CosyVoice2-0.5B (https://huggingface.co/FunAudioLLM/CosyVoice2-0.5B or "
    "https://www.modelscope.cn/models/iic/CosyVoice2-0.5B) into a directory and pass it as "
    f"'cosyvoice2:DIR', or set ${ENV_DIR}, or put it at {{default}}"
)
MIN_PROMPT_RATE = 16_000  # CosyVoice's load_wav refuses to resample from lower rates
PROMPT_LIMITS = AudioLimits(max_seconds=30.0)  # its speech tokenizer takes at most 30 s
SPEAKER_ID = "drvoice_prompt"
PROMPT_KEYS = ("flow_prompt_speech_token", "prompt_speech_feat", "flow_embedding")


class CosyVoiceUnavailable(ImportError):
    """The CosyVoice2 packages or weights are missing; the message says how to get them."""


def default_model_dir() -> Path:
    """$DRVOICE_COSYVOICE2_DIR, else <cache>/cosyvoice2/CosyVoice2-0.5B."""
    if os.environ.get(ENV_DIR):
        return Path(os.environ[ENV_DIR])
    return cache_dir() / "cosyvoice2" / "CosyVoice2-0.5B"


def _require(module: str, hint: str) -> object:
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise CosyVoiceUnavailable(
            f"the CosyVoice2 speech tokenizer needs the '{module}' module ({err}); {hint}"
        ) from err


def check_model_dir(model_dir: str | Path | None) -> Path:
    """The weights directory, or CosyVoiceUnavailable naming the missing files."""
    path = Path(model_dir) if model_dir else default_model_dir()
    missing = [name for name in WEIGHT_FILES if not (path / name).exists()]
    if missing:
        raise CosyVoiceUnavailable(
            f"CosyVoice2 weights not found in {path} (missing {', '.join(missing)}); "
            + WEIGHTS_HINT.format(default=default_model_dir())
        )
    return path


def check_cosyvoice_api(cosyvoice2_cls: type) -> None:
    """Refuse a CosyVoice checkout older than the pin: its prompt calls take tensors."""
    params = inspect.signature(cosyvoice2_cls.add_zero_shot_spk).parameters
    if "prompt_wav" not in params:
        raise CosyVoiceUnavailable(
            "the installed CosyVoice predates the file-path API this adapter follows "
            f"(commit {COSYVOICE_COMMIT}); to update it, {DECODER_HINT}"
        )


def prompt_audio(
    source: str | Path | np.ndarray, sample_rate: int | None = None
) -> tuple[np.ndarray, int]:
    """A voice prompt (file or array) -> (mono float32, rate): its own rate, raised to 16 kHz
    if lower; at most 30 s."""
    if isinstance(source, np.ndarray):
        samples, rate = source, sample_rate
    else:
        samples, rate = read_audio(source)
    if rate is None:
        raise ValueError("a prompt array needs its sample_rate")
    rate_out = max(int(rate), MIN_PROMPT_RATE)
    wav = load_audio(samples, rate, target_rate=rate_out, limits=PROMPT_LIMITS)
    return wav, rate_out


class CosyVoice2Tokenizer(SpeechTokenizer):
    """S3Tokenizer v2 ids (6561) and CosyVoice2's token -> 24 kHz wav decoder.

    ``prompt_wav`` (a file, or an array at ``prompt_rate``) fixes the decoded voice; by default
    a hibari sentence, so the assistant keeps the embedded default's voice. Token count follows
    the interface: ``ceil(seconds * 25)`` ids; decoded audio is ``len(ids) * 960`` samples.
    """

    vocab_size = 6561
    sample_rate = 24_000

    def __init__(
        self,
        model_dir: str | Path | None = None,
        prompt_wav: str | Path | np.ndarray | None = None,
        prompt_rate: int = 16_000,
    ):
        self._s3 = _require("s3tokenizer", ENCODER_HINT)
        self.model_dir = check_model_dir(model_dir)
        self._prompt_audio = None if prompt_wav is None else prompt_audio(prompt_wav, prompt_rate)
        self._encoder = None
        self._decoder = None
        self._prompt = None

    # -- encode

    def encode(self, wav16k: np.ndarray) -> np.ndarray:
        import torch

        wav = check_wav(wav16k)
        n = self.num_tokens(len(wav))
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        encoder = self._load_encoder()
        per_token = self.input_rate // self.token_rate
        padded = torch.from_numpy(np.pad(wav, (0, n * per_token - len(wav))))
        mels, lens = self._s3.padding([self._s3.log_mel_spectrogram(padded)])  # (1, 128, 4n)
        with torch.inference_mode():
            codes, code_lens = encoder.quantize(mels.to(self._device()), lens.to(self._device()))
        ids = codes[0, : int(code_lens[0])].cpu().numpy().astype(np.int64)
        return self.check_ids(_fit_length(ids, n))

    def _load_encoder(self):
        """S3TokenizerV2 built by class, not by file name (load_model guesses v1/v2 from it)."""
        if self._encoder is None:
            encoder = self._s3.S3TokenizerV2("speech_tokenizer_v2_25hz")
            encoder.init_from_onnx(str(self.model_dir / TOKENIZER_FILE))
            self._encoder = encoder.to(self._device()).eval()
        return self._encoder

    @staticmethod
    def _device() -> str:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    # -- decode

    def decode(self, ids: np.ndarray) -> np.ndarray:
        ids = self.check_ids(ids)
        if len(ids) == 0:
            return np.zeros(0, dtype=np.float32)
        with self._session() as session:
            wav = self._token2wav(ids, 0, session, finalize=True)
        return _fit_length(wav, len(ids) * self.samples_per_token)

    def decode_stream(
        self, ids: np.ndarray, chunk_tokens: int = 15, lookahead: int | None = None
    ) -> Iterator[np.ndarray]:
        """Yield audio chunk by chunk, as Fun-Audio-Chat's web demo does: chunk i is decoded
        from the first ``chunk_tokens * (i + 1) + 3`` ids (3: the flow's look-ahead), so during
        generation it can be emitted as soon as those exist. ``lookahead`` must be >= 3.

        The chunks add up to ``decode``'s length; HiFT holds back the last 8 mel frames
        (160 ms) of each chunk for a cross-fade, so chunk edges lag token edges by that much.
        With the real model the audio is close to, not sample-equal to, ``decode``'s.
        """
        ids = self.check_ids(ids)
        if chunk_tokens < 1:
            raise ValueError(f"chunk_tokens must be >= 1, got {chunk_tokens}")
        if len(ids) == 0:
            return
        need, min_chunk = self._stream_limits()
        if chunk_tokens < min_chunk:
            raise ValueError(f"chunk_tokens must be >= {min_chunk} for CosyVoice2's HiFT cache")
        if lookahead is not None and lookahead < need:
            raise ValueError(f"CosyVoice2's flow needs lookahead >= {need} tokens, got {lookahead}")
        total, done, start = len(ids) * self.samples_per_token, 0, 0
        with self._session() as session:
            for end in range(chunk_tokens, len(ids) + chunk_tokens, chunk_tokens):
                final = end + need >= len(ids)
                known = ids if final else ids[: end + need]  # the flow drops the last `need`
                wav = self._token2wav(known, start, session, finalize=final)
                if final:
                    wav = _fit_length(wav, total - done)
                done, start = done + len(wav), end
                if len(wav):  # a 4-token first chunk is all held back by HiFT
                    yield wav
                if final:
                    break

    def _stream_limits(self) -> tuple[int, int]:
        """(the flow's look-ahead tokens, the fewest tokens a chunk may have)."""
        model = self._load_decoder()[0].model
        return model.flow.pre_lookahead_len, model.mel_cache_len // model.flow.token_mel_ratio

    @contextmanager
    def _session(self):
        """A fresh HiFT cache entry for one decode, removed afterwards."""
        model = self._load_decoder()[0].model
        key = str(uuid.uuid4())
        model.hift_cache_dict[key] = None
        try:
            yield key
        finally:
            model.hift_cache_dict.pop(key, None)

    def _token2wav(self, ids: np.ndarray, offset: int, session: str, finalize: bool) -> np.ndarray:
        """Audio of ids[offset:] (minus the flow's look-ahead unless ``finalize``)."""
        import torch

        cosyvoice, prompt = self._load_decoder()
        with torch.inference_mode():
            wav = cosyvoice.model.token2wav(
                token=torch.from_numpy(ids)[None].int(),  # (1, T)
                prompt_token=prompt["flow_prompt_speech_token"],
                prompt_feat=prompt["prompt_speech_feat"],
                embedding=prompt["flow_embedding"],
                token_offset=offset,
                uuid=session,
                stream=False,
                finalize=finalize,
                speed=1.0,
            )  # (1, samples)
        return wav[0].float().cpu().numpy()

    def _load_decoder(self):
        """CosyVoice2 (flow + HiFT) and the prompt features of the target voice."""
        if self._decoder is None:
            cli = _require("cosyvoice.cli.cosyvoice", DECODER_HINT)
            check_cosyvoice_api(cli.CosyVoice2)
            model_dir = str(self.model_dir)
            cosyvoice = cli.CosyVoice2(model_dir, load_jit=False, load_trt=False, fp16=False)
            prompt = self._prompt_audio
            wav, rate = _hibari_prompt() if prompt is None else prompt
            self._prompt = _prompt_features(cosyvoice, wav, rate)
            self._decoder = cosyvoice
        return self._decoder, self._prompt


def _prompt_features(cosyvoice, wav: np.ndarray, rate: int) -> dict:
    """The flow's prompt tokens, mel and speaker embedding, via a temporary wav file."""
    with tempfile.TemporaryDirectory() as folder:
        path = write_audio(Path(folder) / "prompt.wav", wav, rate)
        cosyvoice.add_zero_shot_spk("", str(path), SPEAKER_ID)
    speaker = cosyvoice.frontend.spk2info.pop(SPEAKER_ID)
    return {key: speaker[key] for key in PROMPT_KEYS}


def _hibari_prompt() -> tuple[np.ndarray, int]:
    """A few seconds of the assistant's (hibari) voice at its own 24 kHz."""
    from hibari import Hibari

    wav = Hibari()("Hello, I am your assistant. Ask me anything you like.", seed=0)
    return prompt_audio(np.asarray(wav, dtype=np.float32), 24_000)


def _fit_length(x: np.ndarray, n: int) -> np.ndarray:
    """Trim, or pad by repeating the last value (ids) / zeros (audio), to length n."""
    if len(x) >= n:
        return x[:n]
    fill = x[-1] if np.issubdtype(x.dtype, np.integer) and len(x) else 0
    return np.concatenate([x, np.full(n - len(x), fill, dtype=x.dtype)])
