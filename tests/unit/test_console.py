"""fusion.console: the progress bar's figures, the per-epoch line, the quieted libraries, the final summary;
fusion.cli.common's message for a missing value; the config groups each command's --help lists."""

from __future__ import annotations

import io
import logging
import re
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.utilities.rank_zero import rank_zero_info
from omegaconf import OmegaConf
from omegaconf.errors import MissingMandatoryValue

from fusion.cli.common import missing_value_message
from fusion.console import (
    LIGHTNING_NOISE,
    EpochLines,
    FusionProgressBar,
    WandbLogger,
    epoch_line,
    is_interactive,
    key_figures,
    quiet_third_party,
    run_summary,
)

CONF = Path(__file__).resolve().parents[2] / "conf"

#: what LitFusion logs with the auxiliary loss on (weight 8): the total is ~9x the heads' loss
WITH_AUX = {
    "train/loss": torch.tensor(40.2),
    "train/fused_loss": torch.tensor(4.9),
    "train/unimodal_loss": torch.tensor(4.4),
    "train/grade_loss": torch.tensor(1.1),
    "val/loss": torch.tensor(4.7),
    "val/score": torch.tensor(0.63),
    "val/grade_auroc": torch.tensor(0.7),
}


def _trainer(metrics: dict, epoch: int = 2, max_epochs: int = 30) -> SimpleNamespace:
    return SimpleNamespace(callback_metrics=metrics, current_epoch=epoch, max_epochs=max_epochs)


def test_the_bar_shows_the_heads_loss_on_train_and_val_and_the_total_apart_without_v_num():
    shown = FusionProgressBar().get_metrics(_trainer(WITH_AUX), None)
    assert shown == pytest.approx({"train_loss": 4.9, "val_loss": 4.7, "val_score": 0.63, "total_loss": 40.2})
    assert "v_num" not in shown


def test_without_the_auxiliary_loss_train_loss_is_the_heads_loss_and_there_is_no_total():
    metrics = {"train/loss": torch.tensor(4.9), "val/loss": torch.tensor(4.7), "val/score": torch.tensor(0.6)}
    shown = FusionProgressBar().get_metrics(_trainer(metrics), None)
    assert shown == pytest.approx({"train_loss": 4.9, "val_loss": 4.7, "val_score": 0.6})


def test_figures_not_logged_yet_are_left_out():
    assert key_figures({}) == {}
    assert key_figures({"train/loss": 3.0}) == {"train_loss": 3.0}


def test_the_epoch_line_has_epoch_of_max_the_figures_and_the_elapsed_time():
    line = epoch_line(_trainer(WITH_AUX, epoch=2, max_epochs=30), elapsed_s=3723.9)
    assert line == "epoch 3/30  train_loss 4.9  val_loss 4.7  val_score 0.63  total_loss 40.2  1:02:03"
    assert epoch_line(_trainer({}, epoch=0, max_epochs=-1), 5).startswith("epoch 1  0:00:05")


class _Bar:
    def __init__(self) -> None:
        self.enabled = True

    def disable(self) -> None:
        self.enabled = False


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_epoch_lines_print_and_turn_the_bar_off_only_when_stdout_is_not_a_terminal(monkeypatch):
    trainer = SimpleNamespace(**vars(_trainer(WITH_AUX)), progress_bar_callback=_Bar(), is_global_zero=True)
    callback = EpochLines()
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    assert is_interactive()
    callback.setup(trainer, None, "fit")
    callback.on_train_start(trainer, None)
    callback.on_train_epoch_end(trainer, None)
    assert trainer.progress_bar_callback.enabled and terminal.getvalue() == ""

    log_file = io.StringIO()  # nohup, SLURM, a pipe
    monkeypatch.setattr(sys, "stdout", log_file)
    assert not is_interactive()
    callback.setup(trainer, None, "fit")
    callback.on_train_epoch_end(trainer, None)
    assert not trainer.progress_bar_callback.enabled
    assert log_file.getvalue().startswith("epoch 3/30  train_loss 4.9  val_loss 4.7  val_score 0.63")


def test_lightnings_banner_tips_and_reload_lines_are_dropped_other_lines_kept():
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())  # type: ignore[method-assign]
    loggers = [
        logging.getLogger(n)
        for n in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")
    ]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        quiet_third_party()
        quiet_third_party()  # idempotent
        for line in (*(f"{prefix} something" for prefix in LIGHTNING_NOISE), "Restored all states from x"):
            rank_zero_info(line)
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
    assert records == ["Restored all states from x"]


def test_the_pytree_deprecation_inside_lightning_is_ignored_other_warnings_are_not():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_third_party()
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use ...", FutureWarning, stacklevel=1)
        warnings.warn("something else is deprecated", FutureWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["something else is deprecated"]


def test_the_wandb_logger_passes_no_anonymous_argument_and_silent_settings(tmp_path):
    logger = WandbLogger(save_dir=str(tmp_path), project="p", offline=True)
    assert "anonymous" not in logger._wandb_init and logger._wandb_init["settings"] == {"silent": True}
    loud = WandbLogger(save_dir=str(tmp_path), project="p", offline=True, silent=False)
    assert "settings" not in loud._wandb_init


def test_the_run_summary_names_the_folder_the_test_metrics_and_the_offline_wandb_run(tmp_path):
    (tmp_path / "wandb" / "offline-run-20260101_000000-abc").mkdir(parents=True)
    metrics = {
        "val/grade_auroc": 0.7,
        "val/score": 0.6,
        "val/loss": 3.0,
        "test/grade_auroc": 0.71234,
        "test/score": 0.65,
        "test/loss": 3.1,
        "test/survival_brier_q50": 0.2,
        "test/survival_cindex": None,
    }
    summary = run_summary(metrics, tmp_path).splitlines()
    assert summary[0].startswith(f"outputs: {tmp_path}")
    assert summary[1] == "test: score 0.650  grade_auroc 0.712"
    assert summary[2] == f"W&B (offline): wandb sync {tmp_path / 'wandb' / 'offline-run-20260101_000000-abc'}"
    assert len(run_summary({}, tmp_path / "none").splitlines()) == 1


def test_a_missing_value_names_every_required_key_with_an_example(monkeypatch):
    monkeypatch.setattr("sys.argv", ["fusion-predict"])
    cfg = OmegaConf.create({"ckpt_path": "???", "data": {"manifest": "???", "batch_size": 32}})
    with pytest.raises(MissingMandatoryValue) as err:
        _ = cfg.ckpt_path
    message = missing_value_message(err.value, cfg)
    assert message == (
        "ckpt_path and data.manifest are required: e.g. fusion-predict ckpt_path=CKPT_PATH "
        "data.manifest=MANIFEST (more examples: fusion-predict --help)"
    )
    assert missing_value_message(err.value).startswith(
        "ckpt_path is required: e.g. fusion-predict ckpt_path="
    )


def _help_groups(help_file: Path) -> dict[str, list[str]]:
    """`group: a, b` lines of the '== Config groups' section of a hydra/help config."""
    text = OmegaConf.load(help_file).header
    section = text.split("== Config groups", 1)[1] if "== Config groups" in text else ""
    return {m[1]: m[2].split(", ") for m in re.finditer(r"^ {2}(\w+): (.+)$", section, re.M)}


@pytest.mark.parametrize("help_file", sorted((CONF / "hydra" / "help").glob("*.yaml")), ids=lambda p: p.stem)
def test_the_config_groups_a_help_lists_are_those_in_conf(help_file):
    for group, options in _help_groups(help_file).items():
        assert options == sorted(p.stem for p in (CONF / group).glob("*.yaml")), (help_file.name, group)


def test_every_command_config_selects_its_own_help():
    commands = [p.stem for p in CONF.glob("*.yaml") if p.stem != "cv_options"]
    for command in commands:
        assert f"override hydra/help: {command}" in (CONF / f"{command}.yaml").read_text(), command
        assert _help_groups(CONF / "hydra" / "help" / f"{command}.yaml") or command in {
            "predict",
            "explain",
            "robustness",
            "demo_data",
            "similar",
        }
