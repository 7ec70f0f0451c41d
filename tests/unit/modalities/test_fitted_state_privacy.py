"""Issue 17, case 1: a modality's fitted state holds no individual's value.

A small EHR table with planted distinctive values (an age of 97.123, a biomarker of 8642.5, a town seen
once) goes through gather -> load -> fit -> state_dict: no stored number equals a training value, no
stored string is a category of fewer than `min_group` patients, and the JSON round trip predicts the same.
Genomics and histology keep no statistic of fewer than `min_group` patients.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from fusion.data.cohort import Cohort
from fusion.modalities.ehr import EHRModality
from fusion.modalities.genomics import GenomicsModality
from fusion.modalities.histology import HistologyModality
from fusion.modalities.histology_inputs import DEFAULT_MEAN, DEFAULT_STD

N_TRAIN, N_HELD_OUT = 30, 4
TRAIN = [f"p{i:02d}" for i in range(N_TRAIN)]
HELD_OUT = [f"h{i}" for i in range(N_HELD_OUT)]
PLANTED_AGE, PLANTED_MARKER, PLANTED_TOWN = 97.123, 8642.5, "Little Snoring"


def planted_frame() -> pd.DataFrame:
    rng = np.random.default_rng(17)
    n = N_TRAIN + N_HELD_OUT
    age = rng.uniform(40, 80, n).round(3)
    age[3] = PLANTED_AGE  # the oldest training patient
    marker = rng.lognormal(4.0, 0.8, n).round(1) + 2.05  # never an integer, 0 or 1
    marker[7] = PLANTED_MARKER
    towns = ["Leeds"] * 14 + ["York"] * 12 + ["Ripon", "Selby", "Thirsk", PLANTED_TOWN]
    towns += ["Leeds", "York", "Atlantis", None]  # held out: two common towns, one unseen, one missing
    sparse = np.full(n, np.nan)
    sparse[:6] = rng.uniform(3.3, 9.9, 6).round(2)  # 6 training values < min_group: nothing stored
    mid = np.full(n, np.nan)
    mid[:15] = rng.uniform(120.5, 180.5, 15).round(2)  # 15 values: z-scored, not quantile-scaled
    return pd.DataFrame(
        {
            "patient_id": TRAIN + HELD_OUT,
            "age": age,
            "marker": marker,
            "sparse_lab": sparse,
            "mid_lab": mid,
            "sex": (["F", "M"] * n)[:n],
            "town": towns,
        }
    )


def write_cohort(root: Path, frame: pd.DataFrame, table: str = "ehr.csv") -> Cohort:
    root.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"patient_id": frame["patient_id"]}).to_csv(root / "manifest.csv", index=False)
    frame.to_csv(root / table, index=False)
    return Cohort.load(root / "manifest.csv")


def numbers_and_strings(state: Any) -> tuple[list[float], list[str]]:
    """Every number and every string inside a (nested) state, keys included."""
    numbers: list[float] = []
    strings: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(key)
                walk(item)
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)
        elif isinstance(value, str):
            strings.append(value)
        elif isinstance(value, bool) or value is None:
            pass
        elif isinstance(value, int | float | np.floating | np.integer):
            numbers.append(float(value))

    walk(state)
    return numbers, strings


def training_values(frame: pd.DataFrame, columns: list[str]) -> set[float]:
    """The training patients' values, exactly and as the float32 the modality loads them as."""
    values = frame.set_index("patient_id").loc[TRAIN, columns].to_numpy(np.float64).ravel()
    values = values[~np.isnan(values)]
    return {float(v) for v in values} | {float(np.float32(v)) for v in values}


@pytest.fixture
def ehr_fitted(tmp_path):
    frame = planted_frame()
    mod = EHRModality(embed_dim=8)  # min_group: the default, 10
    refs = mod.gather(write_cohort(tmp_path, frame))
    items = {pid: mod.load(ref) for pid, ref in refs.items() if ref is not None}
    mod.fit([items[pid] for pid in TRAIN])
    return frame, mod, items


def test_ehr_state_holds_no_training_value_and_no_rare_category(ehr_fitted):
    frame, mod, _ = ehr_fitted
    state = json.loads(json.dumps(mod.state_dict()))
    numbers, strings = numbers_and_strings(state)
    train = training_values(frame, ["age", "marker", "sparse_lab", "mid_lab"])
    assert PLANTED_AGE in train and PLANTED_MARKER in train
    assert not train & set(numbers)
    assert max(numbers) < PLANTED_MARKER  # not even the largest value in some other form
    assert PLANTED_TOWN not in strings and not {"Ripon", "Selby", "Thirsk"} & set(strings)
    assert state["vocab"]["town"] == ["Leeds", "York"] and state["rare"]["town"] == 4
    assert state["vocab"]["sex"] == ["F", "M"] and state["rare"]["sex"] == 0


def test_ehr_columns_of_few_patients_store_no_statistic(ehr_fitted):
    _, mod, items = ehr_fitted
    state = mod.state_dict()
    features = mod.types.features
    sparse, mid = features.index("sparse_lab"), features.index("mid_lab")
    assert state["usable"][sparse] is False and state["mean"][sparse] == 0.0 and state["std"][sparse] == 1.0
    assert all(q[sparse] is None for q in state["quantiles"])  # not fitted: None, not NaN (plain JSON)
    out = mod.transform(items["p00"], train=False)  # p00 has a sparse_lab value: treated as missing
    assert out["num"][sparse].item() == 0.0 and out["num_missing"][sparse].item()
    # 15 values: enough for a mean / std, not for quantiles (2 x min_group), so z-scored
    assert state["usable"][mid] and all(q[mid] is None for q in state["quantiles"])
    expected = (items["p00"]["num"][mid] - state["mean"][mid]) / state["std"][mid]
    assert out["num"][mid].item() == pytest.approx(expected, rel=1e-5)
    assert all(q[features.index("age")] is not None for q in state["quantiles"])


def test_rare_and_unseen_categories_map_to_the_rare_level(ehr_fitted):
    _, mod, items = ehr_fitted
    town = mod.cat_columns.index("town")
    rare_level = len(mod.vocab["town"]) + 1
    index = {pid: mod.transform(items[pid], False)["cat"][town].item() for pid in TRAIN + HELD_OUT}
    assert index["p29"] == rare_level  # Little Snoring, seen once in training
    assert index["h2"] == rare_level  # Atlantis, never seen
    assert index["h3"] == 0  # missing
    assert index["h0"] == 1 and index["h1"] == 2  # Leeds, York
    cards = mod.build_encoder().tokenizer.cat_cardinalities  # levels: missing, Leeds, York, rare
    assert list(cards)[town] == 4


def test_state_round_trip_predicts_the_same(ehr_fitted, tmp_path):
    _, mod, items = ehr_fitted
    restored = EHRModality(embed_dim=8)
    restored.load_state_dict(json.loads(json.dumps(mod.state_dict())))
    refs = restored.gather(Cohort.load(tmp_path / "manifest.csv"))
    torch.manual_seed(0)
    net = mod.build_encoder()
    torch.manual_seed(0)
    net_restored = restored.build_encoder()
    for pid in TRAIN + HELD_OUT:
        a, b = mod.transform(items[pid], False), restored.transform(restored.load(refs[pid]), False)
        assert all(torch.equal(a[key], b[key]) for key in a)
    batch = mod.collate([mod.transform(items[pid], False) for pid in HELD_OUT])
    batch_restored = restored.collate(
        [restored.transform(restored.load(refs[pid]), False) for pid in HELD_OUT]
    )
    assert torch.equal(net(batch), net_restored(batch_restored))


def test_fallbacks_are_logged_without_values(tmp_path, caplog):
    frame = planted_frame()
    mod = EHRModality(embed_dim=8)
    refs = mod.gather(write_cohort(tmp_path, frame))
    with caplog.at_level(logging.INFO, logger="fusion.modalities.ehr"):
        mod.fit([mod.load(refs[pid]) for pid in TRAIN])
    text = caplog.text
    assert "sparse_lab" in text and "mid_lab" in text and "rare level" in text
    assert PLANTED_TOWN not in text and "97.1" not in text and "8642" not in text


def test_min_group_is_one_setting_every_modality_config_reads():
    from fusion.api import compose

    cfg = compose(["privacy.min_group=25", "modality=[ehr,genomics,histology,rna]"])
    for name in ("ehr", "genomics", "histology", "rna"):
        assert cfg.modality[name].min_group == 25
    assert compose(["modality=[ehr]"]).modality.ehr.min_group == 10
    with pytest.raises(ValueError, match="min_group"):
        EHRModality(min_group=0)


# ----------------------------------------------------------------------------- genomics, histology
def genomics_frame() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    n = N_TRAIN + N_HELD_OUT
    values = rng.lognormal(2.0, 1.0, size=(n, 3)).round(4) + 0.0003
    values[5, 0] = 8642.5
    values[6:, 2] = np.nan  # g2 measured in 6 training patients only
    frame = pd.DataFrame(values, columns=["g0", "g1", "g2"])
    frame.insert(0, "patient_id", TRAIN + HELD_OUT)
    return frame


def test_genomics_keeps_no_per_gene_statistic_of_few_patients(tmp_path):
    frame = genomics_frame()
    mod = GenomicsModality(embed_dim=8, hidden=(4,), value_type="cnv")  # z-score, no log
    refs = mod.gather(write_cohort(tmp_path, frame, "genomics.csv"))
    items = {pid: mod.load(ref) for pid, ref in refs.items() if ref is not None}
    mod.fit([items[pid] for pid in TRAIN])
    state = json.loads(json.dumps(mod.state_dict()))
    assert state["usable"] == [True, True, False]
    assert state["mean"][2] == 0.0 and state["std"][2] == 1.0
    numbers, _ = numbers_and_strings(state)
    assert not training_values(frame, ["g0", "g1", "g2"]) & set(numbers)
    assert mod.transform(items["p00"], False)[2].item() == 0.0  # measured, but its gene counts as missing
    restored = GenomicsModality(embed_dim=8, hidden=(4,), value_type="cnv")
    restored.load_state_dict(state)
    for pid in TRAIN[:3]:
        assert torch.equal(mod.transform(items[pid], False), restored.transform(items[pid], False))


def test_histology_colour_statistics_need_min_group_patients():
    rng = np.random.default_rng(0)
    bags = [torch.from_numpy(rng.integers(0, 256, (2, 3, 8, 8), dtype=np.uint8)) for _ in range(12)]
    few = HistologyModality(tile_size=8)
    few.fit(bags[:9])
    assert few.mean == DEFAULT_MEAN and few.std == DEFAULT_STD and not few.fitted
    enough = HistologyModality(tile_size=8)
    enough.fit(bags)
    assert enough.fitted and enough.mean != DEFAULT_MEAN


def test_a_checkpoint_from_before_the_rule_still_loads():
    """Old state: quantiles at evenly spaced probabilities 0..1, no usable mask, no rare level."""
    old = {
        "numeric": ["age"],
        "categorical": ["town"],
        "mean": [60.0],
        "std": [10.0],
        "quantiles": [[40.0], [60.0], [80.0]],
        "counts": [3],
        "vocab": {"town": ["Leeds", "York"]},
    }
    mod = EHRModality(embed_dim=8)
    mod.load_state_dict(old)
    out = mod.transform({"num": np.array([60.0], dtype=np.float32), "cat": ["Atlantis"]}, False)
    assert out["num"][0].item() == pytest.approx(0.0, abs=1e-6)  # the middle of 0, 0.5, 1
    assert out["cat"][0].item() == 0  # unseen: the missing index, as before
    assert list(mod.build_encoder().tokenizer.cat_cardinalities) == [3]
    assert "rare" not in mod.state_dict() and "usable" not in mod.state_dict()
