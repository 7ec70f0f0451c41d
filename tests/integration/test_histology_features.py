"""Slides/tiles -> fusion-extract-features -> derived manifest -> fusion-train on feature bags."""

from __future__ import annotations

import json

import pandas as pd

from tests.integration.conftest import run_module, tiny_overrides


def test_extract_then_train_on_feature_bags(cohort_copy, tmp_path):
    out = tmp_path / "features"
    result = run_module(
        "fusion.cli.extract_features",
        f"data.manifest={cohort_copy}",
        f"out={out}",
        "encoder=small_cnn",
        "tile_size=16",
        "batch_size=8",
        "num_workers=0",
        "progress=false",
        f"hydra.run.dir={tmp_path / 'extract_run'}",
    )
    assert result.returncode == 0, result.stderr[-4000:]
    derived = pd.read_csv(out / "manifest.csv")
    original = pd.read_csv(cohort_copy)
    assert derived["histology"].notna().sum() == original["histology"].notna().sum()
    assert all((out / p).exists() for p in derived["histology"].dropna())

    run = tmp_path / "train"
    result = run_module(
        "fusion.cli.train",
        f"data.manifest={out / 'manifest.csv'}",
        f"hydra.run.dir={run}",
        *tiny_overrides(
            "modality=[histology,genomics]",
            "modality.histology.input=features",
            "modality.histology.feature_dim=16",
            "modality.histology.aggregator=transmil",
            "modality.histology.max_tiles_train=64",
        ),
    )
    assert result.returncode == 0, result.stderr[-4000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert "test/survival_cindex" in metrics and metrics["info"]["n_patients"]["test"] > 0
