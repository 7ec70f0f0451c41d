"""The predictions table (predictions*.csv): `predict_step` outputs as one row per patient with every
head's columns."""

from __future__ import annotations

from typing import Any

import pandas as pd
import torch

from fusion.distributed import gather_list


def predictions_frame(batches: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per patient: patient_id, then every head's prediction columns."""
    if not batches:
        return pd.DataFrame(columns=["patient_id"])
    columns: dict[str, list[Any]] = {}
    for batch in batches:
        for key, value in batch.items():
            values = value.tolist() if isinstance(value, torch.Tensor) else list(value)
            columns.setdefault(key, []).extend(values)
    return pd.DataFrame(columns)


def predict_frame(trainer: Any, lit: Any, loader: Any, ckpt_path: str | None) -> pd.DataFrame:
    """`trainer.predict` on a loader as one table: every rank's rows under DDP, each patient once
    (`DistributedSampler` repeats a few patients to even out the shards)."""
    batches = gather_list(trainer.predict(lit, dataloaders=loader, ckpt_path=ckpt_path))
    return predictions_frame(batches).drop_duplicates("patient_id", ignore_index=True)
