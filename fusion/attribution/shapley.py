"""Shapley values of whole modalities: how much of one prediction each modality of the patient accounts for.

The players are the modalities the patient has. The value of a coalition S is the model's output when only
S is present (the others masked out, as missing files are: the model is trained for any subset through its
presence mask), so no input is ever replaced by a made-up value. The value of the empty coalition is the
*base value*: the mean output over the training split (stored in the checkpoint by fusion-train; see
`fusion.attribution.base_value`). Contributions then add up exactly: base value + sum = prediction.

Exact for up to `max_exact` modalities (2^n coalitions, one fuser pass each, batched); beyond, an unbiased
estimate from random permutations, which keeps the sum exact (every permutation's marginals add up to
prediction - base).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from itertools import combinations

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from fusion.attribution.context import PatientContext, TargetKey

#: modality_contributions.csv
CONTRIBUTION_COLUMNS = (
    "patient_id",
    "head",
    "target",
    "modality",
    "contribution",
    "base_value",
    "prediction",
)
#: exact Shapley values up to this many present modalities (2^10 = 1024 coalitions); sampled beyond
MAX_EXACT = 10
#: coalitions per fuser pass
CHUNK = 256

#: coalitions (S, n) bool -> (head, target) -> (S,) values
ValueFunction = Callable[[Tensor], dict[TargetKey, Tensor]]


def shapley_values(
    value: ValueFunction,
    n: int,
    base: dict[TargetKey, float],
    max_exact: int = MAX_EXACT,
    n_permutations: int = 200,
    seed: int = 0,
) -> dict[TargetKey, np.ndarray]:
    """(head, target) -> (n,) Shapley values of `n` players under `value` (coalitions of the n players as rows
    of a bool matrix; never called with the empty coalition, whose value is `base`)."""
    if n < 1:
        raise ValueError("shapley_values needs at least one player")
    if n <= max_exact:
        return _exact(value, n, base)
    return _sampled(value, n, base, n_permutations, seed)


def _evaluate(
    value: ValueFunction, coalitions: Tensor, base: dict[TargetKey, float]
) -> dict[TargetKey, Tensor]:
    """Values of every row of `coalitions` (the empty row gets `base`), in chunks of CHUNK."""
    nonempty = coalitions.any(dim=1)
    out = {key: torch.full((coalitions.shape[0],), float(b), dtype=torch.float64) for key, b in base.items()}
    rows = nonempty.nonzero().flatten()
    with torch.no_grad():
        for start in range(0, len(rows), CHUNK):
            part = rows[start : start + CHUNK]
            for key, values in value(coalitions[part]).items():
                out[key][part] = values.detach().double().cpu()
    return out


def _exact(value: ValueFunction, n: int, base: dict[TargetKey, float]) -> dict[TargetKey, np.ndarray]:
    masks = torch.tensor([[(i >> j) & 1 for j in range(n)] for i in range(2**n)], dtype=torch.bool)
    values = _evaluate(value, masks, base)
    index = {tuple(row.tolist()): i for i, row in enumerate(masks)}
    weights = [math.factorial(s) * math.factorial(n - s - 1) / math.factorial(n) for s in range(n)]
    result = {key: np.zeros(n) for key in values}
    for player in range(n):
        others = [p for p in range(n) if p != player]
        for size in range(n):
            for subset in combinations(others, size):
                without = [False] * n
                for p in subset:
                    without[p] = True
                with_player = list(without)
                with_player[player] = True
                i, j = index[tuple(with_player)], index[tuple(without)]
                for key, v in values.items():
                    result[key][player] += weights[size] * float(v[i] - v[j])
    return result


def _sampled(
    value: ValueFunction, n: int, base: dict[TargetKey, float], n_permutations: int, seed: int
) -> dict[TargetKey, np.ndarray]:
    rng = np.random.default_rng(seed)
    orders = [rng.permutation(n) for _ in range(n_permutations)]
    # every prefix of every permutation: n_permutations x (n + 1) coalitions
    masks = torch.zeros(n_permutations, n + 1, n, dtype=torch.bool)
    for p, order in enumerate(orders):
        for k in range(1, n + 1):
            masks[p, k, order[:k]] = True
    values = _evaluate(value, masks.reshape(-1, n), base)
    result = {}
    for key, v in values.items():
        chain = v.reshape(n_permutations, n + 1).numpy()
        phi = np.zeros(n)
        for p, order in enumerate(orders):
            phi[order] += np.diff(chain[p])
        result[key] = phi / n_permutations
    return result


def modality_contributions(
    ctx: PatientContext, base: dict[TargetKey, float], max_exact: int = MAX_EXACT
) -> pd.DataFrame:
    """modality_contributions.csv rows of one patient: every (head, target) x present modality.

    A patient with one modality gets the whole difference (prediction - base value) for it, without a
    Shapley run.
    """
    names = list(ctx.encoded)
    present = ctx.present
    prediction = ctx.prediction()
    if len(present) == 1:
        phi = {key: np.array([prediction[key] - base[key]]) for key in prediction}
    else:
        columns = [names.index(m) for m in present]

        def value(coalitions: Tensor) -> dict[TargetKey, Tensor]:
            keep = torch.zeros(coalitions.shape[0], len(names), dtype=torch.bool)
            keep[:, columns] = coalitions
            return ctx.targets(ctx.with_present(keep))

        phi = shapley_values(value, len(present), {key: base[key] for key in prediction}, max_exact)
    rows = [
        (
            ctx.patient_id,
            head,
            target,
            modality,
            float(phi[(head, target)][i]),
            base[(head, target)],
            prediction[(head, target)],
        )
        for head, target in prediction
        for i, modality in enumerate(present)
    ]
    return pd.DataFrame(rows, columns=list(CONTRIBUTION_COLUMNS))
