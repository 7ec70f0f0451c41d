"""The ablation of issue 6: single modalities, concatenation, gated Kronecker, late-fusion transformer.

    python experiments/ablation/run.py                       # the full study (see README.md)
    python experiments/ablation/run.py --out DIR -- OVERRIDE ...  # extra fusion-cv overrides (smoke runs)
    python experiments/ablation/run.py --table-only --out DIR     # rebuild the table from finished runs

Three `fusion-cv -m experiment=ablation` sweeps share one frozen fold file (written by the first job, over
every patient of the cohort): the fusers with all modalities, then each modality alone on the same folds
(a patient who lacks that modality is left out of its test fold: a one-modality model has nothing to
predict them from), then the transformer predicting from its fused pass alone (`model.output=fused`),
trained with and without the auxiliary one-modality loss (`loss.unimodal_weight=8,0`). Then every job's
cv_metrics.json becomes one table: mean [95% CI over folds] and, in parentheses, the oracle (truth.csv's
Bayes-optimal prediction) on the same test patients.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

FUSERS = ("transformer", "concat", "kronecker")
MODALITIES = ("ct", "mri", "pet", "histology", "genomics", "ehr")
METRICS = {
    "test/grade_auroc": "grade AUROC",
    "test/survival_cindex": "C-index",
    "test/response_auroc": "response AUROC",
}
FUSER_NAMES = {"TransformerFuser": "late-fusion transformer", "ConcatFuser": "concatenation"}
FUSER_NAMES["KroneckerFuser"] = "gated Kronecker"


def sweeps(out: Path, extra: list[str]) -> list[list[str]]:
    """The three fusion-cv multirun command lines; all read (the first job writes) one fold file."""
    common = ["experiment=ablation", f"cv.splits_file={out / 'folds.csv'}", *extra]
    cv = [sys.executable, "-m", "fusion.cli.cv", "-m"]
    return [
        [*cv, f"fuser={','.join(FUSERS)}", f"hydra.sweep.dir={out / 'fusers'}", *common],
        [
            *cv,
            f"modality={','.join(f'[{m}]' for m in MODALITIES)}",
            f"hydra.sweep.dir={out / 'unimodal'}",
            *common,
        ],
        # what the auxiliary loss and the ensemble output add: the transformer predicting from its fused pass,
        # trained on the fused loss alone (weight 0) or with the auxiliary loss (weight 8, the default)
        [
            *cv,
            "fuser=transformer",
            "loss.unimodal_weight=0,8",
            "model.output=fused",
            f"hydra.sweep.dir={out / 'transformer_variants'}",
        ]
        + common,
    ]


def label(setup: dict) -> str:
    if len(setup["modality"]) == 1:
        return f"{setup['modality'][0]} alone"
    name = FUSER_NAMES.get(str(setup["fuser"]).rsplit(".", 1)[-1], str(setup["fuser"]))
    if setup.get("unimodal_weight") == 0:
        return name + " (fused loss only)"
    return name + (" (fused pass only)" if setup.get("model_output") == "fused" else "")


def table(out: Path) -> pd.DataFrame:
    """One row per finished job: per metric mean, CI bounds, oracle mean, per-fold values, folds."""
    rows = []
    for path in sorted(out.glob("*/*/cv_metrics.json")):
        summary = json.loads(path.read_text())
        row = {"config": label(summary["setup"]), "folds": len(summary["folds"]), "run": str(path.parent)}
        for key in METRICS:
            oracle = "oracle/" + key.split("/", 1)[1]
            row[key] = summary["mean"].get(key)
            row[key + "_ci_low"], row[key + "_ci_high"] = summary["ci95"].get(key, [None, None])
            row[key + "_by_fold"] = {(f["repeat"], f["fold"]): f.get(key) for f in summary["folds"]}
            row[oracle] = summary["mean"].get(oracle)
        rows.append(row)
    if not rows:
        raise SystemExit(f"no cv_metrics.json under {out}/*/*/: run the sweeps first")
    return pd.DataFrame(rows)


def markdown(frame: pd.DataFrame) -> str:
    """The README table: `mean [CI low, CI high] (oracle)` per metric, then which metrics fusion wins."""

    def cell(row: pd.Series, key: str) -> str:
        if pd.isna(row[key]):
            return "n/a"
        ci = (
            ""
            if pd.isna(row[key + "_ci_low"])
            else f" [{row[key + '_ci_low']:.3f}, {row[key + '_ci_high']:.3f}]"
        )
        oracle = row["oracle/" + key.split("/", 1)[1]]
        return f"{row[key]:.3f}{ci}" + ("" if pd.isna(oracle) else f" ({oracle:.3f})")

    lines = ["| config | " + " | ".join(METRICS.values()) + " | folds |", "|---" * (len(METRICS) + 2) + "|"]
    for _, row in frame.iterrows():
        lines.append(
            f"| {row['config']} | " + " | ".join(cell(row, k) for k in METRICS) + f" | {row['folds']} |"
        )
    single = frame[frame["config"].str.endswith(" alone")]
    fused = frame[frame["config"] == "late-fusion transformer"]
    if len(single) and len(fused):
        lines.append("")
        for key, name in METRICS.items():
            best = single.loc[single[key].idxmax()] if single[key].notna().any() else None
            if best is None or pd.isna(fused[key].iloc[0]):
                continue
            ahead = "ahead of" if fused[key].iloc[0] > best[key] else "NOT ahead of"
            by_fold = folds_ahead(fused[key + "_by_fold"].iloc[0], best[key + "_by_fold"])
            lines.append(
                f"- {name}: the transformer ({fused[key].iloc[0]:.3f}) is {ahead} the best single modality "
                f"({best['config']}, {best[key]:.3f}); {by_fold}"
            )
    return "\n".join(lines) + "\n"


def folds_ahead(fused: dict, single: dict) -> str:
    """Fold by fold (same repeat and fold number), how often the transformer scores higher."""
    pairs = [(fused[k], single[k]) for k in fused if k in single and None not in (fused[k], single[k])]
    return f"ahead in {sum(f > s for f, s in pairs)} of {len(pairs)} folds"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("outputs/ablation"))
    parser.add_argument("--table-only", action="store_true", help="only rebuild the table from finished runs")
    parser.add_argument("overrides", nargs="*", help="extra fusion-cv overrides (after --)")
    args = parser.parse_args()
    out = args.out.resolve()
    if not args.table_only:
        for command in sweeps(out, args.overrides):
            print("+", " ".join(command), flush=True)
            subprocess.run(command, check=True)
    frame = table(out)
    frame.drop(columns=[c for c in frame if c.endswith("_by_fold")]).to_csv(out / "table.csv", index=False)
    text = markdown(frame)
    (out / "table.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
