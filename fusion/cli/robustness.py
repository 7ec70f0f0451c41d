"""fusion-robustness ckpt_path=CKPT: a trained model's metrics with modalities removed (CSV + PNG).

Writes `robustness.csv` (one row per condition and draw), `robustness_curve.csv` (mean and sd per
fraction removed at random) and `robustness.png` into the run folder (or `output_dir=`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig

from fusion.checkpoint import load_checkpoint
from fusion.cli.common import report_user_errors
from fusion.errors import ConfigError
from fusion.io.tables import read_table
from fusion.robustness import curve, evaluate_robustness, plot

log = logging.getLogger(__name__)


def held_out_patients(ckpt_path: Path, patients: str | None) -> list[str] | None:
    """The patients to score: the given CSV's, else the checkpoint's run's test patients, else None (all)."""
    path = Path(patients) if patients else ckpt_path.resolve().parent.parent / "predictions_test.csv"
    if not path.exists():
        if patients:
            raise FileNotFoundError(f"patients: no such file: {path}")
        log.warning(
            "no predictions_test.csv beside %s: scoring every patient, training ones included", ckpt_path
        )
        return None
    frame = read_table(path)  # patient_id as text, as written
    if "patient_id" not in frame.columns:
        raise ConfigError(f"patients: {path} has no patient_id column")
    log.info("scoring the %d patients of %s", len(frame), path)
    return frame["patient_id"].tolist()


@hydra.main(version_base="1.3", config_path="pkg://fusion.conf", config_name="robustness")
@report_user_errors
def main(cfg: DictConfig) -> None:
    ckpt = Path(cfg.ckpt_path)
    manifest = cfg.data.manifest or load_checkpoint(ckpt)["fusion"]["config"]["data"]["manifest"]
    frame = evaluate_robustness(
        ckpt,
        manifest,
        patient_ids=held_out_patients(ckpt, cfg.patients),
        fractions=list(cfg.fractions),
        repeats=cfg.repeats,
        seed=cfg.seed,
        batch_size=cfg.data.batch_size,
    )
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out / "robustness.csv", index=False)
    curve(frame).to_csv(out / "robustness_curve.csv", index=False)
    print(f"wrote {out / 'robustness.csv'} and {plot(frame, out / 'robustness.png')}")


if __name__ == "__main__":
    main()
