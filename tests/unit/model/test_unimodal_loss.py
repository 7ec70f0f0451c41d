"""The auxiliary one-modality loss (`loss.unimodal_weight`): what the one-modality passes compute and how
the training step weighs them."""

from __future__ import annotations

import pytest
import torch

from fusion.fusers import ConcatFuser, KroneckerFuser, TransformerFuser
from fusion.lit import LitFusion
from fusion.model import FusionModel
from tests.unit.model.test_model_and_collate import _batch

DIMS = {"a": 4, "b": 3}
FUSERS = {
    "transformer": lambda: TransformerFuser(DIMS, d_model=8, n_heads=2, dropout=0.0, modality_dropout=0.0),
    "concat": lambda: ConcatFuser(DIMS, d_model=8, dropout=0.0),
    "kronecker": lambda: KroneckerFuser(DIMS, d_model=8, dropout=0.0),
}


def _model(fuser: str = "transformer") -> tuple[FusionModel, dict]:
    torch.manual_seed(0)
    modalities, heads, batch = _batch()
    encoders = {n: m.build_encoder() for n, m in modalities.items()}
    return FusionModel(encoders, DIMS, FUSERS[fuser](), heads).eval(), batch


def _only(inputs: dict, name: str) -> dict:
    """The batch of the patients who have `name`, every other modality missing for them."""
    k = int(inputs[name]["present"].sum())
    return {
        n: {"present": torch.ones(k, dtype=torch.bool), "data": v["data"]}
        if n == name
        else {"present": torch.zeros(k, dtype=torch.bool), "data": None}
        for n, v in inputs.items()
    }


@pytest.mark.parametrize("fuser", sorted(FUSERS))
def test_each_unimodal_pass_equals_the_model_on_that_modality_alone(fuser):
    model, batch = _model(fuser)
    with torch.no_grad():
        fused, unimodal = model.forward_with_unimodal(batch["inputs"])
        plain = model(batch["inputs"])
        assert set(unimodal) == {"a", "b"}
        for name, (rows, outputs) in unimodal.items():
            assert rows.tolist() == batch["inputs"][name]["present"].tolist()
            alone = model(_only(batch["inputs"], name))
            for head, out in outputs.items():
                torch.testing.assert_close(out, alone[head])
    for head, out in fused.items():
        torch.testing.assert_close(out, plain[head])


def test_a_modality_nobody_in_the_batch_has_gives_zero_rows():
    model, batch = _model()
    batch["inputs"]["b"] = {"present": torch.zeros(3, dtype=torch.bool), "data": None}
    batch["inputs"]["a"] = {"present": torch.ones(3, dtype=torch.bool), "data": torch.randn(3, 4)}
    _, unimodal = model.forward_with_unimodal(batch["inputs"])
    rows, outputs = unimodal["b"]
    assert not rows.any()
    assert outputs["grade"].shape == (0, 2) and outputs["survival"].shape == (0,)


def test_training_loss_is_fused_plus_weight_times_the_mean_one_modality_loss():
    model, batch = _model()
    lit = LitFusion(model, unimodal_weight=0.5)
    lit.log = lambda *args, **kwargs: None  # no Trainer attached
    labels = batch["labels"]
    total = lit.training_step(batch, 0)
    with torch.no_grad():
        fused, _ = lit.total_loss(model(batch["inputs"]), labels)
        per_modality = []
        for name in ("a", "b"):
            rows = batch["inputs"][name]["present"]
            loss, _ = lit.total_loss(
                model(_only(batch["inputs"], name)),
                {h: v[rows] for h, v in labels.items()},
            )
            per_modality.append(loss)
    assert all(loss is not None for loss in per_modality)
    expected = fused + 0.5 * sum(per_modality) / 2
    torch.testing.assert_close(total.detach(), expected)
    assert not torch.isclose(total.detach(), fused)  # the auxiliary term changes the loss


def test_weight_zero_trains_on_the_fused_loss_alone_and_negative_is_refused():
    model, batch = _model()
    lit = LitFusion(model)  # default 0
    lit.log = lambda *args, **kwargs: None
    model.forward_with_unimodal = lambda inputs: pytest.fail("one-modality passes run at weight 0")
    total = lit.training_step(batch, 0)
    fused, _ = lit.total_loss(model(batch["inputs"]), batch["labels"])
    torch.testing.assert_close(total.detach(), fused.detach())
    with pytest.raises(ValueError, match="unimodal_weight must be >= 0"):
        LitFusion(model, unimodal_weight=-1.0)


def test_the_one_modality_loss_trains_an_encoder_the_fused_loss_leaves_idle():
    """Gradient reaches encoder `b` through its one-modality pass even when the fused heads are frozen
    out of the graph: a stand-in for a fused model that has learnt to ignore `b`."""
    model, batch = _model()
    lit = LitFusion(model, unimodal_weight=1.0)
    _, unimodal = model.forward_with_unimodal(batch["inputs"])
    aux = lit.unimodal_loss({"b": unimodal["b"]}, batch["labels"])
    aux.backward()
    grad = model.encoders["b"].weight.grad
    assert grad is not None and grad.abs().sum() > 0
    idle = model.encoders["a"].weight.grad  # `a`'s tokens are masked out of `b`'s pass
    assert idle is None or not idle.any()


def test_a_single_modality_model_skips_the_one_modality_pass():
    modalities, heads, batch = _batch()
    inputs = {"a": batch["inputs"]["a"]}
    rows = inputs["a"]["present"]
    batch = {"inputs": inputs, "labels": {h: v[rows] for h, v in batch["labels"].items()}}
    inputs["a"]["present"] = torch.ones(int(rows.sum()), dtype=torch.bool)
    torch.manual_seed(0)
    fuser = TransformerFuser({"a": 4}, d_model=8, n_heads=2, dropout=0.0)
    model = FusionModel({"a": modalities["a"].build_encoder()}, {"a": 4}, fuser, heads).eval()
    lit = LitFusion(model, unimodal_weight=1.0)
    lit.log = lambda *args, **kwargs: None
    model.forward_with_unimodal = lambda inputs: pytest.fail("the one-modality pass is the fused pass")
    fused, _ = lit.total_loss(model(inputs), batch["labels"])
    torch.testing.assert_close(lit.training_step(batch, 0).detach(), fused.detach())
