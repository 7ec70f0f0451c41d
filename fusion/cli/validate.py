"""fusion-validate data.manifest=PATH: list every problem of a cohort at once; exit 1 if any."""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from fusion.cli.common import report_user_errors
from fusion.cohort_check import validate_cohort


@hydra.main(version_base="1.3", config_path="pkg://fusion.conf", config_name="validate")
@report_user_errors
def main(cfg: DictConfig) -> None:
    report = validate_cohort(cfg, deep=cfg.deep)
    print(report.render())
    sys.exit(1 if report.problems else 0)


if __name__ == "__main__":
    main()
