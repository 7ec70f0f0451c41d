"""experiments/ablation/run.py: the sweeps it launches and the table it builds from cv_metrics.json files."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from fusion.cross_validation import summarise

RUNNER = Path(__file__).resolve().parents[2] / "experiments" / "ablation" / "run.py"


@pytest.fixture(scope="module")
def runner():
    spec = importlib.util.spec_from_file_location("ablation_run", RUNNER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write(path: Path, modality: list[str], fuser: str, grade: list[float], weight: float = 1.0) -> None:
    folds = [
        {"repeat": 0, "fold": k, "test/grade_auroc": g, "oracle/grade_auroc": 0.9}
        for k, g in enumerate(grade)
    ]
    setup = {"modality": modality, "fuser": f"fusion.fusers.{fuser}", "unimodal_weight": weight}
    path.mkdir(parents=True)
    (path / "cv_metrics.json").write_text(json.dumps({"setup": setup, "folds": folds, **summarise(folds)}))


def test_table_rows_cells_and_verdict(runner, tmp_path):
    _write(tmp_path / "fusers" / "0", ["ct", "ehr"], "TransformerFuser", [0.8, 0.82, 0.84])
    _write(tmp_path / "fusers" / "1", ["ct", "ehr"], "KroneckerFuser", [0.7, 0.7, 0.7])
    _write(tmp_path / "unimodal" / "0", ["ct"], "TransformerFuser", [0.6, 0.7, 0.8])
    _write(tmp_path / "unimodal" / "1", ["ehr"], "TransformerFuser", [0.85, 0.85, 0.85])
    _write(
        tmp_path / "fusers_fused_loss_only" / "0",
        ["ct", "ehr"],
        "TransformerFuser",
        [0.5, 0.5, 0.5],
        weight=0,
    )
    frame = runner.table(tmp_path)
    assert frame["config"].tolist() == [
        "late-fusion transformer",
        "gated Kronecker",
        "late-fusion transformer (fused loss only)",
        "ct alone",
        "ehr alone",
    ]
    text = runner.markdown(frame)
    half = 4.302653 * 0.02 / 3**0.5
    assert (
        f"| late-fusion transformer | 0.820 [{0.82 - half:.3f}, {0.82 + half:.3f}] (0.900) | n/a | n/a | 3 |"
        in text
    )
    assert (
        "grade AUROC: the transformer (0.820) is NOT ahead of the best single modality (ehr alone, 0.850)"
        in text
    )
    assert "C-index" not in text.split("\n\n")[1]  # no verdict for a metric nobody measured


def test_sweeps_run_the_fusers_first_on_one_fold_file(runner, tmp_path):
    fusers, unimodal, fused_only = runner.sweeps(tmp_path, ["trainer.max_epochs=1"])
    assert "loss.unimodal_weight=0" in fused_only and "fuser=transformer" in fused_only
    assert "fuser=transformer,concat,kronecker" in fusers and fusers[-1] == "trainer.max_epochs=1"
    assert "modality=[ct],[mri],[pet],[histology],[genomics],[ehr]" in unimodal
    shared = f"cv.splits_file={tmp_path / 'folds.csv'}"
    assert all(shared in sweep for sweep in (fusers, unimodal, fused_only))
    assert "experiment=ablation" in unimodal
