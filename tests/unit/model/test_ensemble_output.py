"""`model.output=ensemble`: the mean of the fused pass and the one-modality passes, and how the setting
resolves from the config."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from fusion.errors import ConfigError
from fusion.fusers import TransformerFuser
from fusion.model import FusionModel
from fusion.pipeline import model_output
from tests.unit.model.test_model_and_collate import _batch
from tests.unit.model.test_unimodal_loss import DIMS, FUSERS, _only


def _pair(fuser: str = "transformer") -> tuple[FusionModel, FusionModel, dict]:
    """The same weights predicting from the fused pass and from the ensemble."""
    torch.manual_seed(0)
    modalities, heads, batch = _batch()
    encoders = {n: m.build_encoder() for n, m in modalities.items()}
    fused = FusionModel(encoders, DIMS, FUSERS[fuser](), heads).eval()
    ensemble = FusionModel(fused.encoders, DIMS, fused.fuser, fused.heads, output="ensemble").eval()
    return fused, ensemble, batch


@pytest.mark.parametrize("fuser", sorted(FUSERS))
def test_ensemble_is_the_mean_of_the_fused_pass_and_each_present_modality_alone(fuser):
    fused_model, ensemble_model, batch = _pair(fuser)
    inputs = batch["inputs"]  # P1 has a, P2 has b, P3 has both
    with torch.no_grad():
        fused = fused_model(inputs)
        alone = {n: fused_model(_only(inputs, n)) for n in ("a", "b")}
        got = ensemble_model(inputs)
    for head in fused:
        # P1: fused and a alone; P2: fused and b alone; P3: fused, a alone and b alone
        expected = torch.stack(
            [
                (fused[head][0] + alone["a"][head][0]) / 2,
                (fused[head][1] + alone["b"][head][0]) / 2,
                (fused[head][2] + alone["a"][head][1] + alone["b"][head][1]) / 3,
            ]
        )
        torch.testing.assert_close(got[head], expected)
    # with two modalities the ensemble of P3 differs from its fused pass: the test above can fail
    assert not torch.allclose(got["survival"][2], fused["survival"][2])


def test_a_patient_with_one_modality_gets_its_fused_prediction():
    # the one-modality pass of a patient who has only that modality is the fused pass itself
    fused_model, ensemble_model, batch = _pair()
    with torch.no_grad():
        fused, got = fused_model(batch["inputs"]), ensemble_model(batch["inputs"])
    for head in fused:
        torch.testing.assert_close(got[head][:2], fused[head][:2])


def test_a_single_modality_model_predicts_from_its_fused_pass():
    modalities, heads, batch = _batch()
    modalities = {"a": modalities["a"]}
    torch.manual_seed(0)
    fuser = TransformerFuser({"a": 4}, d_model=8, n_heads=2, dropout=0.0, modality_dropout=0.0)
    fused = FusionModel({"a": modalities["a"].build_encoder()}, {"a": 4}, fuser, heads).eval()
    ensemble = FusionModel(fused.encoders, {"a": 4}, fused.fuser, fused.heads, output="ensemble").eval()
    inputs = {"a": _only(batch["inputs"], "a")["a"]}
    with torch.no_grad():
        for head, out in fused(inputs).items():
            torch.testing.assert_close(ensemble(inputs)[head], out)


def test_the_ensemble_passes_gradients_to_every_encoder():
    _, ensemble_model, batch = _pair()
    ensemble_model.train()
    ensemble_model.fuser.modality_dropout = 0.0
    sum(o.sum() for o in ensemble_model(batch["inputs"]).values()).backward()
    for name, encoder in ensemble_model.encoders.items():
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in encoder.parameters()), name


def _cfg(**blocks) -> OmegaConf:
    return OmegaConf.create(blocks)


@pytest.mark.parametrize(
    ("blocks", "expected"),
    [
        ({"model": {"output": "auto"}, "loss": {"unimodal_weight": 8.0}}, "ensemble"),
        ({"model": {"output": "auto"}, "loss": {"unimodal_weight": 0.0}}, "fused"),
        ({"model": {"output": "fused"}, "loss": {"unimodal_weight": 8.0}}, "fused"),
        ({"model": {"output": "ensemble"}, "loss": {"unimodal_weight": 1.0}}, "ensemble"),
        # a checkpoint from before the setting: trained and selected on the fused pass
        ({"loss": {"unimodal_weight": 8.0}}, "fused"),
    ],
)
def test_model_output_resolves_from_the_config(blocks, expected):
    assert model_output(_cfg(**blocks)) == expected


def test_an_ensemble_without_the_auxiliary_loss_or_an_unknown_output_is_refused():
    with pytest.raises(ConfigError, match="loss.unimodal_weight is 0"):
        model_output(_cfg(model={"output": "ensemble"}, loss={"unimodal_weight": 0.0}))
    with pytest.raises(ConfigError, match="model.output must be auto or one of"):
        model_output(_cfg(model={"output": "average"}, loss={"unimodal_weight": 8.0}))
    with pytest.raises(ValueError, match="model.output must be one of"):
        FusionModel({}, {}, None, [], output="average")
