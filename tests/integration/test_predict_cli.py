"""fusion-predict: metrics keyed by what was scored (`predict/`), the patients the model trained on
flagged from salted hashes in the checkpoint, prediction columns named after the grade labels, and
checkpoints written before either change still predicting."""

from __future__ import annotations

import hashlib
import json
import logging

import numpy as np
import pandas as pd
import pytest
import torch

import fusion
from fusion.checkpoint import (
    EXPLAIN_BASE_KEY,
    PROVENANCE_KEY,
    TRAINING_PATIENTS_KEY,
    load_checkpoint,
    load_model,
    seen_in_training,
    training_patient_hashes,
)
from fusion.errors import ConfigError
from fusion.prediction import predict_manifest
from tests.integration.conftest import run_module

COLUMNS = ["patient_id", "grade_prob_1", "grade_prob_2", "grade_prob_3", "risk", "response_prob"]


def _with_readable(predictions: pd.DataFrame) -> list[str]:
    """COLUMNS with the survival probabilities and median after `risk`, then seen_in_training, model_id."""
    survival = [c for c in predictions.columns if c.startswith("survival_prob_")]
    assert len(survival) == 3, list(predictions.columns)
    return [*COLUMNS[:5], *survival, "survival_median", *COLUMNS[5:], "seen_in_training", "model_id"]


@pytest.fixture(scope="module")
def trained(trained_tabular):
    """A tiny model: its `TrainResult` and its test patient ids."""
    test = pd.read_csv(trained_tabular.output_dir / "predictions_test.csv", dtype={"patient_id": str})
    return trained_tabular, test["patient_id"].tolist()


def test_checkpoint_stores_salted_hashes_never_the_ids(trained, tiny_cohort):
    result, test_ids = trained
    ckpt = torch.load(result.best_checkpoint, map_location="cpu", weights_only=True)
    stored = ckpt["fusion"][TRAINING_PATIENTS_KEY]
    n_train = json.loads((result.output_dir / "metrics.json").read_text())["info"]["n_patients"]["train"]
    assert len(stored["sha256"]) == n_train and len(stored["salt"]) == 32
    manifest_ids = pd.read_csv(tiny_cohort, dtype={"patient_id": str})["patient_id"].tolist()
    seen = seen_in_training(ckpt, manifest_ids)
    train_ids = {p for p, s in zip(manifest_ids, seen, strict=True) if s}
    assert len(train_ids) == n_train and not train_ids & set(test_ids)
    # no training id in clear anywhere in the file (config, modality state, weights)
    raw = result.best_checkpoint.read_bytes()
    assert not [p for p in train_ids if p.encode() in raw]
    # the salt is random per run: the same patients hash differently in another checkpoint
    again = training_patient_hashes(sorted(train_ids))
    assert again["salt"] != stored["salt"] and not set(again["sha256"]) & set(stored["sha256"])


def test_predict_keys_metrics_as_predict_and_counts_training_patients(trained, tiny_cohort, tmp_path):
    result, test_ids = trained
    out = tmp_path / "pred"
    run = run_module(
        "fusion.cli.predict",
        f"ckpt_path={result.best_checkpoint}",
        f"data.manifest={tiny_cohort}",
        f"hydra.run.dir={out}",
        "evaluation.n_bootstrap=20",
    )
    assert run.returncode == 0, run.stderr[-4000:]
    metrics = json.loads((out / "metrics.json").read_text())
    scalar = [k for k in metrics if k not in ("ci95", "info", "provenance")]
    assert scalar and all(k.startswith("predict/") for k in scalar), scalar
    assert (
        metrics["predict/survival_uno_cindex"] is not None
    )  # the training reference came with the checkpoint
    assert metrics["ci95"] and all(k.startswith("predict/") for k in metrics["ci95"])
    n_train = json.loads((result.output_dir / "metrics.json").read_text())["info"]["n_patients"]["train"]
    assert metrics["info"]["n_seen_in_training"] == n_train
    predictions = pd.read_csv(out / "predictions.csv", dtype={"patient_id": str})
    assert list(predictions.columns) == _with_readable(predictions)
    assert predictions["seen_in_training"].sum() == n_train
    assert not predictions.loc[predictions["patient_id"].isin(test_ids), "seen_in_training"].any()
    n_manifest = len(predictions)
    assert f"{n_train} of the {n_manifest} manifest patients were in the checkpoint's training split" in (
        run.stdout + run.stderr
    )
    report = (out / "report" / "report.md").read_text()
    n_scored = metrics["info"]["n_patients"]["predict"]
    assert f"**{n_train} of these {n_scored} patients were in the checkpoint's training split**" in report
    assert "are optimistic" in report
    assert "| `predict/grade_auroc` |" in report and "`test/" not in report


def test_predict_on_held_out_patients_counts_none_seen(trained, cohort_copy, tmp_path, caplog):
    result, test_ids = trained
    manifest = pd.read_csv(cohort_copy, dtype={"patient_id": str})
    manifest[manifest["patient_id"].isin(test_ids)].to_csv(cohort_copy, index=False)
    out = tmp_path / "pred"
    with caplog.at_level(logging.WARNING, logger="fusion.prediction"):
        frame = predict_manifest(
            result.best_checkpoint,
            cohort_copy,
            output=out / "predictions.csv",
            evaluation={"n_bootstrap": 0},
            report_dir=out,
        )
    assert frame["seen_in_training"].tolist() == [False] * len(test_ids)
    assert not [r for r in caplog.records if "training split" in r.getMessage()]
    assert json.loads((out / "metrics.json").read_text())["info"]["n_seen_in_training"] == 0
    assert (
        f"None of these {len(test_ids)} patients were in the checkpoint's training split"
        in (out / "report" / "report.md").read_text()
    )


def test_checkpoint_from_before_still_predicts_with_label_named_columns(
    trained, tiny_cohort, tmp_path, caplog
):
    """A checkpoint written before this change: no training-patient hashes, and nothing in it depends
    on the prediction column names (weights and config name the classes, never the columns)."""
    result, _ = trained
    ckpt = torch.load(result.best_checkpoint, map_location="cpu", weights_only=True)
    del ckpt["fusion"][TRAINING_PATIENTS_KEY]
    del ckpt["fusion"][EXPLAIN_BASE_KEY]  # kept since issue 18, named by the explained targets (grade_prob_k)
    del ckpt["fusion"][PROVENANCE_KEY]  # kept since issue 19
    assert "grade_prob" not in json.dumps(ckpt["fusion"]) + " ".join(ckpt["state_dict"])
    old = tmp_path / "old.ckpt"
    torch.save(ckpt, old)
    out = tmp_path / "pred"
    with caplog.at_level(logging.WARNING, logger="fusion.prediction"):
        predict_manifest(
            old, tiny_cohort, output=out / "predictions.csv", evaluation={"n_bootstrap": 0}, report_dir=out
        )
    predictions = pd.read_csv(out / "predictions.csv")
    assert list(predictions.columns) == _with_readable(predictions)
    assert predictions["seen_in_training"].isna().all()  # unknown, not False
    assert predictions[COLUMNS[1:4]].sum(axis=1).round(5).eq(1).all()
    assert any("is unknown" in r.getMessage() for r in caplog.records)
    assert json.loads((out / "metrics.json").read_text())["info"]["n_seen_in_training"] is None
    assert "**Training patients: unknown.**" in (out / "report" / "report.md").read_text()


def test_predict_without_labels_writes_only_predictions(trained, cohort_copy, tmp_path):
    result, _ = trained
    manifest = pd.read_csv(cohort_copy)
    manifest[["grade", "survival_time", "survival_event", "response"]] = None
    manifest.to_csv(cohort_copy, index=False)
    out = tmp_path / "pred"
    predict_manifest(
        result.best_checkpoint,
        cohort_copy,
        output=out / "predictions.csv",
        evaluation={"n_bootstrap": 20},
        report_dir=out,
    )
    assert (out / "predictions.csv").exists()
    assert not (out / "metrics.json").exists() and not (out / "report").exists()


def test_predictions_name_their_model_and_carry_provenance(trained, tiny_cohort, tmp_path):
    """model_id = SHA-256 of the final best checkpoint (after the references and base values were added),
    in training's predictions_test.csv and fusion-predict's predictions.csv, with the sidecar; the
    checkpoint and metrics.json hold the provenance; no patient id in any of it."""
    result, test_ids = trained
    model_id = hashlib.sha256(result.best_checkpoint.read_bytes()).hexdigest()
    test_predictions = pd.read_csv(result.output_dir / "predictions_test.csv")
    assert set(test_predictions["model_id"]) == {model_id}
    sidecar = json.loads((result.output_dir / "predictions_test.csv.provenance.json").read_text())
    metrics = json.loads((result.output_dir / "metrics.json").read_text())
    stored = torch.load(result.best_checkpoint, map_location="cpu", weights_only=True)["fusion"][
        PROVENANCE_KEY
    ]
    assert sidecar == metrics["provenance"] and sidecar["model_id"] == model_id
    assert sidecar["n_patients"] == metrics["info"]["n_patients"] == stored["n_patients"]
    assert sidecar["config_sha256"] == stored["config_sha256"] and len(stored["config_sha256"]) == 64
    assert (
        stored["time_units"] == {"survival": "unspecified"} and stored["input_files"]["n_files"] == 2
    )  # genomics + EHR tables
    out = tmp_path / "pred"
    frame = predict_manifest(result.best_checkpoint, tiny_cohort, output=out / "predictions.csv")
    assert set(frame["model_id"]) == {model_id}
    run = json.loads((out / "predictions.csv.provenance.json").read_text())
    assert run["model_id"] == model_id and run["model"] == stored and run["n_patients"] == {"predict": 40}
    probs = frame[[c for c in frame.columns if c.startswith("survival_prob_")]].to_numpy()
    assert ((probs > 0) & (probs < 1)).all() and (np.diff(probs, axis=1) <= 0).all()  # falls with time
    everything = json.dumps([sidecar, run, metrics["provenance"]])
    assert not [p for p in test_ids if p in everything]


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        (
            lambda c: c["fusion"]["config"]["modality"]["ehr"].update(_target_="fusion.gone.EHRModality"),
            "cannot be rebuilt: modality 'ehr': ImportError: Error loading 'fusion.gone.EHRModality'",
        ),
        (
            lambda c: c["fusion"]["modality_state"]["genomics"].pop("mean"),
            "modality 'genomics': its stored fitted state (normalisers, vocabularies): KeyError: 'mean'",
        ),
        (
            lambda c: c["fusion"]["config"]["head"]["grade"].update(unknown_option=1),
            "head 'grade': TypeError: GradeHead.__init__() got an unexpected keyword argument",
        ),
        (
            lambda c: c["state_dict"].pop(next(k for k in c["state_dict"] if ".heads.survival." in k)),
            "weights do not fit the model this fusion rebuilds: 1 weight(s) missing, first 'model.heads."
            "survival.",
        ),
    ],
    ids=["class-gone", "fitted-state", "head-config", "weights"],
)
def test_a_checkpoint_that_cannot_be_rebuilt_is_refused_with_why(trained, breakage, expected):
    result, _ = trained
    checkpoint = load_checkpoint(result.best_checkpoint)
    breakage(checkpoint)
    with pytest.raises(ConfigError) as refused:
        load_model(checkpoint)
    message = str(refused.value)
    assert expected in message and "\n" not in message, message
    assert f"or predict with fusion {fusion.__version__}" in message  # the version that wrote it
