"""Table feature attributions (Integrated Gradients): genes, gene sets and EHR columns.

Tiny real models (the modalities' own encoders fitted on a few synthetic rows, a TransformerFuser, the
real heads); where a test needs a known answer, the encoder's weights are cut so that the output depends
on one gene / gene set / column only, and that feature must come first.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from fusion.attribution.context import PatientContext
from fusion.attribution.ehr_columns import collated
from fusion.attribution.features import COLUMNS, feature_attributions, feature_scores, is_gene_set
from fusion.attribution.integrated import integrate, target_matrix
from fusion.fusers.transformer import TransformerFuser
from fusion.heads.grade import GradeHead
from fusion.heads.response import ResponseHead
from fusion.heads.survival import SurvivalHead
from fusion.modalities.ehr import EHRModality
from fusion.modalities.genomics import GenomicsModality
from fusion.modalities.table import TableModality
from fusion.model import FusionModel

GENES = [f"G{i}" for i in range(8)]
N_TARGETS = 5  # grade_prob_1..3, survival_log_hazard, response_logit


def gene_table(n: int = 16) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.gamma(2.0, 3.0, size=(n, len(GENES))).round(3), columns=GENES)
    frame.index = pd.Index([f"P{i:02d}" for i in range(n)], name="patient_id")
    return frame


def ehr_table(n: int = 16) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {
            "age": rng.integers(40, 80, n).astype(float),
            "stage": [["I", "II", "III", "IV"][i % 4] for i in range(n)],
            "smoker": ["yes" if i % 3 else "no" for i in range(n)],
            "sex": ["F" if i % 2 else "M" for i in range(n)],
        },
        index=pd.Index([f"P{i:02d}" for i in range(n)], name="patient_id"),
    )
    frame.loc["P01", "age"] = np.nan  # the patient with a missing number
    frame.loc["P03", "sex"] = None  # the patient with a missing category
    return frame


def genomics(pathways: dict[str, list[str]] | None = None) -> GenomicsModality:
    modality = GenomicsModality(
        genes=GENES, embed_dim=8, hidden=(8,), dropout=0.0, min_group=2, other_token=pathways is not None
    )
    table = gene_table()
    modality.fit([modality.load(table.loc[pid]) for pid in table.index])
    if pathways is not None:  # as a checkpoint restores them (the GMT restricted to the selected genes)
        modality.load_state_dict({**modality.state_dict(), "pathways": pathways})
    return modality


def ehr(encoder: str) -> EHRModality:
    modality = EHRModality(
        encoder=encoder,
        embed_dim=8,
        dropout=0.0,
        min_group=2,
        ordinal={"stage": ["I", "II", "III", "IV"]},
        boolean=["smoker"],
    )
    table = modality.select_columns(ehr_table())
    modality.fit([modality.load(table.loc[pid]) for pid in table.index])
    return modality


def model_of(modalities: dict[str, TableModality]) -> FusionModel:
    torch.manual_seed(0)
    dims = {name: m.out_dim for name, m in modalities.items()}
    fuser = TransformerFuser(
        dims, d_model=16, n_heads=2, n_layers=1, dim_feedforward=32, dropout=0.0, modality_dropout=0.0
    )
    heads = [GradeHead(16, classes=[1, 2, 3]), SurvivalHead(16), ResponseHead(16)]
    encoders = {name: m.build_encoder() for name, m in modalities.items()}
    return FusionModel(encoders, dims, fuser, heads).eval()


def context(model: FusionModel, modalities: dict[str, TableModality], pid: str) -> PatientContext:
    rows = {"genomics": gene_table().loc[pid], "ehr": ehr_table().loc[pid]}
    inputs = {
        name: {
            "present": torch.tensor([True]),
            "data": m.collate([m.transform(m.load(rows[name]), train=False)]),
        }
        for name, m in modalities.items()
    }
    return PatientContext(pid, model, dict(model.heads), inputs, {name: rows[name] for name in modalities})


def setup(encoder: str = "tokens", pathways: dict[str, list[str]] | None = None, pid: str = "P05"):
    modalities: dict[str, TableModality] = {"genomics": genomics(pathways), "ehr": ehr(encoder)}
    model = model_of(modalities)
    return modalities, model, lambda: context(model, modalities, pid)


def baseline_gap(ctx: PatientContext, name: str, baseline: object) -> np.ndarray:
    """f(x) - f(baseline) per target, computed independently of the attributions."""
    with torch.no_grad():
        base = ctx.targets_from_data(name, baseline)
    prediction = ctx.prediction()
    return np.array([prediction[key] - float(base[key][0]) for key in ctx.target_keys])


def top_feature(frame: pd.DataFrame, target: str) -> str:
    rows = frame[frame["target"] == target]
    return str(rows.loc[rows["attribution"].abs().idxmax(), "feature"])


# ----------------------------------------------------------------------------------------------- genes
def test_rows_columns_and_raw_values():
    modalities, _, make = setup()
    ctx = make()
    frame = feature_attributions(ctx, "genomics", modalities["genomics"], n_steps=8)
    assert list(frame.columns) == COLUMNS
    assert len(frame) == N_TARGETS * len(GENES)
    assert frame["patient_id"].eq("P05").all() and frame["modality"].eq("genomics").all()
    assert [t for _, t in ctx.target_keys] == list(dict.fromkeys(frame["target"]))
    first = frame[frame["target"] == "grade_prob_1"].set_index("feature")
    raw = gene_table().loc["P05"]
    for gene in GENES:  # the cell as read from the table, not its log1p z-score
        assert first.loc[gene, "value"] == pytest.approx(raw[gene])


def test_the_one_gene_the_model_reads_comes_first():
    modalities, model, make = setup()
    with torch.no_grad():
        first = model.encoders["genomics"].net[0].weight
        first[:, [i for i in range(len(GENES)) if i != 5]] = 0.0  # only G5 reaches the embedding
    frame = feature_attributions(make(), "genomics", modalities["genomics"], n_steps=16)
    for target in frame["target"].unique():
        assert top_feature(frame, target) == "G5"
        others = frame[(frame["target"] == target) & (frame["feature"] != "G5")]
        assert others["attribution"].abs().max() < 1e-7
    assert frame.loc[frame["feature"] == "G5", "attribution"].abs().min() > 1e-5


def test_gene_attributions_add_up_to_the_prediction_minus_the_training_mean_patient():
    modalities, _, make = setup()
    ctx = make()
    frame = feature_attributions(ctx, "genomics", modalities["genomics"], n_steps=32)
    sums = frame.groupby("target", sort=False)["attribution"].sum().to_numpy()
    gap = baseline_gap(ctx, "genomics", torch.zeros(1, len(GENES)))
    assert np.abs(gap).max() > 1e-3  # a real change to explain
    np.testing.assert_allclose(sums, gap, atol=1e-3 + 0.01 * np.abs(gap).max())
    (scores,) = feature_scores(ctx, "genomics", modalities["genomics"], n_steps=32)
    assert np.abs(scores.delta).max() < 1e-3 + 0.01 * np.abs(gap).max()


def test_pathway_tokens_name_their_gene_set_and_the_set_the_model_reads_comes_first():
    sets = {"PROLIF": ["G0", "G1", "G2"], "SENS": ["G3", "G4"]}  # G5..G7: the "other genes" token
    modalities, model, make = setup(pathways=sets)
    encoder = model.encoders["genomics"]
    assert encoder.set_names == ["PROLIF", "SENS", "other_genes"]
    with torch.no_grad():  # only SENS's token depends on the genes
        encoder.w1[[0, 2]] = 0.0
    ctx = make()
    frame = feature_attributions(ctx, "genomics", modalities["genomics"], n_steps=32)
    features = list(dict.fromkeys(frame["feature"]))
    assert features == [*GENES, "set:PROLIF", "set:SENS", "set:other_genes"]
    sets_only = frame[frame["feature"].map(is_gene_set)]
    assert sets_only["value"].isna().all()
    gap = baseline_gap(ctx, "genomics", torch.zeros(1, len(GENES)))
    for k, target in enumerate(dict.fromkeys(frame["target"])):
        assert top_feature(sets_only, target) == "set:SENS"
        genes = frame[(frame["target"] == target) & ~frame["feature"].map(is_gene_set)]
        assert set(genes.loc[genes["attribution"].abs() > 1e-7, "feature"]) <= {"G3", "G4"}
        # genes and gene sets: two views of the same change, each complete
        tol = 1e-3 + 0.01 * np.abs(gap).max()
        assert sets_only[sets_only["target"] == target]["attribution"].sum() == pytest.approx(gap[k], abs=tol)
        assert genes["attribution"].sum() == pytest.approx(gap[k], abs=tol)


# ------------------------------------------------------------------------------------------------- EHR
def ehr_baseline() -> dict[str, torch.Tensor]:
    """Numbers at 0 on the model scale (not missing), categories at the missing level (index 0)."""
    return {
        "num": torch.zeros(1, 3),
        "num_missing": torch.zeros(1, 3, dtype=torch.bool),
        "cat": torch.zeros(1, 1).long(),
    }


@pytest.mark.parametrize("encoder", ["tokens", "mlp"])
def test_ehr_one_row_per_column_raw_values_and_completeness(encoder):
    modalities, _, make = setup(encoder)
    ctx = make()
    # 128 steps: the mlp encoder's ReLU kinks slow the quadrature down on this tiny, small-output model
    frame = feature_attributions(ctx, "ehr", modalities["ehr"], n_steps=128)
    assert list(dict.fromkeys(frame["feature"])) == ["age", "stage", "smoker", "sex"]
    first = frame[frame["target"] == "response_logit"].set_index("feature")
    raw = ehr_table().loc["P05"]
    assert [first.loc[c, "value"] for c in ("age", "stage", "smoker", "sex")] == [
        raw["age"],
        raw["stage"],
        raw["smoker"],
        raw["sex"],
    ]
    sums = frame.groupby("target", sort=False)["attribution"].sum().to_numpy()
    gap = baseline_gap(ctx, "ehr", ehr_baseline())
    assert np.abs(gap).max() > 1e-3
    np.testing.assert_allclose(sums, gap, atol=1e-3 + 0.01 * np.abs(gap).max())


def test_ehr_tokens_the_one_categorical_column_the_model_reads_comes_first():
    modalities, model, make = setup("tokens")
    tokenizer = model.encoders["ehr"].tokenizer
    with torch.no_grad():  # every token constant but sex's
        for p in (tokenizer.num_weight, tokenizer.num_bias, tokenizer.num_missing, tokenizer.cat_bias):
            p.zero_()
    frame = feature_attributions(make(), "ehr", modalities["ehr"], n_steps=16)
    for target in frame["target"].unique():
        assert top_feature(frame, target) == "sex"
        others = frame[(frame["target"] == target) & (frame["feature"] != "sex")]
        assert others["attribution"].abs().max() < 1e-7
    assert frame.loc[frame["feature"] == "sex", "attribution"].abs().min() > 1e-5


@pytest.mark.parametrize("column", ["age", "smoker", "sex"])
def test_ehr_mlp_the_one_column_the_model_reads_comes_first(column):
    modalities, model, make = setup("mlp")
    encoder = model.encoders["ehr"]
    n_num, cat_dim = 3, encoder.embeddings[0].embedding_dim
    own = {"age": [0, 3], "smoker": [2, 5], "sex": list(range(6, 6 + cat_dim))}[column]
    with torch.no_grad():  # the MLP's input layer reads that column's dims only
        keep = torch.zeros(2 * n_num + cat_dim, dtype=torch.bool)
        keep[own] = True
        encoder.mlp[0].weight[:, ~keep] = 0.0
    frame = feature_attributions(make(), "ehr", modalities["ehr"], n_steps=16)
    for target in frame["target"].unique():
        assert top_feature(frame, target) == column
        others = frame[(frame["target"] == target) & (frame["feature"] != column)]
        assert others["attribution"].abs().max() < 1e-7


@pytest.mark.parametrize("encoder", ["tokens", "mlp"])
def test_ehr_missing_cells_are_attributed_with_an_empty_value(encoder):
    modalities, _, make_age = setup(encoder, pid="P01")  # age missing
    frame = feature_attributions(make_age(), "ehr", modalities["ehr"], n_steps=16)
    age = frame[frame["feature"] == "age"]
    assert age["value"].isna().all()
    assert age["attribution"].abs().max() > 1e-5  # missing vs the median: information, not silence
    assert frame[frame["feature"] != "age"]["value"].notna().all()
    modalities, _, make_sex = setup(encoder, pid="P03")  # sex missing: its own baseline
    frame = feature_attributions(make_sex(), "ehr", modalities["ehr"], n_steps=16)
    sex = frame[frame["feature"] == "sex"]
    assert sex["value"].isna().all()
    assert sex["attribution"].abs().max() < 1e-7


# ------------------------------------------------------------------------------------------ the options
def test_values_false_leaves_the_value_column_empty():
    modalities, _, make = setup()
    ctx = make()
    for name in ("genomics", "ehr"):
        with_values = feature_attributions(ctx, name, modalities[name], n_steps=8)
        without = feature_attributions(ctx, name, modalities[name], n_steps=8, values=False)
        assert list(without.columns) == COLUMNS
        assert without["value"].isna().all() and with_values["value"].notna().all()
        np.testing.assert_allclose(without["attribution"], with_values["attribution"])


def test_another_kind_of_table_gets_no_rows():
    class Other(TableModality):
        def load(self, ref):
            return ref

        def build_encoder(self):
            return torch.nn.Identity()

        @property
        def out_dim(self):
            return 1

    modalities, _, make = setup()
    frame = feature_attributions(make(), "genomics", Other("other"))
    assert frame.empty and list(frame.columns) == COLUMNS


def test_works_under_no_grad_and_leaves_grad_mode_alone():
    modalities, _, make = setup()
    ctx = make()
    with torch.no_grad():
        frame = feature_attributions(ctx, "genomics", modalities["genomics"], n_steps=8)
        assert not torch.is_grad_enabled()
    assert frame["attribution"].abs().sum() > 0 and math.isfinite(frame["attribution"].sum())


def test_token_attributions_equal_captums_layer_integrated_gradients_on_the_encoder():
    modalities, model, make = setup("tokens", pathways={"A": ["G0", "G1", "G2"], "B": ["G3", "G4", "G5"]})
    ctx = make()
    keys = ctx.target_keys
    data = ctx.inputs["ehr"]["data"]
    inputs = (data["num"], data["num_missing"], data["cat"])
    baselines = tuple(torch.zeros_like(t) for t in inputs)
    forward = target_matrix(ctx, "ehr", keys, collated)
    captum_ehr, _ = integrate(
        forward, inputs, baselines, len(keys), 16, layer=model.encoders["ehr"].tokenizer
    )
    (ours,) = feature_scores(ctx, "ehr", modalities["ehr"], n_steps=16)
    np.testing.assert_allclose(ours.scores, captum_ehr.sum(-1).numpy(), atol=1e-6)
    x = ctx.inputs["genomics"]["data"]
    genes = target_matrix(ctx, "genomics", keys)
    captum_sets, _ = integrate(
        genes, (x,), (torch.zeros_like(x),), len(keys), 16, layer=model.encoders["genomics"]
    )
    _, sets = feature_scores(ctx, "genomics", modalities["genomics"], n_steps=16)
    np.testing.assert_allclose(sets.scores, captum_sets.sum(-1).numpy(), atol=1e-6)
