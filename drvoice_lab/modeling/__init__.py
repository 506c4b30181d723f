"""DrVoice modeling: grouping, speech refined head (SRH), the model."""

from drvoice_lab.modeling.drvoice import (
    IGNORE_INDEX,
    AlignedChannels,
    DrVoiceModel,
    DrVoiceOutput,
    register_auto_classes,
)
from drvoice_lab.modeling.grouping import SpeechAdapter, SpeechGrouping
from drvoice_lab.modeling.srh import SpeechRefinedHead

register_auto_classes()

__all__ = [
    "IGNORE_INDEX",
    "AlignedChannels",
    "DrVoiceModel",
    "DrVoiceOutput",
    "SpeechAdapter",
    "SpeechGrouping",
    "SpeechRefinedHead",
]
