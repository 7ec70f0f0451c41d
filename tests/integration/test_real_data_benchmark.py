"""The GBSG2 real-data benchmark: cohort, folds, train-only preprocessing (fast), and a --quick run (slow)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("sksurv")

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "real_data.py"


def _load_benchmark():
    spec = importlib.util.spec_from_file_location("real_data_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


bench = _load_benchmark()


@pytest.fixture(scope="module")
def gbsg2() -> pd.DataFrame:
    return bench.load_gbsg2()


def test_cohort_has_real_labels_and_grade_task_hides_tgrade(gbsg2, tmp_path):
    assert len(gbsg2) == 686 and gbsg2["patient_id"].is_unique
    assert set(gbsg2["grade"]) == {1, 2, 3} and gbsg2["survival_event"].sum() == 299
    grade_manifest = bench.write_cohort(gbsg2, tmp_path / "grade", "grade")
    survival_manifest = bench.write_cohort(gbsg2, tmp_path / "survival", "survival")
    grade_ehr = pd.read_csv(grade_manifest.parent / "ehr.csv")
    assert "tgrade" not in grade_ehr.columns and "grade" not in grade_ehr.columns
    assert "tgrade" in pd.read_csv(survival_manifest.parent / "ehr.csv").columns
    assert list(pd.read_csv(grade_manifest).columns) == ["patient_id", "grade"]
    assert list(pd.read_csv(survival_manifest).columns) == ["patient_id", "survival_time", "survival_event"]


def test_folds_are_patient_level_disjoint_and_repeatable(gbsg2):
    folds = bench.make_folds(gbsg2, folds=5, repeats=2, val=0.15, seed=42)
    assert len(folds) == 10
    for repeat in (0, 1):
        tested = [p for f in folds if f["repeat"] == repeat for p in f["test"]]
        assert sorted(tested) == sorted(gbsg2["patient_id"])  # each patient tested once per repeat
    for f in folds:
        train, val, test = set(f["train"]), set(f["val"]), set(f["test"])
        assert not (train & val or train & test or val & test)
        assert len(train | val | test) == 686
    assert folds == bench.make_folds(gbsg2, folds=5, repeats=2, val=0.15, seed=42)
    assert folds[0]["test"] != folds[5]["test"]  # repeats reshuffle


@pytest.mark.parametrize("name", ["coxph", "coxnet", "logreg"])
def test_classical_fit_ignores_held_out_patients(gbsg2, name):
    """Corrupting every test-fold patient cannot change a fitted model: it only sees train and val."""
    task = "grade" if name == "logreg" else "survival"
    fit = bench.CLASSICAL[task][name]
    fold = bench.make_folds(gbsg2, folds=5, repeats=1, val=0.15, seed=0)[0]
    by_id = gbsg2.set_index("patient_id", drop=False)
    train, val, test = (by_id.loc[fold[s]] for s in ("train", "val", "test"))
    before = bench.classical_prediction(task, fit(train, val, 0), test)
    corrupted = gbsg2.copy()
    held = corrupted["patient_id"].isin(fold["test"])
    corrupted.loc[held, "age"] = 1e4
    corrupted.loc[held, "grade"] = 1
    corrupted.loc[held, "survival_time"] = 1.0
    by_id2 = corrupted.set_index("patient_id", drop=False)
    train2, val2 = by_id2.loc[fold["train"]], by_id2.loc[fold["val"]]
    after = bench.classical_prediction(task, fit(train2, val2, 0), test)
    np.testing.assert_allclose(after, before)
    # ...whereas a corrupted training patient does change it (so the check above can fail)
    bad_train = train.copy()
    for column, value in (("age", 1e4), ("survival_time", 1.0), ("grade", 1)):
        bad_train.iloc[:50, bad_train.columns.get_loc(column)] = value
    changed = bench.classical_prediction(task, fit(bad_train, val, 0), test)
    assert not np.allclose(changed, before)


def test_score_uses_fusion_metrics_direction(gbsg2):
    test = gbsg2.iloc[:200]
    risk = -test["survival_time"].to_numpy()  # shorter time = higher risk: perfectly concordant
    assert bench.score("survival", test, risk) == pytest.approx(1.0, abs=1e-3)  # tied times aside
    assert bench.score("survival", test, -risk) == pytest.approx(0.0, abs=1e-3)
    onehot = np.eye(3)[test["grade"].to_numpy() - 1]
    assert bench.score("grade", test, onehot) == pytest.approx(1.0)


@pytest.mark.slow
def test_quick_run_compares_every_method_on_the_same_folds(tmp_path):
    results = bench.main(["--quick", "--json", str(tmp_path / "r.json"), "--workdir", str(tmp_path / "w")])
    assert json.loads((tmp_path / "r.json").read_text()) == json.loads(json.dumps(results))
    survival, grade = results["tasks"]["survival"], results["tasks"]["grade"]
    assert set(survival["methods"]) == {"fusion", "coxph", "coxnet", "rsf"}
    assert set(grade["methods"]) == {"fusion", "logreg"}
    for res in (survival, grade):
        for m in res["methods"].values():
            assert len(m["per_fold"]) == 2 and all(0 <= v <= 1 for v in m["per_fold"])
    # GBSG2 carries real signal: every survival model is well above chance
    assert all(m["mean"] > 0.6 for m in survival["methods"].values())
    assert grade["methods"]["logreg"]["mean"] > 0.55
    # our re-scoring of fusion's predictions agrees with the metric fusion itself wrote
    for ours, own in zip(
        survival["methods"]["fusion"]["per_fold"], survival["fusion_own_metric"], strict=True
    ):
        assert math.isclose(ours, own, abs_tol=1e-4)
    # fusion's EHR normaliser was fitted on the fold's training patients only
    frame = bench.load_gbsg2().set_index("patient_id")
    fold = bench.make_folds(frame.reset_index(), 2, 1, 0.15, 42)[0]
    import torch

    ckpt = next((tmp_path / "w" / "survival" / "repeat0_fold0" / "checkpoints").glob("best-*.ckpt"))
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    ehr = _find_key(state, "modality_state")["ehr"]
    expected = frame.loc[fold["train"], ehr["numeric"]].mean().to_numpy()
    np.testing.assert_allclose(ehr["mean"], expected, rtol=1e-6)
    everyone = frame[ehr["numeric"]].mean().to_numpy()
    assert not np.allclose(ehr["mean"], everyone, rtol=1e-6)


def _find_key(tree, key):
    if isinstance(tree, dict):
        if key in tree:
            return tree[key]
        for value in tree.values():
            found = _find_key(value, key)
            if found is not None:
                return found
    return None
