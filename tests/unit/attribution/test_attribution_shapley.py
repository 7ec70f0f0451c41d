"""Modality Shapley values: exact on known games, sampled close to exact, and additive on a real model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fusion.attribution.context import PatientContext
from fusion.attribution.shapley import modality_contributions, shapley_values
from fusion.fusers.transformer import TransformerFuser
from fusion.heads.grade import GradeHead
from fusion.heads.response import ResponseHead
from fusion.heads.survival import SurvivalHead
from fusion.model import FusionModel

KEY = ("h", "t")


def game(weights: list[float], pair_bonus: float = 0.0):
    """v(S) = sum of the weights in S, + pair_bonus when players 0 and 1 are both in S."""
    w = torch.tensor(weights, dtype=torch.float64)

    def value(coalitions: torch.Tensor) -> dict:
        assert coalitions.any(dim=1).all(), "the empty coalition is never evaluated: it is the base value"
        c = coalitions.double()
        return {KEY: c @ w + pair_bonus * c[:, 0] * c[:, 1]}

    return value


def test_additive_game_gives_each_player_its_weight():
    phi = shapley_values(game([1.0, -2.0, 0.5]), 3, {KEY: 0.0})[KEY]
    np.testing.assert_allclose(phi, [1.0, -2.0, 0.5], atol=1e-12)


def test_interaction_is_shared_equally_and_contributions_add_up_to_prediction_minus_base():
    base = 0.3
    phi = shapley_values(game([0.0, 0.0, 1.0], pair_bonus=2.0), 3, {KEY: base})[KEY]
    # the empty coalition is worth `base`, so each single player's first marginal is shifted by -base
    assert phi[0] == pytest.approx(phi[1])
    assert phi.sum() == pytest.approx(3.0 - base)
    exact_without_base = shapley_values(game([0.0, 0.0, 1.0], pair_bonus=2.0), 3, {KEY: 0.0})[KEY]
    np.testing.assert_allclose(exact_without_base, [1.0, 1.0, 1.0], atol=1e-12)


def test_sampled_values_add_up_exactly_and_approach_the_exact_ones():
    value = game([0.4, -1.0, 2.0, 0.1, 0.7], pair_bonus=1.5)
    exact = shapley_values(value, 5, {KEY: -0.2})[KEY]
    sampled = shapley_values(value, 5, {KEY: -0.2}, max_exact=2, n_permutations=3000, seed=1)[KEY]
    assert sampled.sum() == pytest.approx(exact.sum(), abs=1e-9)
    np.testing.assert_allclose(sampled, exact, atol=0.06)
    assert not np.allclose(sampled, exact, atol=1e-9)  # it did sample


class Tokens(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.layer = nn.Linear(3, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


def tiny_model(output: str) -> FusionModel:
    torch.manual_seed(0)
    names = ["a", "b", "c"]
    fuser = TransformerFuser({n: 8 for n in names}, d_model=16, n_heads=2, n_layers=1, dim_feedforward=16)
    heads = [GradeHead(16, classes=[1, 2, 3]), SurvivalHead(16), ResponseHead(16)]
    return FusionModel(
        {n: Tokens(8) for n in names}, {n: 8 for n in names}, fuser, heads, output=output
    ).eval()


def one_patient(present: dict[str, bool]) -> dict:
    return {
        n: {"present": torch.tensor([p]), "data": torch.randn(1, 3) if p else None}
        for n, p in present.items()
    }


@pytest.mark.parametrize("output", ["fused", "ensemble"])
def test_contributions_of_a_real_model_add_up_to_its_prediction(output):
    model = tiny_model(output)
    inputs = one_patient({"a": True, "b": True, "c": True})
    ctx = PatientContext("P1", model, dict(model.heads), inputs)
    with torch.no_grad():
        out = model(inputs)
    base = {key: 0.1 * i for i, key in enumerate(ctx.target_keys)}
    frame = modality_contributions(ctx, base)
    assert set(frame["modality"]) == {"a", "b", "c"}
    assert set(frame["target"]) == {
        "grade_prob_1",
        "grade_prob_2",
        "grade_prob_3",
        "survival_log_hazard",
        "response_logit",
    }
    for _, rows in frame.groupby(["head", "target"]):
        total = rows["contribution"].sum() + rows["base_value"].iloc[0]
        assert total == pytest.approx(rows["prediction"].iloc[0], abs=1e-5)
    assert frame.loc[frame["target"] == "response_logit", "prediction"].iloc[0] == pytest.approx(
        float(out["response"][0]), abs=1e-5
    )
    assert frame["contribution"].abs().min() > 0  # every modality matters a little in a random model


def test_a_missing_modality_gets_no_row_and_a_single_one_gets_everything():
    model = tiny_model("ensemble")
    ctx = PatientContext(
        "P2", model, {"survival": model.heads["survival"]}, one_patient({"a": False, "b": True, "c": False})
    )
    frame = modality_contributions(ctx, {("survival", "survival_log_hazard"): 0.25})
    assert list(frame["modality"]) == ["b"]
    row = frame.iloc[0]
    assert row["contribution"] == pytest.approx(row["prediction"] - 0.25)

    two = PatientContext(
        "P3", model, {"survival": model.heads["survival"]}, one_patient({"a": True, "b": False, "c": True})
    )
    frame = modality_contributions(two, {("survival", "survival_log_hazard"): 0.0})
    assert list(frame["modality"]) == ["a", "c"]


@pytest.mark.parametrize("output", ["fused", "ensemble"])
def test_varying_one_modality_predicts_as_the_whole_model_does(output):
    """targets_with keeps the other modalities' one-modality passes from the patient (computed once): the
    result must equal the model's own prediction on the varied inputs, and a missing modality stays out."""
    model = tiny_model(output)
    inputs = one_patient({"a": True, "b": False, "c": True})
    ctx = PatientContext("P4", model, dict(model.heads), inputs)
    variants = torch.randn(5, 3)
    got = ctx.targets_from_data("a", variants)
    batch = {
        "a": {"present": torch.ones(5, dtype=torch.bool), "data": variants},
        "b": {"present": torch.zeros(5, dtype=torch.bool), "data": None},
        "c": {"present": torch.ones(5, dtype=torch.bool), "data": inputs["c"]["data"].expand(5, 3)},
    }
    with torch.no_grad():
        expected = model(batch)
    torch.testing.assert_close(got[("survival", "survival_log_hazard")].detach(), expected["survival"])
    torch.testing.assert_close(got[("response", "response_logit")].detach(), expected["response"])
    probs = torch.stack([got[("grade", f"grade_prob_{k}")].detach() for k in (1, 2, 3)], dim=1)
    torch.testing.assert_close(probs, expected["grade"].softmax(dim=1))
