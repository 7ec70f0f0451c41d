import numpy as np
import pandas as pd
import pytest

import fusion
from fusion.data.records import PatientRecord
from fusion.robustness import curve, remove_at_random, without

MODS = ("a", "b", "c")


def _records(n=200, seed=0):
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        have = rng.random(3) < 0.7
        have[rng.integers(3)] = True  # everyone has at least one input
        refs = {m: (f"{m}/{i}" if h else None) for m, h in zip(MODS, have, strict=True)}
        records.append(PatientRecord(f"P{i}", refs=refs, labels={"grade": i % 3}))
    return records


def _present(records):
    return {(r.patient_id, m) for r in records for m, ref in r.refs.items() if ref is not None}


def test_without_blanks_only_the_named_modality_and_leaves_the_original():
    record = _records(1)[0]
    record.refs = {"a": "x", "b": "y", "c": None}
    out = without(record, {"a"})
    assert out.refs == {"a": None, "b": "y", "c": None} and out.labels == record.labels
    assert record.refs["a"] == "x"


@pytest.mark.parametrize("fraction", [0.25, 0.5, 0.75])
def test_random_removal_takes_the_fraction_and_never_leaves_a_patient_empty(fraction):
    records = _records()
    before = _present(records)
    out, removed = remove_at_random(records, fraction, np.random.default_rng(1))
    after = _present(out)
    assert after <= before and len(before) - len(after) == removed
    assert all(r.has_any_modality() for r in out)
    # exactly the fraction, unless it would take some patient's last input (then capped)
    assert removed == min(round(fraction * len(before)), len(before) - len(records))
    again, _ = remove_at_random(records, fraction, np.random.default_rng(1))
    assert _present(again) == after  # reproducible by seed
    assert _present(remove_at_random(records, fraction, np.random.default_rng(2))[0]) != after


def test_curve_averages_repeats_per_fraction():
    frame = pd.DataFrame(
        [
            {"condition": "all", "fraction": 0.0, "removed_fraction": 0.0, "test/grade_auroc": 0.8},
            {"condition": "without a", "fraction": np.nan, "removed_fraction": 0.3, "test/grade_auroc": 0.1},
            {"condition": "random", "fraction": 0.5, "removed_fraction": 0.5, "test/grade_auroc": 0.6},
            {"condition": "random", "fraction": 0.5, "removed_fraction": 0.48, "test/grade_auroc": 0.7},
        ]
    )
    points = curve(frame, ["test/grade_auroc"])
    assert points["fraction"].tolist() == [0.0, 0.5]
    assert points["test/grade_auroc"].tolist() == pytest.approx([0.8, 0.65])
    assert points["test/grade_auroc_sd"].tolist() == pytest.approx([0.0, np.std([0.6, 0.7], ddof=1)])
    assert points["removed_fraction"].tolist() == pytest.approx([0.0, 0.49])


def test_robustness_config_composes_with_the_documented_defaults():
    cfg = fusion.compose(["ckpt_path=x.ckpt"], config_name="robustness")
    assert cfg.task_name == "robustness" and cfg.data.manifest is None and cfg.patients is None
    assert list(cfg.fractions) == [0.25, 0.5, 0.75] and cfg.repeats >= 1
