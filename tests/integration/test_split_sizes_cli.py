"""Splits too small to evaluate are refused before training: fusion-train on a 5-patient cohort, and
fusion-cv with folds too small for the 40-patient cohort (every fold checked before the first trains)."""

from __future__ import annotations

from fusion.data.synthetic import write_demo_cohort
from tests.integration.conftest import one_error_line, run_module, tiny_overrides


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
    error = one_error_line(result)
    assert "split(s) too small to evaluate" in error
    assert "test has 1 patient(s), needs data.split.min_patients.test=5" in error
    assert "val has 1 patient(s), needs data.split.min_patients.val=3" in error
    assert "test has too few patients per class (" in error
    assert "needs data.split.min_per_class.test=2" in error
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
    error = one_error_line(result)
    assert "repeat0_fold0: test has too few patients per class (grade class 3: 1)" in error
    assert "repeat0_fold4: test has too few patients per class" in error
    assert "fewer cv.folds (larger test folds) or a larger cv.val" in error
    assert not list(tmp_path.glob("repeat0_fold*"))  # no fold trained
