"""fusion-cv cv.folds=K cv.repeats=R: patient-level k-fold cross-validation of a training config.

`cv.group_by=site` keeps each centre on one side of every fold; `cv.splits_file=PATH` freezes the folds
(written on the first run, read and checked afterwards). Multirun (`fusion-cv -m fuser=concat,transformer`)
gives each job its own sweep folder, its own cv_metrics.json and its own W&B group.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from fusion.cli.common import report_user_errors
from fusion.cross_validation import run_cross_validation


@hydra.main(version_base="1.3", config_path="pkg://fusion.conf", config_name="cv")
@report_user_errors
def main(cfg: DictConfig) -> None:
    run_cross_validation(cfg, output_dir=cfg.paths.output_dir)


if __name__ == "__main__":
    main()
