"""The best achievable metrics on a synthetic cohort: the true probabilities and risks scored
against the observed labels. A trained model's test metrics should approach, never beat, these
(beyond sampling noise) on the same patients.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from fusion.io.tables import read_table
from fusion.metrics import binary_auroc, harrell_cindex, macro_auroc

#: P(grade = k) for the manifest's grades 1, 2, 3, named as the grade head names its predictions
GRADE_PROB_COLUMNS = ("grade_prob_1", "grade_prob_2", "grade_prob_3")
GRADE_LEVELS = (1, 2, 3)
#: truth.csv of a cohort written before the columns were named after the grades (by class index)
INDEXED_GRADE_PROB_COLUMNS = {
    "grade_prob_0": "grade_prob_1",
    "grade_prob_1": "grade_prob_2",
    "grade_prob_2": "grade_prob_3",
}


def oracle_from_frame(frame: pd.DataFrame) -> dict[str, float]:
    """Oracle metrics from one frame holding both the labels and the truth columns."""
    if "grade_prob_0" in frame.columns:  # truth.csv written before: its columns are class indices
        frame = frame.rename(columns=INDEXED_GRADE_PROB_COLUMNS)
    grade = frame.dropna(subset=["grade"])
    survival = frame.dropna(subset=["survival_time", "survival_event"])
    response = frame.dropna(subset=["response"])
    classes = grade["grade"].astype(int).map({g: k for k, g in enumerate(GRADE_LEVELS)})
    return {
        "oracle/grade_auroc": macro_auroc(
            torch.tensor(grade[list(GRADE_PROB_COLUMNS)].to_numpy(float)), torch.tensor(classes.to_numpy())
        ),
        "oracle/survival_cindex": harrell_cindex(
            torch.tensor(survival["true_risk"].to_numpy(float)),
            torch.tensor(survival["survival_time"].to_numpy(float)),
            torch.tensor(survival["survival_event"].astype(int).to_numpy()),
        ),
        "oracle/response_auroc": binary_auroc(
            torch.tensor(response["response_prob"].to_numpy(float)),
            torch.tensor(response["response"].astype(int).to_numpy()),
        ),
    }


def oracle_metrics(cohort_dir: str | Path, patient_ids: list[str] | None = None) -> dict[str, float]:
    """Best achievable metrics on those patients (all if None) from truth.csv + the observed labels.

    Keys: ``oracle/grade_auroc`` (macro one-vs-rest on the true class probabilities),
    ``oracle/survival_cindex`` (Harrell, true risk vs observed time/event) and
    ``oracle/response_auroc`` (true response probability vs observed response). Patients whose
    label is missing are skipped; a metric with too few labelled patients is NaN.
    `cohort_dir` is the cohort folder (or its manifest.csv).
    """
    root = Path(cohort_dir)
    root = root.parent if root.is_file() else root
    for name in ("manifest.csv", "truth.csv"):
        if not (root / name).exists():
            raise FileNotFoundError(
                f"synthetic cohort '{root}': {name} not found (write it with write_demo_cohort)"
            )
    labels = read_table(root / "manifest.csv")  # patient_id as text, as written: '007' stays '007'
    truth = read_table(root / "truth.csv")
    frame = labels.merge(truth, on="patient_id", how="inner", validate="one_to_one")
    if patient_ids is not None:
        unknown = sorted(set(patient_ids) - set(frame["patient_id"]))
        if unknown:
            raise ValueError(
                f"synthetic cohort '{root}': unknown patient ids {unknown[:5]} ({len(unknown)} in all)"
            )
        frame = frame[frame["patient_id"].isin(set(patient_ids))]
    return oracle_from_frame(frame)
