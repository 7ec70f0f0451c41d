"""LightningModule: optimisation, masked multi-task loss, logging and whole-set metrics only.

Metrics are computed once per epoch on the predictions of the whole split (a C-index or AUROC
averaged over batches would be wrong), and `val/score` — the mean of the heads' primary metrics —
is what checkpointing and early stopping select on by default.

Data-parallel training (DDP) gives the same numbers as one process on the same data: the training
loss is computed on the outputs and labels of *all* ranks' batches (a Cox risk set must hold every
patient still at risk, not just this rank's; masked per-sample losses then also weight every labelled
patient equally), with gradients flowing back through the gather (`fusion.distributed`), and epoch
metrics are computed on every rank's predictions, each patient counted once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, cast

import lightning as L
import torch

from fusion.distributed import gather_dict, gather_list
from fusion.divergence import check_inputs, check_losses, check_outputs, check_weights
from fusion.errors import ConfigError, TrainingDiverged
from fusion.heads.base import Head
from fusion.model import FusionModel
from fusion.optim import (
    OptimizerFactory,
    SchedulerFactory,
    build_scheduler,
    default_optimizer,
    scheduler_factory,
)


def _heads(model: FusionModel) -> Mapping[str, Head]:
    """`model.heads`, typed: nn.ModuleDict is not generic, its stubs type every value as a plain Module."""
    return cast(Mapping[str, Head], model.heads)


class LitFusion(L.LightningModule):
    """Args:
    model: the `FusionModel`.
    optimizer: a partial optimiser (`optim.optimizer`, see `fusion.optim.optim_kwargs`) called with two
        parameter groups: weights (the optimiser's own weight decay) and biases, norms and embeddings
        (no weight decay). None = AdamW with `lr` and `weight_decay` (1e-3 and 1e-2 when None), which are
        only for that default: give them to the partial otherwise.
    scheduler: a partial scheduler called with the optimiser (and `max_epochs=` the trainer's, when it
        takes that argument), stepped per epoch unless it returns a Lightning scheduler dict; "cosine" =
        `fusion.optim.cosine_annealing` down to 1% of the learning rate; None = a constant rate.
    unimodal_weight: weight of the auxiliary one-modality loss (`unimodal_loss`; 0 = off).
    checkpoint_extras: stored in every checkpoint under "fusion" (resolved config, fitted modality state),
        so `fusion-predict` can rebuild the whole pipeline from the checkpoint alone.
    """

    def __init__(
        self,
        model: FusionModel,
        lr: float | None = None,
        weight_decay: float | None = None,
        scheduler: SchedulerFactory | str | None = "cosine",
        unimodal_weight: float = 0.0,
        checkpoint_extras: dict[str, Any] | None = None,
        optimizer: OptimizerFactory | None = None,
    ):
        super().__init__()
        if unimodal_weight < 0:
            raise ConfigError(f"loss.unimodal_weight must be >= 0, got {unimodal_weight}")
        if optimizer is not None and (lr is not None or weight_decay is not None):
            raise ConfigError(
                "lr and weight_decay configure the default AdamW: set them in the optimizer partial"
            )
        self.model = model
        self.optimizer_factory = optimizer or default_optimizer(lr, weight_decay)
        self.scheduler_factory = scheduler_factory(scheduler)
        self.unimodal_weight = unimodal_weight
        self.checkpoint_extras = checkpoint_extras or {}
        self._outputs: dict[str, list[dict[str, Any]]] = {}
        self.last_metrics: dict[str, float] = {}

    def forward(self, inputs: dict[str, Any]) -> dict[str, torch.Tensor]:
        return self.model(inputs)

    def total_loss(
        self, outputs: dict[str, torch.Tensor], labels: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor | None, dict[str, torch.Tensor]]:
        """Weighted sum of the heads' losses; heads with no labelled row in this batch add nothing."""
        heads = _heads(self.model)
        parts: dict[str, torch.Tensor] = {}
        for name, head in heads.items():
            loss = head.loss(outputs[name], labels[name])
            if loss is not None:
                parts[name] = loss
        if not parts:
            return None, parts
        # a sum of tensors (`parts` is not empty) is a tensor; typeshed's sum() adds the 0 of an empty sum
        total = cast(torch.Tensor, sum(heads[n].loss_weight * loss for n, loss in parts.items()))
        return total, parts

    # ------------------------------------------------------------------ train
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        labels = batch["labels"]
        # with a single modality its one-modality pass would be the fused pass itself
        if self.unimodal_weight > 0 and len(self.model.encoders) > 1:
            outputs, unimodal = self.model.forward_with_unimodal(batch["inputs"])
        else:
            outputs, unimodal = self(batch["inputs"]), None
        where = self._where()
        try:
            total, parts, size = self.global_loss(outputs, labels, where)
        except TrainingDiverged:
            check_inputs(batch["inputs"], batch["patient_id"], where)  # a patient's input explains it
            raise
        if total is None:
            return None  # no labelled patient in the (global) batch: every rank skips the step
        # the value is the same on every rank; sync_dist only keeps Lightning from warning about it
        log: dict[str, Any] = {"batch_size": size, "on_step": False, "on_epoch": True, "sync_dist": True}
        for name, loss in parts.items():
            self.log(f"train/{name}_loss", loss, **log)
        if unimodal is not None:
            fused = total
            aux = self.unimodal_loss(unimodal, labels, f"{where}, one-modality pass")
            if aux is not None:
                self.log("train/unimodal_loss", aux, **log)
                total = total + self.unimodal_weight * aux
            self.log("train/fused_loss", fused, **log)
        self.log("train/loss", total, prog_bar=True, **log)
        return total

    def unimodal_loss(
        self,
        unimodal: dict[str, tuple[torch.Tensor, dict[str, torch.Tensor]]],
        labels: dict[str, torch.Tensor],
        where: str | None = None,
    ) -> torch.Tensor | None:
        """Mean over modalities of the multi-task loss of the fuser and heads given one modality alone
        (`FusionModel.forward_with_unimodal`), each on the patients who have it; None when none has labels.

        Why: trained on the fused objective only, a model leans on whichever inputs fit the training
        labels fastest and leaves the other encoders under-trained ("modality laziness"): on the demo
        cohort the fused transformer predicted worse than PET or genomics alone. Asking the same fuser
        and heads to predict from each modality alone trains every encoder, at the cost of one more
        fuser pass per modality (the encoders run once).
        """
        losses: list[torch.Tensor] = []
        for rows, outputs in unimodal.values():  # same order on every rank: each gather pairs up
            loss, _, _ = self.global_loss(outputs, {k: v[rows] for k, v in labels.items()}, where)
            if loss is not None:
                losses.append(loss)
        # a sum of tensors (`losses` is not empty) is a tensor; typeshed's sum() adds the 0 of an empty sum
        return cast(torch.Tensor, sum(losses)) / len(losses) if losses else None

    def global_loss(
        self, outputs: dict[str, torch.Tensor], labels: dict[str, torch.Tensor], where: str | None = None
    ) -> tuple[torch.Tensor | None, dict[str, torch.Tensor], int]:
        """`total_loss` over every rank's batch (this batch alone without DDP), and the global batch size.

        All ranks compute the same value from the gathered rows, so they also agree on which heads
        contribute and on skipping a batch without labels (no rank waits in a collective alone).
        With `where` ("at epoch 0, step 3"), a non-finite output or loss raises `TrainingDiverged`,
        on every rank alike (the gathered values are the same everywhere).
        """
        outputs = gather_dict(outputs, grad=True)
        labels = gather_dict(labels)
        if where is not None:
            check_outputs(outputs, where)  # before the losses: a loss's own input check would crash
        total, parts = self.total_loss(outputs, labels)
        if where is not None and total is not None:
            check_losses({**parts, "total": total}, where)
        return total, parts, next(iter(labels.values())).shape[0]

    def _where(self) -> str:
        return f"at epoch {self.current_epoch}, step {self.global_step}"

    # ------------------------------------------------------------------ eval
    def _collect(self, stage: str, batch: dict[str, Any]) -> None:
        outputs = self(batch["inputs"])
        self._outputs.setdefault(stage, []).append(
            {
                "patient_id": list(batch["patient_id"]),
                "out": {k: v.detach().float().cpu() for k, v in outputs.items()},
                "labels": {k: v.cpu() for k, v in batch["labels"].items()},
            }
        )

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._collect("val", batch)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._collect("test", batch)

    def on_validation_epoch_end(self) -> None:
        self._log_epoch_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch_metrics("test")

    def _log_epoch_metrics(self, stage: str) -> None:
        metrics = self.split_metrics(stage)
        if metrics is None:
            return
        self.last_metrics.update({f"{stage}/{k}": v for k, v in metrics.items()})
        # identical on every rank (computed from all ranks' predictions): sync_dist changes no value
        self.log_dict({f"{stage}/{k}": v for k, v in metrics.items() if k != "score"}, sync_dist=True)
        self.log(f"{stage}/score", metrics["score"], prog_bar=stage == "val", sync_dist=True)

    def split_metrics(self, stage: str) -> dict[str, float] | None:
        """Metrics and loss of the predictions collected for `stage` on *all* ranks (None if there are none).

        `DistributedSampler` pads the last shard by repeating patients: each patient counts once.
        """
        collected = gather_list(self._outputs.pop(stage, []))  # every rank calls it, even with nothing
        if not collected:
            return None
        keep, seen = [], set()
        for pid in (pid for c in collected for pid in c["patient_id"]):
            keep.append(pid not in seen)
            seen.add(pid)
        once = torch.tensor(keep, dtype=torch.bool)
        out = {k: torch.cat([c["out"][k] for c in collected])[once] for k in collected[0]["out"]}
        labels = {k: torch.cat([c["labels"][k] for c in collected])[once] for k in collected[0]["labels"]}
        check_outputs(out, f"at epoch {self.current_epoch} in {stage}")
        metrics = epoch_metrics(self.model, out, labels)
        total, _ = self.total_loss(out, labels)
        metrics["loss"] = math.nan if total is None else float(total)
        return metrics

    # ------------------------------------------------------------------ predict
    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        outputs = self(batch["inputs"])
        columns: dict[str, Any] = {"patient_id": batch["patient_id"]}
        for name, head in _heads(self.model).items():
            columns.update({k: v.detach().cpu() for k, v in head.predictions(outputs[name]).items()})
        return columns

    # ------------------------------------------------------------------ optim
    def configure_optimizers(self) -> Any:
        decay: list[torch.nn.Parameter] = []
        no_decay: list[torch.nn.Parameter] = []
        for name, param in self.model.named_parameters():
            if param.requires_grad:
                (no_decay if param.ndim < 2 or "embedding" in name else decay).append(param)
        optimizer = self.optimizer_factory([{"params": decay}, {"params": no_decay, "weight_decay": 0.0}])
        if self.scheduler_factory is None:
            return optimizer
        scheduler = build_scheduler(self.scheduler_factory, optimizer, self.trainer.max_epochs)
        if not isinstance(scheduler, dict):
            scheduler = {"scheduler": scheduler, "interval": "epoch"}
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        check_weights([*self.model.named_parameters(), *self.model.named_buffers()], self._where())
        checkpoint["fusion"] = self.checkpoint_extras


def epoch_metrics(model: FusionModel, out: dict[str, torch.Tensor], labels: dict[str, torch.Tensor]) -> dict:
    """Every head's metrics on whole-split outputs, plus `score`: the mean of the primary metrics."""
    metrics: dict[str, float] = {}
    primary = []
    for name, head in _heads(model).items():
        head_metrics = head.metrics(out[name], labels[name])
        metrics.update(head_metrics)
        value = head_metrics.get(head.primary_metric, math.nan)
        if not math.isnan(value):
            primary.append(value)
    metrics["score"] = sum(primary) / len(primary) if primary else math.nan
    return metrics
