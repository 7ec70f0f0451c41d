"""Trainer configs for scale-out: what `trainer=ddp_multinode` builds, and that Lightning takes ranks
and world size from a SLURM (srun) or torchrun launch, as experiments/slurm/train.sbatch relies on.
The accelerator is overridden to cpu: no GPU is needed to build (not run) these trainers."""

from __future__ import annotations

import lightning as L
import pytest
from hydra.utils import instantiate
from lightning.fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment
from lightning.pytorch.strategies import DDPStrategy

import fusion

SLURM = {  # what srun sets for task 5 of `sbatch --nodes=2 --ntasks-per-node=4`
    "SLURM_NTASKS": "8",
    "SLURM_NTASKS_PER_NODE": "4",
    "SLURM_NNODES": "2",
    "SLURM_PROCID": "5",
    "SLURM_LOCALID": "1",
    "SLURM_NODEID": "1",
    "SLURM_JOB_ID": "4242",
    "SLURM_JOB_NAME": "fusion-train",
    "SLURM_NODELIST": "gpu[07-08]",
}
TORCHRUN = {  # what torchrun sets for process 5 of `--nnodes=2 --nproc-per-node=4`
    "TORCHELASTIC_RUN_ID": "fusion",
    "WORLD_SIZE": "8",
    "RANK": "5",
    "LOCAL_RANK": "1",
    "GROUP_RANK": "1",
    "LOCAL_WORLD_SIZE": "4",
    "MASTER_ADDR": "gpu07",
    "MASTER_PORT": "29500",
}


@pytest.fixture(autouse=True)
def _restore_global_rank():
    """Building a trainer under a mocked launcher sets Lightning's process-wide rank (to 5 here), which
    would turn every later logger in this test session into a no-op rank-0-only dummy."""
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    rank = getattr(rank_zero_only, "rank", 0)
    yield
    rank_zero_only.rank = rank


def _trainer(*overrides: str) -> L.Trainer:
    cfg = fusion.compose(["trainer=ddp_multinode", "trainer.accelerator=cpu", *overrides])
    return instantiate(cfg.trainer, logger=False, enable_checkpointing=False)


def test_ddp_multinode_defaults_and_precision_accumulation_overrides(monkeypatch):
    for key in [*SLURM, *TORCHRUN]:
        monkeypatch.delenv(key, raising=False)
    cfg = fusion.compose(["trainer=ddp_multinode"])
    assert (cfg.trainer.accelerator, cfg.trainer.num_nodes, cfg.trainer.devices) == ("gpu", 2, 4)
    # no SyncBatchNorm: an encoder that runs on some ranks only would deadlock its collective
    assert cfg.trainer.precision == "bf16-mixed" and not cfg.trainer.sync_batchnorm
    trainer = _trainer("trainer.num_nodes=1", "trainer.devices=2", "trainer.accumulate_grad_batches=4")
    assert isinstance(trainer.strategy, DDPStrategy)
    assert trainer.strategy._ddp_kwargs.get("find_unused_parameters") is True  # modality missing in a batch
    assert trainer.accumulate_grad_batches == 4 and trainer.num_devices == 2
    # 16-mixed (float16 + loss scaling) is GPU-only: Lightning maps it to bf16 on a CPU, so check the config
    assert (
        fusion.compose(["trainer=ddp_multinode", "trainer.precision=16-mixed"]).trainer.precision
        == "16-mixed"
    )


@pytest.mark.parametrize("env, cluster", [(SLURM, SLURMEnvironment), (TORCHRUN, TorchElasticEnvironment)])
def test_lightning_reads_ranks_from_the_launcher(monkeypatch, env, cluster):
    for key in [*SLURM, *TORCHRUN]:
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    trainer = _trainer("trainer.num_nodes=2", "trainer.devices=4")
    assert isinstance(trainer.strategy.cluster_environment, cluster)
    assert (trainer.world_size, trainer.global_rank, trainer.local_rank, trainer.node_rank) == (8, 5, 1, 1)
