"""Lightning callbacks of a training run: checkpoint selection that ignores non-finite scores, the
checkpoint saved when a SIGTERM stops training, and the epoch a (resumed) fit started from.
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException

log = logging.getLogger(__name__)


class FiniteModelCheckpoint(ModelCheckpoint):
    """`ModelCheckpoint` that never selects a checkpoint whose monitored value is NaN or infinite.

    Lightning stores a NaN score as -inf (mode max) but still keeps that checkpoint as the best while
    fewer than `save_top_k` exist: with a NaN first epoch the "best" model would be one nobody could
    score. Here such an epoch is skipped for the best checkpoint (last.ckpt is still written).
    """

    def check_monitor_top_k(self, trainer: L.Trainer, current: torch.Tensor | None = None) -> bool:
        if current is not None and not torch.isfinite(torch.as_tensor(current)).all():
            log.warning(
                "%s is %s at epoch %d: not a candidate for the best checkpoint",
                self.monitor,
                float(current),
                trainer.current_epoch,
            )
            return False
        return super().check_monitor_top_k(trainer, current)


class InterruptCheckpoint(Callback):
    """On a SIGTERM during training (a SLURM time limit, a preemption, `kill`), save a checkpoint that
    resumes where training stopped: Lightning stops at the end of the current batch and raises
    `SIGTERMException`, whose `on_exception` this is. Other exceptions (e.g. a diverged loss) save nothing.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.saved: Path | None = None

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        # after fit the model holds the best weights (val/test load them): resume from last.ckpt then
        if isinstance(exception, SIGTERMException) and trainer.state.fn == TrainerFn.FITTING:
            trainer.save_checkpoint(self.path)
            self.saved = self.path


class StartEpoch(Callback):
    """The epoch `fit` started from: 0, or the epoch of the checkpoint it resumed."""

    def __init__(self) -> None:
        self.epoch: int | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.epoch = trainer.current_epoch
