"""Lightning's Trainer with DDP on 2 CPU processes matches one process: weights after two optimiser
steps (global batch 4 = 2 ranks x 2) and the validation metrics logged at the end of the epoch.

End to end through `LitFusion`'s hooks: gathered training loss, unused encoder on a rank, padded
validation shards, `sync_dist` logging. Plain SGD: unlike Adam it keeps the gradient's scale (and
does not blow float noise in mathematically-zero gradients, e.g. attention key biases, up to lr).
"""

from __future__ import annotations

import lightning as L
import pytest
import torch
from ddp_toy import collator, make_lit, samples
from torch.utils.data import DataLoader, DistributedSampler

from fusion.lit import LitFusion

pytestmark = pytest.mark.slow  # two spawned processes, each importing the package

TRAIN = samples("T", 8, seed=3, b_rows={0, 2, 6})  # rank 1 gets rows 1, 3, 5, 7: no `b`
VAL = samples("V", 7, seed=4, b_rows={2, 3})


class SGDLit(LitFusion):
    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.5)


class ToyData(L.LightningDataModule):
    def __init__(self, batch_size: int):
        super().__init__()
        self.batch_size = batch_size

    def _loader(self, data: list[dict], batch_size: int) -> DataLoader:
        """Lightning's own DistributedSampler would shuffle the training shards: the runs would see
        other batches. This one is unshuffled and, like Lightning's, pads the last shard."""
        world, rank = self.trainer.world_size, self.trainer.global_rank
        sampler = DistributedSampler(data, num_replicas=world, rank=rank, shuffle=False)
        return DataLoader(data, batch_size=batch_size, sampler=sampler, collate_fn=collator())

    def train_dataloader(self) -> DataLoader:
        return self._loader(TRAIN, self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return self._loader(VAL, 2)  # 7 patients: one repeated on rank 1


def _fit(devices: int) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    lit = make_lit(SGDLit)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy="ddp_spawn_find_unused_parameters_true" if devices > 1 else "auto",
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,
    )
    trainer.fit(lit, datamodule=ToyData(batch_size=4 // devices))
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    return {k: v.detach().clone() for k, v in lit.state_dict().items()}, metrics


def test_trainer_ddp_matches_one_process():
    weights_1, metrics_1 = _fit(devices=1)
    weights_2, metrics_2 = _fit(devices=2)
    start = make_lit().state_dict()
    assert any(not torch.equal(start[k], v) for k, v in weights_1.items())  # training moved the weights
    for key, value in weights_1.items():
        assert torch.allclose(weights_2[key], value, rtol=1e-4, atol=1e-6), key
    assert {"val/survival_cindex", "val/grade_auroc", "val/response_auroc", "train/loss"} <= set(metrics_1)
    assert set(metrics_2) == set(metrics_1)
    for key, value in metrics_1.items():
        assert metrics_2[key] == pytest.approx(value, rel=1e-4, nan_ok=True), key
