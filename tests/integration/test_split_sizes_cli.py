"""Splits too small to evaluate are refused before training: fusion-train on a 5-patient cohort, and
fusion-cv with folds too small for the 40-patient cohort (every fold checked before the first trains)."""

from __future__ import annotations

from fusion.data.synthetic import write_demo_cohort
from tests.integration.conftest import run_module, tiny_overrides


def test_train_refuses_a_five_patient_cohort_in_one_line(tmp_path):
    manifest = write_demo_cohort(
        tmp_path / "five", n_patients=5, seed=1, volume_shape=(8, 8, 8), tile_size=8, n_genes=8
    )
    result = run_module(
        "fusion.cli.train",
        f"data.manifest={manifest}",
        f"hydra.run.dir={tmp_path / 'run'}",
        *tiny_overrides("modality=[genomics,ehr]"),
    )
    assert result.returncode == 1, result.stderr[-4000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr
    assert "split(s) too small to evaluate" in errors[0]
    assert "test has 1 patient(s), needs data.split.min_patients.test=5" in errors[0]
    assert "val has 1 patient(s), needs data.split.min_patients.val=3" in errors[0]
    assert "test has too few patients per class (" in errors[0]
    assert "needs data.split.min_per_class.test=2" in errors[0]
    assert not (tmp_path / "run" / "checkpoints").exists()  # refused before training
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_cv_refuses_every_too_small_fold_before_the_first_trains(tiny_cohort, tmp_path):
    # 5 folds of 40 patients: 8 test patients per fold, some with a single patient of a grade class
    result = run_module(
        "fusion.cli.cv",
        f"data.manifest={tiny_cohort}",
        f"hydra.run.dir={tmp_path}",
        "cv.folds=5",
        *tiny_overrides("modality=[genomics,ehr]"),
    )
    assert result.returncode == 1, result.stderr[-4000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr
    assert "repeat0_fold0: test has too few patients per class (grade class 3: 1)" in errors[0]
    assert "repeat0_fold4: test has too few patients per class" in errors[0]
    assert "fewer cv.folds (larger test folds) or a larger cv.val" in errors[0]
    assert not list(tmp_path.glob("repeat0_fold*"))  # no fold trained
