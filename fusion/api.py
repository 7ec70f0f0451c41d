"""The Python API: the same runs as the CLI, from a notebook or a script.

    import fusion
    cfg = fusion.compose(["experiment=quickstart", "modality=[genomics,ehr]"])
    result = fusion.train(cfg, output_dir="runs/tabular")
    table = fusion.predict(result.best_checkpoint, "cohort/manifest.csv")
    why = fusion.explain(result.best_checkpoint, "cohort/manifest.csv", out="explained", patients=["P0007"])
    like = fusion.similar(result.best_checkpoint, "cohort/manifest.csv", k=10, output="similar")

Your own modality: subclass `fusion.Modality`, then either pass instances to `train(...,
modalities=[...])` or point a YAML at the class with `_target_` and select it by name. An instance is
recorded in the checkpoint by its class and constructor arguments, so `predict` rebuilds it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from hydra import compose as hydra_compose
from hydra import initialize_config_module
from omegaconf import DictConfig

from fusion.console import quiet_third_party
from fusion.explanations.runner import ExplainOptions, ExplainResult, explain_manifest
from fusion.modalities.base import Modality
from fusion.prediction import predict_manifest
from fusion.similar import SimilarResult, similar_manifest
from fusion.training import TrainResult, run_training


def compose(overrides: Sequence[str] = (), config_name: str = "train") -> DictConfig:
    """The config `fusion-train` would run with these command-line overrides."""
    with initialize_config_module(config_module="fusion.conf", version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=list(overrides))


def train(
    cfg: DictConfig | Sequence[str] = (),
    output_dir: str | Path = "outputs/api",
    modalities: dict[str, Modality] | Sequence[Modality] | None = None,
) -> TrainResult:
    """Train and evaluate. Returns the metrics written to `output_dir/metrics.json` (`.metrics`), the
    best checkpoint (`.best_checkpoint`: the one to predict with) and the last (`.last_checkpoint`).

    `modalities` (instances) replace the config's modality selection (which may then be empty:
    ``modality=[]``); everything else comes from `cfg`.
    """
    if not isinstance(cfg, DictConfig):
        cfg = compose(cfg)
    if modalities is not None and not isinstance(modalities, dict):
        modalities = {m.name: m for m in modalities}
    quiet_third_party()  # as the CLI: no hardware banner, tips or checkpoint-reload chatter
    return run_training(cfg, output_dir=output_dir, modalities=modalities)


def predict(
    ckpt_path: str | Path,
    manifest: str | Path,
    output: str | Path | None = None,
    k: int | None = None,
    report: str | None = None,
    explanations: str | Path | None = None,
) -> pd.DataFrame:
    """Predict every patient of a manifest with a trained checkpoint (any modality may be missing), as
    fusion-predict does: with `k`, also write each patient's k most similar training patients beside `output`
    (``retrieval.k``); ``report="patients"`` writes a page per patient (with a fusion-explain folder
    `explanations` when given)."""
    quiet_third_party()
    return predict_manifest(
        ckpt_path, manifest, output=output, retrieval_k=k, report=report, explanations=explanations
    )


def explain(
    ckpt_path: str | Path,
    manifest: str | Path,
    out: str | Path = "explanations",
    patients: Sequence[str] | None = None,
    heads: Sequence[str] | None = None,
    modalities: Sequence[str] | None = None,
    maps: bool = True,
    feature_values: bool = True,
    imaging_method: str = "gradients",
    ig_steps: int = 32,
    accelerator: str = "cpu",
) -> ExplainResult:
    """Explain the predictions of a checkpoint for the patients of a manifest (default: all) and write `out`,
    as fusion-explain does. Returns the tables it wrote (`.contributions`, `.features`, `.summary`,
    `.top_features`) and the map files (`.files`)."""
    quiet_third_party()
    options = ExplainOptions(
        maps=maps, feature_values=feature_values, imaging_method=imaging_method, ig_steps=ig_steps
    )
    return explain_manifest(
        ckpt_path, manifest, out, patients, heads, modalities, options=options, accelerator=accelerator
    )


def similar(
    ckpt_path: str | Path,
    manifest: str | Path,
    k: int = 10,
    output: str | Path | None = None,
    reference: str | Path | None = None,
    horizons: Sequence[float] | None = None,
    accelerator: str = "cpu",
) -> SimilarResult:
    """Each patient's `k` most similar reference patients, as fusion-similar: writes neighbours.csv and
    neighbour_summary.csv into `output` (default: the current folder) and returns them (`.neighbours`,
    `.summary`). The reference set is the one stored beside the checkpoint, or `reference` (a labelled
    manifest, embedded with this checkpoint)."""
    quiet_third_party()
    return similar_manifest(
        ckpt_path,
        manifest,
        k=k,
        output=output,
        reference=reference,
        horizons=horizons,
        accelerator=accelerator,
    )
