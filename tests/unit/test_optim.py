"""Optimiser and schedule from the `optim/` config group (Hydra partials, fusion/optim.py).

The default (optim=adamw) must train exactly as the hard-coded optimiser did: AdamW with two parameter
groups (no weight decay for parameters with ndim < 2 or "embedding" in the name) and
CosineAnnealingLR(T_max=max(1, trainer.max_epochs or 1), eta_min=0.01 x lr), stepped once per epoch.
"""

from __future__ import annotations

import functools
import math

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

import fusion
from fusion.data.dataset import Collator
from fusion.data.synthetic import write_demo_cohort
from fusion.fusers import TransformerFuser
from fusion.lit import LitFusion
from fusion.model import FusionModel
from fusion.optim import build_scheduler, cosine_annealing, optim_kwargs
from tests.unit.distributed.ddp_toy import parts

# what the configs of runs before the optim/ partials stored (and checkpoints still carry)
LEGACY_OPTIM = {"lr": 1.0e-3, "weight_decay": 1.0e-2, "scheduler": "cosine"}


def _parts() -> tuple[dict, dict]:
    modalities, heads = parts()
    return {"a": modalities["a"]}, heads


def _model(embedding: bool = False) -> FusionModel:
    torch.manual_seed(0)
    modalities, heads = _parts()
    fuser = TransformerFuser(
        {"a": 8}, d_model=16, n_heads=2, n_layers=1, dim_feedforward=32, dropout=0.0, modality_dropout=0.0
    )
    model = FusionModel({"a": modalities["a"].build_encoder()}, {"a": 8}, fuser, heads)
    if embedding:  # a 2-d "embedding" parameter (as in the EHR tokenizer) and a frozen one
        model.add_module("value_embedding", nn.Embedding(5, 16))
        model.encoders["a"].bias.requires_grad_(False)
    return model


def _loader() -> DataLoader:
    gen = torch.Generator().manual_seed(1)
    data = [
        {
            "patient_id": f"p{i}",
            "items": {"a": torch.randn(4, generator=gen)},
            "labels": {"grade": i % 3, "survival": (float(1 + i), float(i % 2)), "response": float(i % 2)},
        }
        for i in range(8)
    ]
    return DataLoader(data, batch_size=4, collate_fn=Collator(*_parts()))


def _trainer(max_epochs: int | None, **kwargs) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu",
        max_epochs=max_epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        **kwargs,
    )


def _configured(lit: LitFusion, max_epochs: int | None) -> tuple[torch.optim.Optimizer, object]:
    """`configure_optimizers` as Lightning calls it, with a trainer of `max_epochs` attached."""
    lit.trainer = _trainer(max_epochs)
    out = lit.configure_optimizers()
    if isinstance(out, torch.optim.Optimizer):
        return out, None
    assert out["lr_scheduler"]["interval"] == "epoch"
    return out["optimizer"], out["lr_scheduler"]["scheduler"]


def _reference_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """The optimiser LitFusion hard-coded before optim/ became partials."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if param.ndim < 2 or "embedding" in name else decay).append(param)
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=lr
    )


def _cosine(lr: float, epoch: int, max_epochs: int | None) -> float:
    """CosineAnnealingLR's closed form with T_max = max(1, max_epochs or 1), eta_min = 0.01 lr."""
    t_max, eta_min = max(1, max_epochs or 1), lr * 0.01
    return eta_min + (lr - eta_min) * (1 + math.cos(math.pi * epoch / t_max)) / 2


def _default_lit(how: str, model: FusionModel, lr: float = 1e-3) -> LitFusion:
    if how == "defaults":
        return LitFusion(model)
    if how == "config":
        return LitFusion(model, **optim_kwargs(fusion.compose([f"optim.lr={lr}"]).optim))
    return LitFusion(model, **optim_kwargs({**LEGACY_OPTIM, "lr": lr}))  # an old run's config


@pytest.mark.parametrize("how", ["defaults", "config", "legacy"])
def test_default_optimizer_has_the_hard_coded_groups(how):
    model = _model(embedding=True)
    optimizer, scheduler = _configured(_default_lit(how, model), max_epochs=30)
    reference = _reference_optimizer(model, lr=1e-3, weight_decay=1e-2)
    assert type(optimizer) is torch.optim.AdamW and len(optimizer.param_groups) == 2
    named = dict(model.named_parameters())
    names = {id(p): n for n, p in named.items()}
    decay = [names[id(p)] for p in optimizer.param_groups[0]["params"]]
    no_decay = [names[id(p)] for p in optimizer.param_groups[1]["params"]]
    assert decay == [n for n, p in named.items() if p.requires_grad and p.ndim >= 2 and "embedding" not in n]
    assert no_decay == [n for n, p in named.items() if p.requires_grad and (p.ndim < 2 or "embedding" in n)]
    assert "value_embedding.weight" in no_decay and "fuser.modality_embedding.a" in no_decay
    assert "encoders.a.bias" not in decay + no_decay  # frozen
    assert "encoders.a.weight" in decay and "fuser.cls" in decay
    for group, ref in zip(optimizer.param_groups, reference.param_groups, strict=True):
        assert [id(p) for p in group["params"]] == [id(p) for p in ref["params"]]
        drop = {"params", "initial_lr"}  # initial_lr: set by the scheduler
        assert {k: v for k, v in group.items() if k not in drop} == {
            k: v for k, v in ref.items() if k not in drop
        }
    assert [g["weight_decay"] for g in optimizer.param_groups] == [1e-2, 0.0]
    assert type(scheduler) is torch.optim.lr_scheduler.CosineAnnealingLR
    assert (scheduler.T_max, scheduler.eta_min) == (30, 1e-3 * 0.01)


@pytest.mark.parametrize("how", ["defaults", "config", "legacy"])
@pytest.mark.parametrize("max_epochs", [-1, 1, 7])
def test_default_schedule_matches_the_hard_coded_cosine(how, max_epochs):
    lr = 1e-3 if how == "defaults" else 3e-4  # optim.lr=3e-4 on the command line reaches the optimiser
    model = _model()
    optimizer, scheduler = _configured(_default_lit(how, model, lr), max_epochs=max_epochs)
    reference = _reference_optimizer(model, lr=lr, weight_decay=1e-2)
    ref_scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        reference, T_max=max(1, max_epochs or 1), eta_min=lr * 0.01
    )
    for epoch in range(12):
        lrs = [g["lr"] for g in optimizer.param_groups]
        assert lrs == [g["lr"] for g in reference.param_groups], epoch
        assert lrs == pytest.approx([_cosine(lr, epoch, max_epochs)] * 2, rel=1e-12, abs=1e-15), epoch
        optimizer.step()  # no gradients: nothing moves, but the schedulers expect a step first
        reference.step()
        scheduler.step()
        ref_scheduler.step()


def test_learning_rate_per_epoch_through_lightning():
    """Fit 4 epochs: the learning rate each epoch trains with is the cosine's (stepped per epoch)."""
    seen: list[list[float]] = []

    class Record(L.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            seen.append([g["lr"] for g in trainer.optimizers[0].param_groups])

    lit = LitFusion(_model(), **optim_kwargs(fusion.compose(["optim.lr=2e-3"]).optim))
    _trainer(4, callbacks=[Record()], limit_train_batches=1).fit(lit, train_dataloaders=_loader())
    assert len(seen) == 4
    for epoch, lrs in enumerate(seen):
        assert lrs == pytest.approx([_cosine(2e-3, epoch, 4)] * 2, rel=1e-12), epoch


def test_scheduler_null_keeps_the_learning_rate():
    lit = LitFusion(_model(), **optim_kwargs(fusion.compose(["optim.scheduler=null"]).optim))
    optimizer, scheduler = _configured(lit, max_epochs=5)
    assert scheduler is None and [g["lr"] for g in optimizer.param_groups] == [1e-3, 1e-3]
    assert _configured(LitFusion(_model(), scheduler=None), max_epochs=5)[1] is None


def test_sgd_config_trains_a_step():
    cfg = fusion.compose(["optim=sgd", "optim.lr=0.05"])
    lit = LitFusion(_model(), **optim_kwargs(cfg.optim))
    before = {k: v.clone() for k, v in lit.state_dict().items()}
    trainer = _trainer(1, limit_train_batches=1)
    trainer.fit(lit, train_dataloaders=_loader())
    optimizer = trainer.optimizers[0]
    assert type(optimizer) is torch.optim.SGD
    assert [g["weight_decay"] for g in optimizer.param_groups] == [cfg.optim.weight_decay, 0.0]
    assert all(g["momentum"] == 0.9 and g["nesterov"] for g in optimizer.param_groups)
    assert trainer.global_step == 1
    assert any(not torch.equal(before[k], v) for k, v in lit.state_dict().items())
    assert trainer.lr_scheduler_configs[0].scheduler.T_max == 1


def test_old_checkpoint_optim_configs_still_construct():
    """Prediction builds `LitFusion(model)`; an old run's `optim:` block gives the same AdamW and cosine."""
    for lit in (LitFusion(_model()), LitFusion(_model(), **optim_kwargs(LEGACY_OPTIM))):
        optimizer, scheduler = _configured(lit, max_epochs=3)
        assert type(optimizer) is torch.optim.AdamW and scheduler.T_max == 3
    no_schedule = LitFusion(_model(), **optim_kwargs({**LEGACY_OPTIM, "scheduler": None}))
    assert _configured(no_schedule, max_epochs=3)[1] is None


def test_conflicting_or_unknown_settings_are_refused():
    with pytest.raises(ValueError, match="optimizer partial"):
        LitFusion(_model(), lr=1e-2, optimizer=functools.partial(torch.optim.SGD, lr=0.1))
    with pytest.raises(ValueError, match="optim.scheduler"):
        LitFusion(_model(), scheduler="linear")


def test_scheduler_partials_get_max_epochs_only_when_they_take_it():
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(2))], lr=1.0)
    step = build_scheduler(functools.partial(torch.optim.lr_scheduler.StepLR, step_size=2), optimizer, 9)
    assert isinstance(step, torch.optim.lr_scheduler.StepLR)
    pinned = build_scheduler(functools.partial(cosine_annealing, max_epochs=4), optimizer, 9)
    assert pinned.T_max == 4  # a length set in the config wins over the trainer's
    assert build_scheduler(functools.partial(cosine_annealing), optimizer, None).T_max == 1


def test_a_checkpoint_with_the_old_optim_block_predicts_and_resumes(tmp_path):
    """A run saved before optim/ became partials stores `optim: {lr, weight_decay, scheduler: cosine}`:
    fusion-predict still rebuilds its model, and training resumes from its optimiser and scheduler state."""
    manifest = write_demo_cohort(
        tmp_path / "cohort", n_patients=24, seed=1, volume_shape=(8, 8, 8), n_genes=8
    )
    tiny = ["modality=[genomics,ehr]", "logger=[csv]", "~callbacks.progress_bar", "evaluation.report=false"]
    tiny.append("data.split.min_per_class.test=0")  # 24 patients: a 5-patient test split, its metrics unused
    cfg = fusion.compose(
        [f"data.manifest={manifest}", "trainer.max_epochs=1", "evaluation.n_bootstrap=5", *tiny]
    )
    fusion.train(cfg, output_dir=tmp_path / "run")
    checkpoint = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["fusion"]["config"]["optim"]["optimizer"]["_target_"] == "torch.optim.AdamW"
    checkpoint["fusion"]["config"]["optim"] = dict(LEGACY_OPTIM)
    old = tmp_path / "old.ckpt"
    torch.save(checkpoint, old)

    assert len(fusion.predict(old, manifest)) == 24
    cfg.trainer.max_epochs, cfg.ckpt_path = 2, str(old)
    fusion.train(cfg, output_dir=tmp_path / "resumed")
    resumed = torch.load(tmp_path / "resumed" / "checkpoints" / "last.ckpt", weights_only=True)
    assert resumed["epoch"] == 1 and len(resumed["optimizer_states"][0]["param_groups"]) == 2
    assert resumed["lr_schedulers"][0]["T_max"] == 1  # the scheduler state came from the old checkpoint
