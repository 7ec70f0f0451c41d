"""The percentile bootstrap cannot leave a metric's range; a degenerate sample gives a zero-width interval."""

from __future__ import annotations

import numpy as np

from fusion.metrics import weighted_classification as wc
from fusion.metrics.bootstrap import percentile_ci, resample_counts


def test_percentile_intervals_lie_between_replicate_values_so_inside_0_1():
    rng = np.random.default_rng(3)
    for n in (6, 12, 40):  # small samples, where replicates pile up at 0 and 1
        y = np.tile([0, 1], n // 2)
        s = y * 2.0 + rng.normal(0, 1, n)
        counts = resample_counts(n, 500, seed=n)
        values = wc.auroc(counts, s, y)
        low, high = percentile_ci(lambda c, s=s, y=y: wc.auroc(c, s, y), counts)
        finite = values[np.isfinite(values)]
        assert finite.min() <= low <= high <= finite.max()
        assert 0.0 <= low <= high <= 1.0


def test_a_perfectly_separated_sample_gives_a_zero_width_interval():
    # every replicate with both classes ranks them perfectly: the interval is [1, 1], which shows no
    # uncertainty; fusion-train refuses test splits this small (data.split.min_per_class)
    y = np.array([0, 0, 1, 1])
    s = np.array([0.1, 0.2, 0.8, 0.9])
    ci = percentile_ci(lambda c: wc.auroc(c, s, y), resample_counts(4, 200, seed=0))
    assert ci == (1.0, 1.0)
