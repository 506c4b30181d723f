"""drvoice-lab: a research workbench for DrVoice-style parallel speech-text voice models."""

from drvoice_lab.config import DrVoiceConfig, preset_names
from drvoice_lab.modeling import DrVoiceModel, DrVoiceOutput

__version__ = "0.1.0"

__all__ = ["DrVoiceConfig", "DrVoiceModel", "DrVoiceOutput", "preset_names", "__version__"]
