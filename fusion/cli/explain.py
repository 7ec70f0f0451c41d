"""fusion-explain ckpt_path=CKPT data.manifest=PATH: per-patient explanations (modality contributions, table
feature attributions, tile and imaging maps) and their cohort summaries, report.md and W&B tables."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig, OmegaConf

from fusion.cli.common import report_user_errors
from fusion.explanations.runner import ExplainOptions, explain_manifest


def _names(value: object) -> list[str] | None:
    """A list override (patients=[P1,P2]) or one name (heads=survival) as a list of text; None = all."""
    if value is None:
        return None
    container = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
    return [str(v) for v in container] if isinstance(container, list | tuple) else [str(container)]


@hydra.main(version_base="1.3", config_path="pkg://fusion.conf", config_name="explain")
@report_user_errors
def main(cfg: DictConfig) -> None:
    options = ExplainOptions(
        maps=bool(cfg.maps),
        feature_values=bool(cfg.feature_values),
        imaging_method=str(cfg.imaging_method),
        ig_steps=int(cfg.ig_steps),
    )
    result = explain_manifest(
        cfg.ckpt_path,
        cfg.data.manifest,
        out=cfg.out,
        patients=_names(cfg.patients),
        heads=_names(cfg.heads),
        modalities=_names(cfg.modalities),
        options=options,
        accelerator=cfg.accelerator,
        num_workers=cfg.data.num_workers,
        wandb=cfg.get("wandb"),
    )
    n = result.contributions["patient_id"].nunique() if not result.contributions.empty else 0
    print(f"explained {n} patients ({result.seconds_per_patient:.2f} s each): {result.output_dir}/report.md")


if __name__ == "__main__":
    main()
