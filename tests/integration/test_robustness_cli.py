"""fusion-robustness on a tiny trained model: every condition, the curve files, consistency with training."""

from __future__ import annotations

import json

import pandas as pd
import pytest

import fusion
from fusion.training import run_training
from tests.integration.conftest import run_module, tiny_overrides


@pytest.mark.slow  # trains: ~1 min on 2 cores
def test_robustness_scores_every_condition_and_matches_training_with_all_inputs(tiny_cohort, tmp_path):
    cfg = fusion.compose([f"data.manifest={tiny_cohort}", *tiny_overrides("modality=[genomics,ehr]")])
    run = tmp_path / "run"
    metrics = run_training(cfg, run).metrics
    ckpt = json.loads((run / "metrics.json").read_text())["info"]["best_checkpoint"]
    out = tmp_path / "robustness"
    result = run_module(
        "fusion.cli.robustness", f"ckpt_path={ckpt}", "repeats=2", f"hydra.run.dir={out}", "seed=3"
    )
    assert result.returncode == 0, result.stderr[-4000:]
    frame = pd.read_csv(out / "robustness.csv")
    assert frame["condition"].tolist() == ["all", "without genomics", "without ehr", *["random"] * 6]
    test_ids = pd.read_csv(run / "predictions_test.csv")["patient_id"]
    everyone = frame.iloc[0]
    assert everyone["n_patients"] == len(test_ids)  # the run's held-out patients, found beside the checkpoint
    for key in ("test/grade_auroc", "test/survival_cindex", "test/response_auroc"):
        # defined on the tiny cohort's 8 test patients (every class, comparable pairs); same checkpoint,
        # same patients, all inputs: training's figures
        assert isinstance(metrics[key], float), key
        assert everyone[key] == pytest.approx(metrics[key], abs=1e-6), key
    random = frame[frame["condition"] == "random"]
    removed = random.groupby("fraction")["removed_fraction"].mean()
    assert removed[0.25] == pytest.approx(0.25, abs=0.03) and removed[0.5] == pytest.approx(0.5, abs=0.03)
    # with two modalities a patient's protected input caps removal near 1/2 (see fusion.robustness)
    assert removed[0.5] - 0.03 <= removed[0.75] <= 0.75
    assert (random["n_patients"] == len(test_ids)).all()
    curve = pd.read_csv(out / "robustness_curve.csv")
    assert curve["fraction"].tolist() == [0.0, 0.25, 0.5, 0.75]
    assert (out / "robustness.png").stat().st_size > 10_000
    missing = run_module(
        "fusion.cli.robustness", f"ckpt_path={tmp_path / 'nope.ckpt'}", f"hydra.run.dir={out}"
    )
    assert missing.returncode == 1 and "checkpoint not found" in missing.stderr
