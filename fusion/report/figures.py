"""Which figures an evaluation gets, with titles that carry the metric value and n."""

from __future__ import annotations

from pathlib import Path

from fusion.evaluation.core import Evaluation
from fusion.report import plots


def _metric(evaluation: Evaluation, stage: str, key: str) -> str:
    full = f"{stage}/{key}"
    return plots._fmt(evaluation.metrics.get(full), evaluation.ci95.get(full))


def make_figures(
    evaluation: Evaluation, missingness: dict[str, dict[str, float]], folder: Path, stage: str = "test"
) -> dict[str, Path]:
    """Write every figure the evaluation supports; name -> PNG path."""
    figures: dict[str, Path] = {}
    for name, art in evaluation.heads.items():
        n = art.get("n", 0)
        if art["kind"] == "grade" and n:
            if art["roc"]:
                auc = _metric(evaluation, stage, f"{name}_auroc")
                figures[f"roc_{name}"] = plots.roc_plot(
                    {f"class {c} vs rest": curve for c, curve in art["roc"].items()},
                    f"{name}: one-vs-rest ROC\nmacro AUROC {auc}, n={n}",
                    folder / f"roc_{name}.png",
                )
            bacc = _metric(evaluation, stage, f"{name}_balanced_accuracy")
            figures[f"confusion_{name}"] = plots.confusion_plot(
                art["confusion_matrix"],
                art["classes"],
                f"{name}: confusion matrix\nbalanced accuracy {bacc}, n={n}",
                folder / f"confusion_{name}.png",
            )
        elif art["kind"] == "response" and n:
            if art["roc"]:
                auc = _metric(evaluation, stage, f"{name}_auroc")
                figures[f"roc_{name}"] = plots.roc_plot(
                    {name: art["roc"]}, f"{name}: ROC\nAUROC {auc}, n={n}", folder / f"roc_{name}.png"
                )
            ece = _metric(evaluation, stage, f"{name}_ece")
            figures[f"calibration_{name}"] = plots.calibration_plot(
                art["reliability"],
                f"{name}: calibration\nECE {ece}, n={n}",
                folder / f"calibration_{name}.png",
            )
        elif art["kind"] == "survival" and art.get("risk_groups"):
            groups = art["risk_groups"]
            p = groups["logrank_p"]
            cindex = _metric(evaluation, stage, f"{name}_cindex")
            title = (
                f"{name}: KM by predicted risk ({groups['cutoff_source']} cut-offs)\n"
                f"log-rank p={'n/a' if p is None else f'{p:.3g}'}, C-index {cindex}, n={n}"
            )
            figures[f"km_{name}"] = plots.km_plot(groups, title, folder / f"km_{name}.png")
    if missingness:
        figures["missingness"] = plots.missingness_plot(
            missingness, "modalities present per split", folder / "missingness.png"
        )
    return figures
