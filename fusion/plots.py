"""Report figures as PNG files (matplotlib, Agg backend): ROC, calibration, confusion matrix,
Kaplan–Meier of predicted risk groups, per-modality missingness. Each is titled with its metric and n."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType  # the rcParams names, as a Literal

STYLE: dict[RcKeyType, Any] = {
    "font.size": 12,
    "axes.titlesize": 13,
    "axes.labelsize": 12,
    "legend.fontsize": 10,
    "figure.dpi": 110,
}


def fmt(value: float | None, ci: list[float] | None = None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def roc_plot(curves: dict[str, dict[str, list[float]]], title: str, path: Path) -> Path:
    """One ROC curve per entry (class or head), with the chance diagonal."""
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(5.5, 5.2))
        for label, curve in curves.items():
            ax.plot(curve["fpr"], curve["tpr"], lw=2, label=label)
        ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="chance")
        ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.02))
        ax.set_title(title)
        ax.legend(loc="lower right")
        ax.set_aspect("equal")
        return _save(fig, path)


def calibration_plot(reliability: dict[str, list[float]], title: str, path: Path) -> Path:
    """Reliability curve (observed vs mean predicted per bin, marker size ~ count) and a histogram."""
    with plt.rc_context(STYLE):
        fig, (ax, hist) = plt.subplots(
            2, 1, figsize=(5.5, 6.2), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
        )
        counts = np.asarray(reliability["count"], float)
        ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfect calibration")
        ax.plot(reliability["predicted"], reliability["observed"], "-o", lw=2, label="model")
        ax.scatter(
            reliability["predicted"], reliability["observed"], s=20 + 200 * counts / max(counts.max(), 1)
        )
        ax.set(ylabel="observed fraction of responders", xlim=(0, 1), ylim=(-0.02, 1.02))
        ax.set_title(title)
        ax.legend(loc="upper left")
        hist.bar(reliability["predicted"], counts, width=0.04, color="tab:blue")
        hist.set(xlabel="mean predicted probability (per bin)", ylabel="patients")
        return _save(fig, path)


def confusion_plot(matrix: list[list[int]], classes: list[str], title: str, path: Path) -> Path:
    """Counts with row-normalised shading (rows: true class, columns: predicted)."""
    cm = np.asarray(matrix, float)
    share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    with plt.rc_context(STYLE):
        size = 2.0 + 1.1 * len(classes)
        fig, ax = plt.subplots(figsize=(size + 1, size))
        image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        for i in range(cm.shape[0]):
            for j in range(cm.shape[1]):
                ax.text(
                    j,
                    i,
                    f"{int(cm[i, j])}",
                    ha="center",
                    va="center",
                    fontsize=13,
                    color="white" if share[i, j] > 0.6 else "black",
                )
        ax.set_xticks(range(len(classes)), classes)
        ax.set_yticks(range(len(classes)), classes)
        ax.set(xlabel="predicted class", ylabel="true class")
        ax.set_title(title)
        fig.colorbar(image, ax=ax, fraction=0.046, label="share of true class")
        return _save(fig, path)


def km_plot(groups: dict[str, Any], title: str, path: Path) -> Path:
    """Kaplan–Meier curves (lifelines) of the predicted risk groups, with numbers at risk in the legend."""
    from lifelines import KaplanMeierFitter

    time, event, group = (np.asarray(groups[k]) for k in ("time", "event", "group"))
    colors = ["tab:green", "tab:orange", "tab:red"] if len(groups["names"]) == 3 else ["tab:blue", "tab:red"]
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(6.5, 5))
        for k, name in enumerate(groups["names"]):
            mask = group == k
            if not mask.any():
                continue
            kmf = KaplanMeierFitter(label=f"{name} (n={int(mask.sum())}, events={int(event[mask].sum())})")
            kmf.fit(time[mask], event[mask])
            kmf.plot_survival_function(ax=ax, ci_show=True, color=colors[k], lw=2, show_censors=True)
        ax.set(xlabel="time (cohort's unit)", ylabel="survival probability", ylim=(0, 1.02))
        ax.set_title(title)
        ax.legend(loc="best")
        return _save(fig, path)


def missingness_plot(table: dict[str, dict[str, float]], title: str, path: Path) -> Path:
    """Grouped bars: per modality, the fraction of each split's patients that have it."""
    splits = list(table)
    modalities = list(next(iter(table.values())))
    width = 0.8 / max(len(splits), 1)
    x = np.arange(len(modalities))
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(modalities) + 2), 5))
        for i, split in enumerate(splits):
            values = [table[split][m] for m in modalities]
            bars = ax.bar(x + (i - (len(splits) - 1) / 2) * width, values, width, label=split)
            ax.bar_label(bars, labels=[f"{v:.0%}" for v in values], fontsize=8, padding=1)
        ax.set_xticks(x, modalities)
        ax.set(ylabel="fraction of patients with the modality", ylim=(0, 1.1))
        ax.set_title(title)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncols=len(splits), frameon=False)
        return _save(fig, path)
