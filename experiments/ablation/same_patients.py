"""Re-score a fused model's CV folds on exactly the patients a one-modality row was scored on.

A one-modality model cannot predict a patient who lacks its modality, so its test folds hold fewer (and
other) patients than the fused model's; this pairs each fold of the two runs on the same patients:

    python experiments/ablation/same_patients.py --fused outputs/ablation/fusers/0 \\
        --single outputs/ablation/unimodal/2 --manifest ~/.cache/fusion/demo_cohort/manifest.csv

Per metric it prints the fused model on all its test patients, on the single row's patients, the single
row, the paired difference (mean, sd) and in how many folds the fused model is ahead. Both runs must share
their folds (`cv.splits_file`); each fold's `predictions_test.csv` lists the patients it scored.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import pandas as pd
import torch

from fusion.metrics import macro_auroc
from fusion.metrics.classification import binary_auroc
from fusion.metrics.survival import harrell_cindex

GRADE_PROBS = ["grade_prob_1", "grade_prob_2", "grade_prob_3"]


def score(predictions: pd.DataFrame, manifest: pd.DataFrame) -> dict[str, float]:
    """grade AUROC, Harrell's C and response AUROC of `predictions` against the manifest's labels."""
    d = predictions.join(manifest, on="patient_id")
    out = {}
    graded = d[d["grade"].notna()]
    if len(graded):
        levels = sorted(manifest["grade"].dropna().unique())
        classes = graded["grade"].map({g: k for k, g in enumerate(levels)}).astype(int).to_numpy()
        probs = torch.tensor(graded[GRADE_PROBS].to_numpy())
        out["test/grade_auroc"] = float(macro_auroc(probs, torch.tensor(classes)))
    timed = d[d["survival_time"].notna()]
    if len(timed):
        out["test/survival_cindex"] = float(
            harrell_cindex(
                torch.tensor(timed["risk"].to_numpy()),
                torch.tensor(timed["survival_time"].to_numpy()),
                torch.tensor(timed["survival_event"].to_numpy()),
            )
        )
    answered = d[d["response"].notna()]
    if len(answered):
        out["test/response_auroc"] = float(
            binary_auroc(
                torch.tensor(answered["response_prob"].to_numpy()),
                torch.tensor(answered["response"].astype(int).to_numpy()),
            )
        )
    return out


def paired(fused: Path, single: Path, manifest: Path) -> pd.DataFrame:
    """One row per (fold, metric): fused on all patients, fused on the single row's patients, single."""
    labels = pd.read_csv(manifest).set_index("patient_id")
    rows = []
    for fold in sorted(p.parent.name for p in single.glob("*/predictions_test.csv")):
        mine = pd.read_csv(fused / fold / "predictions_test.csv")
        theirs = pd.read_csv(single / fold / "predictions_test.csv")
        on_all, alone = score(mine, labels), score(theirs, labels)
        same = score(mine[mine["patient_id"].isin(theirs["patient_id"])], labels)
        for key, value in alone.items():
            rows.append(
                {
                    "fold": fold,
                    "metric": key,
                    "fused_all": on_all[key],
                    "fused_same": same[key],
                    "single": value,
                }
            )
    if not rows:
        raise SystemExit(f"no */predictions_test.csv under {single}")
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--fused", type=Path, required=True, help="fusion-cv folder of the fused model")
    parser.add_argument("--single", type=Path, required=True, help="fusion-cv folder of a one-modality run")
    parser.add_argument("--manifest", type=Path, required=True, help="the cohort manifest (labels)")
    args = parser.parse_args()
    frame = paired(args.fused, args.single, args.manifest.expanduser())
    for metric, group in frame.groupby("metric", sort=False):
        diff = (group["fused_same"] - group["single"]).tolist()
        sd = statistics.stdev(diff) if len(diff) > 1 else float("nan")
        print(
            f"{metric}: fused {group['fused_all'].mean():.4f} on all its patients, "
            f"{group['fused_same'].mean():.4f} on the single row's; single {group['single'].mean():.4f}; "
            f"paired difference {statistics.mean(diff):+.4f} (sd {sd:.4f}), fused ahead in "
            f"{sum(d > 0 for d in diff)}/{len(diff)} folds"
        )


if __name__ == "__main__":
    main()
