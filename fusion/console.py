"""What a run prints: comparable figures on the progress bar, one line per epoch in logs, less noise.

- `FusionProgressBar`: the bar shows the same quantity on train and val (the heads' loss), `val/score`, and
  the training total (with the weighted auxiliary one-modality loss) apart; no `v_num`.
- `EpochLines`: when stdout is not a terminal (nohup, SLURM, CI logs) one line per epoch instead of a bar.
- `quiet_third_party`: drops the lines every run printed and no user needs (Lightning's hardware banner and
  tips, checkpoint-reload chatter, a torch deprecation inside Lightning).
- `WandbLogger`: Lightning's W&B logger without W&B's console output (no 25-line run summary).
- `run_summary`: the few lines a finished run ends with: where its outputs are, its test metrics.
"""

from __future__ import annotations

import logging
import math
import sys
import time
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback, TQDMProgressBar
from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger
from lightning.pytorch.utilities import rank_zero_only

#: what Lightning says through rank_zero_info on every run that no user acts on (by the start of the line)
LIGHTNING_NOISE = (
    "GPU available:",
    "TPU available:",
    "💡 Tip:",
    "Restoring states from the checkpoint path",
    "Loaded model weights from the checkpoint",
)
#: the loggers Lightning's rank_zero_info writes to (pytorch and fabric each name one)
_LIGHTNING_INFO_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")


class _DropLines(logging.Filter):
    def __init__(self, prefixes: Iterable[str]):
        super().__init__()
        self.prefixes = tuple(prefixes)

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefixes)


_DROP_LIGHTNING_NOISE = _DropLines(LIGHTNING_NOISE)


def quiet_third_party() -> None:
    """Silence the libraries' lines no user acts on (idempotent); warnings that matter still show."""
    for name in _LIGHTNING_INFO_LOGGERS:
        logger = logging.getLogger(name)
        if _DROP_LIGHTNING_NOISE not in logger.filters:
            logger.addFilter(_DROP_LIGHTNING_NOISE)
    # torch deprecates LeafSpec, which Lightning's own code still uses: nothing for a user to change
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")


def is_interactive() -> bool:
    """Whether a person watches stdout live: a terminal or a Jupyter kernel (not nohup, SLURM, a pipe)."""
    stream = sys.stdout
    if type(stream).__module__.startswith("ipykernel"):
        return True
    return bool(getattr(stream, "isatty", lambda: False)())


def key_figures(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The figures to watch during training, comparable side by side.

    `train_loss` and `val_loss` are the same quantity: the heads' weighted loss (with the auxiliary
    one-modality loss on, `train/fused_loss`; without it `train/loss` is that loss). `total_loss` is what
    the optimiser minimises (`train/loss`: that loss + unimodal_weight x the one-modality loss), shown only
    when it differs. Keys that were not logged (yet) are left out.
    """
    fused, total = metrics.get("train/fused_loss"), metrics.get("train/loss")
    figures = {
        "train_loss": fused if fused is not None else total,
        "val_loss": metrics.get("val/loss"),
        "val_score": metrics.get("val/score"),
        "total_loss": total if fused is not None else None,
    }
    return {k: float(v) for k, v in figures.items() if v is not None}


class FusionProgressBar(TQDMProgressBar):
    """A tqdm bar for the training epochs showing `key_figures` (no `v_num`); silent after `fit`
    (the validation, test and prediction passes of the best checkpoint)."""

    def get_metrics(
        self, trainer: L.Trainer, pl_module: L.LightningModule
    ) -> dict[str, int | str | float | dict[str, float]]:
        return dict(key_figures(trainer.callback_metrics))

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.disable()


class EpochLines(Callback):
    """When stdout is not a terminal (nohup, SLURM, CI logs): one line per epoch with `key_figures`, the
    epoch and the elapsed time, and no progress bar (whose redraws fill a log file). In a terminal or a
    notebook it does nothing."""

    def __init__(self) -> None:
        self.active = False
        self._start = 0.0

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.active = not is_interactive()
        if self.active and trainer.progress_bar_callback is not None:
            trainer.progress_bar_callback.disable()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.monotonic()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.active and trainer.is_global_zero:
            print(epoch_line(trainer, time.monotonic() - self._start), flush=True)


def epoch_line(trainer: L.Trainer, elapsed_s: float) -> str:
    """`epoch 3/30  train_loss 4.912  val_loss 4.701  val_score 0.634  total_loss 40.129  0:00:12`."""
    epoch = f"epoch {trainer.current_epoch + 1}"
    if trainer.max_epochs is not None and trainer.max_epochs > 0:
        epoch += f"/{trainer.max_epochs}"
    figures = [f"{k} {v:.4g}" for k, v in key_figures(trainer.callback_metrics).items()]
    return "  ".join([epoch, *figures, _clock(elapsed_s)])


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"


class WandbLogger(LightningWandbLogger):
    """Lightning's W&B logger, quiet: `silent=True` keeps W&B from printing its banner and the run
    history and summary (run_summary says where the offline run is), and no `anonymous` argument reaches
    wandb.init (Lightning always passes one, which W&B deprecated and warns about)."""

    def __init__(self, *args: Any, silent: bool = True, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if self._wandb_init.get("anonymous") is None:
            self._wandb_init.pop("anonymous", None)
        if silent and "settings" not in self._wandb_init:
            self._wandb_init["settings"] = {"silent": True}


@rank_zero_only
def print_run_summary(metrics: Mapping[str, Any], output_dir: Path) -> None:
    """`run_summary` on stdout, once (by the first process of a multi-GPU run)."""
    print(run_summary(metrics, output_dir), flush=True)


def run_summary(metrics: Mapping[str, Any], output_dir: Path) -> str:
    """The lines a finished training run ends with: its folder, its test metrics (those also computed every
    epoch on val), and the command that uploads an offline W&B run."""
    lines = [f"outputs: {output_dir}  (metrics.json has every test metric with its 95% CI)"]
    tested = [k.removeprefix("test/") for k in metrics if k.startswith("test/") and k != "test/loss"]
    shown = [k for k in tested if f"val/{k}" in metrics] or tested
    figures = [f"{k} {_number(metrics[f'test/{k}'])}" for k in sorted(shown, key=lambda k: k != "score")]
    if figures:
        lines.append("test: " + "  ".join(figures))
    offline = sorted((output_dir / "wandb").glob("offline-run-*"))
    if offline:
        lines.append(f"W&B (offline): wandb sync {offline[-1]}")
    return "\n".join(lines)


def _number(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{float(value):.3f}"
