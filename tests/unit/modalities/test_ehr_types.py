"""EHR ordinal and boolean columns: parsing, errors naming row/column/value, fitted state, encoders."""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from fusion.data.cohort import Cohort
from fusion.modalities.ehr import EHRModality
from fusion.modalities.ehr_types import infer_column_types, to_boolean

CONF_DIR = str(files("fusion.conf"))
IDS = [f"p{i}" for i in range(10)]
TRAIN, HELD_OUT = IDS[:8], IDS[8:]
STAGES = ["I", "II", "III", "IV"]
TYPES = {"ordinal": {"stage": STAGES, "ecog": [0, 1, 2, 3, 4]}, "boolean": ["smoker"]}


def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "patient_id": IDS,
            "age": [61, 55, 70, 48, 66, 59, 73, 52, 64, 58],
            "stage": ["I", "II", "III", "IV", None, "I", "III", "II", "IV", "I"],
            "ecog": [0, 1, 2, None, 1, 0, 2, 1, 4, 1],  # float column with NaN: 1.0 must match level 1
            "smoker": ["yes", "No", "TRUE", "false", "1", "0", None, " Yes ", "no", "true"],
            "sex": ["F", "M", "M", "F", "F", "M", "F", "F", "M", "F"],
        }
    )


def cohort(root: Path, table: pd.DataFrame) -> Cohort:
    root.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"patient_id": IDS}).to_csv(root / "manifest.csv", index=False)
    table.to_csv(root / "ehr.csv", index=False)
    return Cohort.load(root / "manifest.csv")


def fitted(root: Path, table: pd.DataFrame, **kwargs) -> tuple[EHRModality, dict]:
    mod = EHRModality(embed_dim=8, **{**TYPES, "min_group": 1, **kwargs})  # 1: every statistic
    refs = mod.gather(cohort(root, table))
    items = {pid: mod.load(ref) for pid, ref in refs.items()}
    mod.fit([items[pid] for pid in TRAIN])
    return mod, items


def test_types_ranks_and_booleans(tmp_path):
    mod, items = fitted(tmp_path, frame())
    assert mod.num_columns == ["age"] and mod.cat_columns == ["sex"]
    assert mod.types.ordinal == {"stage": STAGES, "ecog": ["0", "1", "2", "3", "4"]}
    assert mod.types.boolean == ["smoker"] and mod.types.features == ["age", "stage", "ecog", "smoker"]
    smoker = [items[pid]["num"][3] for pid in IDS]
    np.testing.assert_array_equal(smoker, [1, 0, 1, 0, 1, 0, np.nan, 1, 0, 1])
    np.testing.assert_array_equal([items[pid]["num"][1] for pid in ("p0", "p3", "p8")], [0, 3, 3])
    assert items["p8"]["num"][2] == 4 and np.isnan(items["p3"]["num"][2])  # ecog 4.0 -> rank 4; empty


def test_ranks_are_standardised_with_missing_indicator(tmp_path):
    mod, items = fitted(tmp_path, frame())
    train_ranks = np.array([items[pid]["num"][1] for pid in TRAIN], dtype=np.float64)
    assert mod.mean[1] == pytest.approx(np.nanmean(train_ranks)) and mod.std[1] == pytest.approx(
        np.nanstd(train_ranks)
    )
    p4 = mod.transform(items["p4"], False)  # stage missing
    assert p4["num_missing"].tolist() == [False, True, False, False] and p4["num"][1].item() == 0.0
    p3 = mod.transform(items["p3"], False)
    assert p3["num"][1].item() == pytest.approx((3 - mod.mean[1]) / mod.std[1], rel=1e-5)


def test_inferred_types_unchanged_without_overrides(tmp_path):
    mod = EHRModality()
    mod.gather(cohort(tmp_path, frame()))
    assert mod.num_columns == ["age", "ecog"] and mod.cat_columns == ["stage", "smoker", "sex"]
    assert mod.types.ordinal == {} and mod.types.boolean == []


def test_unknown_level_bad_boolean_and_inf_are_named_at_check_time(tmp_path):
    table = frame().astype({"age": float})
    table.loc[5, "stage"] = "IIII"
    table.loc[6, "smoker"] = "maybe"
    table.loc[2, "age"] = np.inf
    mod = EHRModality(**TYPES)
    refs = mod.gather(cohort(tmp_path, table))
    assert mod.check(refs["p0"]) == []
    (stage,) = mod.check(refs["p5"])
    for part in (
        "ehr.csv",
        "patient 'p5'",
        "column 'stage'",
        "'IIII'",
        "['I', 'II', 'III', 'IV']",
        "ordinal",
    ):
        assert part in stage
    (smoker,) = mod.check(refs["p6"])
    for part in ("patient 'p6'", "column 'smoker'", "'maybe'", "boolean"):
        assert part in smoker
    (age,) = mod.check(refs["p2"])
    assert "patient 'p2'" in age and "column 'age'" in age and "infinite" in age
    with pytest.raises(ValueError, match=r"patient 'p5'.*'stage'.*'IIII'"):
        mod.load(refs["p5"])


@pytest.mark.parametrize(
    ("value", "expected"),
    [("YES", 1.0), ("False", 0.0), (1, 1.0), (0.0, 0.0), (True, 1.0), (np.bool_(False), 0.0), ("", None)],
)
def test_boolean_words(value, expected):
    got = to_boolean(value)
    assert np.isnan(got) if expected is None else got == expected


@pytest.mark.parametrize("value", ["2", "y", "maybe", 0.5, -1])
def test_boolean_rejects_other_values(value):
    with pytest.raises(ValueError, match="is not a boolean"):
        to_boolean(value)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"ordinal": {"stage": ["I", "II", "I"]}}, r"'stage' lists levels \['I'\] twice"),
        ({"ordinal": {"stage": []}}, "non-empty list of levels"),
        ({"ordinal": {"stage": "I,II"}}, "non-empty list of levels"),
        ({"ordinal": {"stage": STAGES}, "categorical": ["stage"]}, "'stage' both categorical and ordinal"),
        ({"boolean": ["smoker"], "numeric": ["smoker"]}, "'smoker' both numeric and boolean"),
    ],
)
def test_bad_declarations(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        EHRModality(**kwargs)


def test_declared_column_not_used_is_an_error(tmp_path):
    with pytest.raises(ValueError, match=r"\['smoker'\].*not among the used columns"):
        EHRModality(columns=["age", "stage"], boolean=["smoker"]).gather(cohort(tmp_path, frame()))


def test_fit_uses_training_patients_only(tmp_path):
    mod, _ = fitted(tmp_path / "a", frame())
    changed = frame()
    held = changed["patient_id"].isin(HELD_OUT)
    changed.loc[held, ["stage", "ecog", "smoker", "age"]] = ["IV", 4, "yes", 99]
    mod2, items2 = fitted(tmp_path / "b", changed)
    assert mod.state_dict() == mod2.state_dict()
    changed.loc[changed["patient_id"] == "p0", "stage"] = "IV"  # a training patient does change it
    mod3, _ = fitted(tmp_path / "c", changed)
    assert mod3.state_dict()["mean"][1] != mod.state_dict()["mean"][1]


def test_state_round_trip_carries_the_types(tmp_path):
    mod, items = fitted(tmp_path, frame())
    state = json.loads(json.dumps(mod.state_dict()))
    assert state["ordinal"]["stage"] == STAGES and state["boolean"] == ["smoker"]
    restored = EHRModality(embed_dim=8)  # no type overrides: the checkpoint decides them
    restored.load_state_dict(state)
    refs = restored.gather(Cohort.load(tmp_path / "manifest.csv"))
    assert restored.types == mod.types
    for pid in IDS:
        a, b = mod.transform(items[pid], False), restored.transform(restored.load(refs[pid]), False)
        assert all(torch.equal(a[key], b[key]) for key in a)
    old = {k: v for k, v in state.items() if k not in ("ordinal", "boolean")}  # a pre-ordinal checkpoint
    with pytest.raises(ValueError, match="4 numeric statistics for 1"):
        EHRModality().load_state_dict(old)


@pytest.mark.parametrize(("encoder", "shape"), [("tokens", (5, 5, 8)), ("mlp", (5, 8))])
def test_encoders_see_every_column(tmp_path, encoder, shape):
    mod, items = fitted(tmp_path, frame(), encoder=encoder)
    batch = mod.collate([mod.transform(items[pid], True) for pid in TRAIN[:5]])
    assert batch["num"].shape == (5, 4) and batch["cat"].shape == (5, 1)
    net = mod.build_encoder()
    out = net(batch)
    assert out.shape == shape and mod.n_tokens == (5 if encoder == "tokens" else 1)
    out.pow(2).mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_config_overrides_compose(tmp_path):
    overrides = [
        "+modality=[ehr]",
        "modality.ehr.ordinal={stage:[I,II,III,IV]}",
        "modality.ehr.boolean=[smoker]",
    ]
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(overrides=overrides)
    mod = instantiate(cfg.modality.ehr)
    refs = mod.gather(cohort(tmp_path, frame()))
    assert mod.types.ordinal == {"stage": STAGES} and mod.types.boolean == ["smoker"]
    assert mod.load(refs["p3"])["num"][2] == 3  # features: age, ecog, stage, smoker


def test_a_mostly_numeric_text_column_is_warned_about_by_patient_never_by_value():
    """The warning that a column with a typo stays categorical names the patients, not the cells."""

    frame = pd.DataFrame(
        {"ldh": ["212", "198", "n/a 7731", "240", "251"]},
        index=pd.Index(["P1", "P2", "P3", "P4", "P5"], name="patient_id"),
    )
    with pytest.warns(UserWarning, match="categorical") as caught:
        numeric, categorical = infer_column_types(frame)
    assert (numeric, categorical) == ([], ["ldh"])
    message = str(caught[0].message)
    assert "1 of its values are not numbers (patients P3)" in message
    assert "7731" not in message and "n/a" not in message
