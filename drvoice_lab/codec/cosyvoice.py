"""CosyVoice2 speech tokens behind the ``SpeechTokenizer`` interface (the real-scale setting).

Encode: S3Tokenizer v2 (25 Hz, 6561 ids) via the ``s3tokenizer`` package.
Decode: CosyVoice2's flow-matching model + HiFi-GAN (24 kHz) via the CosyVoice repository,
conditioned on a prompt recording of the target voice (default: the hibari voice).

Neither the packages nor the weights are available offline, so nothing here runs in the
embedded default; constructing the adapter without them raises ``CosyVoiceUnavailable``
saying what to install and where to put the weights.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import numpy as np

from drvoice_lab.codec.interface import SpeechTokenizer, check_wav
from drvoice_lab.paths import cache_dir

ENV_DIR = "DRVOICE_COSYVOICE2_DIR"
WEIGHT_FILES = ("speech_tokenizer_v2.onnx", "flow.pt", "hift.pt", "campplus.onnx")
INSTALL_HINT = (
    "install the encoder with `pip install s3tokenizer`, and the decoder by cloning "
    "https://github.com/FunAudioLLM/CosyVoice (with --recursive, for third_party/Matcha-TTS), "
    "installing its requirements and putting it and third_party/Matcha-TTS on PYTHONPATH"
)
WEIGHTS_HINT = (
    "download CosyVoice2-0.5B (https://huggingface.co/FunAudioLLM/CosyVoice2-0.5B or "
    "https://www.modelscope.cn/models/iic/CosyVoice2-0.5B) into a directory and pass it as "
    f"'cosyvoice2:DIR', or set ${ENV_DIR}, or put it at {{default}}"
)


class CosyVoiceUnavailable(ImportError):
    """The CosyVoice2 packages or weights are missing; the message says how to get them."""


def default_model_dir() -> Path:
    """$DRVOICE_COSYVOICE2_DIR, else <cache>/cosyvoice2/CosyVoice2-0.5B."""
    if os.environ.get(ENV_DIR):
        return Path(os.environ[ENV_DIR])
    return cache_dir() / "cosyvoice2" / "CosyVoice2-0.5B"


def _require(module: str) -> object:
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise CosyVoiceUnavailable(
            f"the CosyVoice2 speech tokenizer needs the '{module}' package ({err}); {INSTALL_HINT}"
        ) from err


def check_model_dir(model_dir: str | Path | None) -> Path:
    """The weights directory, or CosyVoiceUnavailable naming the missing files."""
    path = Path(model_dir) if model_dir else default_model_dir()
    missing = [name for name in WEIGHT_FILES if not (path / name).is_file()]
    if missing:
        raise CosyVoiceUnavailable(
            f"CosyVoice2 weights not found in {path} (missing {', '.join(missing)}); "
            + WEIGHTS_HINT.format(default=default_model_dir())
        )
    return path


class CosyVoice2Tokenizer(SpeechTokenizer):
    """S3Tokenizer v2 ids (6561) and CosyVoice2's token -> 24 kHz wav decoder.

    ``prompt_wav`` (16 kHz float32) fixes the decoded voice; by default a hibari sentence, so
    the assistant keeps the embedded default's voice. Token count follows the interface:
    ``ceil(seconds * 25)`` ids; decoded audio is ``len(ids) * 960`` samples at 24 kHz.
    ``decode_stream`` uses the base class's decode-then-slice fallback.
    """

    vocab_size = 6561
    sample_rate = 24_000

    def __init__(self, model_dir: str | Path | None = None, prompt_wav: np.ndarray | None = None):
        self._s3 = _require("s3tokenizer")
        _require("cosyvoice")
        self.model_dir = check_model_dir(model_dir)
        self._prompt_wav = prompt_wav
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
        if self._encoder is None:
            self._encoder = self._s3.load_model(str(self.model_dir / WEIGHT_FILES[0])).eval()
        padded = np.pad(wav, (0, n * (self.input_rate // self.token_rate) - len(wav)))
        mels, lens = self._s3.padding([self._s3.log_mel_spectrogram(torch.from_numpy(padded))])
        with torch.no_grad():
            codes, code_lens = self._encoder.quantize(mels, lens)
        ids = codes[0, : int(code_lens[0])].numpy().astype(np.int64)
        return _fit_length(ids, n)

    # -- decode

    def decode(self, ids: np.ndarray) -> np.ndarray:
        import torch

        ids = self.check_ids(ids)
        if len(ids) == 0:
            return np.zeros(0, dtype=np.float32)
        model, prompt = self._load_decoder()
        inputs = dict(prompt, source_speech_token=torch.from_numpy(ids)[None].int())
        inputs["source_speech_token_len"] = torch.tensor([len(ids)], dtype=torch.int32)
        wav = torch.cat([out["tts_speech"] for out in model.model.vc(**inputs, stream=False)], 1)
        return _fit_length(wav[0].numpy().astype(np.float32), len(ids) * self.samples_per_token)

    def _load_decoder(self):
        """CosyVoice2 (flow + HiFi-GAN) and the prompt features of the target voice."""
        if self._decoder is None:
            import torch
            from cosyvoice.cli.cosyvoice import CosyVoice2

            self._decoder = CosyVoice2(str(self.model_dir), load_jit=False, load_trt=False)
            prompt = self._prompt_wav if self._prompt_wav is not None else _hibari_prompt()
            wav = torch.from_numpy(np.asarray(prompt, dtype=np.float32))[None]
            # frontend_vc extracts the prompt's tokens, mel and speaker embedding
            inputs = self._decoder.frontend.frontend_vc(wav, wav, self._decoder.sample_rate)
            self._prompt = {k: v for k, v in inputs.items() if not k.startswith("source_")}
        return self._decoder, self._prompt


def _hibari_prompt() -> np.ndarray:
    """A few seconds of the assistant's (hibari) voice at 16 kHz."""
    from hibari import Hibari

    from drvoice_lab.audio.io import resample

    wav = Hibari()("Hello, I am your assistant. Ask me anything you like.", seed=0)
    return resample(np.asarray(wav, dtype=np.float32), 24_000, 16_000)


def _fit_length(x: np.ndarray, n: int) -> np.ndarray:
    """Trim, or pad by repeating the last value (ids) / zeros (audio), to length n."""
    if len(x) >= n:
        return x[:n]
    fill = x[-1] if np.issubdtype(x.dtype, np.integer) and len(x) else 0
    return np.concatenate([x, np.full(n - len(x), fill, dtype=x.dtype)])
