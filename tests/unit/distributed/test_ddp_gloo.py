"""Two CPU (gloo) ranks give the single-process loss, parameter gradients and epoch metrics.

Rank shards are uneven (4 and 3 training patients), rank 1 has no patient with modality `b` (its
encoder is unused there) and some labels are unknown; the validation shards are made by
`DistributedSampler`, which pads them by repeating a patient. The rank-local Cox loss is checked to
differ from the global one, so the comparison would catch a loss computed per rank.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from ddp_toy import collator, free_port, make_lit, samples
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler

from fusion.lit import LitFusion

WORLD = 2
TRAIN_SHARDS = [[0, 1, 2, 3], [4, 5, 6]]  # rows of the training batch each rank gets
N_VAL = 9  # odd: DistributedSampler repeats one patient to give both ranks 5
TRAIN = samples("T", 7, seed=1, b_rows={0, 2, 3})  # rank 1 (rows 4-6) has no `b`
VAL = samples("V", N_VAL, seed=2, b_rows={1, 4, 5, 8})


def _collate(batch: list[dict]) -> dict:
    return collator()(batch)


def _val_metrics(lit: LitFusion, indices: list[int]) -> dict[str, float]:
    lit.eval()
    with torch.no_grad():
        for start in range(0, len(indices), 2):  # batches of 2, like a val DataLoader
            lit._collect("val", _collate([VAL[i] for i in indices[start : start + 2]]))
    return lit.split_metrics("val")


class UnimodalLit(LitFusion):
    """Routes DDP's forward through the fused + one-modality passes (`loss.unimodal_weight`)."""

    def forward(self, inputs: dict) -> tuple:
        return self.model.forward_with_unimodal(inputs)


def _with_unimodal_loss(lit: UnimodalLit, module: torch.nn.Module, batch: dict) -> dict:
    """Fused + weighted one-modality loss through `module` (DDP or the bare LitFusion), backward, grads."""
    fused, unimodal = module(batch["inputs"])
    total, _, _ = lit.global_loss(fused, batch["labels"])
    aux = lit.unimodal_loss(unimodal, batch["labels"])
    (total + lit.unimodal_weight * aux).backward()
    grads = {n: p.grad.clone() for n, p in lit.named_parameters() if p.grad is not None}
    return {"loss": total.item(), "unimodal": aux.item(), "grads": grads}


def _worker(rank: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        lit = make_lit()
        ddp = DistributedDataParallel(lit, find_unused_parameters=True)
        batch = _collate([TRAIN[i] for i in TRAIN_SHARDS[rank]])
        outputs = ddp(batch["inputs"])
        total, parts, size = lit.global_loss(outputs, batch["labels"])
        local = lit.model.heads["survival"].loss(outputs["survival"], batch["labels"]["survival"])
        total.backward()
        grads = {n: p.grad.clone() for n, p in lit.named_parameters() if p.grad is not None}
        val_idx = list(DistributedSampler(range(N_VAL), num_replicas=WORLD, rank=rank, shuffle=False))
        result = {
            "loss": total.item(),
            "parts": {k: v.item() for k, v in parts.items()},
            "size": size,
            "local_survival": local.item(),
            "grads": grads,
            "val_idx": val_idx,
            "metrics": _val_metrics(lit, val_idx),
        }
        uni = make_lit(UnimodalLit, unimodal_weight=0.5)  # rank 1 has no `b`: a zero-row gather there
        shard = _collate([TRAIN[i] for i in TRAIN_SHARDS[rank]])
        wrapped = DistributedDataParallel(uni, find_unused_parameters=True)
        result["with_unimodal"] = _with_unimodal_loss(uni, wrapped, shard)
        torch.save(result, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


# two spawned processes each import the package (~10 s apiece on a busy 2-core machine)
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(free_port(), str(out)), nprocs=WORLD, join=True)
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


@pytest.fixture(scope="module")
def single() -> dict:
    lit = make_lit()
    batch = _collate(TRAIN)
    total, parts = lit.total_loss(lit(batch["inputs"]), batch["labels"])
    total.backward()
    grads = {n: p.grad.clone() for n, p in lit.named_parameters() if p.grad is not None}
    metrics = _val_metrics(lit, list(range(N_VAL)))
    uni = make_lit(UnimodalLit, unimodal_weight=0.5)
    return {
        "loss": total.item(),
        "parts": {k: v.item() for k, v in parts.items()},
        "grads": grads,
        "metrics": metrics,
        "with_unimodal": _with_unimodal_loss(uni, uni, batch),
    }


def test_ddp_loss_equals_single_process_loss(ranks, single):
    assert set(single["parts"]) == {"grade", "survival", "response"}
    for result in ranks:
        assert result["size"] == len(TRAIN)
        assert result["loss"] == pytest.approx(single["loss"], rel=1e-5)
        assert result["parts"] == pytest.approx(single["parts"], rel=1e-5)
    # a Cox loss over rank 0's shard alone is a different number: the test can tell them apart
    assert abs(ranks[0]["local_survival"] - single["parts"]["survival"]) > 1e-3


def test_ddp_gradients_equal_single_process_gradients(ranks, single):
    assert any(n.startswith("model.encoders.b.") for n in single["grads"])  # used on rank 0 only
    for result in ranks:
        assert set(result["grads"]) == set(single["grads"])
        for name, grad in single["grads"].items():
            assert torch.allclose(result["grads"][name], grad, rtol=1e-4, atol=1e-6), name


def test_ddp_epoch_metrics_use_every_rank_once(ranks, single):
    padded = sorted(i for r in ranks for i in r["val_idx"])
    assert len(padded) == N_VAL + 1 and set(padded) == set(range(N_VAL))  # one patient repeated
    expected = single["metrics"]
    assert not math.isnan(expected["survival_cindex"]) and not math.isnan(expected["response_auroc"])
    for result in ranks:
        assert set(result["metrics"]) == set(expected)
        for key, value in expected.items():
            assert result["metrics"][key] == pytest.approx(value, rel=1e-5, nan_ok=True), key


def test_ddp_unimodal_loss_and_gradients_equal_single_process(ranks, single):
    expected = single["with_unimodal"]
    assert any(n.startswith("model.encoders.b.") for n in expected["grads"])
    for result in ranks:
        got = result["with_unimodal"]
        assert got["loss"] == pytest.approx(expected["loss"], rel=1e-5)
        assert got["unimodal"] == pytest.approx(expected["unimodal"], rel=1e-5)
        assert set(got["grads"]) == set(expected["grads"])
        for name, grad in expected["grads"].items():
            assert torch.allclose(got["grads"][name], grad, rtol=1e-4, atol=1e-6), name
