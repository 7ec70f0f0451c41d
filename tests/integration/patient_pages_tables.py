"""Small synthetic inputs of `write_patient_pages`, in the real formats (predictions.csv with survival
probabilities and uncertainty columns, neighbours.csv, neighbour_summary.csv, a fusion-explain folder with
its CSVs and PNGs): pages without a training run. Used by the unit and browser tests of the pages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from fusion.report.patient_pages import HeadInfo

#: a patient id full of HTML (it must show as text, and its file name is sanitised)
TRICKY_ID = "P<b>&'2\""
IDS = ["P0001", TRICKY_ID, "P0003"]  # P0003 has none of the model's modalities: no prediction
HEADS = [
    HeadInfo(
        "grade", "classes", ("grade_prob_G1", "grade_prob_G2", "grade_prob_G3"), classes=("G1", "G2", "G3")
    ),
    HeadInfo("survival", "survival", ("risk",), time_unit="months"),
    HeadInfo("response", "probability", ("response_prob",)),
]


RISKS = [0.4, -0.8]  # P0001, TRICKY_ID
#: S(t | risk) = exp(-t / SCALE * exp(risk)) up to END months: P0001's median is reached, TRICKY_ID's not
SCALE, END = 30.0, 36.0


def survival(t: float | np.ndarray, risk: float) -> np.ndarray:
    return np.exp(-np.asarray(t, float) / SCALE * np.exp(risk))


def predictions() -> pd.DataFrame:
    nan = float("nan")
    return pd.DataFrame(
        {
            "patient_id": IDS,
            "grade_prob_G1": [0.2, 0.7, nan],
            "grade_prob_G2": [0.3, 0.2, nan],
            "grade_prob_G3": [0.5, 0.1, nan],
            "risk": [*RISKS, nan],
            "survival_prob_12": [*(float(survival(12, r)) for r in RISKS), nan],
            "survival_prob_24": [*(float(survival(24, r)) for r in RISKS), nan],
            "survival_median": [SCALE * np.log(2) / np.exp(RISKS[0]), nan, nan],
            "response_prob": [0.35, 0.8, nan],
            "response_prob_lower": [0.2, 0.6, nan],
            "response_prob_upper": [0.5, 0.9, nan],
            "seen_in_training": [False, True, False],
            "model_id": ["ab" * 32] * 3,
        }
    )


def presence() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "patient_id": IDS,
            "ct": [True, False, False],
            "genomics": [True, True, False],
            "ehr": [True, True, False],
        }
    )


def provenance() -> dict[str, Any]:
    return {
        "model_id": "ab" * 32,
        "fusion_version": "0.1.0",
        "versions": {"torch": "2.13.0", "lightning": "2.6", "monai": "1.6.1"},
        "config_sha256": "cd" * 32,
        "created": "2026-12-03T21:00:00Z",
        "inputs": [{"file": "<script>alert(1)</script>", "size": 10}],
    }


def survival_curves() -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    times = np.linspace(0, END, 50)
    return {
        pid: {"survival": (times, survival(times, risk))} for pid, risk in zip(IDS[:2], RISKS, strict=True)
    }


def neighbours() -> pd.DataFrame:
    rows = [
        (IDS[0], 1, "R0101", 0.93, "G3", 10.5, 1, 0),
        (IDS[0], 2, "R0102", 0.88, "G2", 30.0, 0, 1),
        (IDS[0], 3, "R0103", 0.81, "G3", 16.0, 1, None),
        (IDS[1], 1, "R0201", 0.95, "G1", 40.0, 0, 1),
        (IDS[1], 2, "<i>R0202</i>", 0.90, "G1", 55.0, 1, 1),
        (IDS[2], None, None, None, None, None, None, None),
    ]
    columns = [
        "patient_id",
        "rank",
        "neighbour_id",
        "similarity",
        "grade",
        "survival_time",
        "survival_event",
        "response",
    ]
    return pd.DataFrame(rows, columns=columns)


def neighbour_summary() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "patient_id": IDS,
            "n_neighbours": [3, 2, 0],
            "km_median_survival": [16.0, None, None],
            "km_survival_12": [0.67, 1.0, None],
            "response_rate": [0.5, 1.0, None],
            "n_response_known": [2, 2, 0],
            "mean_similarity": [0.87, 0.925, None],
        }
    )


def write_explanations(folder: Path) -> Path:
    """A fusion-explain folder for P0001 (CSV tables, a tile map and an imaging map as PNG)."""
    (folder / "tiles").mkdir(parents=True)
    (folder / "imaging").mkdir()
    contributions = [
        (IDS[0], "survival", "survival_log_hazard", m, c, -0.1, 0.4)
        for m, c in [("ct", 0.3), ("genomics", 0.25), ("ehr", -0.05)]
    ]
    pd.DataFrame(
        contributions,
        columns=["patient_id", "head", "target", "modality", "contribution", "base_value", "prediction"],
    ).to_csv(folder / "modality_contributions.csv", index=False)
    features = [
        (IDS[0], "survival", "survival_log_hazard", "genomics", f"GENE{k:03d}", k * 1.5, (-1) ** k / (k + 1))
        for k in range(12)
    ]
    features.append((IDS[0], "survival", "survival_log_hazard", "ehr", "stage", "<IV>", 0.2))
    pd.DataFrame(
        features, columns=["patient_id", "head", "target", "modality", "feature", "value", "attribution"]
    ).to_csv(folder / "features.csv", index=False)
    image = np.random.default_rng(0).random((16, 16))
    for png in (folder / "tiles" / "P0001.png", folder / "imaging" / "P0001_ct_survival.png"):
        plt.imsave(png, image)
    return folder


def page_inputs(tmp_path: Path) -> dict[str, Any]:
    """Every argument of `write_patient_pages` but the folder."""
    return {
        "predictions": predictions(),
        "presence": presence(),
        "provenance": provenance(),
        "heads": HEADS,
        "survival_curves": survival_curves(),
        "neighbours": neighbours(),
        "neighbour_summary": neighbour_summary(),
        "explanations_dir": write_explanations(tmp_path / "explain"),
    }
