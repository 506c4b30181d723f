"""Triton kernels for the grouping and the grouped upsampling head (SRH), with torch references.

Installed under the import name ``drvoice_kernels`` (see pyproject.toml): a PyPI package
named ``kernels`` exists and transformers probes for it, so this folder must not shadow it.
The kernels themselves are tracked in the project's kernels issue; the model runs on its
plain-torch path until they land.
"""
