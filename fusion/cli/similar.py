"""fusion-similar ckpt_path=CKPT data.manifest=PATH k=10: each patient's k most similar reference patients
(neighbours.csv) and a summary of their outcomes (neighbour_summary.csv)."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from fusion.cli.common import report_user_errors
from fusion.similar import similar_manifest


@hydra.main(version_base="1.3", config_path="pkg://fusion.conf", config_name="similar")
@report_user_errors
def main(cfg: DictConfig) -> None:
    evaluation = cfg.get("evaluation") or {}
    horizons = evaluation.get("horizons")
    result = similar_manifest(
        cfg.ckpt_path,
        cfg.data.manifest,
        k=cfg.k,
        output=cfg.out,
        reference=cfg.reference,
        batch_size=cfg.data.batch_size,
        num_workers=cfg.data.num_workers,
        accelerator=cfg.accelerator,
        horizons=None if horizons is None else [float(h) for h in horizons],
    )
    print(
        f"wrote the {cfg.k} nearest neighbours of {len(result.summary)} patients to "
        f"{result.output_dir}/neighbours.csv and neighbour_summary.csv"
    )


if __name__ == "__main__":
    main()
