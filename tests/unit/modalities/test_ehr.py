"""EHRModality on a tiny clinical table written with pandas: types, missing values, vocabularies, encoders."""

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

CONF_DIR = str(files("fusion.conf"))
TRAIN = [f"p{i}" for i in range(8)]
HELD_OUT = ["p8", "p9"]
NUM, CAT = ["age", "ecog", "ldh"], ["sex", "stage", "smoking"]


def ehr_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "patient_id": [f"p{i}" for i in range(10)],
            "age": [61, 55, 70, 48, 66, 59, 73, 52, 64, 58],
            "sex": ["F", "M", "M", "F", "F", "M", None, "F", "M", "F"],
            "stage": ["I", "II", "III", "IV", "II", "I", "III", "II", "IV", "I"],
            "ecog": [0, 1, 2, 0, 1, 0, 2, 1, 0, 1],
            "smoking": [
                "never",
                "former",
                "current",
                "never",
                "former",
                "never",
                "current",
                "former",
                "vaping",
                "",
            ],
            "ldh": [210.0, None, 250.5, 190.0, None, 300.0, 220.0, 205.0, 500.0, None],
        }
    )


def write_cohort(root: Path, frame: pd.DataFrame) -> Cohort:
    """Manifest with one extra patient ('p_absent') who has no EHR row; empty cells written as such."""
    root.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"patient_id": [*TRAIN, *HELD_OUT, "p_absent"]}).to_csv(root / "manifest.csv", index=False)
    frame.to_csv(root / "ehr.csv", index=False)
    return Cohort.load(root / "manifest.csv")


def fitted(cohort: Cohort, **kwargs) -> tuple[EHRModality, dict]:
    mod = EHRModality(embed_dim=8, **{"min_group": 1, **kwargs})  # 1: no pooling, every statistic
    refs = mod.gather(cohort)
    items = {pid: mod.load(ref) for pid, ref in refs.items() if ref is not None}
    mod.fit([items[pid] for pid in TRAIN])
    return mod, items


def test_gather_infers_types_and_absent_patient(tmp_path):
    mod = EHRModality()
    refs = mod.gather(write_cohort(tmp_path, ehr_frame()))
    assert refs["p_absent"] is None and refs["p0"] is not None
    assert mod.num_columns == NUM and mod.cat_columns == CAT


def test_type_overrides_and_column_subset(tmp_path):
    cohort = write_cohort(tmp_path, ehr_frame())
    mod = EHRModality(categorical=["ecog"])
    mod.gather(cohort)
    assert mod.num_columns == ["age", "ldh"] and "ecog" in mod.cat_columns
    sub = EHRModality(columns=["stage", "age"], numeric=["age"])
    refs = sub.gather(cohort)
    assert sub.num_columns == ["age"] and sub.cat_columns == ["stage"]
    assert sub.load(refs["p3"])["cat"] == ["IV"]
    with pytest.raises(ValueError, match=r"\['weight'\].*ehr\.csv"):
        EHRModality(columns=["age", "weight"]).gather(cohort)
    with pytest.raises(ValueError, match="both numeric and categorical"):
        EHRModality(numeric=["ecog"], categorical=["ecog"])


def test_non_numeric_value_in_numeric_column_is_named(tmp_path):
    frame = ehr_frame().astype({"ldh": object})
    frame.loc[5, "ldh"] = "high"
    # the warning of a run that goes on names the patient, never the cell (a table value in a log)
    with pytest.warns(UserWarning, match=r"'ldh'.*patients p5\).*numeric=\[ldh\]") as caught:
        inferred = EHRModality()
        inferred.gather(write_cohort(tmp_path, frame))
    assert all("high" not in str(w.message) for w in caught)
    assert "ldh" in inferred.cat_columns  # inference follows the contract, but warned
    mod = EHRModality(numeric=["ldh"])
    refs = mod.gather(Cohort.load(tmp_path / "manifest.csv"))
    assert mod.check(refs["p0"]) == []
    (problem,) = mod.check(refs["p5"])
    assert "'ldh'" in problem and "'high'" in problem and "ehr.csv" in problem
    with pytest.raises(ValueError, match=r"'ldh'.*'high'"):
        mod.load(refs["p5"])


def test_load_keeps_nan_and_raw_categories(tmp_path):
    mod = EHRModality()
    refs = mod.gather(write_cohort(tmp_path, ehr_frame()))
    item = mod.load(refs["p6"])
    assert item["num"].dtype == np.float32
    np.testing.assert_array_equal(item["num"], np.array([73, 2, 220], dtype=np.float32))
    assert item["cat"] == [None, "III", "current"]
    assert np.isnan(mod.load(refs["p1"])["num"][2])
    assert mod.load(refs["p9"])["cat"][2] is None  # empty cell


def test_fit_uses_training_items_only(tmp_path):
    frame = ehr_frame()
    mod, _ = fitted(write_cohort(tmp_path / "a", frame))
    changed = frame.copy()
    held_out = changed["patient_id"].isin(HELD_OUT)
    changed.loc[held_out, "age"] = 1e6
    changed.loc[held_out, "ldh"] = 1e6
    changed.loc[held_out, "sex"] = "X"
    changed.loc[held_out, "stage"] = "V"
    mod2, _ = fitted(write_cohort(tmp_path / "b", changed))
    assert mod.state_dict() == mod2.state_dict()
    assert mod.vocab == {
        "sex": ["F", "M"],
        "stage": ["I", "II", "III", "IV"],
        "smoking": ["current", "former", "never"],
    }
    train_ldh = frame.set_index("patient_id").loc[TRAIN, "ldh"].to_numpy()
    assert mod.mean[2] == pytest.approx(np.nanmean(train_ldh)) and mod.std[2] == pytest.approx(
        np.nanstd(train_ldh)
    )


def test_transform_missing_indicator_and_unseen_category(tmp_path):
    mod, items = fitted(write_cohort(tmp_path, ehr_frame()), scaling="zscore")
    p1 = mod.transform(items["p1"], train=True)  # ldh missing
    assert p1["num"].dtype == torch.float32 and p1["cat"].dtype == torch.long
    assert p1["num_missing"].tolist() == [False, False, True] and p1["num"][2].item() == 0.0
    assert p1["num"][0].item() == pytest.approx((55 - mod.mean[0]) / mod.std[0], rel=1e-5)
    assert mod.transform(items["p6"], False)["cat"][0].item() == 0  # missing sex
    p8 = mod.transform(items["p8"], False)
    assert p8["cat"][2].item() == 4  # 'vaping' never seen in training: the rare level, after 3 smoking values
    assert p8["cat"][:2].tolist() == [2, 4]  # 'M', 'IV'
    assert not p8["num_missing"].any()


def test_quantile_scaling_is_the_default_and_bounds_a_new_extreme(tmp_path):
    frame = ehr_frame()
    mod, items = fitted(write_cohort(tmp_path, frame))
    assert mod.scaling == "quantile" and mod.quantiles is not None
    train_ages = frame.set_index("patient_id").loc[TRAIN, "age"].to_numpy(float)
    ranks = [mod.transform(items[pid], False)["num"][0].item() for pid in TRAIN]
    assert np.argsort(ranks, kind="stable").tolist() == np.argsort(train_ages, kind="stable").tolist()
    bound = max(abs(r) for r in ranks)
    extreme = {**items["p0"], "num": np.array([1e9, 1.0, 1e9], dtype=np.float32)}
    z = mod.transform(extreme, False)["num"]
    assert z[0].item() == pytest.approx(bound) and abs(z[2].item()) <= bound + 1e-6  # not 1e9 / sd


def test_collate_shapes_and_transform_before_fit(tmp_path):
    mod, items = fitted(write_cohort(tmp_path, ehr_frame()))
    batch = mod.collate([mod.transform(items[pid], False) for pid in TRAIN[:4]])
    assert batch["num"].shape == (4, 3) and batch["num"].dtype == torch.float32
    assert batch["num_missing"].shape == (4, 3) and batch["num_missing"].dtype == torch.bool
    assert batch["cat"].shape == (4, 3) and batch["cat"].dtype == torch.long
    fresh = EHRModality()
    fresh.gather(Cohort.load(tmp_path / "manifest.csv"))
    with pytest.raises(RuntimeError, match="before fit"):
        fresh.transform(items["p0"], False)


def test_state_round_trip_gives_identical_transform(tmp_path):
    mod, items = fitted(write_cohort(tmp_path, ehr_frame()), categorical=["ecog"])
    state = json.loads(json.dumps(mod.state_dict()))  # plain values only
    restored = EHRModality(embed_dim=8)  # no gather: the checkpoint decides columns and types
    restored.load_state_dict(state)
    refs = restored.gather(Cohort.load(tmp_path / "manifest.csv"))
    assert restored.cat_columns == mod.cat_columns and "ecog" in restored.cat_columns
    for pid in (*TRAIN, *HELD_OUT):
        a, b = mod.transform(items[pid], False), restored.transform(restored.load(refs[pid]), False)
        assert all(torch.equal(a[key], b[key]) for key in a)


@pytest.mark.parametrize(("encoder", "shape"), [("tokens", (5, 6, 8)), ("mlp", (5, 8))])
def test_encoders_shape_and_backward(tmp_path, encoder, shape):
    mod, items = fitted(write_cohort(tmp_path, ehr_frame()), encoder=encoder)
    batch = mod.collate([mod.transform(items[pid], True) for pid in TRAIN[:5]])
    net = mod.build_encoder()
    out = net(batch)
    assert out.shape == shape and mod.out_dim == 8
    assert mod.n_tokens == (6 if encoder == "tokens" else 1)
    out.pow(2).mean().backward()
    grads = [p.grad for p in net.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_config_composes_with_column_subset(tmp_path):
    overrides = ["+modality=[ehr]", "modality.ehr.columns=[age,stage,ldh]", "modality.ehr.encoder=mlp"]
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(overrides=overrides)
    mod = instantiate(cfg.modality.ehr)
    assert isinstance(mod, EHRModality) and mod.name == "ehr" and mod.encoder == "mlp"
    refs = mod.gather(write_cohort(tmp_path, ehr_frame()))
    assert mod.num_columns == ["age", "ldh"] and mod.cat_columns == ["stage"]
    mod.fit([mod.load(refs[pid]) for pid in TRAIN])
    batch = mod.collate([mod.transform(mod.load(refs[pid]), False) for pid in HELD_OUT])
    assert mod.build_encoder()(batch).shape == (2, 32)
