"""The evaluation report of a run: PNG figures, report.md, JSON/CSV curves, and the same in W&B."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fusion.evaluation.core import Evaluation
from fusion.report.figures import make_figures
from fusion.report.markdown import metric_rows, write_markdown


@dataclass
class Report:
    folder: Path
    figures: dict[str, Path]
    markdown: Path


def write_report(
    folder: str | Path,
    evaluation: Evaluation,
    missingness: dict[str, dict[str, float]],
    n_bootstrap: int,
    level: float = 0.95,
    stage: str = "test",
    notes: Sequence[str] = (),
) -> Report:
    """Figures, `report.md`, `evaluation.json` (metrics, CIs, curves) and the heads' tables as CSV
    (e.g. `confusion_grade.csv`), in `folder`. `notes`: lines report.md shows under its first paragraph
    (what was scored, e.g. how many patients the model trained on)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    figures = make_figures(evaluation, missingness, folder, stage)
    data = {
        "metrics": evaluation.metrics,
        "ci95": evaluation.ci95,
        "heads": evaluation.heads,
        "missingness": missingness,
    }
    (folder / "evaluation.json").write_text(json.dumps(data, indent=1))
    for tables in evaluation.tables.values():
        for stem, table in tables.items():
            table.to_csv(folder / f"{stem}.csv")
    markdown = write_markdown(folder / "report.md", evaluation, figures, n_bootstrap, level, notes=notes)
    return Report(folder, figures, markdown)


__all__ = ["Report", "metric_rows", "write_report"]
