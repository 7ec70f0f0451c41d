"""fusion-cv folds and summary; fusion-demo-data writes a cohort that validates."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from fusion.cross_validation import summarise
from tests.integration.conftest import run_module, tiny_overrides


def test_cv_runs_every_fold_and_tests_each_patient_once(tiny_cohort, tmp_path):
    result = run_module(
        "fusion.cli.cv",
        f"data.manifest={tiny_cohort}",
        f"hydra.run.dir={tmp_path}",
        "cv.folds=3",
        *tiny_overrides("modality=[genomics,ehr]", "trainer.max_epochs=1"),
    )
    assert result.returncode == 0, result.stderr[-4000:]
    summary = json.loads((tmp_path / "cv_metrics.json").read_text())
    assert [f["fold"] for f in summary["folds"]] == [0, 1, 2]
    assert {"test/survival_cindex", "test/grade_auroc"} <= set(summary["mean"])
    assert "Nadeau-Bengio" in summary["ci_method"]  # the folds' training sets overlap
    # retrieval quality of each fold's test patients among its training patients (fusion.retrieval.quality)
    retrieval = {
        "test/retrieval_grade_acc@5",
        "test/retrieval_response_mvacc@5",
        "test/retrieval_survival_cindex",
    }
    assert retrieval <= set(summary["mean"]) and retrieval <= set(summary["ci95"])
    # n_test / n_train per fold from each fold's own metrics.json (training patients = train + val)
    sizes = [
        json.loads((tmp_path / f"repeat0_fold{k}" / "metrics.json").read_text())["info"]["n_patients"]
        for k in range(3)
    ]
    ratio = float(np.mean([n["test"] / (n["train"] + n["val"]) for n in sizes]))
    assert f"n_test/n_train = {ratio:.3f}" in summary["ci_method"]
    for key in ("test/survival_cindex", "test/grade_auroc", "test/response_auroc"):
        values = np.array([fold[key] for fold in summary["folds"]], dtype=float)
        assert len(values) == 3 and np.isfinite(values).all(), key  # defined on every fold
        for k, fold_value in enumerate(values):  # the fold's value is the one its run wrote
            written = json.loads((tmp_path / f"repeat0_fold{k}" / "metrics.json").read_text())[key]
            assert fold_value == pytest.approx(written, rel=1e-12), (key, k)
        assert summary["mean"][key] == pytest.approx(values.mean(), rel=1e-12), key
        # Nadeau & Bengio's corrected resampled t interval, recomputed from the fold values
        half = stats.t.ppf(0.975, df=2) * values.std(ddof=1) * np.sqrt(1 / 3 + ratio)
        assert half > 0, key
        interval = np.clip([values.mean() - half, values.mean() + half], 0, 1)  # clipped to the range
        assert summary["ci95"][key] == pytest.approx(interval.tolist(), rel=1e-9)
    assert any("on 3 fold values, fewer than 5" in note for note in summary["ci_notes"])
    tested = [
        pid
        for k in range(3)
        for pid in pd.read_csv(tmp_path / f"repeat0_fold{k}" / "predictions_test.csv")["patient_id"]
    ]
    assert len(tested) == len(set(tested))  # no patient tested twice
    # provenance: the CV run's (config, manifest, inputs) and each fold's model id, the SHA-256 of its best
    # checkpoint, which is also the model_id column of its predictions
    provenance = summary["provenance"]
    assert provenance["n_patients"] == {"cohort": 40} and len(provenance["config_sha256"]) == 64
    for k, fold in enumerate(provenance["folds"]):
        predictions = pd.read_csv(tmp_path / f"repeat0_fold{k}" / "predictions_test.csv")
        assert fold["run"] == f"repeat0_fold{k}" and set(predictions["model_id"]) == {fold["model_id"]}
        (best,) = (tmp_path / f"repeat0_fold{k}" / "checkpoints").glob("best*.ckpt")
        assert fold["model_id"] == hashlib.sha256(best.read_bytes()).hexdigest()
    assert set(tested) <= set(pd.read_csv(tiny_cohort)["patient_id"])
    # every fold's model explained on its test patients; top_features_cv.csv counts the folds' top 10s
    cv_top = pd.read_csv(tmp_path / "top_features_cv.csv")
    assert set(cv_top["modality"]) == {"genomics", "ehr"}
    assert (cv_top["n_folds"] == 3).all() and (cv_top["k"] == 10).all()
    folds = [
        pd.read_csv(tmp_path / f"repeat0_fold{k}" / "explanations" / "top_features.csv") for k in range(3)
    ]
    for row in cv_top.head(5).itertuples():
        in_top = [
            bool(((f["head"] == row.head) & (f["feature"] == row.feature) & (f["rank"] <= 10)).any())
            for f in folds
        ]
        assert row.n_folds_top_k == sum(in_top) and row.share_of_folds == pytest.approx(sum(in_top) / 3)
    explained = pd.read_csv(
        tmp_path / "repeat0_fold0" / "explanations" / "features.csv", dtype={"patient_id": str}
    )
    assert (
        set(explained["patient_id"]) <= set(tested) and explained["value"].isna().all()
    )  # no patient values


def test_summarise_mean_sd_and_t_interval():
    folds = [{"test/x": 0.6}, {"test/x": 0.7}, {"test/x": 0.8}, {"test/x": None}]
    out = summarise(folds)
    assert out["mean"]["test/x"] == pytest.approx(0.7)
    assert out["sd"]["test/x"] == pytest.approx(0.1)
    half = 4.302653 * 0.1 / 3**0.5  # t(0.975, df=2)
    assert out["ci95"]["test/x"] == pytest.approx([0.7 - half, 0.7 + half], abs=1e-5)
    assert out["ci_method"].startswith("t, plain")


def test_summarise_corrects_the_interval_for_overlapping_training_sets():
    folds = [{"test/x": v} for v in (0.6, 0.7, 0.8, 0.65, 0.75, 0.7)]
    sd = pd.Series([0.6, 0.7, 0.8, 0.65, 0.75, 0.7]).std()
    t = 2.570582  # t(0.975, df=5)
    plain = summarise(folds)["ci95"]["test/x"]
    corrected = summarise(folds, test_train_ratio=0.5)
    assert plain == pytest.approx([0.7 - t * sd / 6**0.5, 0.7 + t * sd / 6**0.5], abs=1e-5)
    half = t * sd * (1 / 6 + 0.5) ** 0.5  # Nadeau & Bengio: 1/J + n_test/n_train
    assert corrected["ci95"]["test/x"] == pytest.approx([0.7 - half, 0.7 + half], abs=1e-5)
    assert "Nadeau-Bengio" in corrected["ci_method"] and "0.500" in corrected["ci_method"]


def test_demo_data_cli_writes_a_valid_cohort(tmp_path):
    out = tmp_path / "demo"
    result = run_module(
        "fusion.cli.demo_data",
        f"out={out}",
        "n_patients=6",
        "seed=3",
        "volume_shape=[8,8,8]",
        "tile_size=8",
        "n_genes=8",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert result.returncode == 0, result.stderr[-4000:]
    manifest = pd.read_csv(out / "manifest.csv")
    assert len(manifest) == 6 and (out / "genomics.csv").exists() and (out / "truth.csv").exists()
    again = run_module("fusion.cli.demo_data", f"out={out}", f"hydra.run.dir={tmp_path / 'run2'}")
    assert again.returncode == 1 and "not empty" in again.stderr
