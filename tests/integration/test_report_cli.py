"""fusion-train writes the evaluation report, extended metrics with CIs, and (with the W&B logger,
offline) the figures and tables into the run; fusion-predict's report: test_predict_cli.py."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from fusion.metrics.weighted_survival import harrell_cindex
from tests.integration.conftest import run_module, tiny_overrides
from tests.unit.report.test_report import FIGURES

# the W&B predictions table is off by default (labels are patient values): asked for here
SELECTION = (
    "modality=[genomics,ehr]",
    "logger=[csv,wandb]",
    "evaluation.n_bootstrap=50",
    "evaluation.wandb_table=true",
)


@pytest.fixture(scope="module")
def run(tiny_cohort, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("report_run")
    overrides = [o for o in tiny_overrides(*SELECTION) if o != "logger=[csv]"]
    result = run_module(
        "fusion.cli.train", f"data.manifest={tiny_cohort}", f"hydra.run.dir={run_dir}", *overrides
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return run_dir


def test_metrics_json_has_scalar_test_keys_and_cis(run, tiny_cohort):
    metrics = json.loads((run / "metrics.json").read_text())
    for key in (
        "grade_f1_macro",
        "survival_uno_cindex",
        "survival_ibs",
        "survival_td_auc_q50",
        "response_auprc",
        "response_ece",
    ):
        assert f"test/{key}" in metrics
    # The only undefined metric is a time-dependent AUC at a horizon (a quantile of the training event
    # times) by which no test patient had an event: no case to rank. Recomputed from the checkpoint's
    # horizons and the test patients' labels.
    best = metrics["info"]["best_checkpoint"]
    ckpt = torch.load(best, map_location="cpu", weights_only=True)
    horizons = ckpt["fusion"]["evaluation_reference"]["survival"]["event_quantiles"]
    table = pd.read_csv(run / "predictions_test.csv").merge(pd.read_csv(tiny_cohort), on="patient_id")
    events = table.loc[table["survival_event"] == 1, "survival_time"]
    no_case = {f"test/survival_td_auc_{q}" for q, t in horizons.items() if not (events <= t).any()}
    assert {k for k, v in metrics.items() if k.startswith("test/") and v is None} == no_case
    assert no_case == {"test/survival_td_auc_q25"}  # this seeded split: the first event comes after q25
    for key, value in metrics.items():
        if key.startswith("test/") and key not in no_case:
            assert isinstance(value, float) and np.isfinite(value), key
    # every evaluated metric has an interval, and it brackets the point estimate
    evaluated = {k for k, v in metrics.items() if k.startswith("test/") and v is not None} - {
        "test/score",
        "test/loss",
    }
    assert set(metrics["ci95"]) == evaluated
    for key, (low, high) in metrics["ci95"].items():
        assert low <= metrics[key] + 1e-6 and metrics[key] - 1e-6 <= high, (key, low, metrics[key], high)


def test_logged_cindex_equals_the_evaluation_of_the_written_predictions(run, tiny_cohort):
    """The LightningModule's test/survival_cindex and the table-based evaluation agree."""
    metrics = json.loads((run / "metrics.json").read_text())
    table = pd.read_csv(run / "predictions_test.csv").merge(pd.read_csv(tiny_cohort), on="patient_id")
    table = table.dropna(subset=["survival_time"])
    value = harrell_cindex(
        np.ones((1, len(table))),
        table["risk"].to_numpy(),
        table["survival_time"].to_numpy(),
        table["survival_event"].to_numpy().astype(bool),
    )[0]
    assert metrics["test/survival_cindex"] == pytest.approx(value, abs=1e-6)


def test_every_logged_test_metric_equals_metrics_json(run):
    """One implementation per metric: what the LightningModule logged for the test split (its epoch
    metrics, csv/metrics.csv) is exactly what metrics.json reports beside the bootstrap CIs."""
    metrics = json.loads((run / "metrics.json").read_text())
    logged = pd.read_csv(run / "csv" / "metrics.csv")
    keys = [c for c in logged.columns if c.startswith("test/") and c not in ("test/loss", "test/score")]
    assert set(keys) >= {"test/grade_auroc", "test/grade_balanced_accuracy", "test/survival_cindex"}
    for key in keys:
        value = logged[key].dropna().iloc[-1]  # the test run on the best checkpoint
        assert metrics[key] == pytest.approx(value, rel=1e-6), key  # the CSV logger rounds to float32


def test_report_folder_embeds_every_figure(run):
    report = run / "report"
    markdown = (report / "report.md").read_text()
    for name in FIGURES:
        assert (report / f"{name}.png").stat().st_size > 5_000
        assert f"({name}.png)" in markdown
    assert "| `test/survival_uno_cindex` |" in markdown


def test_wandb_offline_run_holds_figures_and_tables(run):
    run_dir = next((run / "wandb").glob("offline-run-*"))
    assert len(list(run_dir.rglob("media/images/**/*.png"))) == len(FIGURES)
    tables = {p.name.rsplit("_", 2)[0] for p in run_dir.rglob("media/table/*.table.json")}
    # test_embeddings: the test patients' fused embeddings with labels (projector view; fusion.training)
    assert tables == {"test_predictions", "test_metrics", "test_embeddings"}


def test_best_checkpoint_carries_the_survival_reference(run):
    best = json.loads((run / "metrics.json").read_text())["info"]["best_checkpoint"]
    reference = torch.load(best, map_location="cpu", weights_only=True)["fusion"]["evaluation_reference"]
    assert set(reference["survival"]) == {"baseline", "censoring", "event_quantiles", "risk_cutoffs"}
