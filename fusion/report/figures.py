"""Draw the figures the heads asked for, titles filled with their metric values and CIs."""

from __future__ import annotations

import string
from pathlib import Path

from fusion import plots
from fusion.evaluation.core import Evaluation

#: the report's own figure, beside the heads'
MISSINGNESS_CAPTION = "Fraction of each split's patients that have each modality."


def metric_text(evaluation: Evaluation, stage: str, key: str) -> str:
    """'0.807 [0.741, 0.869]' for a metric of the evaluation (n/a when undefined)."""
    full = f"{stage}/{key}"
    return plots.fmt(evaluation.metrics.get(full), evaluation.ci95.get(full))


def fill_title(template: str, evaluation: Evaluation, stage: str) -> str:
    """A figure title with each ``{metric}`` field replaced by that metric's value and CI."""
    fields = {f for _, f, _, _ in string.Formatter().parse(template) if f}
    return template.format_map({f: metric_text(evaluation, stage, f) for f in fields})


def make_figures(
    evaluation: Evaluation, missingness: dict[str, dict[str, float]], folder: Path, stage: str = "test"
) -> dict[str, Path]:
    """Write every figure of every head, then the missingness bars; name -> PNG path."""
    figures: dict[str, Path] = {}
    for head_figures in evaluation.figures.values():
        for figure in head_figures:
            title = fill_title(figure.title, evaluation, stage)
            figures[figure.name] = figure.draw(title, folder / f"{figure.name}.png")
    if missingness:
        figures["missingness"] = plots.missingness_plot(
            missingness, "modalities present per split", folder / "missingness.png"
        )
    return figures
