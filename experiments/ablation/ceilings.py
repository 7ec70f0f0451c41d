"""How far can fusion get ahead of one modality on the demo cohort? Ceilings with unlimited patients.

    python experiments/ablation/ceilings.py               # 20,000 patients, the demo's seed 0
    python experiments/ablation/ceilings.py --n 4000      # quicker, noisier

The ablation compares trained models on 400 patients, where a row's fold-to-fold sd is ~0.04. This script
asks what the demo's generator allows at all: it draws a large cohort from the same generator
(`fusion.data.synthetic`: the same gene parameters, EHR rules and label models; tables only, no images),
fits plain linear models (logistic, multinomial logistic, Cox) on one half and scores the other half. A
linear model is close to Bayes-optimal here: genes are linear-Gaussian in the latents on the log scale and
the labels are logistic / probit / proportional-hazards in the latents. Rows:

- each table modality alone (genomics, EHR) and both together;
- the tables plus the exact aggressiveness and proliferation: a perfect reader of CT, MRI, PET and
  histology (they see nothing else that the labels use, except a weak MRI T2 hint of sensitivity);
- the oracle: the generator's own probabilities (`truth.csv`).

The gap between the best one-modality ceiling and the fused ceilings is the most any fusion model can lead
by on that label, before the 400-patient noise.
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
from lifelines import CoxPHFitter
from lifelines.utils import concordance_index
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from fusion.data.synthetic.latent import sample_patients
from fusion.data.synthetic.oracle import oracle_from_frame
from fusion.data.synthetic.tables import ehr_table, genomics_table

LABELS = ("grade", "survival", "response")
ORACLE_KEYS = {
    "grade": "oracle/grade_auroc",
    "survival": "oracle/survival_cindex",
    "response": "oracle/response_auroc",
}
IMAGING_LATENTS = ("aggressiveness", "proliferation")  # what CT, MRI (T1, FLAIR), PET and histology show


def features(patients: pd.DataFrame, n_genes: int, seed: int) -> dict[str, pd.DataFrame]:
    """Per-patient design matrices, z-scored: genomics (log1p genes), EHR (numbers + one-hot), latents."""
    genes = np.log1p(genomics_table(patients, n_genes, seed).set_index("patient_id"))
    ehr = ehr_table(patients, seed).set_index("patient_id")
    ldh = np.log(ehr["ldh"])
    tabular = pd.DataFrame(
        {"age": ehr["age"], "female": (ehr["sex"] == "F").astype(float), "log_ldh": ldh.fillna(ldh.mean())},
        index=ehr.index,
    )
    tabular["ldh_missing"] = ehr["ldh"].isna().astype(float)
    categories = pd.get_dummies(ehr[["stage", "ecog", "smoking"]].astype(str), drop_first=True, dtype=float)
    ehr_x = pd.concat([tabular, categories], axis=1)
    latents = patients.set_index("patient_id")[list(IMAGING_LATENTS)]
    return {
        name: (x - x.mean()) / x.std().replace(0.0, 1.0)
        for name, x in (("genomics", genes), ("ehr", ehr_x), ("imaging_latents", latents))
    }


def score(label: str, x: pd.DataFrame, frame: pd.DataFrame, train_ids: pd.Index) -> float:
    """Fit a linear model of `label` on the `train_ids` rows of `x`, return the metric on the other rows."""
    y = frame.loc[x.index]
    train = x.index.isin(train_ids)
    fit, test = x[train], x[~train]
    if label == "response":
        model = LogisticRegression(C=1.0, max_iter=5000).fit(fit, y["response"][train].astype(int))
        return roc_auc_score(y["response"][~train].astype(int), model.decision_function(test))
    if label == "grade":
        model = LogisticRegression(C=1.0, max_iter=5000).fit(fit, y["grade"][train].astype(int))
        return roc_auc_score(y["grade"][~train].astype(int), model.predict_proba(test), multi_class="ovr")
    data = fit.assign(
        _t=y["survival_time"][train].to_numpy(), _e=y["survival_event"][train].astype(int).to_numpy()
    )
    cox = CoxPHFitter(penalizer=1e-3).fit(data, duration_col="_t", event_col="_e")
    risk = cox.predict_partial_hazard(test).to_numpy()
    return concordance_index(y["survival_time"][~train], -risk, y["survival_event"][~train].astype(int))


def ceilings(n_patients: int = 20000, seed: int = 0, n_genes: int = 64) -> pd.DataFrame:
    """Rows: input sets; columns: labels; values: held-out grade AUROC, C-index, response AUROC."""
    frame = sample_patients(n_patients, seed, modality_missing_rate=0.0, label_missing_rate=0.0)
    x = features(frame, n_genes, seed)  # the generators draw by the frame's row number: keep its index
    frame = frame.set_index("patient_id", drop=False)
    train_ids = frame.index[: n_patients // 2]  # the generator's patients are exchangeable
    rows = {
        "genomics alone": x["genomics"],
        "EHR alone": x["ehr"],
        "genomics + EHR": pd.concat([x["genomics"], x["ehr"]], axis=1),
        "genomics + EHR + exact imaging latents": pd.concat(list(x.values()), axis=1),
    }
    table = pd.DataFrame(
        {label: {name: score(label, rows[name], frame, train_ids) for name in rows} for label in LABELS}
    )
    oracle = oracle_from_frame(frame[~frame.index.isin(train_ids)])  # the same test half
    table.loc["oracle (truth.csv probabilities)"] = [oracle[ORACLE_KEYS[label]] for label in LABELS]
    return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--n", type=int, default=20000, help="patients drawn (half fit, half scored)")
    parser.add_argument("--seed", type=int, default=0, help="generator seed (the demo cohort's is 0)")
    args = parser.parse_args(argv)
    table = ceilings(args.n, args.seed)
    print(f"held-out metrics of linear models on {args.n} generated patients (seed {args.seed}):\n")
    print(
        table.rename(columns={"grade": "grade AUROC", "survival": "C-index", "response": "response AUROC"})
        .round(3)
        .to_string()
    )


if __name__ == "__main__":
    main()
