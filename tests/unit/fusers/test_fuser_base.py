"""The `Fuser` base class: the fusers subclass it without changing a parameter name, so checkpoints
saved before it existed still load (state_dict keys and shapes below were read from `main` then)."""

import pytest
import torch

from fusion.fusers import ConcatFuser, KroneckerFuser, TransformerFuser
from fusion.fusers.base import Fuser

IN_DIMS = {"a": 8, "b": 5}


def _layer(i: int) -> list[tuple[str, tuple[int, ...]]]:
    prefix = f"encoder.layers.{i}."
    return [
        (prefix + "self_attn.in_proj_weight", (48, 16)),
        (prefix + "self_attn.in_proj_bias", (48,)),
        (prefix + "self_attn.out_proj.weight", (16, 16)),
        (prefix + "self_attn.out_proj.bias", (16,)),
        (prefix + "linear1.weight", (128, 16)),
        (prefix + "linear1.bias", (128,)),
        (prefix + "linear2.weight", (16, 128)),
        (prefix + "linear2.bias", (16,)),
        (prefix + "norm1.weight", (16,)),
        (prefix + "norm1.bias", (16,)),
        (prefix + "norm2.weight", (16,)),
        (prefix + "norm2.bias", (16,)),
    ]


#: `cls(IN_DIMS, d_model=16).state_dict()` on main before the base class: (key, shape) in order
STATE_ON_MAIN = {
    TransformerFuser: [
        ("cls", (1, 1, 16)),
        ("project.a.weight", (16, 8)),
        ("project.a.bias", (16,)),
        ("project.b.weight", (16, 5)),
        ("project.b.bias", (16,)),
        ("modality_embedding.a", (16,)),
        ("modality_embedding.b", (16,)),
        *_layer(0),
        *_layer(1),
        ("norm.weight", (16,)),
        ("norm.bias", (16,)),
    ],
    ConcatFuser: [
        ("mlp.0.weight", (16, 15)),
        ("mlp.0.bias", (16,)),
        ("mlp.3.weight", (16,)),
        ("mlp.3.bias", (16,)),
    ],
    KroneckerFuser: [
        ("project.a.weight", (8, 8)),
        ("project.a.bias", (8,)),
        ("project.b.weight", (8, 5)),
        ("project.b.bias", (8,)),
        ("gate.a.weight", (8, 15)),
        ("gate.a.bias", (8,)),
        ("gate.b.weight", (8, 15)),
        ("gate.b.bias", (8,)),
        ("out.0.weight", (81,)),
        ("out.0.bias", (81,)),
        ("out.2.weight", (16, 81)),
        ("out.2.bias", (16,)),
        ("out.4.weight", (16,)),
        ("out.4.bias", (16,)),
    ],
}


@pytest.mark.parametrize("fuser_cls", list(STATE_ON_MAIN))
def test_state_dict_keys_and_shapes_are_unchanged(fuser_cls: type[Fuser]) -> None:
    fuser = fuser_cls(IN_DIMS, d_model=16)
    assert [(k, tuple(v.shape)) for k, v in fuser.state_dict().items()] == STATE_ON_MAIN[fuser_cls]
    saved = {k: torch.randn(shape) for k, shape in STATE_ON_MAIN[fuser_cls]}  # an old checkpoint's
    fuser.load_state_dict(saved, strict=True)


@pytest.mark.parametrize("fuser_cls", list(STATE_ON_MAIN))
def test_fusers_share_the_contract(fuser_cls: type[Fuser]) -> None:
    fuser = fuser_cls({"b": 5, "a": 8}, d_model=16)
    assert isinstance(fuser, Fuser) and isinstance(fuser, torch.nn.Module)
    assert fuser.in_dims == IN_DIMS and fuser.names == ["a", "b"] and fuser.out_dim == 16
    present = torch.tensor([True, False, True])
    inputs = {"a": (torch.randn(3, 2, 8), torch.ones(3, dtype=torch.bool)), "b": (torch.randn(3, 5), present)}
    assert fuser.eval()(inputs).shape == (3, fuser.out_dim)


def test_the_base_class_holds_no_parameters_and_has_no_forward() -> None:
    fuser = Fuser(IN_DIMS, out_dim=4)
    assert fuser.state_dict() == {} and fuser.out_dim == 4
    with pytest.raises(NotImplementedError, match="Fuser must implement forward"):
        fuser({})
