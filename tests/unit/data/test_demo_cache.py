"""A cached demo cohort is reused only when the generator that wrote it had this version's label rules."""

from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

from fusion.data.demo import ensure_demo_cohort
from fusion.data.synthetic.latent import SIGNAL_DESIGN
from fusion.errors import ConfigError


def cached_cohort(root, design):
    root.mkdir()
    (root / "manifest.csv").write_text("patient_id\nP0001\n")
    if design is not None:
        (root / "cohort.json").write_text(json.dumps({"signal_design": design}))
    return OmegaConf.create({"data": {"manifest": str(root / "manifest.csv"), "demo": {"n_patients": 4}}})


def test_a_cohort_from_this_generator_is_reused(tmp_path):
    cfg = cached_cohort(tmp_path / "demo", dict(SIGNAL_DESIGN))
    assert ensure_demo_cohort(cfg) == (tmp_path / "demo" / "manifest.csv").resolve()


def test_a_cohort_from_an_older_generator_names_the_rule_and_the_folder(tmp_path):
    old = dict(SIGNAL_DESIGN, response="Bernoulli(sigmoid(1.7*sensitivity - 0.7*aggressiveness + 0.2))")
    cfg = cached_cohort(tmp_path / "demo", old)
    expected = r"older generator: its response rule is 'Bernoulli\(sigmoid\(1\.7"
    with pytest.raises(ConfigError, match=expected) as err:
        ensure_demo_cohort(cfg)
    assert str(tmp_path / "demo") in str(err.value) and "Remove the folder" in str(err.value)


def test_a_cohort_without_cohort_json_is_the_users_own(tmp_path):
    cfg = cached_cohort(tmp_path / "mine", None)
    assert ensure_demo_cohort(cfg).exists()
