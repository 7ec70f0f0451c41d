"""A modality added from outside the package: one class + one YAML, selected by name."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from tests.integration.conftest import run_module, tiny_overrides

PLUGIN = Path(__file__).parent / "user_plugin"


def test_user_modality_trains_and_predicts_via_hydra(cohort_copy, tmp_path):
    manifest = pd.read_csv(cohort_copy)
    rng = np.random.default_rng(0)
    (cohort_copy.parent / "radiomics").mkdir()
    paths = []
    for i, pid in enumerate(manifest["patient_id"]):
        if i % 5 == 0:  # some patients miss it
            paths.append("")
            continue
        np.save(cohort_copy.parent / "radiomics" / f"{pid}.npy", rng.normal(size=6).astype("float32"))
        paths.append(f"radiomics/{pid}.npy")
    manifest["radiomics"] = paths
    manifest.to_csv(cohort_copy, index=False)

    env = {"PYTHONPATH": f"{PLUGIN}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    run = tmp_path / "run"
    result = run_module(
        "fusion.cli.train",
        f"data.manifest={cohort_copy}",
        f"hydra.run.dir={run}",
        f"hydra.searchpath=[file://{PLUGIN / 'conf'}]",
        *tiny_overrides("modality=[genomics,radiomics]"),
        env=env,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "test/survival_cindex" in json.loads((run / "metrics.json").read_text())

    pred = tmp_path / "pred"
    result = run_module(
        "fusion.cli.predict",
        f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}",
        f"data.manifest={cohort_copy}",
        f"hydra.run.dir={pred}",
        env=env,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert len(pd.read_csv(pred / "predictions.csv")) == len(manifest)
