"""A head defined only in a test file (one class + one YAML, nothing in fusion/ touched) and a second
survival head (progression-free survival beside overall survival): both train, predict, are evaluated
with CIs, appear in the report and in fusion-robustness."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tests.integration.conftest import PLUGIN_ENV, run_module, run_with_plugin, tiny_overrides

HEADS = "head=[survival,pfs,size]"


def add_size_and_pfs(manifest_path: Path) -> pd.DataFrame:
    """A tumour size that grows with grade, and a progression-free survival no longer than overall."""
    manifest = pd.read_csv(manifest_path)
    rng = np.random.default_rng(5)
    n = len(manifest)
    grade = manifest["grade"].fillna(2).to_numpy(float)
    manifest["tumour_size"] = np.round(np.clip(1.5 * grade + rng.normal(0, 0.6, n), 0.3, None), 1)
    manifest.loc[rng.random(n) < 0.1, "tumour_size"] = np.nan  # unknown for some patients
    manifest["pfs_time"] = np.round(manifest["survival_time"] * rng.uniform(0.3, 1.0, n), 2)
    manifest["pfs_event"] = np.where(manifest["survival_event"] == 1, 1, (rng.random(n) < 0.5).astype(int))
    manifest.loc[manifest["survival_time"].isna(), "pfs_event"] = np.nan
    manifest.to_csv(manifest_path, index=False)
    return manifest


@pytest.fixture(scope="module")
def run(tiny_cohort, tmp_path_factory):
    root = tmp_path_factory.mktemp("custom_head")
    cohort = root / "cohort"
    shutil.copytree(tiny_cohort.parent, cohort)
    add_size_and_pfs(cohort / "manifest.csv")
    run_dir = root / "run"
    result = run_with_plugin(
        "fusion.cli.train",
        f"data.manifest={cohort / 'manifest.csv'}",
        f"hydra.run.dir={run_dir}",
        *tiny_overrides("modality=[genomics,ehr]", HEADS, "evaluation.n_bootstrap=100"),
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return run_dir, cohort / "manifest.csv"


def test_each_head_writes_its_own_prediction_columns(run):
    run_dir, _ = run
    predictions = pd.read_csv(run_dir / "predictions_test.csv")
    # `risk` stays the documented column of the head named `survival`; the others are named after the head
    os_prob = [c for c in predictions.columns if c.startswith("survival_prob_")]
    pfs_prob = [c for c in predictions.columns if c.startswith("pfs_prob_")]
    assert list(predictions.columns) == [
        "patient_id",
        "risk",
        *os_prob,
        "survival_median",  # empty where the curve stays above 0.5
        "pfs_risk",
        *pfs_prob,
        "pfs_median",
        "size_pred",
        "model_id",
    ]
    assert predictions[["risk", "pfs_risk", "size_pred", *os_prob, *pfs_prob]].notna().all().all()
    assert not np.allclose(predictions["risk"], predictions["pfs_risk"])


def test_every_head_is_evaluated_with_cis(run):
    run_dir, _ = run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in (
        "survival_cindex",
        "survival_uno_cindex",
        "survival_ibs",
        "pfs_cindex",
        "pfs_uno_cindex",
        "pfs_td_auc_q50",
        "pfs_ibs",
        "size_concordance",
        "size_mae",
    ):
        value = metrics[f"test/{key}"]
        assert isinstance(value, float), key
        low, high = metrics["ci95"][f"test/{key}"]
        assert low <= value <= high, key
    assert metrics["test/size_concordance"] > 0.5  # size follows grade, which the genes and EHR carry
    # the primary metrics are logged every epoch (the same functions, without bootstrap)
    logged = pd.read_csv(run_dir / "csv" / "metrics.csv")
    for key in ("val/pfs_cindex", "val/size_concordance", "val/score"):
        assert logged[key].notna().any(), key


def test_report_draws_and_describes_every_head(run):
    run_dir, _ = run
    report = run_dir / "report"
    markdown = (report / "report.md").read_text()
    for figure in ("km_survival", "km_pfs", "scatter_size"):
        assert (report / f"{figure}.png").stat().st_size > 5_000
        assert f"]({figure}.png)" in markdown
    assert "## pfs" in markdown and "## size" in markdown and "Sizes in cm." in markdown
    assert "| `test/size_concordance` |" in markdown
    heads = json.loads((report / "evaluation.json").read_text())["heads"]
    assert set(heads) == {"survival", "pfs", "size"}


def test_both_survival_references_travel_in_the_best_checkpoint(run):
    run_dir, _ = run
    best = json.loads((run_dir / "metrics.json").read_text())["info"]["best_checkpoint"]
    stored = torch.load(best, map_location="cpu", weights_only=True)["fusion"]["evaluation_reference"]
    assert set(stored) == {"survival", "pfs"}
    assert stored["survival"]["event_quantiles"] != stored["pfs"]["event_quantiles"]


def test_predict_scores_every_head_of_a_labelled_manifest(run, tmp_path):
    run_dir, manifest = run
    best = json.loads((run_dir / "metrics.json").read_text())["info"]["best_checkpoint"]
    out = tmp_path / "pred"
    result = run_module(
        "fusion.cli.predict",
        f"ckpt_path={best}",
        f"data.manifest={manifest}",
        f"hydra.run.dir={out}",
        env=PLUGIN_ENV,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    predictions = pd.read_csv(out / "predictions.csv")
    assert {"risk", "pfs_risk", "size_pred"} <= set(predictions.columns)
    assert len(predictions) == len(pd.read_csv(manifest))
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"predict/pfs_uno_cindex", "predict/size_mae"} <= set(metrics)
    assert (out / "report" / "scatter_size.png").exists()


def test_robustness_reports_each_heads_primary_metric(run, tmp_path):
    run_dir, _ = run
    best = json.loads((run_dir / "metrics.json").read_text())["info"]["best_checkpoint"]
    out = tmp_path / "robustness"
    result = run_module(
        "fusion.cli.robustness", f"ckpt_path={best}", "repeats=1", f"hydra.run.dir={out}", env=PLUGIN_ENV
    )
    assert result.returncode == 0, result.stderr[-4000:]
    frame = pd.read_csv(out / "robustness.csv")
    curve = pd.read_csv(out / "robustness_curve.csv")
    for key in ("test/survival_cindex", "test/pfs_cindex", "test/size_concordance"):
        assert frame[key].notna().all(), key
        assert key in curve and f"{key}_sd" in curve
    assert "test/grade_auroc" not in curve  # only the model's own heads
