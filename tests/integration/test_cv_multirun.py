"""`fusion-cv -m`: each job of a sweep gets its own folder, cv_metrics.json and W&B group of fold runs."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tests.integration.conftest import run_module, tiny_overrides


@pytest.mark.slow  # trains: ~1 min on 2 cores
def test_multirun_jobs_write_apart_and_group_their_folds(tiny_cohort, tmp_path):
    sweep = tmp_path / "sweep"
    overrides = [  # W&B on; no transformer-only setting, so both fusers take the same overrides
        {"logger=[csv]": "logger=[csv,wandb]"}.get(o, o)
        for o in tiny_overrides("modality=[genomics,ehr]")
        if o != "fuser.dim_feedforward=32"
    ]
    result = run_module(
        "fusion.cli.cv",
        "-m",
        "fuser=concat,kronecker",
        f"data.manifest={tiny_cohort}",
        f"hydra.sweep.dir={sweep}",
        "cv.folds=2",
        "cv.val=0.3",  # a 3-patient val set can hold no comparable survival pair
        f"cv.splits_file={tmp_path / 'folds.csv'}",
        *overrides,
        "trainer.max_epochs=1",
    )
    assert result.returncode == 0, result.stderr[-4000:]
    summaries = [json.loads((sweep / str(job) / "cv_metrics.json").read_text()) for job in (0, 1)]
    assert [s["setup"]["fuser"] for s in summaries] == [
        "fusion.fusers.ConcatFuser",
        "fusion.fusers.KroneckerFuser",
    ]
    assert summaries[0]["name"] != summaries[1]["name"]
    assert (tmp_path / "folds.csv").exists()  # job 0 wrote the folds, job 1 read them
    for job, summary in enumerate(summaries):
        assert [f["fold"] for f in summary["folds"]] == [0, 1]
        assert "test/survival_cindex" in summary["mean"] and "oracle/survival_cindex" in summary["mean"]
        for fold in (0, 1):
            runs = list(
                (sweep / str(job) / f"repeat0_fold{fold}" / "wandb").glob("offline-run-*/run-*.wandb")
            )
            assert len(runs) == 1
            data = runs[0].read_bytes()
            for text in (summary["name"], f"repeat0_fold{fold}", "cv-fold"):
                assert text.encode() in data
    # the two jobs tested the same patients in each fold (frozen folds), and the folds differ
    tested = [
        [
            set(pd.read_csv(sweep / str(j) / f"repeat0_fold{k}" / "predictions_test.csv")["patient_id"])
            for k in (0, 1)
        ]
        for j in (0, 1)
    ]
    assert tested[0] == tested[1]
    assert tested[0][0] and tested[0][1] and not tested[0][0] & tested[0][1]
