"""LoRA adaptation through peft: what trains, what is saved, loading, switching, merging."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import micro_config, random_batch
from safetensors import safe_open

from drvoice_lab.inference import generate_joint
from drvoice_lab.modeling.drvoice import DrVoiceModel
from drvoice_lab.modeling.lora import (
    add_adapter,
    apply_lora,
    load_adapter,
    lora_target_regex,
    merge_adapter,
    save_adapter,
    set_active_adapter,
    trainable_report,
)
from drvoice_lab.training.recipe import LoraSettings

PREFIX = "base_model.model."
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
SAVED = "modules_to_save.default."


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Micro models run fastest on one thread; on a busy 2-core machine, intra-op threads mostly
    spin-wait (measured: ~8x slower). Restored afterwards for the other test modules."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_base(seed: int = 0) -> DrVoiceModel:
    torch.manual_seed(seed)
    return DrVoiceModel(micro_config()).eval()


def make_batch(config, seed: int) -> dict:
    """Assistant text + speech with two user-speech positions (so the adapter gets gradients)."""
    g = torch.Generator().manual_seed(seed)
    text, speech = random_batch(config, 2, 6, generator=g)
    features = torch.randn(2, 20, config.encoder_hidden_size, generator=g)  # 2 positions at k=5
    mask = torch.zeros_like(text, dtype=torch.bool)
    mask[:, 1:3] = True
    return dict(text_ids=text, speech_ids=speech, user_features=features, user_position_mask=mask)


def train(peft_model, seed: int, steps: int = 3, lr: float = 1e-2):
    batch = make_batch(peft_model.config, seed)
    params = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    peft_model.train()
    for _ in range(steps):
        out = peft_model(**batch, text_labels=batch["text_ids"], speech_labels=batch["speech_ids"])
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    peft_model.eval()
    return peft_model


@torch.no_grad()
def logits(model, seed: int = 99):
    out = model(**make_batch(model.config, seed))
    return out.text_logits, out.speech_logits


def frozen(model):
    """Outputs compared bit for bit need the same kernels: freeze (requires_grad changes the
    CPU path of some ops by ~1e-7)."""
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def trainable_names(peft_model) -> set[str]:
    return {n.removeprefix(PREFIX) for n, p in peft_model.named_parameters() if p.requires_grad}


def numel(module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Trained adapters, name -> (folder, SRH mode, frozen reference logits)."""
    out = {}
    for name, mode, seed in (
        ("a", "lora", 1),
        ("b", "lora", 2),
        ("full", "full", 3),
        ("frozen", "frozen", 4),
    ):
        model = train(apply_lora(make_base(), LoraSettings(rank=4, alpha=8, srh=mode)), seed)
        folder = save_adapter(model, tmp_path_factory.mktemp(name))
        out[name] = (folder, mode, logits(frozen(model)))
    return out


# ---------------------------------------------------------------------------- what trains
@pytest.mark.parametrize("srh", ["full", "lora", "frozen"])
def test_only_intended_parameters_are_trainable(srh):
    base = make_base()
    sizes = {part: numel(getattr(base, part)) for part in ("grouping", "adapter", "srh")}
    model = apply_lora(base, LoraSettings(rank=4, srh=srh))
    names = trainable_names(model)
    by_part = {
        part: {n for n in names if n.startswith(part + ".")}
        for part in ("backbone", "grouping", "adapter", "srh")
    }
    assert set().union(*by_part.values()) == names  # nothing else (no embeddings, no lm_head)

    # Backbone: exactly lora_A/lora_B of the 7 projections in both layers.
    assert all(".lora_A." in n or ".lora_B." in n for n in by_part["backbone"])
    lora_modules = {n.rsplit(".lora_", 1)[0] for n in by_part["backbone"]}
    block = {p: "self_attn" if p[0] in "qkvo" else "mlp" for p in PROJECTIONS}
    assert lora_modules == {
        f"backbone.model.layers.{i}.{block[p]}.{p}" for i in range(2) for p in PROJECTIONS
    }
    # Grouping W_g and the whole user-speech adapter: trainable copies of every weight.
    assert by_part["grouping"] == {f"grouping.proj.{SAVED}weight", f"grouping.proj.{SAVED}bias"}
    assert (
        sum(model.get_parameter(PREFIX + n).numel() for n in by_part["grouping"])
        == sizes["grouping"]
    )
    assert (
        sum(model.get_parameter(PREFIX + n).numel() for n in by_part["adapter"]) == sizes["adapter"]
    )
    assert {n.split(SAVED)[0] for n in by_part["adapter"]} == {
        "adapter.to_25hz.",
        "adapter.grouping.proj.",
    }
    srh_names = by_part["srh"]
    if srh == "full":
        assert all(n.startswith(f"srh.{SAVED}") for n in srh_names)
        assert sum(model.get_parameter(PREFIX + n).numel() for n in srh_names) == sizes["srh"]
        assert f"srh.{SAVED}transformer.embed_tokens.weight" in srh_names
    elif srh == "lora":
        lora = {n for n in srh_names if ".lora_" in n}
        assert {n.rsplit(".lora_", 1)[0].rsplit(".", 1)[1] for n in lora} == set(PROJECTIONS)
        assert all(n.startswith("srh.transformer.layers.") for n in lora)
        assert srh_names - lora == {f"srh.ungroup.{SAVED}weight", f"srh.ungroup.{SAVED}bias"}
    else:
        assert srh_names == set()


def test_optimizer_steps_change_adapter_weights_not_frozen_base():
    model = apply_lora(make_base(), LoraSettings(rank=4, srh="lora"))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    train(model, seed=5)
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert changed <= trainable  # frozen base weights untouched
    frozen_base = [
        f"{PREFIX}backbone.model.layers.0.self_attn.q_proj.base_layer.weight",
        f"{PREFIX}backbone.model.embed_tokens.weight",
        f"{PREFIX}grouping.proj.original_module.weight",
        f"{PREFIX}srh.transformer.embed_tokens.weight",
        f"{PREFIX}srh.ungroup.original_module.weight",
    ]
    for name in frozen_base:
        assert name not in changed and not model.get_parameter(name).requires_grad
    must_change = [
        f"{PREFIX}backbone.model.layers.0.self_attn.q_proj.lora_A.default.weight",
        f"{PREFIX}backbone.model.layers.1.mlp.down_proj.lora_B.default.weight",
        f"{PREFIX}srh.transformer.layers.0.self_attn.v_proj.lora_B.default.weight",
        f"{PREFIX}grouping.proj.{SAVED}weight",
        f"{PREFIX}adapter.to_25hz.{SAVED}0.weight",
        f"{PREFIX}adapter.grouping.proj.{SAVED}weight",
        f"{PREFIX}srh.ungroup.{SAVED}weight",
    ]
    assert set(must_change) <= changed
    assert all(n in changed for n in trainable if ".lora_B." in n)


# ---------------------------------------------------------------------------- save / load
@pytest.mark.parametrize("name", ["a", "full", "frozen"])
def test_saved_adapter_holds_only_adapter_weights(saved, name):
    folder, mode, _ = saved[name]
    assert {p.name for p in folder.iterdir()} >= {
        "adapter_config.json",
        "adapter_model.safetensors",
    }
    assert not any(p.name.startswith("model") for p in folder.iterdir())
    with safe_open(str(folder / "adapter_model.safetensors"), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    backbone = [k for k in tensors if k.startswith(PREFIX + "backbone.")]
    assert backbone and all(".lora_A." in k or ".lora_B." in k for k in backbone)
    assert not any("base_layer" in k or "original_module" in k for k in tensors)
    srh_keys = {k for k in tensors if k.startswith(PREFIX + "srh.")}
    if mode == "frozen":
        assert not srh_keys
    elif mode == "lora":
        assert all(".lora_" in k or k.startswith(PREFIX + "srh.ungroup.") for k in srh_keys)
    else:
        assert PREFIX + "srh.transformer.embed_tokens.weight" in srh_keys
    # Exactly the trainable parameters, nothing more: the file is small.
    fresh = apply_lora(make_base(), LoraSettings(rank=4, alpha=8, srh=mode))
    n_trainable = sum(p.numel() for p in fresh.parameters() if p.requires_grad)
    assert sum(t.numel() for t in tensors.values()) == n_trainable
    size = (folder / "adapter_model.safetensors").stat().st_size
    assert size < 4 * n_trainable + 32_000  # fp32 tensors + header
    assert size < 4 * numel(make_base())
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["r"] == 4 and config["peft_type"] == "LORA"


@pytest.mark.parametrize("name", ["a", "full"])
def test_load_into_fresh_base_gives_identical_logits(saved, name):
    folder, _, (text_ref, speech_ref) = saved[name]
    loaded = load_adapter(make_base(), folder)
    assert not any(p.requires_grad for p in loaded.parameters())
    text, speech = logits(loaded)
    assert torch.equal(text, text_ref) and torch.equal(speech, speech_ref)
    # and the adapter matters: the plain base model differs
    base_text, _ = logits(make_base())
    assert not torch.allclose(base_text, text_ref)


def test_two_adapters_switch_and_switch_back(saved):
    (folder_a, _, ref_a), (folder_b, _, ref_b) = saved["a"], saved["b"]
    model = load_adapter(make_base(), folder_a, adapter_name="a")
    add_adapter(model, folder_b, "b")
    assert model.active_adapter == "a"
    out_a = logits(model)
    set_active_adapter(model, "b")
    out_b = logits(model)
    set_active_adapter(model, "a")
    again_a = logits(model)
    assert not torch.allclose(out_a[0], out_b[0]) and not torch.allclose(out_a[1], out_b[1])
    for got, want in zip(out_a + out_b, ref_a + ref_b, strict=True):
        assert torch.equal(got, want)
    for got, want in zip(again_a, out_a, strict=True):
        assert torch.equal(got, want)
    assert not any(p.requires_grad for p in model.parameters())  # inference adapters stay frozen
    with pytest.raises(ValueError, match="srh"):
        add_adapter(model, saved["full"][0], "c")  # a full-SRH adapter cannot join lora ones
    with pytest.raises(ValueError, match="no adapter"):
        set_active_adapter(model, "missing")


# ---------------------------------------------------------------------------- merge / decode
@pytest.mark.parametrize("name", ["a", "full"])
def test_merged_model_equals_adapted_model_and_decodes_the_same(saved, name):
    folder = saved[name][0]
    adapted = load_adapter(make_base(), folder)
    batch = make_batch(adapted.config, 7)
    prompt = dict(text_ids=batch["text_ids"][:, :3], speech_ids=batch["speech_ids"][:, :15])
    with torch.no_grad():
        want = adapted(**batch)
    # generate_joint takes the PeftModel itself (attributes forward to the DrVoice model) or
    # the DrVoice model inside it (adapter active there too).
    gen = generate_joint(adapted, **prompt, max_new_positions=4, keep_logits=True)
    inner = generate_joint(adapted.base_model.model, **prompt, max_new_positions=4)
    assert torch.equal(gen.text_ids, inner.text_ids)
    assert torch.equal(gen.speech_ids, inner.speech_ids)

    merged = merge_adapter(adapted)
    assert type(merged) is DrVoiceModel
    assert not any("lora_" in n or "modules_to_save" in n for n, _ in merged.named_parameters())
    with torch.no_grad():
        got = merged(**batch)
    torch.testing.assert_close(got.text_logits, want.text_logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(got.speech_logits, want.speech_logits, atol=1e-5, rtol=0)
    ref = generate_joint(merged, **prompt, max_new_positions=4, keep_logits=True)
    assert torch.equal(gen.text_ids, ref.text_ids)
    assert torch.equal(gen.speech_ids, ref.speech_ids)
    kept = zip(
        gen.text_logits + gen.speech_logits, ref.text_logits + ref.speech_logits, strict=True
    )
    for a, b in kept:
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


# ---------------------------------------------------------------------------- report, errors
def test_trainable_report_mentions_the_counts():
    model = apply_lora(make_base(), LoraSettings(rank=4, srh="lora"))
    trainable, total = model.get_nb_trainable_parameters()
    report = trainable_report(model)
    assert f"trainable params: {trainable:,d} || all params: {total:,d}" in report
    per_part = {}
    for part in ("backbone", "grouping", "adapter", "srh"):
        per_part[part] = sum(
            p.numel()
            for n, p in model.named_parameters()
            if p.requires_grad and n.startswith(f"{PREFIX}{part}.")
        )
    assert f"backbone LoRA: {per_part['backbone']:,d} (14 LoRA layers)" in report
    assert f"SRH: {per_part['srh']:,d} (LoRA on 14 layers + W_p)" in report
    assert f"grouping (W_g): {per_part['grouping']:,d}" in report
    assert f"adapter (user speech): {per_part['adapter']:,d}" in report
    assert sum(per_part.values()) == trainable
    frozen_srh = trainable_report(apply_lora(make_base(), LoraSettings(rank=2, srh="frozen")))
    assert "SRH: 0 (frozen)" in frozen_srh


def test_target_regex_is_precise_and_bad_settings_are_clear_errors():
    import re

    pattern = lora_target_regex(["q_proj"], srh="full")
    assert re.fullmatch(pattern, "backbone.model.layers.3.self_attn.q_proj")
    assert not re.fullmatch(pattern, "srh.transformer.layers.0.self_attn.q_proj")
    assert not re.fullmatch(pattern, "backbone.model.layers.3.self_attn.xq_proj")
    assert re.fullmatch(
        lora_target_regex(["q_proj"], srh="lora"), "srh.transformer.layers.0.self_attn.q_proj"
    )
    with pytest.raises(ValueError, match="srh"):
        apply_lora(make_base(), LoraSettings(srh="partial"))
    with pytest.raises(ValueError, match="target_modules"):
        apply_lora(make_base(), LoraSettings(target_modules=["c_attn"], srh="frozen"))
    with pytest.raises(ValueError, match="adapter name"):
        apply_lora(make_base(), LoraSettings(), adapter_name="my_srh")


def test_freeze_keeps_chosen_parts_as_initialised():
    """LoraSettings.freeze: the backbone LoRA and W_g stay untrainable (and unchanged by an
    optimizer step) while the SRH still trains; an unknown part is a clear error."""
    model = apply_lora(make_base(), LoraSettings(rank=2, freeze=["backbone", "grouping"]))
    names = trainable_names(model)
    assert not any(n.startswith(("backbone.", "grouping.")) for n in names)
    assert any(n.startswith("srh.") for n in names)
    assert any(n.startswith("adapter.") for n in names)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    train(model, seed=1)
    for name, param in model.named_parameters():
        changed = not torch.equal(param, before[name])
        part = name.removeprefix(PREFIX).split(".", 1)[0]
        assert not (changed and part in ("backbone", "grouping")), name
    assert "backbone LoRA: 0" in trainable_report(model)
    with pytest.raises(ValueError, match="freeze"):
        apply_lora(make_base(), LoraSettings(freeze=["srh"]))
