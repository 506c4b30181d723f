"""Guards against silent numeric changes: a fixed-seed dim-16 model vs saved outputs."""

import torch
from reference import REFERENCE_FILE, reference_outputs
from safetensors.torch import load_file


def test_matches_saved_reference_outputs():
    expected = load_file(REFERENCE_FILE)
    got = reference_outputs()
    assert set(got) == set(expected)
    for name, tensor in expected.items():
        if tensor.is_floating_point():
            torch.testing.assert_close(got[name], tensor, rtol=1e-5, atol=1e-5, msg=name)
        else:
            assert torch.equal(got[name], tensor), name
