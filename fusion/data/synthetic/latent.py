"""Hidden tumour state, labels and ground truth of the synthetic demo cohort.

Every patient has four independent standard-normal latent variables. They drive all labels
(with closed-form probabilities, so `truth.csv` holds the Bayes-optimal predictions) and every
modality sees only some of them, with noise (see `SIGNAL_DESIGN`): a model that fuses the
modalities can beat any single one, and no model can beat the oracle.

Randomness is drawn per patient from ``np.random.default_rng([seed, index, stream])``: the same
seed gives the same patients, and patient ``P0001`` is the same whatever ``n_patients`` is.
"""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd
from scipy.special import expit, ndtr

LATENTS = ("aggressiveness", "proliferation", "sensitivity", "spread")
MODALITIES = ("ct", "mri", "pet", "histology", "genomics", "ehr")
LABELS = ("grade", "survival", "response")
SITES = ("site_A", "site_B", "site_C", "site_D")
SITE_WEIGHTS = (0.35, 0.30, 0.20, 0.15)
#: case mix: the tertiary centre (site_D) sees more aggressive, more spread tumours
SITE_SHIFT = {"site_A": 0.0, "site_B": -0.1, "site_C": 0.0, "site_D": 0.35}

#: which latent each observable follows (documentation, also written to cohort.json)
SIGNAL_DESIGN = {
    "grade": "ordinal probit on 0.9*aggressiveness + 0.9*proliferation",
    "survival": "Weibull, log-hazard 0.85*aggressiveness + 0.5*proliferation + 0.9*spread "
    "- 0.4*sensitivity + 0.015*(age-62); independent uniform censoring",
    "response": "Bernoulli(sigmoid(1.2*sensitivity - 1.2*aggressiveness + 0.2))",
    "ct": "lesion size ~ aggressiveness",
    "mri": "lesion size ~ aggressiveness; T1 enhancement ~ proliferation; T2 signal ~ sensitivity; "
    "FLAIR oedema ~ aggressiveness",
    "pet": "lesion SUVmax ~ proliferation",
    "histology": "nuclear density ~ proliferation; nuclear size, pleomorphism, darkness ~ aggressiveness",
    "genomics": "gene blocks loading on proliferation, sensitivity and (weakly) spread; the rest noise",
    "ehr": "stage ~ aggressiveness + spread; ecog ~ spread; ldh ~ proliferation + spread; age in risk",
}

# label model constants
GRADE_WEIGHTS = (0.9, 0.9, 0.0, 0.0)
GRADE_NOISE = 0.7
GRADE_CUTS = (-0.6, 0.6)
RISK_WEIGHTS = (0.85, 0.5, -0.4, 0.9)
AGE_RISK = 0.015
WEIBULL_SHAPE = 1.3
BASELINE_MEDIAN_MONTHS = 30.0
CENSOR_RANGE_MONTHS = (6.0, 84.0)
#: sensitivity (in the genes) and aggressiveness (in the imaging) weigh the same, so that response, like grade
#: and survival, needs two modalities: with 1.7 / -0.7 a perfect genomics model came within 0.033 AUROC of a
#: perfect model of every input (experiments/ablation/ceilings.py), too little to show on 400 patients
RESPONSE_WEIGHTS = (-1.2, 0.0, 1.2, 0.0)
RESPONSE_BIAS = 0.2


def patient_rng(seed: int, index: int, stream: str) -> np.random.Generator:
    """Independent, reproducible random stream for one patient and one purpose."""
    return np.random.default_rng([seed, index, zlib.crc32(stream.encode())])


def patient_id(index: int) -> str:
    """`P0001`-style id (1-based, at least 4 digits)."""
    return f"P{index + 1:04d}"


def grade_probabilities(latents: np.ndarray) -> np.ndarray:
    """(n, 3) exact class probabilities of grade 1/2/3 given the latent matrix (n, 4)."""
    score = latents @ np.asarray(GRADE_WEIGHTS)
    below = ndtr((np.asarray(GRADE_CUTS)[None, :] - score[:, None]) / GRADE_NOISE)
    return np.column_stack([below[:, 0], below[:, 1] - below[:, 0], 1.0 - below[:, 1]])


def true_risk(latents: np.ndarray, age: np.ndarray) -> np.ndarray:
    """Log-hazard (relative to the baseline) used to draw survival."""
    return latents @ np.asarray(RISK_WEIGHTS) + AGE_RISK * (age - 62.0)


def response_probability(latents: np.ndarray) -> np.ndarray:
    return expit(latents @ np.asarray(RESPONSE_WEIGHTS) + RESPONSE_BIAS)


def _draw_patient(seed: int, index: int, modality_missing_rate: float, label_missing_rate: float) -> dict:
    """Everything about one patient that is not a file: state, demographics, label draws, missingness."""
    rng = patient_rng(seed, index, "latent")
    site = SITES[int(np.searchsorted(np.cumsum(SITE_WEIGHTS), rng.uniform() * sum(SITE_WEIGHTS)))]
    z = rng.standard_normal(len(LATENTS))
    z[0] += SITE_SHIFT[site]
    z[3] += SITE_SHIFT[site]
    age = float(np.clip(rng.normal(62.0, 10.0), 25.0, 90.0))
    sex = "F" if rng.uniform() < 0.5 else "M"
    u_grade, u_event, u_censor, u_response = rng.uniform(size=4)

    rng_miss = patient_rng(seed, index, "missing")
    has = rng_miss.uniform(size=len(MODALITIES)) >= modality_missing_rate
    if not has.any():  # every patient keeps at least one modality
        has[rng_miss.integers(len(MODALITIES))] = True
    label_known = rng_miss.uniform(size=len(LABELS)) >= label_missing_rate
    row = {"patient_id": patient_id(index), "site": site, "age": round(age), "sex": sex}
    row.update(dict(zip(LATENTS, z.tolist(), strict=True)))
    row.update({"u_grade": u_grade, "u_event": u_event, "u_censor": u_censor, "u_response": u_response})
    row.update({f"has_{m}": bool(h) for m, h in zip(MODALITIES, has, strict=True)})
    row.update({f"known_{label}": bool(k) for label, k in zip(LABELS, label_known, strict=True)})
    return row


def sample_patients(
    n_patients: int, seed: int, modality_missing_rate: float, label_missing_rate: float
) -> pd.DataFrame:
    """One row per patient: site, latents, demographics, truth, observed labels, modality presence."""
    frame = pd.DataFrame(
        [_draw_patient(seed, i, modality_missing_rate, label_missing_rate) for i in range(n_patients)]
    )
    latents = frame[list(LATENTS)].to_numpy()
    probs = grade_probabilities(latents)
    # P(grade = 1, 2, 3): named after the grades, as the grade head names its prediction columns
    frame[["grade_prob_1", "grade_prob_2", "grade_prob_3"]] = probs
    frame["true_risk"] = true_risk(latents, frame["age"].to_numpy(float))
    frame["response_prob"] = response_probability(latents)

    cum = np.cumsum(probs, axis=1)
    grade = 1 + (frame["u_grade"].to_numpy()[:, None] > cum[:, :2]).sum(axis=1)
    # Weibull: S(t) = exp(-(t/scale)^k * exp(risk)), baseline median BASELINE_MEDIAN_MONTHS
    scale = BASELINE_MEDIAN_MONTHS / np.log(2.0) ** (1.0 / WEIBULL_SHAPE)
    hazard_draw = -np.log1p(-frame["u_event"].to_numpy())
    event_time = scale * (hazard_draw * np.exp(-frame["true_risk"].to_numpy())) ** (1.0 / WEIBULL_SHAPE)
    low, high = CENSOR_RANGE_MONTHS
    censor_time = low + (high - low) * frame["u_censor"].to_numpy()
    time = np.maximum(np.round(np.minimum(event_time, censor_time), 1), 0.1)
    event = (event_time <= censor_time).astype(int)
    response = (frame["u_response"].to_numpy() < frame["response_prob"].to_numpy()).astype(int)

    frame["grade"] = pd.array(np.where(frame["known_grade"], grade, -1), dtype="Int64")
    frame.loc[~frame["known_grade"], "grade"] = pd.NA
    frame["survival_time"] = np.where(frame["known_survival"], time, np.nan)
    frame["survival_event"] = pd.array(event, dtype="Int64")
    frame.loc[~frame["known_survival"], "survival_event"] = pd.NA
    frame["response"] = pd.array(response, dtype="Int64")
    frame.loc[~frame["known_response"], "response"] = pd.NA
    return frame.drop(columns=["u_grade", "u_event", "u_censor", "u_response"])
