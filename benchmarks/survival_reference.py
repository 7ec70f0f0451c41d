"""How much pooling the stored survival reference moves Uno's C, td-AUC, Brier and IBS.

A checkpoint stores the training split's censoring distribution and Breslow baseline pooled over groups
of at least `MIN_GROUP` patients (fusion/heads/survival_reference.py) instead of the exact step functions
that jump at every training patient's time. This scores the SAME test predictions against both, with
the SAME horizons (those of the exact reference; the pooled reference's own default horizons differ a
little, printed beside), on:

- the demo cohort's generator (`sample_patients`), at the tiny test cohort's size (40 patients) and the
  quickstart's (400), with the oracle risk plus noise as the prediction;
- GBSG2 (686 patients, scikit-survival, offline), with a Cox model on the clinical variables.

Each over several random 65/35 train/test splits; it prints the mean and the largest absolute change.

    python benchmarks/survival_reference.py
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
import pandas as pd

from fusion.heads.evaluation import EvaluationSettings
from fusion.heads.survival_evaluation import evaluate_survival
from fusion.heads.survival_reference import MIN_GROUP, SurvivalReference
from fusion.metrics.bootstrap import point

METRICS = ("uno_cindex", "td_auc_q25", "td_auc_q50", "td_auc_q75", "brier_q50", "ibs")


def demo_cohort(n_patients: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(risk, time, event): the generator's labels and its oracle risk plus noise (a fitted model's error)."""
    from fusion.data.synthetic.latent import sample_patients

    frame = sample_patients(n_patients, seed, 0.1, 0.05).dropna(subset=["survival_time"])
    rng = np.random.default_rng(seed)
    risk = frame["true_risk"].to_numpy(float) + rng.normal(0, 0.5, len(frame))
    return risk, frame["survival_time"].to_numpy(float), frame["survival_event"].to_numpy(bool)


def gbsg2() -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    from sksurv.datasets import load_gbsg2

    x, y = load_gbsg2()
    x = pd.get_dummies(x, columns=["horTh", "menostat", "tgrade"], drop_first=True, dtype=float)
    return x.astype(float), y["time"].astype(float), y["cens"].astype(bool)


def cox_risk(x: pd.DataFrame, time, event, train: np.ndarray) -> np.ndarray:
    from sksurv.linear_model import CoxPHSurvivalAnalysis
    from sksurv.util import Surv

    mean, sd = x[train].mean(), x[train].std().replace(0, 1)
    z = (x - mean) / sd
    model = CoxPHSurvivalAnalysis().fit(z[train], Surv.from_arrays(event[train], time[train]))
    return model.predict(z)


def compare(risk, time, event, train: np.ndarray) -> dict[str, tuple[float, float]] | None:
    """metric -> (exact, pooled) on the test rows; horizons: the exact reference's quantiles."""
    test = ~train
    try:
        pooled = SurvivalReference.fit(risk[train], time[train], event[train])
    except ValueError:
        return None
    exact = SurvivalReference.fit(risk[train], time[train], event[train], min_group=None)
    settings = EvaluationSettings(n_bootstrap=0, horizons=sorted(exact.event_quantiles.values()))
    names = dict(zip(settings.horizons or [], ("q25", "q50", "q75"), strict=True))
    out: dict[str, tuple[float, float]] = {}
    values = []
    for reference in (exact, pooled):
        ev = evaluate_survival(
            "s", np.flatnonzero(test), risk[test], time[test], event[test], settings, reference
        )
        n = len(ev.rows)
        metrics = {}
        for key, metric in ev.metrics.items():
            label = key.removeprefix("s_")
            for h, q in names.items():
                if label.endswith(f"_{h:g}"):
                    label = label.removesuffix(f"_{h:g}") + f"_{q}"
            metrics[label] = point(metric, n)
        values.append(metrics)
    for key in METRICS:
        if key in values[0] and key in values[1]:
            out[key] = (values[0][key], values[1][key])
    for q in ("q25", "q50", "q75"):
        out[f"horizon_{q}"] = (exact.event_quantiles[q], pooled.event_quantiles[q])
    return out


def summarise(name: str, runs: list[dict[str, tuple[float, float]]]) -> None:
    print(f"\n{name}: {len(runs)} splits, exact vs pooled (min_group={MIN_GROUP}) reference")
    print(f"{'metric':<18}{'exact':>10}{'pooled':>10}{'mean |diff|':>13}{'max |diff|':>12}")
    for key in [*METRICS, "horizon_q25", "horizon_q50", "horizon_q75"]:
        pairs = np.array([r[key] for r in runs if key in r and np.isfinite(r[key]).all()])
        if len(pairs) == 0:
            continue
        diff = np.abs(pairs[:, 0] - pairs[:, 1])
        exact, pooled = pairs.mean(axis=0)
        print(f"{key:<18}{exact:>10.4f}{pooled:>10.4f}{diff.mean():>13.4f}{diff.max():>12.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--splits", type=int, default=10)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    for n in (40, 400):
        runs = []
        for seed in range(args.splits):
            risk, time, event = demo_cohort(n, seed)
            train = np.random.default_rng(100 + seed).random(len(risk)) < 0.65
            result = compare(risk, time, event, train)
            if result:
                runs.append(result)
        summarise(f"demo generator, {n} patients", runs)
    x, time, event = gbsg2()
    runs = []
    for seed in range(args.splits):
        train = np.random.default_rng(200 + seed).random(len(x)) < 0.65
        result = compare(cox_risk(x, time, event, train), time, event, train)
        if result:
            runs.append(result)
    summarise("GBSG2 (Cox model on the clinical variables)", runs)


if __name__ == "__main__":
    main()
