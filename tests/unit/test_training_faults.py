"""The pieces behind fusion-train's fault handling: divergence checks, NaN-free checkpoint selection,
the resume helpers and optional steps that warn instead of raising."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.loggers import CSVLogger
from omegaconf import OmegaConf

from fusion.callbacks import FiniteModelCheckpoint
from fusion.divergence import check_inputs, check_losses, check_outputs, check_weights
from fusion.errors import FusionError, TrainingDiverged
from fusion.fail_soft import optional_step
from fusion.resume import WANDB_RUN_ID, _hydra_value, keep_csv_logs, wandb_resume_kwargs

WHERE = "at epoch 2, step 7"


def test_a_nan_output_names_epoch_step_and_head():
    with pytest.raises(TrainingDiverged, match=r"output became NaN at epoch 2, step 7 \(head survival\)"):
        check_outputs({"grade": torch.zeros(2, 3), "survival": torch.tensor([0.0, float("nan")])}, WHERE)
    check_outputs({"grade": torch.zeros(2, 3)}, WHERE)  # finite: nothing


def test_an_infinite_loss_is_named_and_is_a_fusion_error():
    with pytest.raises(FusionError, match=r"loss became infinite at epoch 2, step 7 \(head total\)"):
        check_losses({"grade": torch.tensor(1.0), "total": torch.tensor(float("inf"))}, WHERE)


def test_non_finite_weights_are_never_checkpointed():
    with pytest.raises(TrainingDiverged, match="parameter fc.weight.*not saving a checkpoint"):
        check_weights([("fc.bias", torch.zeros(2)), ("fc.weight", torch.full((2, 2), float("nan")))], WHERE)


def test_a_non_finite_input_names_the_patient_and_the_modality():
    data = torch.zeros(2, 1, 4, 4, 4)
    data[1, 0, 0, 0, 0] = float("nan")  # the second present patient: P3 (P2 has no CT)
    inputs = {
        "ehr": {"present": torch.tensor([True, True, True]), "data": torch.zeros(3, 5)},
        "ct": {"present": torch.tensor([True, False, True]), "data": data},
    }
    with pytest.raises(TrainingDiverged, match="input of modality ct for patient P3 holds non-finite"):
        check_inputs(inputs, ["P1", "P2", "P3"], WHERE)


def test_a_nan_score_is_never_the_best_checkpoint(tmp_path):
    callback = FiniteModelCheckpoint(dirpath=tmp_path, monitor="val/score", mode="max")
    trainer = SimpleNamespace(current_epoch=0)
    assert callback.check_monitor_top_k(trainer, torch.tensor(float("nan"))) is False  # type: ignore[arg-type]


def test_the_wandb_run_id_is_reused_only_when_resuming(tmp_path):
    node = OmegaConf.create({"_target_": "lightning.pytorch.loggers.WandbLogger", "project": "fusion"})
    assert wandb_resume_kwargs(node, tmp_path, resuming=True) == {}  # no id stored yet
    (tmp_path / WANDB_RUN_ID).write_text("abc123\n")
    assert wandb_resume_kwargs(node, tmp_path, resuming=True) == {"id": "abc123", "resume": "allow"}
    assert wandb_resume_kwargs(node, tmp_path, resuming=False) == {}
    csv = OmegaConf.create({"_target_": "lightning.pytorch.loggers.CSVLogger"})
    assert wandb_resume_kwargs(csv, tmp_path, resuming=True) == {}


def test_the_csv_log_before_a_resume_is_kept(tmp_path):
    (tmp_path / "csv").mkdir()
    (tmp_path / "csv" / "metrics.csv").write_text("epoch\n0\n")
    keep_csv_logs([CSVLogger(save_dir=str(tmp_path), name="csv", version="")])
    assert (tmp_path / "csv-before-resume-1" / "metrics.csv").read_text() == "epoch\n0\n"
    assert not (tmp_path / "csv").exists()


def test_paths_are_quoted_for_hydra_only_when_needed():
    assert _hydra_value(Path("/runs/2026-01-01_10-00-00/last.ckpt")) == "/runs/2026-01-01_10-00-00/last.ckpt"
    assert _hydra_value(Path("/my runs/it's=1")) == "'/my runs/it\\'s=1'"


def test_an_optional_step_warns_naming_the_step(caplog):
    with caplog.at_level(logging.WARNING), optional_step("report"):
        raise KeyError("true_risk")
    assert "report skipped: KeyError" in caplog.text
