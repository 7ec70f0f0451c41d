"""`compile:` option: torch.compile of the encoders and fuser, in place, with unchanged weight names."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fusion.errors import ConfigError
from fusion.fusers import TransformerFuser
from fusion.heads import GradeHead, SurvivalHead
from fusion.model import FusionModel
from fusion.pipeline import compile_model


def _model() -> FusionModel:
    torch.manual_seed(0)
    dims = {"a": 8, "b": 8}
    fuser = TransformerFuser(dims, d_model=16, n_heads=2, n_layers=1, dim_feedforward=32, dropout=0.0)
    heads = [GradeHead(16, classes=[0, 1]), SurvivalHead(16)]
    encoders = {"a": nn.Sequential(nn.Linear(5, 8), nn.GELU()), "b": nn.Linear(3, 8)}
    return FusionModel(encoders, dims, fuser, heads)


def _compiled(module: nn.Module) -> bool:
    return getattr(module, "_compiled_call_impl", None) is not None


def test_compile_is_off_by_default_and_in_place_when_on():
    model = _model()
    compile_model(model, False)
    assert not _compiled(model.encoders["a"]) and not _compiled(model.fuser)
    keys = list(model.state_dict())
    compile_model(model, "max-autotune")
    assert all(_compiled(m) for m in model.encoders.values()) and _compiled(model.fuser)
    assert isinstance(model, FusionModel) and list(model.state_dict()) == keys  # checkpoints interchange


def test_unknown_compile_mode_is_a_config_error():
    with pytest.raises(ConfigError, match="compile must be true, false or one of.*'fastest'"):
        compile_model(_model(), "fastest")


@pytest.mark.slow  # inductor compiles C++ kernels on the CPU: tens of seconds
def test_compiled_model_gives_the_eager_outputs_and_gradients():
    inputs = {
        "a": {"present": torch.tensor([True, False, True, True]), "data": torch.randn(3, 5)},
        "b": {"present": torch.tensor([False, True, True, False]), "data": torch.randn(2, 3)},
    }
    eager, compiled = _model(), _model()
    compile_model(compiled, True)
    out_e, out_c = eager(inputs), compiled(inputs)
    sum(o.float().sum() for o in out_e.values()).backward()
    sum(o.float().sum() for o in out_c.values()).backward()
    for key in out_e:
        assert torch.allclose(out_c[key], out_e[key], atol=1e-5), key
    for (key, p), q in zip(eager.named_parameters(), compiled.parameters(), strict=True):
        assert torch.allclose(q.grad, p.grad, atol=1e-5), key
