"""Turn `predict_step` outputs into the predictions*.csv table of DESIGN §4."""

from __future__ import annotations

from typing import Any

import pandas as pd
import torch


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
