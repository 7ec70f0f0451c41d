"""The page's two plots as PNG bytes (matplotlib, Agg): the patient's predicted survival curve and the
Kaplan–Meier curve of the similar patients (with the patient's predicted curve for comparison)."""

from __future__ import annotations

import io
from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np

from fusion.plots import STYLE  # also selects the Agg backend

#: curves as (times, survival probabilities)
Curve = tuple[np.ndarray, np.ndarray]


def _png(fig: plt.Figure) -> bytes:
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def _axes(ax: plt.Axes, time_label: str, title: str) -> None:
    ax.axhline(0.5, ls=":", color="grey", lw=1)
    ax.set(xlabel=time_label, ylabel="probability of survival", ylim=(0, 1.02), title=title)
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)


def survival_png(
    curve: Curve, horizons: Mapping[float, float], median: float | None, time_label: str, title: str
) -> bytes:
    """S(t | x) against t, with the probabilities at the horizons and the median survival marked."""
    times, probs = (np.asarray(a, float) for a in curve)
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(6.0, 3.6))
        ax.plot(times, probs, lw=2, color="#1f5fa8", label="predicted S(t)")
        if horizons:
            ax.scatter(
                list(horizons), list(horizons.values()), color="#c0392b", zorder=3, label="at the horizons"
            )
        if median is not None:
            ax.plot([median, median], [0, 0.5], ls="--", color="#555555", lw=1, label=f"median {median:.3g}")
        _axes(ax, time_label, title)
        ax.legend(loc="lower left")
        return _png(fig)


def km_png(km: Curve, n_patients: int, predicted: Curve | None, time_label: str) -> bytes:
    """The similar patients' Kaplan–Meier curve (a step function), and the patient's predicted curve."""
    times, surv = (np.asarray(a, float) for a in km)
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(6.0, 3.6))
        ax.step(
            np.r_[0.0, times],
            np.r_[1.0, surv],
            where="post",
            lw=2,
            color="#2e8b57",
            label=f"similar patients (Kaplan–Meier, n={n_patients})",
        )
        if predicted is not None:
            ax.plot(
                *(np.asarray(a, float) for a in predicted),
                ls="--",
                color="#1f5fa8",
                label="this patient (predicted)",
            )
        _axes(ax, time_label, "Outcome of the similar patients")
        ax.legend(loc="lower left")
        return _png(fig)
