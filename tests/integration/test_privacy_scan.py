"""No patient's value in any checkpoint or output (README "Patient privacy").

A small EHR + genomics cohort gets distinctive planted values (ages of 97.123456 and 23.370123, a
biomarker of 8642.123, a gene expression of 31415.926, town names "Zzyzxtown1".."Zzyzxtown5" that one
patient each has, survival times with distinctive decimals; each value in 5 patients, so that training
patients hold some whatever the split). After a short training run (CSV and offline W&B loggers) and
`fusion-predict` on that cohort, every number, tensor and string of every checkpoint, every byte of
every file of the run folder and what the commands printed are scanned for them. Numbers match with a
relative tolerance of 1e-6 (a float32 copy of a value is found too).
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from tests.integration.conftest import one_error_line, run_module, tiny_overrides

PLANTED_STRING = "Zzyzxtown"  # one patient each: Zzyzxtown1 ... Zzyzxtown5
#: each value is planted in 5 patients (+ k * 1.1e-5), so that some are training patients whatever the split
PLANTED_EHR = {"age": [97.123456, 23.370123], "ldh": [8642.123]}
PLANTED_GENE = 31415.926
COPIES = 5
#: a float in text: 12.34, -1.5e-07, 3e+02
NUMBER = re.compile(rb"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


@dataclass(frozen=True)
class Finding:
    where: str  # file (and, in a checkpoint, the key path)
    what: str

    @property
    def in_modality_state(self) -> bool:
        return "/modality_state/" in self.where


@pytest.fixture(scope="module")
def planted(tiny_cohort, tmp_path_factory) -> tuple[Path, np.ndarray]:
    """The tiny cohort's manifest (labels only), EHR and genomics tables with the planted values; and
    every planted number (the survival times included)."""
    folder = tmp_path_factory.mktemp("planted")
    manifest = pd.read_csv(tiny_cohort)[
        ["patient_id", "site", "grade", "survival_time", "survival_event", "response"]
    ]
    manifest["survival_time"] = (
        manifest["survival_time"].round(1) + 0.012345 + 0.000107 * np.arange(len(manifest))
    )
    manifest.to_csv(folder / "manifest.csv", index=False)
    copies = 1.1e-5 * np.arange(COPIES)
    ehr = pd.read_csv(tiny_cohort.parent / "ehr.csv")
    rows = iter(range(len(ehr)))  # each planted value in its own patients
    numbers = []
    for column, values in PLANTED_EHR.items():
        ehr[column] = ehr[column].astype(float)
        for value in values:
            ehr.loc[[next(rows) for _ in copies], column] = value + copies
            numbers += (value + copies).tolist()
    ehr["town"] = ["north" if i % 2 else "south" for i in range(len(ehr))]
    ehr.loc[[next(rows) for _ in copies], "town"] = [f"{PLANTED_STRING}{k + 1}" for k in range(COPIES)]
    ehr.to_csv(folder / "ehr.csv", index=False)
    genomics = pd.read_csv(tiny_cohort.parent / "genomics.csv").astype({"GENE001": float})
    genomics.loc[[next(rows) for _ in copies], "GENE001"] = PLANTED_GENE + copies
    genomics.to_csv(folder / "genomics.csv", index=False)
    numbers += (PLANTED_GENE + copies).tolist()
    return folder / "manifest.csv", np.array(numbers + manifest["survival_time"].tolist())


@pytest.fixture(scope="module")
def run(planted, tmp_path_factory) -> tuple[Path, str]:
    manifest, _ = planted
    run_dir = tmp_path_factory.mktemp("privacy_run")
    overrides = [o for o in tiny_overrides("modality=[ehr,genomics]") if o != "logger=[csv]"]
    result = run_module(
        "fusion.cli.train",
        f"data.manifest={manifest}",
        f"hydra.run.dir={run_dir}",
        *overrides,
        "logger=[csv,wandb]",
        "evaluation.n_bootstrap=20",
    )
    assert result.returncode == 0, result.stderr[-4000:]
    best = json.loads((run_dir / "metrics.json").read_text())["info"]["best_checkpoint"]
    # fusion-predict on the same labelled cohort, into the run folder so that its files are scanned too
    predicted = run_module(
        "fusion.cli.predict",
        f"ckpt_path={best}",
        f"data.manifest={manifest}",
        f"hydra.run.dir={run_dir / 'predict'}",
        "evaluation.n_bootstrap=20",
    )
    assert predicted.returncode == 0, predicted.stderr[-4000:]
    assert (run_dir / "predict" / "report" / "evaluation.json").exists()
    # fusion-explain without the patients' own values (the setting for files that leave the hospital), W&B on
    explained = run_module(
        "fusion.cli.explain",
        f"ckpt_path={best}",
        f"data.manifest={manifest}",
        f"hydra.run.dir={run_dir / 'explain'}",
        "feature_values=false",
        "wandb.enabled=true",
        "ig_steps=4",
    )
    assert explained.returncode == 0, explained.stderr[-4000:]
    features = pd.read_csv(run_dir / "explain" / "features.csv")
    assert "town" in set(features["feature"]) and features["value"].isna().all()
    printed = [result, predicted, explained]
    return run_dir, "".join(r.stdout + r.stderr for r in printed)


@pytest.fixture(scope="module")
def findings(planted, run) -> list[Finding]:
    _, numbers = planted
    run_dir, printed = run
    found = [Finding("printed output", w) for w in _scan_text(printed.encode(), numbers)]
    files = sorted(p for p in run_dir.rglob("*") if p.is_file())
    checkpoints = [p for p in files if p.suffix in (".ckpt", ".pt")]  # .pt: the reference set
    assert checkpoints and any(p.suffix == ".wandb" for p in files) and (run_dir / "metrics.json").exists()
    for path in files:  # a checkpoint's bytes are a zip of pickles: read by key path below instead
        if path in checkpoints:
            continue
        found += [Finding(str(path.relative_to(run_dir)), w) for w in _scan_text(path.read_bytes(), numbers)]
    for path in checkpoints:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        found += [Finding(f"{path.name}:{where}", what) for where, what in _scan_object(ckpt, "", numbers)]
    return found


def test_no_checkpoint_part_or_output_file_holds_a_planted_value(findings):
    """Weights, config, evaluation reference, training-id hashes, explanation base values, metrics,
    predictions, report, CSV and W&B files, the .hydra folder and the printed log, of fusion-train,
    fusion-predict and fusion-explain (`feature_values=false`). The reference set of similar patients
    (`reference_set.pt`) is patient data by design, outcomes included: it may hold the survival times, and
    nothing else planted (no EHR or gene value)."""
    assert [f for f in findings if not f.in_modality_state and not _reference_outcome(f)] == []


def test_the_reference_set_holds_outcomes_only(findings):
    """The scan reads inside the reference set (it holds the training patients' survival times)."""
    outcomes = [f for f in findings if _reference_outcome(f)]
    assert outcomes and all(f.where.split(":", 1)[1].startswith("/labels/survival_time/") for f in outcomes)


def _reference_outcome(finding: Finding) -> bool:
    return finding.where.startswith("reference_set.pt:/labels/survival_time/")


def test_no_modality_state_holds_a_planted_value(findings):
    assert [f for f in findings if f.in_modality_state] == []


def test_wandb_gets_no_per_patient_table_by_default(run):
    run_dir, _ = run
    tables = {p.name.rsplit("_", 2)[0] for p in (run_dir / "wandb").rglob("media/table/*.table.json")}
    assert tables == {"test_metrics"}


def test_the_scan_finds_a_planted_value_where_there_is_one(planted):
    """The scanners themselves can fail: a float32 copy in a tensor, a string, digits in a file."""
    _, numbers = planted
    obj = {"a": [torch.tensor([0.5, PLANTED_GENE], dtype=torch.float32)], "b": f"in {PLANTED_STRING}!"}
    assert {w for w, _ in _scan_object(obj, "", numbers)} == {"/a/0", "/b"}
    assert _scan_text(b'{"age": 97.12345886}', numbers) == ["number 97.12345886"]


def test_a_date_column_is_refused_by_name(planted, tmp_path):
    manifest, _ = planted
    folder = tmp_path / "cohort"
    shutil.copytree(manifest.parent, folder)
    ehr = pd.read_csv(folder / "ehr.csv")
    ehr["diagnosis_date"] = pd.date_range("2019-03-07", periods=len(ehr), freq="11D").strftime("%Y-%m-%d")
    ehr.to_csv(folder / "ehr.csv", index=False)
    result = run_module(
        "fusion.cli.train",
        f"data.manifest={folder / 'manifest.csv'}",
        f"hydra.run.dir={tmp_path / 'run'}",
        *tiny_overrides("modality=[ehr]"),
    )
    one_error_line(result)  # exit 1, no traceback; the cohort error lists its problems below that line
    problems = result.stderr.split("error:", 1)[1]
    assert "column 'diagnosis_date'" in problems and "days_from_diagnosis" in problems


# ----------------------------------------------------------------------------------------------- scanners
def _matches(values: np.ndarray, numbers: np.ndarray) -> np.ndarray:
    """The entries of `values` within a relative 1e-6 of a planted number."""
    values = values[np.isfinite(values)]
    hits = [values[i : i + 4096] for i in range(0, len(values), 4096)]
    return np.concatenate(
        [
            [],
            *(
                chunk[np.isclose(chunk[:, None], numbers[None, :], rtol=1e-6, atol=0).any(axis=1)]
                for chunk in hits
            ),
        ]
    )


def _scan_text(data: bytes, numbers: np.ndarray) -> list[str]:
    found = [f"string {PLANTED_STRING}"] if PLANTED_STRING.lower().encode() in data.lower() else []
    tokens = NUMBER.findall(data)
    if tokens:
        values = np.array([float(t) for t in tokens])
        found += [
            f"number {t.decode()}"
            for t, v in zip(tokens, values, strict=True)
            if _matches(np.array([v]), numbers).size
        ]
    return found


def _scan_object(obj: Any, where: str, numbers: np.ndarray):
    """(key path, what) for every planted value in a loaded checkpoint: dicts, lists, tensors, arrays,
    numbers, strings, and the attributes of other objects."""
    if isinstance(obj, DictConfig | ListConfig):
        obj = OmegaConf.to_container(obj)
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield from _scan_object(key, f"{where}/<key>", numbers)
            yield from _scan_object(value, f"{where}/{key}", numbers)
    elif isinstance(obj, list | tuple | set):
        for i, value in enumerate(obj):
            yield from _scan_object(value, f"{where}/{i}", numbers)
    elif isinstance(obj, torch.Tensor | np.ndarray):
        array = obj.detach().cpu().double().numpy() if isinstance(obj, torch.Tensor) else obj
        if array.dtype.kind in "fiu":
            for value in _matches(np.asarray(array, float).ravel(), numbers):
                yield where, f"number {value!r}"
        elif array.dtype.kind in "OUS":
            yield from _scan_object(array.tolist(), where, numbers)
    elif isinstance(obj, bool) or obj is None:
        return
    elif isinstance(obj, int | float):
        if _matches(np.array([float(obj)]), numbers).size:
            yield where, f"number {obj!r}"
    elif isinstance(obj, str | bytes | Path):
        data = obj if isinstance(obj, bytes) else str(obj).encode()
        for what in _scan_text(data, numbers):
            yield where, what
    elif hasattr(obj, "__dict__"):
        yield from _scan_object(vars(obj), where, numbers)
    else:
        yield from _scan_object(str(obj), where, numbers)
