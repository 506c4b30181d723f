"""Inference: joint text + speech decoding and sampling."""

from drvoice_lab.inference.decoding import JointOutput, JointStep, generate_joint, iter_joint
from drvoice_lab.inference.sampling import SamplingConfig, filter_logits, sample

__all__ = [
    "JointOutput",
    "JointStep",
    "SamplingConfig",
    "filter_logits",
    "generate_joint",
    "iter_joint",
    "sample",
]
