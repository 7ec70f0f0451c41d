"""A modality added from outside the package: one class + one YAML selected by name (the Hydra route),
or an instance handed to `fusion.train` (the object route). Either way the checkpoint alone predicts,
from a fresh process, and the modality's input really reaches the model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import fusion
from fusion.errors import ConfigError
from fusion.modalities.genomics import GenomicsModality
from tests.integration.conftest import PLUGIN_ENV, run_module, run_with_plugin, tiny_overrides
from tests.integration.user_plugin.my_modality import RadiomicsModality

REPO = Path(__file__).resolve().parents[2]


#: the 40-patient cohort's test split holds a single non-responder: below the default minimum of 2 per
#: class (`data.split.min_per_class`), which these tests do not exercise
SMALL_TEST_SPLIT = "data.split.min_per_class.test=1"


def add_radiomics(manifest_path: Path) -> pd.DataFrame:
    """A per-patient .npy feature file in a `radiomics` column; every fifth patient misses it."""
    manifest = pd.read_csv(manifest_path)
    rng = np.random.default_rng(0)
    (manifest_path.parent / "radiomics").mkdir()
    paths = []
    for i, pid in enumerate(manifest["patient_id"]):
        if i % 5 == 0:
            paths.append("")
            continue
        np.save(manifest_path.parent / "radiomics" / f"{pid}.npy", rng.normal(size=6).astype("float32"))
        paths.append(f"radiomics/{pid}.npy")
    manifest["radiomics"] = paths
    manifest.to_csv(manifest_path, index=False)
    return manifest


def predict_in_fresh_process(ckpt: Path, manifest: Path, out: Path) -> pd.DataFrame:
    """`fusion.predict` in a new interpreter: nothing of the training process (no imported user class)."""
    code = "import sys, fusion; fusion.predict(sys.argv[1], sys.argv[2], output=sys.argv[3])"
    result = subprocess.run(
        [sys.executable, "-c", code, str(ckpt), str(manifest), str(out)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "WANDB_MODE": "offline"},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return pd.read_csv(out, dtype={"patient_id": str})


def assert_radiomics_is_used(ckpt: Path, manifest_path: Path, tmp_path: Path, run_predict) -> None:
    """The radiomics encoder has trained weights, and emptying the column changes the predictions of
    exactly the patients who had it."""
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert tuple(state["state_dict"]["model.encoders.radiomics.0.weight"].shape) == (8, 6)
    assert len(state["fusion"]["modality_state"]["radiomics"]["mean"]) == 6
    with_it = run_predict(manifest_path, tmp_path / "with")
    emptied = pd.read_csv(manifest_path)
    had_it = emptied["radiomics"].notna().to_numpy()
    emptied["radiomics"] = None
    emptied_path = manifest_path.parent / "emptied.csv"  # beside the tables it names
    emptied.to_csv(emptied_path, index=False)
    without = run_predict(emptied_path, tmp_path / "without")
    changed = ~np.isclose(with_it["risk"], without["risk"], atol=1e-7, equal_nan=True)
    assert changed[had_it].all() and not changed[~had_it].any()


def test_user_modality_trains_and_predicts_via_hydra(cohort_copy, tmp_path):
    add_radiomics(cohort_copy)
    run = tmp_path / "run"
    result = run_with_plugin(
        "fusion.cli.train",
        f"data.manifest={cohort_copy}",
        f"hydra.run.dir={run}",
        *tiny_overrides("modality=[genomics,radiomics]"),
        SMALL_TEST_SPLIT,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert isinstance(json.loads((run / "metrics.json").read_text())["test/survival_cindex"], float)

    def run_predict(manifest: Path, out: Path) -> pd.DataFrame:
        done = run_module(
            "fusion.cli.predict",
            f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}",
            f"data.manifest={manifest}",
            f"hydra.run.dir={out}",
            env=PLUGIN_ENV,
        )
        assert done.returncode == 0, done.stderr[-4000:]
        return pd.read_csv(out / "predictions.csv")

    assert len(run_predict(cohort_copy, tmp_path / "all")) == len(pd.read_csv(cohort_copy))
    assert_radiomics_is_used(run / "checkpoints" / "last.ckpt", cohort_copy, tmp_path, run_predict)


@pytest.mark.parametrize("selection", ["modality=[]", "modality=[ct,ehr]"])
def test_instances_round_trip_through_the_checkpoint(cohort_copy, tmp_path, selection):
    """`fusion.train(cfg, modalities=[instances])`, whether the config selects no modality or others, then
    `fusion.predict(best checkpoint, manifest)` in a fresh process predicts every patient, exactly as the
    training process does."""
    manifest = add_radiomics(cohort_copy)
    cfg = fusion.compose([f"data.manifest={cohort_copy}", *tiny_overrides(selection), SMALL_TEST_SPLIT])
    instances = [RadiomicsModality(embed_dim=8), GenomicsModality(name="genomics", embed_dim=16)]
    result = fusion.train(cfg, output_dir=tmp_path / "run", modalities=instances)
    assert result.best_checkpoint is not None and result.best_checkpoint.exists()
    assert result.last_checkpoint == tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert result.metrics == {
        k: v for k, v in json.loads((tmp_path / "run" / "metrics.json").read_text()).items() if "/" in k
    }

    recorded = torch.load(result.best_checkpoint, map_location="cpu", weights_only=True)["fusion"]["config"]
    assert recorded["modality"]["radiomics"]["_target_"] == (
        "tests.integration.user_plugin.my_modality.RadiomicsModality"
    )
    assert recorded["modality"]["radiomics"]["embed_dim"] == 8
    assert recorded["modality"]["genomics"]["embed_dim"] == 16
    assert set(recorded["modality"]) == {"radiomics", "genomics"}  # the instances replace the selection

    here = fusion.predict(result.best_checkpoint, cohort_copy)
    fresh = predict_in_fresh_process(result.best_checkpoint, cohort_copy, tmp_path / "fresh.csv")
    assert fresh["patient_id"].tolist() == manifest["patient_id"].astype(str).tolist()
    predicted = fresh.drop(columns="patient_id").notna().all(axis=1).to_numpy()
    has_radiomics = (manifest["radiomics"] != "").to_numpy()
    # a patient with neither input keeps an empty row; everyone with radiomics is predicted
    assert predicted[has_radiomics].all() and predicted.sum() > has_radiomics.sum() * 0.9
    pd.testing.assert_frame_equal(here.reset_index(drop=True), fresh, check_dtype=False, atol=1e-6)

    def run_predict(manifest_path: Path, out: Path) -> pd.DataFrame:
        return predict_in_fresh_process(result.best_checkpoint, manifest_path, out.with_suffix(".csv"))

    assert_radiomics_is_used(result.best_checkpoint, cohort_copy, tmp_path, run_predict)


def test_an_instance_that_cannot_be_rebuilt_is_refused_before_training(cohort_copy, tmp_path):
    class Local(RadiomicsModality):  # defined in a function: no later process can import it
        pass

    cfg = fusion.compose([f"data.manifest={cohort_copy}", *tiny_overrides("modality=[]")])
    with pytest.raises(ConfigError, match="defined in a function"):
        fusion.train(cfg, output_dir=tmp_path / "run", modalities=[Local()])
    with pytest.raises(ConfigError, match="argument 'embed_dim'"):
        fusion.train(cfg, output_dir=tmp_path / "run", modalities=[RadiomicsModality(embed_dim=lambda: 8)])
    assert not (tmp_path / "run" / "checkpoints").exists()
