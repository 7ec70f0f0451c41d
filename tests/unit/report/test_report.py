"""The report folder (PNGs, report.md, evaluation.json, confusion CSV) and its W&B copy (offline)."""

import json

import numpy as np
import pandas as pd
import pytest

from fusion.evaluation import EvaluationSettings, evaluate, fit_references
from fusion.report import metric_rows, write_report
from fusion.report.wandb import log_report
from tests.unit.evaluation.test_evaluate import HEADS, fake_split

PNG = b"\x89PNG\r\n\x1a\n"
# every figure a run with the three built-in heads gets
FIGURES = {
    "roc_grade",
    "confusion_grade",
    "km_survival",
    "roc_response",
    "calibration_response",
    "missingness",
}
MISSING = {"train (n=200)": {"ct": 0.8, "genomics": 0.55}, "test (n=80)": {"ct": 0.75, "genomics": 0.6}}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    rng = np.random.default_rng(0)
    train_frame, train_labels = fake_split(rng, 200, "tr")
    frame, labels = fake_split(rng, 80, "te")
    settings = EvaluationSettings(n_bootstrap=50, risk_groups=3)
    evaluation = evaluate(frame, labels, HEADS, settings, fit_references(train_frame, train_labels, HEADS))
    folder = tmp_path_factory.mktemp("run") / "report"
    return write_report(folder, evaluation, MISSING, settings.n_bootstrap), evaluation, frame


def test_every_figure_is_a_png_embedded_in_report_md(report):
    rep, evaluation, _ = report
    assert set(rep.figures) == FIGURES
    markdown = rep.markdown.read_text()
    for path in rep.figures.values():
        assert path.read_bytes()[:8] == PNG and path.stat().st_size > 10_000
        assert f"]({path.name})" in markdown
    for key, value in evaluation.metrics.items():
        assert f"| `{key}` | {value:.4f} |" in markdown
    assert "log-rank p" in markdown and "train risk quantiles" in markdown


def test_curves_and_confusion_matrix_are_written_as_data(report):
    rep, evaluation, _ = report
    data = json.loads((rep.folder / "evaluation.json").read_text())
    assert data["metrics"] == evaluation.metrics
    assert data["heads"]["survival"]["risk_groups"]["names"][1] == "intermediate risk"
    confusion = pd.read_csv(rep.folder / "confusion_grade.csv", index_col=0)
    assert list(confusion.columns) == ["G1", "G2", "G3"]
    assert confusion.to_numpy().sum() == evaluation.heads["grade"]["n"]


def test_wandb_offline_run_gets_images_and_tables(report, tmp_path, monkeypatch):
    from lightning.pytorch.loggers import CSVLogger, WandbLogger

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    rep, evaluation, frame = report
    wandb_logger = WandbLogger(save_dir=str(tmp_path), project="fusion-test", offline=True)
    loggers = [CSVLogger(str(tmp_path)), wandb_logger]
    assert log_report(loggers, rep.figures, frame, metric_rows(evaluation)) == 1
    wandb_logger.experiment.finish()
    run_dir = next((tmp_path / "wandb").glob("offline-run-*"))
    images = list(run_dir.rglob("media/images/**/*.png"))
    assert len(images) == len(rep.figures)
    tables = [p.name for p in run_dir.rglob("media/table/*.table.json")]
    assert any(n.startswith("test_predictions_") for n in tables)
    assert any(n.startswith("test_metrics_") for n in tables)
    predictions = next(p for p in run_dir.rglob("*.table.json") if "predictions" in p.name)
    table = json.loads(predictions.read_text())
    assert table["columns"][0] == "patient_id" and len(table["data"]) == len(frame)


def test_no_wandb_logger_logs_nothing(report):
    rep, evaluation, frame = report
    assert log_report([], rep.figures, frame, metric_rows(evaluation)) == 0
