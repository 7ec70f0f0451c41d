"""Integrated Gradients (captum) of every explained target of one patient, in one batched call.

The model's targets (`PatientContext.target_keys`: class probabilities, log-hazard, response logit)
are stacked into an (S, K) matrix by one forward. captum attributes one scalar per input row, so the
patient's row is repeated K times and copy k is explained for target k (``target=[0, ..., K-1]``):
one forward of ``K * n_steps`` interpolated rows and one backward cover every target, instead of K
separate calls. captum's convergence delta (sum of attributions - (f(x) - f(baseline))) comes back
per target when asked for: Integrated Gradients is complete, so it should be near zero.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from captum.attr import IntegratedGradients, LayerIntegratedGradients
from torch import Tensor, nn

from fusion.attribution.context import PatientContext, TargetKey
from fusion.errors import FusionError
from fusion.fusers.base import as_tokens


class AttributionError(FusionError, ValueError):
    """A patient's input does not match what the checkpoint's modality was fitted on (names both)."""


@dataclass
class FeatureScores:
    """One modality's attributions for one patient, before they become table rows.

    features: the feature names (genes, gene sets, EHR columns), in the order of `scores`' columns.
    cells: per feature, the table column its `value` is read from; None when it has no cell (a gene set).
    scores: (K, F) attribution of each target (`PatientContext.target_keys` order) to each feature.
    delta: (K,) captum's convergence delta, sum of a target's scores minus f(x) - f(baseline); None when
        not asked for.
    """

    features: list[str]
    cells: list[str | None]
    scores: np.ndarray
    delta: np.ndarray | None


def target_matrix(
    ctx: PatientContext, name: str, keys: Sequence[TargetKey], to_data: Callable[..., Any] | None = None
) -> Callable[..., Tensor]:
    """A captum forward function: modality `name`'s collated input (S rows, as tensors; `to_data` assembles
    them into what its encoder takes) -> (S, K) targets, the patient's other modalities unchanged."""

    def forward(*inputs: Tensor) -> Tensor:
        data = inputs[0] if to_data is None else to_data(*inputs)
        targets = ctx.targets_from_data(name, data)
        return torch.stack([targets[key] for key in keys], dim=1)

    return forward


def integrate(
    forward: Callable[..., Tensor],
    inputs: tuple[Tensor, ...],
    baselines: tuple[Tensor, ...],
    n_targets: int,
    n_steps: int,
    with_delta: bool = False,
    layer: nn.Module | None = None,
    layer_input: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """Integrated Gradients of each of `n_targets` targets w.r.t. `inputs` (a batch of one), or with `layer`
    w.r.t. that layer's output (its input with `layer_input`): captum's LayerIntegratedGradients, which
    interpolates the layer's activations between their values at `baselines` and at `inputs`.

    Returns the attributions (n_targets, *shape of the one row) and, `with_delta`, the convergence delta
    (n_targets,): two more forwards, so only when asked (tests, checks). Gradients are enabled locally;
    the caller's grad mode is left as it was.
    """

    def repeat(t: Tensor) -> Tensor:
        return t.repeat(n_targets, *([1] * (t.ndim - 1)))

    rows, bases = tuple(repeat(t) for t in inputs), tuple(repeat(b) for b in baselines)
    targets = list(range(n_targets))
    with torch.enable_grad():
        if layer is None:
            ig = IntegratedGradients(forward)
            result = ig.attribute(
                rows, baselines=bases, target=targets, n_steps=n_steps, return_convergence_delta=with_delta
            )
        else:
            lig = LayerIntegratedGradients(forward, layer)
            result = lig.attribute(
                rows,
                baselines=bases,
                target=targets,
                n_steps=n_steps,
                attribute_to_layer_input=layer_input,
                return_convergence_delta=with_delta,
            )
    attr, delta = result if with_delta else (result, None)
    if isinstance(attr, tuple):  # IntegratedGradients on a tuple of inputs: one attribution per input
        attr = attr[0]
    return attr.detach(), None if delta is None else delta.detach()


def integrate_tokens(
    ctx: PatientContext,
    name: str,
    keys: Sequence[TargetKey],
    baseline_data: Any,
    n_steps: int,
    with_delta: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """Layer Integrated Gradients at modality `name`'s encoder output (its tokens, (1, T, d)), from the
    tokens of `baseline_data` (the encoder's input for the baseline patient) to the patient's own.

    The same numbers as captum's LayerIntegratedGradients on the encoder, which would run the encoder on
    every interpolation step and twice more for nothing: here it runs once, on the baseline, and the steps
    start at the tokens (`PatientContext.targets_with`). Returns (K, T, d) attributions and the delta.
    """
    encoder = ctx.model.encoders[name]
    with torch.no_grad():
        baseline = as_tokens(encoder(baseline_data))
    tokens = ctx.encoded[name][0]

    def forward(variants: Tensor) -> Tensor:
        targets = ctx.targets_with(name, variants)
        return torch.stack([targets[key] for key in keys], dim=1)

    return integrate(forward, (tokens,), (baseline,), len(keys), n_steps, with_delta)


def as_scores(
    features: list[str], cells: Sequence[str | None], attributions: Tensor, delta: Tensor | None
) -> FeatureScores:
    """`FeatureScores` from (K, F) attributions."""
    return FeatureScores(
        features=list(features),
        cells=list(cells),
        scores=attributions.double().cpu().numpy(),
        delta=None if delta is None else delta.double().cpu().numpy().reshape(-1),
    )
