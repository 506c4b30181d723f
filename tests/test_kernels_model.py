"""The model with ``use_kernels`` on equals the model with it off: losses, every parameter
gradient, and joint decoding. On CPU the Triton kernels run in Triton's interpreter."""

import zlib

import drvoice_kernels
import pytest
import torch
from drvoice_kernels.grouping import FusedGroupingFunction
from drvoice_kernels.linear_cross_entropy import FusedLinearCrossEntropyFunction
from drvoice_kernels.srh_ungroup import FusedUngroupFunction
from helpers import micro_config, random_batch

from drvoice_lab import DrVoiceConfig, DrVoiceModel
from drvoice_lab.inference import generate_joint
from drvoice_lab.modeling import IGNORE_INDEX

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture(autouse=True)
def _fresh_seed_and_poison(request):
    assert drvoice_kernels.INTERPRETED or DEVICE == "cuda", "Triton cannot run these tensors"
    torch.manual_seed(zlib.crc32(request.node.nodeid.encode()))
    with drvoice_kernels.poisoned_outputs():
        yield


def _batch(model, k):
    """Speech longer than the text and not a multiple of k, an all-pad speech row, and
    partly ignored labels."""
    cfg = model.config
    text, speech = random_batch(cfg, 3, 4, 5 * k + 2)
    speech[2] = cfg.speech_pad_token_id
    text, speech = text.to(DEVICE), speech.to(DEVICE)
    speech_labels = speech.clone()
    speech_labels[0, : 2 * k] = IGNORE_INDEX
    return text, speech, speech_labels


def _loss_and_grads(model, use_kernels, text, speech, speech_labels):
    model.config.use_kernels = use_kernels
    model.zero_grad(set_to_none=True)
    out = model(text, speech, text_labels=text, speech_labels=speech_labels)
    out.loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    return out, grads


CASES = [(1, "concat", True), (3, "mean", True), (5, "concat", True), (5, "mean", False)]


@pytest.fixture
def fused_calls(monkeypatch):
    """Names of the fused autograd Functions the model calls."""
    calls = []
    for fn in (FusedGroupingFunction, FusedUngroupFunction, FusedLinearCrossEntropyFunction):
        apply = fn.apply
        monkeypatch.setattr(
            fn, "apply", lambda *a, _apply=apply, _n=fn.__name__: calls.append(_n) or _apply(*a)
        )
    return calls


@pytest.mark.parametrize("k, mode, tie", CASES)
def test_kernels_on_equals_kernels_off(k, mode, tie, fused_calls):
    model = DrVoiceModel(micro_config(k, mode, tie_srh_embeddings=tie)).to(DEVICE).train()
    batch = _batch(model, k)
    off, grads_off = _loss_and_grads(model, False, *batch)
    assert fused_calls == []
    on, grads_on = _loss_and_grads(model, True, *batch)
    assert sorted(fused_calls) == [
        "FusedGroupingFunction",
        "FusedLinearCrossEntropyFunction",
        "FusedUngroupFunction",
    ]
    for name in ("loss", "text_loss", "speech_loss"):
        torch.testing.assert_close(getattr(on, name), getattr(off, name), rtol=1e-5, atol=1e-5)
    assert on.speech_logits is None and off.speech_logits is not None  # never materialised
    assert set(grads_on) == set(grads_off)
    for name, grad in grads_off.items():
        torch.testing.assert_close(grads_on[name], grad, rtol=1e-5, atol=1e-5, msg=name)


def test_kernels_on_equals_kernels_off_under_autocast():
    """Mixed precision (CPU: fp16 autocast, CUDA: bf16), fp32 parameters."""
    model = DrVoiceModel(micro_config(5)).to(DEVICE).train()
    batch = _batch(model, 5)
    dtype = torch.float16 if DEVICE == "cpu" else torch.bfloat16
    with torch.autocast(DEVICE, dtype=dtype):
        off, grads_off = _loss_and_grads(model, False, *batch)
        on, grads_on = _loss_and_grads(model, True, *batch)
    torch.testing.assert_close(on.loss, off.loss, rtol=1e-2, atol=1e-2)
    for name, grad in grads_off.items():
        torch.testing.assert_close(grads_on[name], grad, rtol=2e-2, atol=2e-3, msg=name)


def test_without_labels_kernels_still_give_the_speech_logits():
    model = DrVoiceModel(micro_config(3)).to(DEVICE).eval()
    text, speech, _ = _batch(model, 3)
    with torch.no_grad():
        off = model(text, speech)
        model.config.use_kernels = True
        on = model(text, speech)
    torch.testing.assert_close(on.speech_logits, off.speech_logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(on.text_logits, off.text_logits, rtol=1e-5, atol=1e-5)


def test_joint_decoding_with_kernels_matches():
    model = DrVoiceModel(micro_config(3)).to(DEVICE).eval()
    text, speech = (x.to(DEVICE) for x in random_batch(model.config, 2, 3))
    off = generate_joint(model, text, speech, max_new_positions=3)
    model.config.use_kernels = True
    on = generate_joint(model, text, speech, max_new_positions=3)
    assert torch.equal(on.text_ids, off.text_ids) and torch.equal(on.speech_ids, off.speech_ids)


def test_switch_defaults_off_and_round_trips(tmp_path):
    assert DrVoiceConfig.from_preset("tiny").use_kernels is False
    micro_config(5, use_kernels=True).save_pretrained(tmp_path)
    assert DrVoiceConfig.from_pretrained(tmp_path).use_kernels is True
