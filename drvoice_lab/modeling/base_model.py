"""A DrVoice model around a pretrained base: growing its vocabulary, LoRA, and the weights that
a model folder keeps.

When ``config.backbone_reference`` names a base and ``config.backbone_lora`` is set, the base's
weights never change: DrVoice trains LoRA deltas, the rows of its added tokens, the grouping,
the user-speech adapter and the SRH. A model folder then holds only those (tens of MB, not the
base's hundreds) and the base is rebuilt from its source, checked by sha256
(``drvoice_lab.modeling.backbones``).
"""

from __future__ import annotations

from pathlib import Path

import torch
from peft import LoraConfig, inject_adapter_in_model
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

LORA_ADAPTER = "drvoice"  # peft adapter name of the backbone's own LoRA
ADDED_ROWS = {"embed": "added_tokens.embed", "head": "added_tokens.head"}  # folder keys


class CheckpointError(ValueError):
    """A model folder is missing, incomplete, or holds weights of another model."""


def grow_vocabulary(backbone: nn.Module, config) -> None:
    """Give the backbone ``config.text_vocab_size`` text rows; DrVoice's added tokens
    (``text_special_tokens``, from ``base_vocab_size`` on) start at the mean of the base rows,
    a neutral point that changes no existing logit's argmax in practice."""
    base, added = config.base_vocab_size, len(config.text_special_tokens)
    if base is None or not added:
        return
    if backbone.get_input_embeddings().num_embeddings < config.text_vocab_size:
        backbone.resize_token_embeddings(config.text_vocab_size, mean_resizing=False)
    with torch.no_grad():
        for matrix in _text_matrices(backbone):
            matrix[base : base + added] = matrix[:base].mean(dim=0)


def add_backbone_lora(backbone: nn.Module, config) -> None:
    """Inject LoRA layers (B = 0 at init, so the backbone is unchanged) into the backbone; with
    added tokens, only their rows of the text matrices may learn."""
    settings = config.backbone_lora
    lora = LoraConfig(
        r=int(settings["rank"]),
        lora_alpha=float(settings.get("alpha", 2 * int(settings["rank"]))),
        lora_dropout=float(settings.get("dropout", 0.0)),
        target_modules=list(settings["target_modules"]),
        bias="none",
    )
    inject_adapter_in_model(lora, backbone, adapter_name=LORA_ADAPTER)
    if config.base_vocab_size is not None and config.text_special_tokens:
        keep_base_rows(backbone, config.base_vocab_size)


def fold_backbone_lora(model) -> None:
    """Merge the backbone's own LoRA into its weights, in place, before a user's LoRA is
    stacked on top: peft activates only the newest adapter of a layer, so the model's LoRA
    would otherwise be switched off without a word. The folded model is a full model (its
    config loses ``backbone_lora``), so ``save_pretrained`` then writes every weight."""
    from peft.tuners.lora import LoraLayer

    for name, module in list(model.backbone.named_modules()):
        if isinstance(module, LoraLayer) and LORA_ADAPTER in module.lora_A:
            module.merge(adapter_names=[LORA_ADAPTER])
            parent, _, child = name.rpartition(".")
            setattr(model.backbone.get_submodule(parent), child, module.get_base_layer())
    model.config.backbone_lora = None


def is_lora_key(name: str) -> bool:
    return ".lora_" in name


def keep_base_rows(backbone: nn.Module, base_vocab_size: int) -> None:
    """Zero the gradient of the base's own text rows (embedding and head), so only the rows of
    DrVoice's added tokens learn; the optimizer must not decay this matrix (see
    ``no_decay_parameters``)."""
    for matrix in _text_matrices(backbone):
        mask = torch.zeros(matrix.shape[0], 1, dtype=matrix.dtype, device=matrix.device)
        mask[base_vocab_size:] = 1
        wanted = matrix.requires_grad
        matrix.requires_grad_(True)  # a hook needs a tensor that requires grad
        matrix.register_hook(lambda grad, mask=mask: grad * mask.to(grad))
        matrix.requires_grad_(wanted)


def backbone_trainable(backbone: nn.Module, config) -> list[nn.Parameter]:
    """What "train the backbone" means for a model on a frozen base: its LoRA weights and the
    text matrices whose added rows learn (base rows are masked by ``keep_base_rows``)."""
    params = [p for name, p in backbone.named_parameters() if is_lora_key(name)]
    if config.base_vocab_size is not None and config.text_special_tokens:
        params += _text_matrices(backbone)
    return params


def no_decay_parameters(model) -> list[nn.Parameter]:
    """Parameters weight decay must skip: text matrices whose base rows are kept frozen."""
    cfg = model.config
    if cfg.backbone_lora is None or cfg.base_vocab_size is None:
        return []
    return _text_matrices(model.backbone)


def delta_state_dict(model) -> dict[str, torch.Tensor]:
    """What a folder keeps of a model on a frozen base: everything outside the backbone, the
    backbone's LoRA weights and the rows of the added tokens."""
    cfg = model.config
    state = {}
    for name, tensor in model.state_dict().items():
        if not name.startswith("backbone.") or is_lora_key(name):
            state[name] = tensor.detach().contiguous()
    base, added = cfg.base_vocab_size, len(cfg.text_special_tokens)
    if base is not None and added:
        for key, matrix in zip(ADDED_ROWS.values(), _text_matrices(model.backbone), strict=False):
            state[key] = matrix.detach()[base : base + added].contiguous()
    return state


def save_delta(model, folder: Path) -> None:
    """Write config.json and the weights DrVoice adds to a frozen base (``delta_state_dict``)."""
    folder.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(folder)
    save_file(delta_state_dict(model), str(folder / "model.safetensors"))


def load_delta(model, delta: dict[str, torch.Tensor], folder: str) -> None:
    """Load ``delta_state_dict`` weights into a model built on its base; a CheckpointError names
    the missing, unexpected and mis-shaped tensors instead of leaving them random."""
    expected = {k: v for k, v in delta_state_dict(model).items()}
    missing = sorted(set(expected) - set(delta))
    unexpected = sorted(set(delta) - set(expected))
    shapes = sorted(
        f"{k} {tuple(delta[k].shape)} (model: {tuple(expected[k].shape)})"
        for k in set(expected) & set(delta)
        if delta[k].shape != expected[k].shape
    )
    if missing or unexpected or shapes:
        raise CheckpointError(
            f"{folder}/model.safetensors does not fit this model's config: "
            + "; ".join(
                f"{what}: {_few(names)}"
                for what, names in (
                    ("missing", missing),
                    ("unexpected", unexpected),
                    ("wrong shape", shapes),
                )
                if names
            )
            + ". Was the folder written by another model or cut short? Retrain or re-export it."
        )
    params = {k: v for k, v in delta.items() if k not in ADDED_ROWS.values()}
    model.load_state_dict(params, strict=False)
    base = model.config.base_vocab_size
    with torch.no_grad():
        for key, matrix in zip(ADDED_ROWS.values(), _text_matrices(model.backbone), strict=False):
            if key in delta:
                matrix[base : base + len(delta[key])] = delta[key].to(matrix)


def read_weights(folder: Path) -> dict[str, torch.Tensor]:
    path = folder / "model.safetensors"
    if not path.is_file():
        raise CheckpointError(f"{folder} has no model.safetensors; train or export the model again")
    try:
        return load_file(str(path))
    except Exception as err:  # safetensors raises its own error types on damaged files
        raise CheckpointError(
            f"{path} cannot be read ({err}); the file is damaged or cut short"
        ) from err


def check_header(path: Path) -> None:
    """Read a safetensors file's header (not its tensors): empty, cut short or not safetensors
    at all raise a CheckpointError naming the file."""
    try:
        with safe_open(str(path), framework="pt") as f:
            for name in f.keys():
                f.get_slice(name)  # each tensor's extent must lie inside the file
    except Exception as err:  # safetensors raises its own error types on damaged files
        raise CheckpointError(
            f"{path} cannot be read ({err}); the file is damaged or cut short: export or "
            "train the model again"
        ) from err


def wrong_shapes(path: Path, expected: dict[str, torch.Tensor]) -> str:
    """The tensors of a safetensors file whose shapes differ from ``expected``'s, named."""
    with safe_open(str(path), framework="pt") as f:
        found = {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}
    names = sorted(
        f"{k} {found[k]} (config: {tuple(expected[k].shape)})"
        for k in found
        if k in expected and found[k] != tuple(expected[k].shape)
    )
    return _few(names) if names else ""


def check_loading_info(info: dict, folder: Path) -> None:
    """Refuse what transformers would only log: weights left at their random init."""
    problems = {
        "missing": sorted(info.get("missing_keys") or []),
        "unexpected": sorted(info.get("unexpected_keys") or []),
        "wrong shape": sorted(str(m[0]) for m in info.get("mismatched_keys") or []),
    }
    if any(problems.values()):
        detail = "; ".join(f"{what}: {_few(names)}" for what, names in problems.items() if names)
        raise CheckpointError(
            f"{folder}/model.safetensors does not fit its config.json ({detail}); the folder "
            "holds another model's weights or was cut short. Retrain or re-export it."
        )


def _text_matrices(backbone: nn.Module) -> list[nn.Parameter]:
    """The text embedding, and the output head when it is not tied to it."""
    embed = backbone.get_input_embeddings().weight
    head = backbone.get_output_embeddings()
    if head is None or head.weight is embed:
        return [embed]
    return [embed, head.weight]


def _few(names: list[str], shown: int = 4) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more
