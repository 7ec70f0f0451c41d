from collections import Counter

import pandas as pd
import pytest

from fusion.data.splits import kfold_patients, read_fold_file, split_patients, write_fold_file


def _cohort(n=200):
    ids = [f"P{i:03d}" for i in range(n)]
    strata = [str(i % 3) for i in range(n)]
    return ids, strata


def test_split_is_a_partition_of_patients_and_reproducible():
    ids, strata = _cohort()
    a = split_patients(ids, strata, val=0.15, test=0.2, seed=3)
    b = split_patients(ids, strata, val=0.15, test=0.2, seed=3)
    assert a == b
    assert sorted(a["train"] + a["val"] + a["test"]) == ids
    assert len(a["test"]) == 40 and len(a["val"]) == 30
    assert split_patients(ids, strata, 0.15, 0.2, seed=4) != a


def test_split_is_stratified():
    ids, strata = _cohort(300)
    stratum = dict(zip(ids, strata, strict=True))
    test = split_patients(ids, strata, val=0.1, test=0.2, seed=0)["test"]
    assert Counter(stratum[p] for p in test) == {"0": 20, "1": 20, "2": 20}


def test_rare_strata_do_not_break_the_split():
    ids, strata = _cohort(50)
    strata[0] = "only-one"
    result = split_patients(ids, strata, val=0.2, test=0.2, seed=0)
    assert sorted(sum(result.values(), [])) == ids


def test_bad_fractions_are_rejected():
    ids, strata = _cohort(10)
    with pytest.raises(ValueError, match="fractions"):
        split_patients(ids, strata, val=0.5, test=0.6, seed=0)


def test_kfold_tests_each_patient_once():
    ids, strata = _cohort(60)
    folds = kfold_patients(ids, strata, folds=5, seed=0)
    tested = [p for _, test in folds for p in test]
    assert sorted(tested) == ids
    for train, test in folds:
        assert not set(train) & set(test)


def test_kfold_with_groups_keeps_each_group_in_one_test_fold():
    ids, strata = _cohort(120)
    sites = [f"site{i % 6}" for i in range(120)]
    sites[0] = None  # an empty site: a group of its own
    site = dict(zip(ids, sites, strict=True))
    folds = kfold_patients(ids, strata, folds=3, seed=0, groups=sites)
    assert sorted(p for _, test in folds for p in test) == ids
    for train, test in folds:
        train_sites = {site[p] for p in train if site[p]}
        test_sites = {site[p] for p in test if site[p]}
        assert test_sites and not train_sites & test_sites
    # without groups the same seed mixes sites across train and test
    plain = kfold_patients(ids, strata, folds=3, seed=0)
    assert any({site[p] for p in tr} & {site[p] for p in te} for tr, te in plain)


def test_kfold_with_fewer_groups_than_folds_is_a_clear_error():
    ids, strata = _cohort(30)
    with pytest.raises(ValueError, match=r"cv.folds=5 needs at least 5 groups.*only 2"):
        kfold_patients(ids, strata, folds=5, seed=0, groups=["A", "B"] * 15)


def _plan(ids, folds=3):
    plan = []
    for k, (train, test) in enumerate(kfold_patients(ids, [str(i % 2) for i in range(len(ids))], folds, 0)):
        plan.append({"repeat": 0, "fold": k, "train": train[2:], "val": train[:2], "test": test})
    return plan


def test_fold_file_round_trip(tmp_path):
    ids = [f"P{i:02d}" for i in range(30)]
    plan = _plan(ids)
    path = write_fold_file(tmp_path / "folds.csv", plan)
    frame = pd.read_csv(path)
    assert list(frame.columns) == ["patient_id", "repeat", "fold", "role"]
    assert len(frame) == 3 * 30
    assert read_fold_file(path, ids) == plan


def test_fold_file_problems_are_listed_by_patient(tmp_path):
    ids = [f"P{i:02d}" for i in range(30)]
    path = write_fold_file(tmp_path / "folds.csv", _plan(ids))
    frame = pd.read_csv(path)
    frame.loc[len(frame)] = ["GHOST", 0, 0, "test"]
    # P00 is tested in some fold; make it a test patient of every fold
    frame.loc[frame["patient_id"] == "P00", "role"] = "test"
    frame.to_csv(path, index=False)
    with pytest.raises(ValueError) as err:
        read_fold_file(path, ids)
    message = str(err.value)
    assert "patient 'GHOST' is not in the cohort" in message
    assert "patient 'P00' is in the test side of folds [0, 1, 2] of repeat 0" in message


def test_fold_file_with_a_patient_twice_in_a_fold_or_a_bad_role(tmp_path):
    ids = [f"P{i:02d}" for i in range(30)]
    path = write_fold_file(tmp_path / "folds.csv", _plan(ids))
    frame = pd.read_csv(path)
    frame.loc[len(frame)] = ["P01", 0, 1, "holdout"]
    frame.to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"(?s)role must be one of.*'holdout'.*'P01' has more than one role"):
        read_fold_file(path, ids)
    pd.DataFrame({"patient_id": ids}).to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"missing column\(s\) \['repeat', 'fold', 'role'\]"):
        read_fold_file(path, ids)
