"""Settings of test-time evaluation (the `evaluation:` block of train.yaml / predict.yaml)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from fusion.errors import ConfigError


@dataclass
class EvaluationSettings:
    """Args:
    n_bootstrap: patient bootstrap replicates for the 95% CIs (0 = no CIs).
    seed: bootstrap seed.
    level: CI coverage.
    horizons: survival horizons in the cohort's time unit; None = 25/50/75% quantiles of the
        training event times (keys then read q25/q50/q75 so that CV folds share them).
    risk_groups: 2 (median split) or 3 (tertiles) for the Kaplan–Meier plot of predicted risk.
    risk_cutoff: "train" (cut at quantiles of the training risk, fixed before seeing the test set)
        or "test" (quantiles of the test risk: equal-sized groups, but data-dependent).
    calibration_bins: equal-width bins of the reliability curve and ECE.
    ibs_points: grid points of the integrated Brier score between the first and last horizon.
    report: write the report folder (plots + report.md); metrics are written regardless.
    """

    n_bootstrap: int = 1000
    seed: int = 0
    level: float = 0.95
    horizons: list[float] | None = None
    risk_groups: int = 2
    risk_cutoff: str = "train"
    calibration_bins: int = 10
    ibs_points: int = 50
    report: bool = True

    def __post_init__(self) -> None:
        if self.risk_groups not in (2, 3):
            raise ConfigError(f"evaluation.risk_groups must be 2 or 3, got {self.risk_groups}")
        if self.risk_cutoff not in ("train", "test"):
            raise ConfigError(f"evaluation.risk_cutoff must be 'train' or 'test', got '{self.risk_cutoff}'")
        if self.n_bootstrap < 0 or not 0 < self.level < 1 or self.calibration_bins < 1 or self.ibs_points < 2:
            raise ConfigError(
                "evaluation: n_bootstrap >= 0, 0 < level < 1, calibration_bins >= 1 and ibs_points >= 2 "
                f"are required, got {self}"
            )
        if self.horizons is not None:
            self.horizons = sorted(float(h) for h in self.horizons)
            if not self.horizons or self.horizons[0] <= 0:
                raise ConfigError(f"evaluation.horizons must be times > 0, got {self.horizons}")

    @classmethod
    def from_config(cls, node: Any | None) -> EvaluationSettings:
        """From a config node (DictConfig or dict); unknown keys are an error naming them."""
        data = dict(node or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"evaluation: unknown setting(s) {unknown}; known: {sorted(known)}")
        if data.get("horizons") is not None:
            data["horizons"] = list(data["horizons"])
        return cls(**data)
