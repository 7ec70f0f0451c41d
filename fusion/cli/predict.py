"""fusion-predict ckpt_path=CKPT data.manifest=PATH: predictions.csv for every patient of a manifest
(with `seen_in_training`: whether the checkpoint was trained on the patient); with labels in the
manifest also metrics.json (`predict/...` keys) and report/, as fusion-train writes for its test split."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from fusion.cli.common import report_user_errors
from fusion.prediction import predict_manifest


@hydra.main(version_base="1.3", config_path="pkg://fusion.conf", config_name="predict")
@report_user_errors
def main(cfg: DictConfig) -> None:
    frame = predict_manifest(
        cfg.ckpt_path,
        cfg.data.manifest,
        output=cfg.output,
        batch_size=cfg.data.batch_size,
        num_workers=cfg.data.num_workers,
        accelerator=cfg.accelerator,
        evaluation=cfg.get("evaluation"),
        report_dir=cfg.paths.output_dir,
        retrieval_k=cfg.get("retrieval", {}).get("k"),
        report=cfg.get("report"),
        explanations=cfg.get("explanations"),
    )
    print(f"wrote {len(frame)} predictions to {cfg.output}")


if __name__ == "__main__":
    main()
