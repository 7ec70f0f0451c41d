import pytest
import torch

from fusion.fusers import ConcatFuser, KroneckerFuser, TransformerFuser
from fusion.fusers.base import MissingAllModalitiesError, drop_modalities


def _inputs(batch=4):
    present_a = torch.tensor([True, True, False, True])[:batch]
    present_b = torch.tensor([True, False, True, True])[:batch]
    return {
        "a": (torch.randn(batch, 3, 8) * present_a[:, None, None], present_a),  # tokens
        "b": (torch.randn(batch, 5) * present_b[:, None], present_b),  # one vector
    }


@pytest.mark.parametrize("fuser_cls", [TransformerFuser, ConcatFuser, KroneckerFuser])
def test_output_shape_with_different_missing_sets(fuser_cls):
    fuser = fuser_cls({"a": 8, "b": 5}, d_model=16).eval()
    assert fuser(_inputs()).shape == (4, 16)


def test_missing_modality_values_do_not_leak_into_output():
    torch.manual_seed(0)
    fuser = TransformerFuser({"a": 8, "b": 5}, d_model=16).eval()
    inputs = _inputs()
    out = fuser(inputs)
    # row 1 has no "b": whatever sits in its (masked) b slot must not change its embedding
    tokens_b, present_b = inputs["b"]
    garbage = tokens_b.clone()
    garbage[1] = 1e3
    out2 = fuser({"a": inputs["a"], "b": (garbage, present_b)})
    assert torch.allclose(out[1], out2[1], atol=1e-5)
    assert not torch.allclose(out[0], fuser({"a": inputs["a"], "b": (tokens_b + 1, present_b)})[0])


def test_patient_with_no_modality_is_a_clear_error():
    fuser = TransformerFuser({"a": 8, "b": 5}, d_model=16).eval()
    inputs = _inputs()
    inputs["a"] = (inputs["a"][0], torch.tensor([True, True, False, True]))
    inputs["b"] = (inputs["b"][0], torch.tensor([True, False, False, True]))
    with pytest.raises(MissingAllModalitiesError, match=r"rows \[2\]"):
        fuser(inputs)


def test_modality_dropout_never_removes_every_modality():
    torch.manual_seed(0)
    present = torch.rand(500, 4) < 0.6
    present[:, 0] |= ~present.any(dim=1)
    dropped = drop_modalities(present, p=0.9)
    assert bool(dropped.any(dim=1).all())
    assert not bool((dropped & ~present).any())  # never adds a modality
    assert dropped.sum() < present.sum()


def test_gradients_reach_every_projection():
    fuser = TransformerFuser({"a": 8, "b": 5}, d_model=16)
    fuser(_inputs()).sum().backward()
    assert fuser.project["a"].weight.grad.abs().sum() > 0
    assert fuser.project["b"].weight.grad.abs().sum() > 0
