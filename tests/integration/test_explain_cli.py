"""fusion-explain on a tiny model of every modality: the files the issue names, contributions that add up to
the prediction from the training-split base value stored in the checkpoint, and one-line errors for what the
checkpoint or the manifest lacks."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import fusion
from fusion.checkpoint import EXPLAIN_BASE_KEY
from fusion.prediction import predict_manifest
from fusion.training import run_training
from tests.integration.conftest import one_error_line, run_module, tiny_overrides


@pytest.fixture(scope="module")
def trained(tiny_cohort, tmp_path_factory):
    cfg = fusion.compose([f"data.manifest={tiny_cohort}", *tiny_overrides("evaluation.n_bootstrap=10")])
    return run_training(cfg, tmp_path_factory.mktemp("explain_run"))


@pytest.fixture(scope="module")
def explained(trained, tiny_cohort, tmp_path_factory):
    """fusion-explain of three patients, one of whom lacks some modalities."""
    manifest = pd.read_csv(tiny_cohort, dtype=str, keep_default_na=False)
    partial = manifest[(manifest[["ct", "mri", "pet", "histology"]] == "").any(axis=1)]["patient_id"]
    full = manifest[(manifest[["ct", "mri", "pet", "histology"]] != "").all(axis=1)]["patient_id"]
    patients = [*full.iloc[:2], partial.iloc[0]]
    out = tmp_path_factory.mktemp("explained")
    run = run_module(
        "fusion.cli.explain",
        f"ckpt_path={trained.best_checkpoint}",
        f"data.manifest={tiny_cohort}",
        f"patients=[{','.join(patients)}]",
        f"out={out}",
        f"hydra.run.dir={out / 'hydra'}",
        "ig_steps=8",
    )
    assert run.returncode == 0, run.stderr[-4000:]
    return out, patients


def test_the_checkpoint_stores_each_targets_training_split_mean(trained):
    stored = torch.load(trained.best_checkpoint, map_location="cpu", weights_only=True)["fusion"][
        EXPLAIN_BASE_KEY
    ]
    assert set(stored) == {"grade", "survival", "response"}
    assert set(stored["grade"]) == {"grade_prob_1", "grade_prob_2", "grade_prob_3"}
    assert sum(stored["grade"].values()) == pytest.approx(1.0, abs=1e-5)  # a mean of probabilities
    assert set(stored["survival"]) == {"survival_log_hazard"} and set(stored["response"]) == {
        "response_logit"
    }


def test_contributions_add_up_to_the_prediction_from_the_stored_base(explained, trained, tiny_cohort):
    out, patients = explained
    frame = pd.read_csv(out / "modality_contributions.csv", dtype={"patient_id": str})
    assert list(frame.columns) == [
        "patient_id",
        "head",
        "target",
        "modality",
        "contribution",
        "base_value",
        "prediction",
    ]
    assert set(frame["patient_id"]) == set(patients)
    for _, rows in frame.groupby(["patient_id", "head", "target"]):
        assert rows["contribution"].sum() + rows["base_value"].iloc[0] == pytest.approx(
            rows["prediction"].iloc[0], abs=1e-4
        )
    stored = torch.load(trained.best_checkpoint, map_location="cpu", weights_only=True)["fusion"][
        EXPLAIN_BASE_KEY
    ]
    base = frame.set_index("target")["base_value"].groupby(level=0).first()
    assert base["survival_log_hazard"] == pytest.approx(stored["survival"]["survival_log_hazard"])
    # the prediction is fusion-predict's: the response probability is the sigmoid of the explained logit
    predicted = predict_manifest(trained.best_checkpoint, tiny_cohort).set_index("patient_id")
    logits = frame[frame["target"] == "response_logit"].groupby("patient_id")["prediction"].first()
    explained_prob = 1 / (1 + np.exp(-logits))
    predicted_prob = predicted.loc[logits.index, "response_prob"]
    np.testing.assert_allclose(explained_prob.to_numpy(), predicted_prob.to_numpy(), atol=1e-4)
    # only present modalities have a row: the partial patient has fewer
    per_patient = frame.groupby("patient_id")["modality"].nunique()
    assert per_patient[patients[2]] < per_patient[patients[0]] == 6


def test_every_file_the_issue_names_is_written(explained):
    out, patients = explained
    features = pd.read_csv(out / "features.csv", dtype={"patient_id": str})
    assert list(features.columns) == [
        "patient_id",
        "head",
        "target",
        "modality",
        "feature",
        "value",
        "attribution",
    ]
    assert {"genomics", "ehr"} <= set(features["modality"])
    assert {"age", "stage", "ldh"} <= set(features.loc[features["modality"] == "ehr", "feature"])
    for pid in patients[:2]:
        tiles = pd.read_csv(out / "tiles" / f"{pid}.csv")
        assert list(tiles.columns[:6]) == ["tile", "slide_index", "x", "y", "attention", "attribution"]
        assert tiles["tile"].str.endswith(".png").all()
        for modality in ("ct", "mri", "pet"):
            nifti = out / "imaging" / f"{pid}_{modality}_survival.nii.gz"
            assert nib.load(nifti).get_fdata().max() > 0
            Image.open(nifti.with_suffix("").with_suffix(".png")).verify()
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary.columns) == ["head", "modality", "mean_abs_contribution", "n_patients"]
    assert set(summary["head"]) == {"grade", "survival", "response"}
    top = pd.read_csv(out / "top_features.csv")
    assert (top.groupby(["head", "modality"])["rank"].min() == 1).all()
    report = (out / "report.md").read_text()
    assert "training split" in report and "Top features" in report
    Image.open(out / "summary.png").verify()


def test_cohort_files_and_report_hold_no_patient_value(explained, tiny_cohort):
    out, patients = explained
    ehr = pd.read_csv(tiny_cohort.parent / "ehr.csv", dtype={"patient_id": str}).set_index("patient_id")
    values = {str(v) for v in ehr.loc[patients[0], ["ldh"]].dropna()}
    for name in ("summary.csv", "top_features.csv", "report.md"):
        text = (out / name).read_text()
        assert not [v for v in values if v in text], name
        assert not [p for p in patients if p in text], name


def test_unknown_heads_patients_and_modalities_are_one_line_errors(trained, tiny_cohort, tmp_path):
    common = [
        f"ckpt_path={trained.best_checkpoint}",
        f"data.manifest={tiny_cohort}",
        f"hydra.run.dir={tmp_path}",
    ]
    line = one_error_line(run_module("fusion.cli.explain", *common, "heads=[stage]"))
    assert "no head 'stage'" in line and "grade, survival, response" in line
    line = one_error_line(run_module("fusion.cli.explain", *common, "patients=[P0001,P9999]"))
    assert "'P9999'" in line and "not in the manifest" in line
    line = one_error_line(run_module("fusion.cli.explain", *common, "modalities=[rna]"))
    assert "without 'rna'" in line


def test_a_single_modality_patient_gets_the_whole_difference(trained, tiny_cohort, tmp_path):
    """A manifest of one patient whose only input is the EHR row (no files, no genes)."""
    ehr = pd.read_csv(tiny_cohort.parent / "ehr.csv", dtype={"patient_id": str})
    pid = ehr["patient_id"].iloc[0]
    manifest = pd.read_csv(tiny_cohort, dtype=str, keep_default_na=False)
    row = manifest[manifest["patient_id"] == pid].copy()
    row[["ct", "mri", "pet", "histology", "ct_mask"]] = ""
    row.to_csv(tmp_path / "manifest.csv", index=False)
    ehr[ehr["patient_id"] == pid].to_csv(tmp_path / "ehr.csv", index=False)
    genes = pd.read_csv(tiny_cohort.parent / "genomics.csv", dtype={"patient_id": str})
    genes.iloc[:0].to_csv(tmp_path / "genomics.csv", index=False)  # the genes table, without this patient
    result = fusion.explain(
        trained.best_checkpoint, tmp_path / "manifest.csv", out=tmp_path / "out", maps=False
    )
    rows = result.contributions
    assert set(rows["modality"]) == {"ehr"} and set(rows["patient_id"]) == {pid}
    assert np.allclose(rows["contribution"], rows["prediction"] - rows["base_value"])
    assert set(result.features["modality"]) == {"ehr"}
