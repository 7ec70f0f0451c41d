"""Explain every patient of a manifest with a trained checkpoint (`fusion-explain`, `fusion.explain`).

The checkpoint alone rebuilds the pipeline, as for fusion-predict; any modality may be missing. Patient by
patient (a batch of one: the encoders run once per patient), it writes into `out`:

    modality_contributions.csv  Shapley value of each present modality, per head and target
    features.csv                Integrated Gradients of every table feature (genes, EHR columns, gene sets)
    tiles/<patient_id>.csv      per-tile attention and attribution (+ PNG heatmap or mosaic)
    imaging/<patient_id>_<modality>_<head>.nii.gz (+ .png)  3D saliency in the scan's own geometry
    summary.csv, top_features.csv, report.md, summary.png   cohort level (names and means only)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from fusion.attribution.context import PatientContext
from fusion.attribution.features import feature_attributions
from fusion.attribution.imaging import METHODS as IMAGING_METHODS
from fusion.attribution.imaging import imaging_saliency, write_saliency_maps
from fusion.attribution.shapley import CONTRIBUTION_COLUMNS, modality_contributions
from fusion.attribution.tile_maps import write_tile_maps
from fusion.attribution.tiles import tile_attributions
from fusion.errors import ConfigError
from fusion.explanations.report import log_to_wandb, write_report
from fusion.explanations.session import open_session
from fusion.explanations.summaries import summary_table, top_features_table
from fusion.modalities.base import Modality
from fusion.modalities.histology import HistologyModality
from fusion.modalities.imaging import ImagingModality
from fusion.modalities.table import TableModality

log = logging.getLogger(__name__)
FEATURE_COLUMNS = ("patient_id", "head", "target", "modality", "feature", "value", "attribution")


@dataclass
class ExplainResult:
    """What an explanation run wrote (the tables are also files in `output_dir`)."""

    output_dir: Path
    contributions: pd.DataFrame
    features: pd.DataFrame
    summary: pd.DataFrame
    top_features: pd.DataFrame
    files: list[Path] = field(default_factory=list)
    seconds_per_patient: float = float("nan")


@dataclass
class ExplainOptions:
    """How much to explain. maps: write tile and imaging maps (off: contributions and features only, as
    fusion-cv does per fold); feature_values: the patient's own values in features.csv (off for a file that
    leaves the hospital); imaging_method: gradients | occlusion; ig_steps: Integrated-Gradients steps."""

    maps: bool = True
    feature_values: bool = True
    imaging_method: str = "gradients"
    ig_steps: int = 32


def explain_manifest(
    ckpt_path: str | Path,
    manifest: str | Path,
    out: str | Path,
    patients: Sequence[str] | None = None,
    heads: Sequence[str] | None = None,
    modalities: Sequence[str] | None = None,
    options: ExplainOptions | None = None,
    accelerator: str = "cpu",
    num_workers: int = 0,
    wandb: Any = None,
) -> ExplainResult:
    """Explain `patients` (default: all) of `manifest` for `heads` (default: all) and write `out`.

    `modalities`: whose maps and feature attributions to write (default: all); every present modality always
    gets its Shapley contribution. Unknown heads, modalities or patients are one-line `ConfigError`s before
    any work. `wandb`: the ``wandb:`` config block (enabled, project, offline) or None.
    """
    options = options or ExplainOptions()
    if options.imaging_method not in IMAGING_METHODS:
        raise ConfigError(
            f"imaging_method must be one of {list(IMAGING_METHODS)}, got {options.imaging_method!r}"
        )
    session = open_session(ckpt_path, manifest, patients, heads, modalities, accelerator, num_workers)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    contributions, features, files = [], [], []
    start = time.perf_counter()
    n_done = 0
    for ctx in session.contexts():
        contributions.append(modality_contributions(ctx, session.base))
        for name in (m for m in session.mapped if m in ctx.present):
            table, written = _explain_modality(ctx, name, session.modalities[name], folder, options)
            if table is not None:
                features.append(table)
            files += written
        n_done += 1
    seconds = (time.perf_counter() - start) / max(n_done, 1)
    skipped = len(session.ids) - n_done
    if skipped:
        log.warning(
            "%d of the %d patients have none of the model's modalities: nothing to explain",
            skipped,
            len(session.ids),
        )
    log.info("explained %d patients, %.2f s per patient", n_done, seconds)

    contribution_frame = _concat(contributions, CONTRIBUTION_COLUMNS)
    feature_frame = _concat(features, FEATURE_COLUMNS)
    summary = summary_table(contribution_frame)
    top = top_features_table(feature_frame, {h: head.primary_target for h, head in session.heads.items()})
    contribution_frame.to_csv(folder / "modality_contributions.csv", index=False)
    written_files = {
        "modality_contributions.csv": "Shapley value of each present modality, per head and target"
    }
    if not feature_frame.empty:
        feature_frame.to_csv(folder / "features.csv", index=False)
        written_files["features.csv"] = "Integrated Gradients of every table feature" + (
            " (holds each patient's own values: patient data)" if options.feature_values else ""
        )
    summary.to_csv(folder / "summary.csv", index=False)
    top.to_csv(folder / "top_features.csv", index=False)
    written_files["summary.csv"] = "mean |contribution| per head and modality"
    written_files["top_features.csv"] = "table features ranked per head and modality"
    if any(f.parent.name == "tiles" for f in files):
        written_files["tiles/"] = "per-tile attention and attribution, heatmaps or mosaics"
    if any(f.parent.name == "imaging" for f in files):
        written_files["imaging/"] = (
            "3D saliency maps in each scan's own geometry (.nii.gz) and slice views (.png)"
        )
    info = {
        "checkpoint": str(ckpt_path),
        "manifest": str(manifest),
        "n_patients": n_done,
        "heads": list(session.heads),
        "base_source": session.base_source,
        "files": written_files,
    }
    notes = [f"{seconds:.2f} s per patient on {session.device.type} (all heads and modalities explained)."]
    if skipped:
        notes.append(f"{skipped} patients had none of the model's modalities and were not explained.")
    base_table = pd.DataFrame(
        [(h, t, v) for (h, t), v in session.base.items()], columns=["head", "target", "base_value"]
    )
    write_report(folder, info, base_table, summary, top, notes)
    log_to_wandb(wandb, folder, summary, top, info)
    return ExplainResult(folder, contribution_frame, feature_frame, summary, top, files, seconds)


def _explain_modality(
    ctx: PatientContext, name: str, modality: Modality, folder: Path, options: ExplainOptions
) -> tuple[pd.DataFrame | None, list[Path]]:
    """Feature attributions of a table modality, or the maps of a tile or imaging modality (others: none)."""
    if isinstance(modality, TableModality):
        return feature_attributions(
            ctx, name, modality, n_steps=options.ig_steps, values=options.feature_values
        ), []
    if not options.maps:
        return None, []
    if isinstance(modality, HistologyModality):
        frame = tile_attributions(ctx, name, modality, n_steps=options.ig_steps)
        return None, write_tile_maps(frame, ctx, name, modality, folder)
    if isinstance(modality, ImagingModality):
        maps = imaging_saliency(ctx, name, modality, method=options.imaging_method)
        return None, write_saliency_maps(maps, ctx, name, modality, folder)
    return None, []


def _concat(frames: list[pd.DataFrame], columns: Sequence[str]) -> pd.DataFrame:
    frames = [f for f in frames if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(columns))
