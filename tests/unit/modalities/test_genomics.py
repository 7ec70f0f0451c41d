"""GenomicsModality on a tiny cohort written with pandas: gather, load, check, fit, transform, encoder."""

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
from fusion.modalities.genomics import GenomicsModality

CONF_DIR = str(files("fusion.conf"))
GENES = [f"g{i}" for i in range(6)]
TRAIN = [f"p{i}" for i in range(8)]
HELD_OUT = ["p8", "p9"]


def genomics_frame(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    values = rng.lognormal(mean=2.0, sigma=1.0, size=(10, len(GENES)))
    values[2, 1] = np.nan  # a missing measurement
    values[:, 5] = 7.0  # a constant gene: std 0 -> 1
    frame = pd.DataFrame(values, columns=GENES)
    frame.insert(0, "patient_id", [f"p{i}" for i in range(10)])
    return frame


def write_cohort(root: Path, frame: pd.DataFrame) -> Cohort:
    """Manifest with one extra patient ('p_absent') who has no genomics row."""
    root.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"patient_id": [*TRAIN, *HELD_OUT, "p_absent"]}).to_csv(root / "manifest.csv", index=False)
    frame.to_csv(root / "genomics.csv", index=False)
    return Cohort.load(root / "manifest.csv")


def fitted(cohort: Cohort, **kwargs) -> tuple[GenomicsModality, dict]:
    mod = GenomicsModality(embed_dim=16, hidden=(8,), **{"min_group": 1, **kwargs})
    refs = mod.gather(cohort)
    items = {pid: mod.load(ref) for pid, ref in refs.items() if ref is not None}
    mod.fit([items[pid] for pid in TRAIN])
    return mod, items


def test_gather_rows_and_absent_patient(tmp_path):
    mod = GenomicsModality()
    refs = mod.gather(write_cohort(tmp_path, genomics_frame()))
    assert refs["p_absent"] is None
    assert list(refs["p0"].index) == GENES
    assert mod.genes == GENES and mod.table_path == tmp_path / "genomics.csv"


def test_load_selected_genes_in_order_keeps_nan(tmp_path):
    frame = genomics_frame()
    mod = GenomicsModality(genes=["g3", "g1"])
    refs = mod.gather(write_cohort(tmp_path, frame))
    assert list(refs["p0"].index) == ["g3", "g1"]
    item = mod.load(refs["p2"])
    assert item.dtype == np.float32 and item.shape == (2,)
    assert item[0] == pytest.approx(frame.loc[2, "g3"]) and np.isnan(item[1])


def test_configured_gene_absent_from_table_is_a_clear_error(tmp_path):
    mod = GenomicsModality(genes=["g1", "BRCA1", "TP53"])
    with pytest.raises(ValueError, match=r"\['BRCA1', 'TP53'\].*genomics\.csv"):
        mod.gather(write_cohort(tmp_path, genomics_frame()))


def test_bad_cells_are_named_by_check_and_load(tmp_path):
    frame = genomics_frame().astype({"g2": object, "g4": object})
    frame.loc[3, "g2"] = "abc"
    frame.loc[4, "g4"] = "inf"
    mod = GenomicsModality()
    refs = mod.gather(write_cohort(tmp_path, frame))
    assert mod.check(refs["p0"]) == []
    (problem,) = mod.check(refs["p3"])
    assert "'g2'" in problem and "'abc'" in problem and "genomics.csv" in problem
    with pytest.raises(ValueError, match=r"'g2'.*non-numeric value 'abc'"):
        mod.load(refs["p3"])
    with pytest.raises(ValueError, match=r"'g4'.*infinite"):
        mod.load(refs["p4"])


def test_inf_in_numeric_table_and_negative_values_with_log1p(tmp_path):
    frame = genomics_frame()
    frame.loc[1, "g0"] = np.inf
    frame.loc[6, "g3"] = -2.0
    mod = GenomicsModality()
    refs = mod.gather(write_cohort(tmp_path, frame))
    assert any("'g0'" in p and "infinite" in p for p in mod.check(refs["p1"]))
    assert any("'g3'" in p and "log1p" in p for p in mod.check(refs["p6"]))
    assert GenomicsModality(log1p=False).check(refs["p6"]) == []


def test_fit_uses_training_items_only(tmp_path):
    frame = genomics_frame()
    mod, _ = fitted(write_cohort(tmp_path / "a", frame))
    changed = frame.copy()
    changed.loc[changed["patient_id"].isin(HELD_OUT), GENES] = 1e6  # validation / test patients only
    mod2, _ = fitted(write_cohort(tmp_path / "b", changed))
    assert mod.state_dict() == mod2.state_dict()
    train = np.log1p(frame.set_index("patient_id").loc[TRAIN, GENES].to_numpy())
    np.testing.assert_allclose(mod.mean, np.nanmean(train, axis=0))
    np.testing.assert_allclose(mod.std[:5], np.nanstd(train, axis=0)[:5])
    assert mod.std[5] == 1.0  # constant gene


def test_transform_log1p_zscore_nan_to_zero(tmp_path):
    mod, items = fitted(write_cohort(tmp_path, genomics_frame()))
    out = mod.transform(items["p2"], train=True)
    assert out.dtype == torch.float32 and out.shape == (len(GENES),)
    expected = (np.log1p(items["p2"].astype(np.float64)) - mod.mean) / mod.std
    assert out[1].item() == 0.0  # the missing value sits at the training mean
    np.testing.assert_allclose(out.numpy()[[0, 2, 3, 4]], expected[[0, 2, 3, 4]], rtol=1e-5)
    train = torch.stack([mod.transform(items[pid], train=False) for pid in TRAIN])
    torch.testing.assert_close(train[:, [0, 2, 3, 4]].mean(0), torch.zeros(4), atol=1e-5, rtol=0)


def test_transform_before_fit_is_a_clear_error(tmp_path):
    mod = GenomicsModality()
    refs = mod.gather(write_cohort(tmp_path, genomics_frame()))
    with pytest.raises(RuntimeError, match="before fit"):
        mod.transform(mod.load(refs["p0"]), train=False)


def test_state_round_trip_gives_identical_transform(tmp_path):
    mod, items = fitted(write_cohort(tmp_path, genomics_frame()), log1p=True)
    state = json.loads(json.dumps(mod.state_dict()))  # plain values only
    restored = GenomicsModality(embed_dim=16, hidden=(8,), log1p=False)
    restored.load_state_dict(state)
    assert restored.genes == GENES and restored.log1p
    for pid in (*TRAIN, *HELD_OUT):
        assert torch.equal(mod.transform(items[pid], False), restored.transform(items[pid], False))
    assert restored.build_encoder().net[0].in_features == len(GENES)


def test_encoder_shape_and_backward(tmp_path):
    mod, items = fitted(write_cohort(tmp_path, genomics_frame()))
    batch = mod.collate([mod.transform(items[pid], train=True) for pid in TRAIN[:5]])
    encoder = mod.build_encoder()
    out = encoder(batch)
    assert out.shape == (5, mod.out_dim) == (5, 16)
    out.sum().backward()
    assert all(p.grad is not None for p in encoder.parameters())


def test_config_composes_with_gene_subset(tmp_path):
    overrides = ["+modality=[genomics]", "modality.genomics.genes=[g4,g0]", "modality.genomics.hidden=[12,6]"]
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(overrides=overrides)
    mod = instantiate(cfg.modality.genomics)
    assert isinstance(mod, GenomicsModality) and mod.name == "genomics" and mod.hidden == (12, 6)
    refs = mod.gather(write_cohort(tmp_path, genomics_frame()))
    assert mod.load(refs["p0"]).shape == (2,)
    mod.fit([mod.load(refs[pid]) for pid in TRAIN])
    assert mod.build_encoder()(torch.zeros(3, 2)).shape == (3, 64)


def test_input_noise_reaches_the_encoder_and_is_validated(tmp_path):
    mod, _ = fitted(write_cohort(tmp_path, genomics_frame()), input_noise=0.8)
    assert mod.build_encoder().noise.sd == 0.8
    assert GenomicsModality().input_noise == 0.0  # opt-in
    assert GenomicsModality(value_type="cnv", input_noise=0.5).input_noise == 0.5
    with pytest.raises(ValueError, match="input_noise is for continuous values"):
        GenomicsModality(format="maf", input_noise=0.5)
    with pytest.raises(ValueError, match="modality 'genomics': input_noise must be >= 0"):
        GenomicsModality(input_noise=-1)
