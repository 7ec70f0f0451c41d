"""fusion-similar on a tiny model: training stores the reference set beside the best checkpoint (training
patients only, plain values), the CLI writes neighbours.csv and neighbour_summary.csv as documented, a
training patient never finds itself, and bad input is one line: no reference set, k too large."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
import torch

from fusion.errors import ConfigError
from fusion.retrieval.reference_set import FILENAME
from fusion.similar import similar_manifest
from tests.integration.conftest import one_error_line, run_module


@pytest.fixture(scope="module")
def trained(trained_tabular):
    return trained_tabular


def test_training_stores_its_training_patients_beside_the_best_checkpoint(trained):
    stored = torch.load(trained.best_checkpoint.parent / FILENAME, weights_only=True)
    n_train = json.loads((trained.output_dir / "metrics.json").read_text())["info"]["n_patients"]["train"]
    assert len(stored["patient_ids"]) == n_train == stored["embeddings"].shape[0]
    assert stored["embeddings"].dtype == torch.float32
    test = pd.read_csv(trained.output_dir / "predictions_test.csv", dtype={"patient_id": str})
    assert not set(stored["patient_ids"]) & set(test["patient_id"])  # training patients only
    assert set(stored["labels"]) == {"grade", "survival_time", "survival_event", "response"}
    assert stored["checkpoint"] == trained.best_checkpoint.name


def test_the_cli_writes_the_neighbours_and_their_summary(trained, tiny_cohort, tmp_path):
    run = run_module(
        "fusion.cli.similar",
        f"ckpt_path={trained.best_checkpoint}",
        f"data.manifest={tiny_cohort}",
        "k=3",
        f"out={tmp_path}",
        f"hydra.run.dir={tmp_path / 'hydra'}",
        "evaluation.horizons=[12,24]",
    )
    assert run.returncode == 0, run.stderr[-4000:]
    neighbours = pd.read_csv(tmp_path / "neighbours.csv", dtype={"patient_id": str, "neighbour_id": str})
    assert list(neighbours.columns) == [
        "patient_id",
        "rank",
        "neighbour_id",
        "similarity",
        "grade",
        "survival_time",
        "survival_event",
        "response",
    ]
    manifest = pd.read_csv(tiny_cohort, dtype=str, keep_default_na=False)
    assert neighbours["patient_id"].drop_duplicates().tolist() == manifest["patient_id"].tolist()
    found = neighbours.dropna(subset=["neighbour_id"])
    assert (found["patient_id"] != found["neighbour_id"]).all()  # training patients never find themselves
    assert found.groupby("patient_id")["rank"].apply(list).map(lambda r: r == [1, 2, 3]).all()
    reference = set(torch.load(trained.best_checkpoint.parent / FILENAME, weights_only=True)["patient_ids"])
    assert set(found["neighbour_id"]) <= reference
    summary = pd.read_csv(tmp_path / "neighbour_summary.csv", dtype={"patient_id": str})
    for column in ("km_median_survival", "km_survival_12", "km_survival_24", "n_events", "response_rate"):
        assert column in summary.columns
    assert {"grade_1", "grade_2", "grade_3", "mean_similarity", "n_response_known"} <= set(summary.columns)


def test_a_checkpoint_without_a_reference_set_says_how_to_get_one(trained, tiny_cohort, tmp_path):
    alone = tmp_path / "elsewhere" / trained.best_checkpoint.name
    alone.parent.mkdir()
    shutil.copy(trained.best_checkpoint, alone)
    run = run_module(
        "fusion.cli.similar",
        f"ckpt_path={alone}",
        f"data.manifest={tiny_cohort}",
        f"out={tmp_path}",
        f"hydra.run.dir={tmp_path / 'hydra'}",
    )
    line = one_error_line(run)
    assert "no reference set" in line and "retrain" in line and "reference=MANIFEST" in line
    # built from a labelled cohort with this checkpoint instead, and saved for reuse
    result = similar_manifest(alone, tiny_cohort, k=2, output=tmp_path / "built", reference=tiny_cohort)
    assert result.reference_path == tmp_path / "built" / FILENAME and result.reference_path.exists()
    assert len(result.summary) == len(pd.read_csv(tiny_cohort))
    with pytest.raises(ConfigError, match="the reference set holds 40 patients"):
        similar_manifest(alone, tiny_cohort, k=41, output=tmp_path / "k", reference=tiny_cohort)


def test_predict_writes_the_neighbours_beside_the_predictions(trained, tiny_cohort, tmp_path):
    run = run_module(
        "fusion.cli.predict",
        f"ckpt_path={trained.best_checkpoint}",
        f"data.manifest={tiny_cohort}",
        "retrieval.k=4",
        f"output={tmp_path / 'predictions.csv'}",
        f"hydra.run.dir={tmp_path / 'hydra'}",
        "evaluation.n_bootstrap=5",
    )
    assert run.returncode == 0, run.stderr[-4000:]
    neighbours = pd.read_csv(tmp_path / "neighbours.csv", dtype={"patient_id": str, "neighbour_id": str})
    predictions = pd.read_csv(tmp_path / "predictions.csv", dtype={"patient_id": str})
    assert neighbours["patient_id"].drop_duplicates().tolist() == predictions["patient_id"].tolist()
    assert neighbours.groupby("patient_id")["rank"].max().eq(4).all()
    summary = pd.read_csv(tmp_path / "neighbour_summary.csv", dtype={"patient_id": str})
    # the neighbours' Kaplan–Meier is read at the horizons of the predictions' survival probabilities
    horizons = {
        c.removeprefix("survival_prob_") for c in predictions.columns if c.startswith("survival_prob_")
    }
    assert horizons and horizons == {
        c.removeprefix("km_survival_") for c in summary if c.startswith("km_survival_")
    }


def test_predict_with_k_larger_than_the_reference_set_fails_before_predicting(trained, tiny_cohort, tmp_path):
    run = run_module(
        "fusion.cli.predict",
        f"ckpt_path={trained.best_checkpoint}",
        f"data.manifest={tiny_cohort}",
        "retrieval.k=500",
        f"output={tmp_path / 'predictions.csv'}",
        f"hydra.run.dir={tmp_path / 'hydra'}",
    )
    assert "k=500" in one_error_line(run) and not (tmp_path / "predictions.csv").exists()
