"""Real patients: fusion against classical models on GBSG2 (686 breast cancer patients), same folds.

GBSG2 ships inside scikit-survival (offline). It is written as a fusion cohort (manifest.csv +
ehr.csv) and two tasks are run under repeated, stratified, patient-level k-fold CV:

- survival (recurrence-free survival, Harrell's C-index): fusion `head=[survival]` vs CoxPH,
  Coxnet (elastic net, alpha chosen on the fold's inner validation split) and a random survival forest;
- grade (tgrade I/II/III, macro one-vs-rest AUROC; tgrade removed from the inputs): fusion
  `head=[grade]` vs multinomial logistic regression.

Every method sees the same outer folds; fusion trains on the inner train split and early-stops on the
inner validation split (as `fusion-cv` does), the classical models fit on the whole outer training fold
(Coxnet picks alpha on the same inner split first) — or, with `--inner-train-only`, on the inner train
split alone, the patients fusion fits on (a diagnostic of what the held-out validation costs).
Preprocessing is fitted on training patients only.
All methods are scored by `fusion.metrics` on the held-out fold.

    python benchmarks/real_data.py                       # 5 folds x 2 repeats, both tasks
    python benchmarks/real_data.py --quick               # 2 folds x 1 repeat, 5 epochs (smoke run)
    python benchmarks/real_data.py --fusion-overrides trainer.max_epochs=50 --json results.json
    python benchmarks/real_data.py --tasks survival --inner-train-only  # fusion's patients only
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

NUMERIC = ["age", "estrec", "pnodes", "progrec", "tsize"]
CATEGORICAL = ["horTh", "menostat", "tgrade"]
GRADES = {"I": 1, "II": 2, "III": 3}
TASKS = ("survival", "grade")


# ----------------------------------------------------------------------------- cohort and folds
def load_gbsg2() -> pd.DataFrame:
    """GBSG2 as one frame: patient_id, the clinical variables, survival_time (days), survival_event, grade."""
    from sksurv.datasets import load_gbsg2 as _load

    x, y = _load()
    frame = x.astype({c: str for c in CATEGORICAL}).reset_index(drop=True)
    frame.insert(0, "patient_id", [f"gbsg2_{i:03d}" for i in range(len(frame))])
    frame["survival_time"] = y["time"].astype(float)
    frame["survival_event"] = y["cens"].astype(int)  # sksurv's 'cens' is True for an observed recurrence
    frame["grade"] = frame["tgrade"].map(GRADES).astype(int)
    return frame


def features(task: str) -> tuple[list[str], list[str]]:
    """(numeric, categorical) inputs of a task; grade is the label of the grade task, so never an input."""
    return NUMERIC, [c for c in CATEGORICAL if task == "survival" or c != "tgrade"]


def write_cohort(frame: pd.DataFrame, folder: Path, task: str) -> Path:
    """A fusion cohort for one task: manifest.csv (that task's labels) and ehr.csv; returns the manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    labels = ["survival_time", "survival_event"] if task == "survival" else ["grade"]
    frame[["patient_id", *labels]].to_csv(folder / "manifest.csv", index=False)
    numeric, categorical = features(task)
    frame[["patient_id", *numeric, *categorical]].to_csv(folder / "ehr.csv", index=False)
    return folder / "manifest.csv"


def make_folds(frame: pd.DataFrame, folds: int, repeats: int, val: float, seed: int) -> list[dict[str, Any]]:
    """Outer folds stratified by grade x event, plus each fold's inner train/val split (fusion-cv's seeds).

    One list for both tasks and every method, so the comparison is paired fold by fold.
    """
    from fusion.data.splits import kfold_patients, split_patients

    ids = frame["patient_id"].tolist()
    strata = dict(
        zip(ids, (frame["grade"].astype(str) + "|" + frame["survival_event"].astype(str)), strict=True)
    )
    out = []
    for repeat in range(repeats):
        rseed = seed + 1000 * repeat
        for k, (train_ids, test_ids) in enumerate(
            kfold_patients(ids, [strata[p] for p in ids], folds, rseed)
        ):
            inner = split_patients(train_ids, [strata[p] for p in train_ids], val, 0.0, rseed + k)
            out.append(
                {"repeat": repeat, "fold": k, "train": inner["train"], "val": inner["val"], "test": test_ids}
            )
    return out


# ----------------------------------------------------------------------------- classical models
def preprocessor(task: str, drop_first: bool) -> Any:
    """StandardScaler on numerics, one-hot on categoricals; fitted in each model's Pipeline (train only)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric, categorical = features(task)
    onehot = OneHotEncoder(drop="first" if drop_first else None, handle_unknown="ignore", sparse_output=False)
    return ColumnTransformer([("num", StandardScaler(), numeric), ("cat", onehot, categorical)])


def survival_target(frame: pd.DataFrame) -> np.ndarray:
    from sksurv.util import Surv

    return Surv.from_arrays(frame["survival_event"].astype(bool), frame["survival_time"])


def fit_cox(train: pd.DataFrame, val: pd.DataFrame, seed: int, refit: bool = True) -> Any:
    from sklearn.pipeline import make_pipeline
    from sksurv.linear_model import CoxPHSurvivalAnalysis

    full = pd.concat([train, val]) if refit else train
    return make_pipeline(preprocessor("survival", True), CoxPHSurvivalAnalysis()).fit(
        full, survival_target(full)
    )


def fit_coxnet(train: pd.DataFrame, val: pd.DataFrame, seed: int, refit: bool = True) -> Any:
    """Elastic net (l1_ratio 0.5, 30 alphas): alpha with the best inner-val C-index, refit on train+val."""
    from sklearn.pipeline import make_pipeline
    from sksurv.linear_model import CoxnetSurvivalAnalysis

    from fusion.metrics import harrell_cindex

    inner = make_pipeline(preprocessor("survival", False), CoxnetSurvivalAnalysis(l1_ratio=0.5, n_alphas=30))
    inner.fit(train, survival_target(train))
    alphas = inner[-1].alphas_
    xval = inner[:-1].transform(val)
    scores = [_cindex(harrell_cindex, inner[-1].predict(xval, alpha=a), val) for a in alphas]
    best = float(alphas[int(np.nanargmax(scores))])
    full = pd.concat([train, val]) if refit else train
    model = make_pipeline(
        preprocessor("survival", False), CoxnetSurvivalAnalysis(l1_ratio=0.5, alphas=[best])
    )
    return model.fit(full, survival_target(full))


def fit_rsf(train: pd.DataFrame, val: pd.DataFrame, seed: int, refit: bool = True) -> Any:
    from sklearn.pipeline import make_pipeline
    from sksurv.ensemble import RandomSurvivalForest

    full = pd.concat([train, val]) if refit else train
    forest = RandomSurvivalForest(n_estimators=200, min_samples_leaf=15, n_jobs=2, random_state=seed)
    return make_pipeline(preprocessor("survival", False), forest).fit(full, survival_target(full))


def fit_logreg(train: pd.DataFrame, val: pd.DataFrame, seed: int, refit: bool = True) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    full = pd.concat([train, val]) if refit else train
    model = make_pipeline(
        preprocessor("grade", False), LogisticRegression(max_iter=5000)
    )  # multinomial (lbfgs)
    return model.fit(full, full["grade"])


CLASSICAL: dict[str, dict[str, Callable[..., Any]]] = {
    "survival": {"coxph": fit_cox, "coxnet": fit_coxnet, "rsf": fit_rsf},
    "grade": {"logreg": fit_logreg},
}


def _cindex(metric: Callable[..., float], risk: np.ndarray, frame: pd.DataFrame) -> float:
    return metric(
        torch.as_tensor(np.asarray(risk, dtype=float)),
        torch.as_tensor(frame["survival_time"].to_numpy(float)),
        torch.as_tensor(frame["survival_event"].to_numpy(int)),
    )


def score(task: str, test: pd.DataFrame, prediction: np.ndarray) -> float:
    """Harrell's C-index of a risk (survival) or macro AUROC of (n, 3) class probabilities (grade)."""
    from fusion.metrics import harrell_cindex, macro_auroc

    if task == "survival":
        return _cindex(harrell_cindex, prediction, test)
    target = torch.as_tensor(test["grade"].to_numpy(int) - 1)
    return macro_auroc(torch.as_tensor(np.asarray(prediction, dtype=float)), target)


def classical_prediction(task: str, model: Any, test: pd.DataFrame) -> np.ndarray:
    if task == "survival":
        return model.predict(test)  # sksurv: higher = worse prognosis
    assert list(model.classes_) == [1, 2, 3], model.classes_
    return model.predict_proba(test)


# ----------------------------------------------------------------------------- fusion
def fusion_overrides(task: str, manifest: Path, extra: Sequence[str]) -> list[str]:
    """What a user types: the EHR modality, the task's head, this cohort, CSV logging, no progress bar."""
    return [
        f"data.manifest={manifest}",
        "modality=[ehr]",
        f"head=[{task}]",
        "logger=[csv]",
        "~callbacks.progress_bar",
        *extra,
    ]


def run_fusion(
    task: str, manifest: Path, fold: dict[str, Any], out: Path, extra: Sequence[str]
) -> dict[str, Any]:
    """One fusion run on the fold's splits; the held-out prediction read back from predictions_test.csv."""
    import fusion
    from fusion.training import run_training

    cfg = fusion.compose(fusion_overrides(task, manifest, extra))
    splits = {name: fold[name] for name in ("train", "val", "test")}
    metrics = run_training(cfg, out, splits=splits).metrics
    pred = pd.read_csv(out / "predictions_test.csv").set_index("patient_id").loc[fold["test"]]
    grade_columns = ["grade_prob_1", "grade_prob_2", "grade_prob_3"]  # head.grade.classes: grades 1-3
    values = pred["risk"].to_numpy() if task == "survival" else pred[grade_columns].to_numpy()
    own = metrics.get("test/survival_cindex" if task == "survival" else "test/grade_auroc")
    epochs = json.loads((out / "metrics.json").read_text())["info"]["epochs"]
    return {"prediction": values, "own_metric": own, "epochs": epochs}


# ----------------------------------------------------------------------------- the run
def summarise(values: list[float]) -> dict[str, float | None]:
    arr = np.array([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    return {
        "mean": float(arr.mean()) if len(arr) else None,
        "sd": float(arr.std(ddof=1)) if len(arr) > 1 else None,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(2)
    warnings.filterwarnings("ignore", category=UserWarning, module="lightning")
    frame = load_gbsg2()
    folds = make_folds(frame, args.folds, args.repeats, args.val, args.seed)
    by_id = frame.set_index("patient_id", drop=False)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="gbsg2_"))
    extra = list(args.fusion_overrides) + (["trainer.max_epochs=5"] if args.quick else [])
    results: dict[str, Any] = {
        "dataset": "GBSG2 (scikit-survival)",
        "n_patients": len(frame),
        "folds": args.folds,
        "repeats": args.repeats,
        "seed": args.seed,
        "fusion_overrides": extra,
        "classical_fit_on": "inner train" if args.inner_train_only else "inner train + val",
        "tasks": {},
    }
    try:
        for task in args.tasks:
            manifest = write_cohort(frame, workdir / task / "cohort", task)
            methods = ["fusion", *CLASSICAL[task]]
            per_fold: dict[str, list[float]] = {m: [] for m in methods}
            info: dict[str, list[Any]] = {"fusion_own_metric": [], "fusion_epochs": [], "seconds": []}
            for fold in folds:
                tag = f"repeat{fold['repeat']}_fold{fold['fold']}"
                train, val, test = (by_id.loc[fold[s]] for s in ("train", "val", "test"))
                start = time.perf_counter()
                fused = run_fusion(task, manifest, fold, workdir / task / tag, extra)
                per_fold["fusion"].append(score(task, test, fused["prediction"]))
                info["fusion_own_metric"].append(fused["own_metric"])
                info["fusion_epochs"].append(fused["epochs"])
                for name, fit in CLASSICAL[task].items():
                    model = fit(train, val, args.seed + fold["fold"], refit=not args.inner_train_only)
                    per_fold[name].append(score(task, test, classical_prediction(task, model, test)))
                info["seconds"].append(round(time.perf_counter() - start, 1))
                line = "  ".join(f"{m} {per_fold[m][-1]:.3f}" for m in methods)
                print(f"[{task}] {tag}: {line}  ({info['seconds'][-1]} s)", flush=True)
            results["tasks"][task] = {
                "metric": "harrell_cindex" if task == "survival" else "macro_auroc",
                "methods": {m: {**summarise(v), "per_fold": v} for m, v in per_fold.items()},
                **info,
            }
    finally:
        if args.keep or args.workdir:
            print(f"cohorts and fusion runs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return results


def print_table(results: dict[str, Any]) -> None:
    print(f"\nGBSG2, {results['folds']} folds x {results['repeats']} repeats, seed {results['seed']}")
    print(f"{'task':9} {'method':8} {'metric':15} {'mean ± sd':16} per fold")
    for task, res in results["tasks"].items():
        for method, m in res["methods"].items():
            sd = "" if m["sd"] is None else f" ± {m['sd']:.3f}"
            folds = " ".join(f"{v:.3f}" for v in m["per_fold"])
            print(f"{task:9} {method:8} {res['metric']:15} {m['mean']:.3f}{sd:9} {folds}")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 folds x 1 repeat, 5 fusion epochs")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=42, help="fold seed (repeat r uses seed + 1000 r)")
    parser.add_argument("--val", type=float, default=0.15, help="inner validation fraction (as cv.val)")
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    parser.add_argument(
        "--inner-train-only",
        action="store_true",
        help="diagnostic: fit the classical models on fusion's inner train split only (not train + val)",
    )
    parser.add_argument("--fusion-overrides", nargs="*", default=[], help="extra Hydra overrides for fusion")
    parser.add_argument("--json", type=Path, default=Path("outputs/benchmarks/real_data.json"))
    parser.add_argument("--workdir", type=Path, default=None, help="keep cohorts and fusion runs here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (path printed)")
    args = parser.parse_args(argv)
    if args.quick:
        args.folds, args.repeats = 2, 1
    start = time.perf_counter()
    results = run(args)
    results["wall_seconds"] = round(time.perf_counter() - start, 1)
    print_table(results)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))
    print(f"\nwall {results['wall_seconds']} s; results in {args.json}")
    return results


if __name__ == "__main__":
    main()
