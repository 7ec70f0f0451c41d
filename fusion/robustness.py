"""Robustness to missing modalities: score a trained model with inputs taken away at test time.

Conditions, each scored with the head metrics training uses (`test/...` keys):
- ``all``: every input the patients have;
- ``without <m>``: modality m removed from every patient;
- ``random``: a fraction p of the (patient, modality) inputs that exist removed at random, `repeats`
  times per p with different draws.

Removing an input is the cohort contract's "missing" (the patient's reference becomes None), so the
model sees exactly what a patient without that file or table row gives it; nothing is zero-filled by
hand. A patient left with no input at all cannot be predicted by any fuser: under ``without <m>`` such
patients are left out (``n_patients`` says how many remain); under ``random`` one input of each
patient, drawn at random, is never removed, so every patient stays scored. ``removed_fraction``
reports the fraction actually removed: p itself unless p exceeds the share of inputs that are not
a patient's protected one (on the demo cohort, ~5.4 inputs per patient, that share is ~0.8).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd

from fusion.checkpoint import load_checkpoint, load_model
from fusion.data.cohort import Cohort
from fusion.data.records import PatientRecord
from fusion.errors import ConfigError
from fusion.pipeline import build_datamodule

log = logging.getLogger(__name__)
#: `frame.attrs` key of the metrics the curve and the plot show: each head's primary metric
PRIMARY = "primary_metrics"


def evaluate_robustness(
    ckpt_path: str | Path,
    manifest: str | Path,
    patient_ids: Sequence[str] | None = None,
    fractions: Sequence[float] = (0.25, 0.5, 0.75),
    repeats: int = 3,
    seed: int = 0,
    batch_size: int = 32,
) -> pd.DataFrame:
    """One row per condition: condition, removed, fraction, repeat, removed_fraction, n_patients, metrics.

    `patient_ids`: whom to score (use the model's test patients; None = every manifest patient).
    ``frame.attrs["primary_metrics"]`` names each head's primary metric (`Head.primary_metric`), what
    `curve` and `plot` show.
    """
    if any(not 0 <= p < 1 for p in fractions):
        raise ConfigError(f"fractions must lie in [0, 1), got {list(fractions)}")
    cfg, modalities, heads, lit = load_model(load_checkpoint(ckpt_path))
    lit.eval()

    cohort = Cohort.load(manifest)
    ids = list(patient_ids) if patient_ids is not None else cohort.patient_ids
    cfg.data.batch_size = batch_size
    datamodule = build_datamodule(cfg, cohort, modalities, heads, splits={"test": ids}, fit_modalities=False)
    datamodule.setup("test")
    base = datamodule.records["test"]
    trainer = L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )

    def score(records: list[PatientRecord], **row: Any) -> dict[str, Any]:
        datamodule.records["test"] = records
        lit.last_metrics = {}
        trainer.test(lit, dataloaders=datamodule.test_dataloader(), verbose=False)
        metrics = {k: v for k, v in lit.last_metrics.items() if k.startswith("test/")}
        return {**row, "n_patients": len(records), **metrics}

    present = sum(r.refs[m] is not None for r in base for m in r.refs)
    rows = [score(base, condition="all", removed="", fraction=0.0, repeat=0, removed_fraction=0.0)]
    for name in modalities:
        kept = [r for r in (without(r, {name}) for r in base) if r.has_any_modality()]
        lost = sum(r.refs[name] is not None for r in base)
        rows.append(
            score(
                kept,
                condition=f"without {name}",
                removed=name,
                fraction=np.nan,
                repeat=0,
                removed_fraction=lost / max(present, 1),
            )
        )
    rng = np.random.default_rng(seed)
    for p in fractions:
        for k in range(repeats):
            records, removed = remove_at_random(base, p, rng)
            rows.append(
                score(
                    records,
                    condition="random",
                    removed="",
                    fraction=p,
                    repeat=k,
                    removed_fraction=removed / max(present, 1),
                )
            )
    frame = pd.DataFrame(rows)
    frame.attrs[PRIMARY] = [f"test/{head.primary_metric}" for head in heads.values()]
    return frame


def without(record: PatientRecord, names: set[str]) -> PatientRecord:
    """A copy of the record with these modalities missing."""
    refs = {m: (None if m in names else ref) for m, ref in record.refs.items()}
    return dataclasses.replace(record, refs=refs)


def remove_at_random(
    records: list[PatientRecord], fraction: float, rng: np.random.Generator
) -> tuple[list[PatientRecord], int]:
    """Remove `fraction` of the existing (patient, modality) inputs at random, never a patient's last one.

    One input per patient, drawn at random, is protected; the round(fraction * N) removed inputs are
    drawn from the others (capped at their number). Returns the new records and how many were removed.
    """
    protected = {}
    for i, record in enumerate(records):
        own = [m for m, ref in record.refs.items() if ref is not None]
        if own:
            protected[i] = own[rng.integers(len(own))]
    pairs = [(i, m) for i, r in enumerate(records) for m, ref in r.refs.items() if ref is not None]
    pool = [(i, m) for i, m in pairs if protected[i] != m]
    chosen = rng.choice(len(pool), size=min(round(fraction * len(pairs)), len(pool)), replace=False)
    drop: dict[int, set[str]] = {}
    for j in chosen:
        i, m = pool[j]
        drop.setdefault(i, set()).add(m)
    return [without(r, drop[i]) if i in drop else r for i, r in enumerate(records)], len(chosen)


def shown_metrics(frame: pd.DataFrame, metrics: Sequence[str] | None) -> list[str]:
    """The metrics to show: those given, else the heads' primary metrics recorded on the frame."""
    return list(metrics if metrics is not None else frame.attrs.get(PRIMARY, []))


def curve(frame: pd.DataFrame, metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """Mean and sd over repeats of each metric at each random-removal fraction (0 = all inputs);
    `metrics` default: each head's primary metric."""
    metrics = shown_metrics(frame, metrics)
    points = frame[frame["condition"].isin(["all", "random"])]
    keep = [m for m in metrics if m in points]
    grouped = points.groupby("fraction")[keep + ["removed_fraction"]]
    return grouped.mean().join(grouped.std(ddof=1).fillna(0.0)[keep], rsuffix="_sd").reset_index()


def plot(frame: pd.DataFrame, path: str | Path, metrics: Sequence[str] | None = None) -> Path:
    """Left: metrics vs fraction of inputs removed at random (mean ± sd); right: each modality removed.
    `metrics` default: each head's primary metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keep = [m for m in shown_metrics(frame, metrics) if m in frame and frame[m].notna().any()]
    points = curve(frame, keep)
    single = frame[frame["condition"].str.startswith("without ")]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for m in keep:
        left.errorbar(
            points["fraction"],
            points[m],
            yerr=points[m + "_sd"],
            marker="o",
            capsize=3,
            label=m.split("/", 1)[1],
        )
    left.set(
        xlabel="fraction of (patient, modality) inputs removed at random",
        ylabel="test metric",
        title="random removal",
    )
    left.set_xticks(points["fraction"])
    left.axhline(0.5, color="grey", ls=":", lw=1)  # chance for every metric here
    left.grid(alpha=0.3)
    left.legend()
    width = 0.8 / max(len(keep), 1)
    x = np.arange(len(single))
    base = frame[frame["condition"] == "all"].iloc[0]
    for k, m in enumerate(keep):
        right.bar(x + k * width, single[m] - base[m], width, label=m.split("/", 1)[1])
    right.axhline(0, color="black", lw=0.8)
    right.set_xticks(x + width * (len(keep) - 1) / 2, single["removed"], rotation=30)
    right.set(ylabel="change vs all inputs", title="one modality removed from every patient")
    right.grid(alpha=0.3, axis="y")
    right.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
