from collections import Counter

import pytest

from fusion.data.splits import kfold_patients, split_patients


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
