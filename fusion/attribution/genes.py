"""Integrated Gradients of one patient's genes, and of its pathway tokens when the encoder has them.

Genes: IG w.r.t. each selected gene's model input, the z-scored (log1p) value, from the baseline 0, which
is the training mean of every gene (the zero of the fitted z-scoring; a gene missing for the patient is
also 0 there, so its attribution is 0). A gene's attribution is therefore what its deviation from the
training mean adds to the target.

Pathway tokens (`fusion.nn.pathways.PathwayEncoder`): layer IG at the encoder's output, one token per gene
set, summed over the token's dimensions, from the tokens of the all-mean patient (input 0). The gene-set rows
are named ``set:<name>`` (`GENE_SET_PREFIX`, then the set's name as in the GMT; ``set:other_genes`` for the
genes in no set), so that a ranking can tell them from the genes without another column. Genes and gene sets
are two views of the same prediction change (each sums to f(x) - f(baseline)): add within a view, never
across them.
"""

from __future__ import annotations

import torch

from fusion.attribution.context import PatientContext, TargetKey
from fusion.attribution.integrated import (
    AttributionError,
    FeatureScores,
    as_scores,
    integrate,
    integrate_tokens,
    target_matrix,
)
from fusion.modalities.genomics import GenomicsModality
from fusion.nn.pathways import PathwayEncoder

#: the `feature` of a gene-set row: ``set:<gene set name>``
GENE_SET_PREFIX = "set:"


def gene_scores(
    ctx: PatientContext,
    name: str,
    modality: GenomicsModality,
    keys: list[TargetKey],
    n_steps: int,
    with_delta: bool = False,
) -> list[FeatureScores]:
    """The genes' attributions, then (pathway encoder only) the gene sets'."""
    genes = list(modality.selected or [])
    x = ctx.inputs[name]["data"].float()
    if x.ndim != 2 or x.shape != (1, len(genes)):
        raise AttributionError(
            f"patient '{ctx.patient_id}', modality '{name}': expected 1 x {len(genes)} genes, "
            f"got input of shape {tuple(x.shape)}"
        )
    baseline = torch.zeros_like(x)  # the training mean of every gene, on the model's z-scale
    forward = target_matrix(ctx, name, keys)
    attr, delta = integrate(forward, (x,), (baseline,), len(keys), n_steps, with_delta)
    out = [as_scores(genes, genes, attr, delta)]
    encoder = ctx.model.encoders[name]
    if isinstance(encoder, PathwayEncoder):
        attr, delta = integrate_tokens(ctx, name, keys, baseline, n_steps, with_delta)
        sets = [GENE_SET_PREFIX + s for s in encoder.set_names]
        out.append(as_scores(sets, [None] * len(sets), attr.sum(dim=-1), delta))
    return out
