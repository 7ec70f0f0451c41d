"""experiments/ablation/run.py: the sweeps it launches and the table it builds from cv_metrics.json files."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from fusion.cross_validation import summarise
from fusion.metrics.classification import binary_auroc

RUNNER = Path(__file__).resolve().parents[2] / "experiments" / "ablation" / "run.py"


def load_script(name: str):
    """One of experiments/ablation/*.py as a module (the folder is not a package)."""
    spec = importlib.util.spec_from_file_location(f"ablation_{name}", RUNNER.parent / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def runner():
    return load_script("run")


def _write(
    path: Path,
    modality: list[str],
    fuser: str,
    grade: list[float],
    weight: float = 1.0,
    output: str = "ensemble",
) -> None:
    folds = [
        {"repeat": 0, "fold": k, "test/grade_auroc": g, "oracle/grade_auroc": 0.9}
        for k, g in enumerate(grade)
    ]
    setup = {
        "modality": modality,
        "fuser": f"fusion.fusers.{fuser}",
        "unimodal_weight": weight,
        "model_output": output,
    }
    path.mkdir(parents=True)
    (path / "cv_metrics.json").write_text(json.dumps({"setup": setup, "folds": folds, **summarise(folds)}))


def test_table_rows_cells_and_verdict(runner, tmp_path):
    _write(tmp_path / "fusers" / "0", ["ct", "ehr"], "TransformerFuser", [0.8, 0.82, 0.84])
    _write(tmp_path / "fusers" / "1", ["ct", "ehr"], "KroneckerFuser", [0.7, 0.7, 0.7])
    _write(tmp_path / "unimodal" / "0", ["ct"], "TransformerFuser", [0.6, 0.7, 0.8])
    _write(tmp_path / "unimodal" / "1", ["ehr"], "TransformerFuser", [0.85, 0.81, 0.85])
    variants = tmp_path / "transformer_variants"
    _write(variants / "0", ["ct", "ehr"], "TransformerFuser", [0.5, 0.5, 0.5], weight=0, output="fused")
    _write(variants / "1", ["ct", "ehr"], "TransformerFuser", [0.6, 0.6, 0.6], weight=8, output="fused")
    frame = runner.table(tmp_path)
    assert frame["config"].tolist() == [
        "late-fusion transformer",
        "gated Kronecker",
        "late-fusion transformer (fused loss only)",
        "late-fusion transformer (fused pass only)",
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
        "grade AUROC: the transformer (0.820) is NOT ahead of the best single modality (ehr alone, 0.837); "
        "ahead in 1 of 3 folds" in text
    )
    assert "C-index" not in text.split("\n\n")[1]  # no verdict for a metric nobody measured


def test_sweeps_run_the_fusers_first_on_one_fold_file(runner, tmp_path):
    fusers, unimodal, variants = runner.sweeps(tmp_path, ["trainer.max_epochs=1"])
    assert "fuser=transformer" in variants and "model.output=fused" in variants
    assert "loss.unimodal_weight=0,8" in variants
    assert "fuser=transformer,concat,kronecker" in fusers and fusers[-1] == "trainer.max_epochs=1"
    assert "modality=[ct],[mri],[pet],[histology],[genomics],[ehr]" in unimodal
    shared = f"cv.splits_file={tmp_path / 'folds.csv'}"
    assert all(shared in sweep for sweep in (fusers, unimodal, variants))
    assert "experiment=ablation" in unimodal


def test_same_patients_pairs_each_fold_on_the_single_rows_patients(tmp_path):
    module = load_script("same_patients")
    ids = [f"P{i}" for i in range(8)]
    manifest = pd.DataFrame(
        {
            "patient_id": ids,
            "grade": [1, 2, 3, 1, 2, 3, 1, 3],
            "survival_time": [5.0, 3, 8, 2, 9, 4, 7, 1],
            "survival_event": [1, 0, 1, 1, 0, 1, 1, 1],
            "response": [1, 0, 1, 0, 1, 0, 1, 0],
        }
    )
    manifest.to_csv(tmp_path / "manifest.csv", index=False)
    rng = np.random.default_rng(0)

    def predictions(patients: list[str]) -> pd.DataFrame:
        probs = rng.dirichlet([1, 1, 1], size=len(patients))
        return pd.DataFrame(
            {"patient_id": patients, **{f"grade_prob_{k + 1}": probs[:, k] for k in range(3)}}
            | {"risk": rng.normal(size=len(patients)), "response_prob": rng.uniform(size=len(patients))}
        )

    fused = predictions(ids)
    (tmp_path / "fused" / "repeat0_fold0").mkdir(parents=True)
    (tmp_path / "single" / "repeat0_fold0").mkdir(parents=True)
    fused.to_csv(tmp_path / "fused" / "repeat0_fold0" / "predictions_test.csv", index=False)
    predictions(ids[:6]).to_csv(tmp_path / "single" / "repeat0_fold0" / "predictions_test.csv", index=False)
    frame = module.paired(tmp_path / "fused", tmp_path / "single", tmp_path / "manifest.csv").set_index(
        "metric"
    )
    labels = manifest.set_index("patient_id")
    expected_same = module.score(fused[fused["patient_id"].isin(ids[:6])], labels)
    expected_all = module.score(fused, labels)
    for key in ("test/grade_auroc", "test/survival_cindex", "test/response_auroc"):
        assert frame.loc[key, "fused_same"] == pytest.approx(expected_same[key])
        assert frame.loc[key, "fused_all"] == pytest.approx(expected_all[key])
    assert frame.loc["test/response_auroc", "fused_same"] != pytest.approx(
        expected_all["test/response_auroc"]
    )
    truth = torch.tensor([0, 1, 0, 1, 0, 1, 0, 1]) == 0  # P0, P2, ... responded
    direct = binary_auroc(torch.tensor(fused["response_prob"].to_numpy()), truth.long())
    assert expected_all["test/response_auroc"] == pytest.approx(float(direct))


def test_ceilings_rank_the_inputs_as_the_generator_wires_them():
    """Held-out linear-model ceilings on generated patients: each label follows the latents its inputs see."""
    table = load_script("ceilings").ceilings(n_patients=3000, seed=0)
    assert list(table.columns) == ["grade", "survival", "response"] and len(table) == 5
    oracle = table.loc["oracle (truth.csv probabilities)"]
    assert (table <= oracle + 0.01).all().all()  # nothing beats the generator's own probabilities
    fused = table.loc["genomics + EHR + exact imaging latents"]
    assert fused["grade"] > table.loc["genomics alone", "grade"] + 0.1  # grade needs aggressiveness: imaging
    assert table.loc["genomics alone", "response"] > table.loc["EHR alone", "response"] + 0.04  # sensitivity
    assert table.loc["genomics alone", "response"] > 0.65  # rows stay aligned with their patients' labels
    # the demo's purpose: on every label, all inputs together can do clearly better than any one table alone
    best_single = table.loc[["genomics alone", "EHR alone"]].max()
    assert (fused - best_single > 0.04).all(), (fused - best_single).round(3).to_dict()  # 1.7/-0.7: 0.03
