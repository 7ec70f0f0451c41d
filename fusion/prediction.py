"""Predict a manifest with a trained checkpoint: the checkpoint alone rebuilds the pipeline.

A checkpoint holds, beside the weights, the resolved training config and every modality's fitted
state (normalisers, vocabularies), so prediction needs no access to the training cohort. Any
modality may be missing for any patient; labels are not needed.
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import pandas as pd
import torch
from omegaconf import OmegaConf

from fusion.data.cohort import Cohort
from fusion.lit import LitFusion
from fusion.pipeline import build_datamodule, build_heads, build_modalities, build_model
from fusion.predictions import predictions_frame

log = logging.getLogger(__name__)


def load_checkpoint(ckpt_path: str | Path) -> dict:
    path = Path(ckpt_path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if "fusion" not in checkpoint:
        raise ValueError(
            f"{path} is not a fusion checkpoint (no 'fusion' entry with config and modality state)"
        )
    return checkpoint


def predict_manifest(
    ckpt_path: str | Path,
    manifest: str | Path,
    output: str | Path | None = None,
    batch_size: int = 32,
    num_workers: int = 0,
    accelerator: str = "auto",
) -> pd.DataFrame:
    """Predict every patient of `manifest`; write `output` (CSV) if given and return the table."""
    checkpoint = load_checkpoint(ckpt_path)
    cfg = OmegaConf.create(checkpoint["fusion"]["config"])
    modalities = build_modalities(cfg)
    for name, modality in modalities.items():
        modality.load_state_dict(checkpoint["fusion"]["modality_state"].get(name, {}))
    heads = build_heads(cfg)
    model = build_model(cfg, modalities, heads)
    lit = LitFusion(model)
    lit.load_state_dict(checkpoint["state_dict"])

    cohort = Cohort.load(manifest)
    cfg.data.batch_size, cfg.data.num_workers = batch_size, num_workers
    datamodule = build_datamodule(
        cfg, cohort, modalities, heads, splits={"predict": cohort.patient_ids}, fit_modalities=False
    )
    datamodule.setup("predict")
    trainer = L.Trainer(
        accelerator=accelerator,
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    frame = predictions_frame(trainer.predict(lit, datamodule=datamodule))
    # patients with none of the model's modalities keep their row, with empty predictions
    frame = frame.set_index("patient_id").reindex(cohort.patient_ids).rename_axis("patient_id").reset_index()
    if output is not None:
        output = Path(output)
        output.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(output, index=False)
    return frame
