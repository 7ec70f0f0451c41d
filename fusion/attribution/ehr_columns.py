"""Integrated Gradients of one patient's EHR columns (numeric, ordinal, boolean and categorical).

Categories are indices, which have no straight path to interpolate along, so every column is attributed
where it becomes a vector (layer Integrated Gradients), summed over that vector's dimensions:
- ``tokens`` encoder: at the tokenizer's output, one token per column (`integrate_tokens`). A numeric token
  is linear in the scaled value (``x * w + b``), so this equals plain IG on the scaled value.
- ``mlp`` encoder: at the MLP's input (captum's LayerIntegratedGradients), ``[scaled values, missing
  indicators, category embeddings]``; a numeric column owns its value and its indicator, a categorical
  one its embedding.

Baseline patient: every numeric, ordinal and boolean column at 0 on the model's scale (the training median
or mean: quantile or z-score scaling), not missing; every categorical column at index 0, the missing level.
Why the missing level rather than a zero vector: it is the model's own "unknown" input for that column, so
a category's attribution reads as what knowing it adds; a zero token is an input the model never saw.

A missing cell is still attributed: a missing number enters as the column's learned missing token (tokens)
or indicator (mlp), so its attribution is what being missing does against the median; a missing category
is its baseline, so its attribution is exactly 0.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from fusion.attribution.context import PatientContext, TargetKey
from fusion.attribution.integrated import (
    AttributionError,
    FeatureScores,
    as_scores,
    integrate,
    integrate_tokens,
    target_matrix,
)
from fusion.modalities.ehr import EHRModality
from fusion.modalities.ehr_encoders import EHRMLPEncoder, EHRTokenEncoder


def ehr_column_scores(
    ctx: PatientContext,
    name: str,
    modality: EHRModality,
    keys: list[TargetKey],
    n_steps: int,
    with_delta: bool = False,
) -> list[FeatureScores]:
    """One score per used column (`ColumnTypes.columns`: numeric, ordinal, boolean, then categorical)."""
    types = modality.types
    if types is None:
        raise AttributionError(f"modality '{name}': column types unknown (load the checkpoint's state first)")
    data = ctx.inputs[name]["data"]
    inputs = (data["num"].float(), data["num_missing"].bool(), data["cat"].long())
    baselines = (torch.zeros_like(inputs[0]), torch.zeros_like(inputs[1]), torch.zeros_like(inputs[2]))
    encoder = ctx.model.encoders[name]
    if isinstance(encoder, EHRTokenEncoder):
        attr, delta = integrate_tokens(ctx, name, keys, collated(*baselines), n_steps, with_delta)
        per_column = attr.sum(dim=-1)  # (K, n_columns)
    elif isinstance(encoder, EHRMLPEncoder):
        forward = target_matrix(ctx, name, keys, collated)
        attr, delta = integrate(
            forward, inputs, baselines, len(keys), n_steps, with_delta, layer=encoder.mlp, layer_input=True
        )
        per_column = mlp_columns(attr, len(types.features), embedding_dims(encoder))
    else:
        raise AttributionError(
            f"modality '{name}': no feature attribution for the encoder {type(encoder).__name__} "
            "(EHR encoders: tokens, mlp)"
        )
    if per_column.shape[1] != len(types.columns):
        raise AttributionError(
            f"patient '{ctx.patient_id}', modality '{name}': {per_column.shape[1]} column attributions for "
            f"{len(types.columns)} columns"
        )
    return [as_scores(types.columns, types.columns, per_column, delta)]


def mlp_columns(attr: Tensor, n_num: int, cat_dims: list[int]) -> Tensor:
    """(K, D) attributions of the MLP encoder's input -> (K, n_num + n_cat) per column: numeric column i owns
    dims i (value) and n_num + i (missing indicator); categorical column j its embedding's slice after them
    (the layout of `EHRMLPEncoder.forward`)."""
    columns = [attr[:, :n_num] + attr[:, n_num : 2 * n_num]]
    start = 2 * n_num
    for dim in cat_dims:
        columns.append(attr[:, start : start + dim].sum(dim=1, keepdim=True))
        start += dim
    if start != attr.shape[1]:
        raise AttributionError(f"EHR mlp encoder: input of {attr.shape[1]} dims, expected {start}")
    return torch.cat(columns, dim=1)


def collated(num: Tensor, num_missing: Tensor, cat: Tensor) -> dict[str, Tensor]:
    """The EHR encoders' input (`EHRModality.collate`) from captum's tuple of tensors."""
    return {"num": num, "num_missing": num_missing, "cat": cat}


def embedding_dims(encoder: EHRMLPEncoder) -> list[int]:
    """The size of each categorical column's embedding, in column order."""
    return [e.embedding_dim for e in encoder.embeddings if isinstance(e, nn.Embedding)]
