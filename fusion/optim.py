"""Optimiser and learning-rate schedule from config: `conf/optim/*.yaml` holds Hydra `_partial_` nodes.

`optim.optimizer` is a partial that `LitFusion.configure_optimizers` completes with the model's parameter
groups (weights with the optimiser's own weight decay; biases, norms and embeddings without);
`optim.scheduler` is a partial that it completes with the optimiser, plus the trainer's `max_epochs` when
the callable takes a `max_epochs` argument (as `cosine_annealing` does), or null for a constant rate.
`optim.lr` and `optim.weight_decay` are the knobs the shipped optimisers interpolate (`optim.lr=3e-4`).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from fusion.errors import ConfigError

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., Any]

DEFAULT_LR = 1e-3
DEFAULT_WEIGHT_DECAY = 1e-2
DEFAULT_ETA_MIN_RATIO = 0.01


def cosine_annealing(
    optimizer: torch.optim.Optimizer, max_epochs: int | None, eta_min_ratio: float = DEFAULT_ETA_MIN_RATIO
) -> torch.optim.lr_scheduler.CosineAnnealingLR:
    """Cosine annealing over the run's `max_epochs` (stepped once per epoch) from the optimiser's learning
    rate down to `eta_min_ratio` times it; no epoch limit (None or -1) anneals over one epoch."""
    return torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=max(1, max_epochs or 1), eta_min=optimizer.defaults["lr"] * eta_min_ratio
    )


def default_optimizer(lr: float | None = None, weight_decay: float | None = None) -> OptimizerFactory:
    """AdamW with `lr` and `weight_decay` (the defaults of conf/optim/adamw.yaml when None)."""
    return functools.partial(
        torch.optim.AdamW,
        lr=DEFAULT_LR if lr is None else lr,
        weight_decay=DEFAULT_WEIGHT_DECAY if weight_decay is None else weight_decay,
    )


def scheduler_factory(scheduler: SchedulerFactory | str | None) -> SchedulerFactory | None:
    """A scheduler partial as given; "cosine" (the name older configs store) = `cosine_annealing`."""
    if scheduler is None or callable(scheduler):
        return scheduler
    if scheduler == "cosine":
        return functools.partial(cosine_annealing, eta_min_ratio=DEFAULT_ETA_MIN_RATIO)
    raise ConfigError(
        f"optim.scheduler must be a _partial_ scheduler config, 'cosine' or null, got {scheduler!r}"
    )


def build_scheduler(
    factory: SchedulerFactory, optimizer: torch.optim.Optimizer, max_epochs: int | None
) -> Any:
    """`factory(optimizer)`, with `max_epochs=` when the callable takes it and the config did not set it."""
    try:
        takes_epochs = "max_epochs" in inspect.signature(factory).parameters
    except (TypeError, ValueError):  # a callable without a signature
        takes_epochs = False
    if takes_epochs and "max_epochs" not in getattr(factory, "keywords", {}):
        return factory(optimizer, max_epochs=max_epochs)
    return factory(optimizer)


def optim_kwargs(optim: DictConfig | Mapping[str, Any]) -> dict[str, Any]:
    """`LitFusion` keyword arguments from the `optim:` config block.

    The current layout (an `optimizer` partial, a `scheduler` partial or null) is instantiated; the layout of
    older runs' configs (`lr`, `weight_decay`, `scheduler: cosine`) maps to the same AdamW and schedule.
    """
    if not isinstance(optim, DictConfig):
        optim = OmegaConf.create(dict(optim))
    if "optimizer" not in optim:
        return {
            "lr": optim.get("lr"),
            "weight_decay": optim.get("weight_decay"),
            "scheduler": optim.get("scheduler"),
        }
    scheduler = optim.get("scheduler")
    return {
        "optimizer": instantiate(optim.optimizer),
        "scheduler": scheduler_factory(
            instantiate(scheduler) if isinstance(scheduler, DictConfig) else scheduler
        ),
    }
