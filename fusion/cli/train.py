"""fusion-train: fit on the train split, select on val, evaluate on test (README: Commands)."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from fusion.cli.common import report_user_errors
from fusion.console import print_run_summary
from fusion.training import run_training


@hydra.main(version_base="1.3", config_path="pkg://fusion.conf", config_name="train")
@report_user_errors
def main(cfg: DictConfig) -> None:
    result = run_training(cfg, output_dir=cfg.paths.output_dir)
    print_run_summary(result.metrics, result.output_dir)


if __name__ == "__main__":
    main()
