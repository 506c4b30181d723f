"""Fixed-seed reference outputs of a dim-16 DrVoice model, saved in tests/data/.

Regenerate (only after an intended numeric change, and say so in the commit):
    .venv/bin/python tests/reference.py
"""

from __future__ import annotations

from pathlib import Path

import torch

REFERENCE_FILE = Path(__file__).parent / "data" / "reference_outputs.safetensors"


def reference_outputs() -> dict[str, torch.Tensor]:
    from helpers import micro_config

    from drvoice_lab import DrVoiceModel
    from drvoice_lab.inference import generate_joint
    from drvoice_lab.presets import decoder

    config = micro_config(
        3,
        backbone_config=decoder("qwen2", 16, 2, 2, 1, 32, vocab_size=64, tie_word_embeddings=True),
    )
    torch.manual_seed(1234)
    model = DrVoiceModel(config).eval()
    gen = torch.Generator().manual_seed(99)
    text = torch.randint(2, 64, (2, 5), generator=gen)
    speech = torch.randint(0, config.speech_codebook_size, (2, 14), generator=gen)
    with torch.no_grad():
        out = model(text, speech, text_labels=text, speech_labels=speech)
    decoded = generate_joint(model, text, speech, max_new_positions=4)
    return {
        "text_logits": out.text_logits,
        "speech_logits": out.speech_logits,
        "loss": out.loss.reshape(1),
        "generated_text": decoded.text_ids,
        "generated_speech": decoded.speech_ids,
    }


if __name__ == "__main__":
    import sys

    from safetensors.torch import save_file

    sys.path.insert(0, str(Path(__file__).parent))
    REFERENCE_FILE.parent.mkdir(exist_ok=True)
    save_file({k: v.contiguous() for k, v in reference_outputs().items()}, REFERENCE_FILE)
    print(f"wrote {REFERENCE_FILE}")
