"""The predictions table (predictions*.csv): `predict_step` outputs as one row per patient with every
head's columns, the survival heads' probabilities and median (`add_survival_columns`), and the file
itself with its `model_id` column and provenance sidecar (`write_predictions`)."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from fusion.distributed import gather_list
from fusion.heads.survival import SurvivalHead

log = logging.getLogger(__name__)


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


def add_survival_columns(
    frame: pd.DataFrame,
    heads: Mapping[str, Any],
    references: Mapping[str, dict[str, Any]],
    horizons: Sequence[float] | None = None,
) -> pd.DataFrame:
    """`frame` with each survival head's ``<name>_prob_<h>`` and ``<name>_median`` columns
    (`SurvivalHead.reference_columns`), from the training references stored in the evaluated checkpoint.
    A survival head without a reference (too few training patients, or an older checkpoint) gets none,
    and a log line says why."""
    frame = frame.copy()
    for name, head in heads.items():
        if not isinstance(head, SurvivalHead) or head.risk_column not in frame:
            continue
        reference = references.get(name)
        if not reference:
            log.info(
                "head '%s': no survival probabilities or median in the predictions: the checkpoint has no "
                "training reference for it (fewer training patients with a survival label than "
                "privacy.min_group, no event, or a checkpoint written before fusion stored one)",
                name,
            )
            continue
        risk = pd.to_numeric(frame[head.risk_column], errors="coerce").to_numpy(float)
        at = frame.columns.get_loc(head.risk_column) + 1  # beside the risk they are read from
        for offset, (column, values) in enumerate(head.reference_columns(risk, reference, horizons).items()):
            frame.insert(at + offset, column, values)
    return frame


def write_predictions(path: str | Path, frame: pd.DataFrame, provenance: dict[str, Any]) -> Path:
    """predictions*.csv with a `model_id` column (``provenance["model_id"]``: the checkpoint's SHA-256,
    None when there is no checkpoint) and its provenance in the sidecar ``<name>.provenance.json``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.assign(model_id=provenance.get("model_id")).to_csv(path, index=False)
    sidecar = path.with_name(path.name + ".provenance.json")
    sidecar.write_text(json.dumps(provenance, indent=2, default=str))
    return path
