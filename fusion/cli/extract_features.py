"""fusion-extract-features data.manifest=PATH out=DIR encoder.name=resnet50 encoder.weights=PATH:
run a frozen tile encoder once over every tile of a cohort, then write a manifest pointing at the features."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, cast

import hydra
from omegaconf import DictConfig, OmegaConf

from fusion.cli.common import report_user_errors
from fusion.errors import ConfigError
from fusion.features.extract import extract_cohort
from fusion.nn.tile_encoders import build_tile_encoder

log = logging.getLogger("fusion")


def tiling_spec(cfg: DictConfig) -> Any | None:
    """The slide tiling spec from config, or None when `fusion.wsi` is unavailable (folders still work)."""
    try:
        from fusion.wsi import TilingSpec
    except ImportError:
        return None
    return TilingSpec(
        tile_size=int(cfg.tile_size),
        target_mpp=float(cfg.target_mpp),
        tissue_threshold=float(cfg.tissue_threshold),
        fallback_mpp=cfg.fallback_mpp,
    )


def run_extraction(cfg: DictConfig) -> Any:
    """Build the encoder from `cfg.encoder` and extract the cohort of `cfg.data.manifest` into `cfg.out`."""
    if OmegaConf.is_missing(cfg.data, "manifest") or OmegaConf.is_missing(cfg, "out"):
        raise ConfigError("give the cohort and the output folder: data.manifest=PATH out=DIR")
    enc = OmegaConf.to_container(cfg.encoder, resolve=True)
    if not isinstance(enc, dict) or "name" not in enc:
        raise ConfigError(f"encoder must be a config with a 'name' (e.g. encoder.name=resnet50), got {enc!r}")
    encoder = build_tile_encoder(**cast(dict[str, Any], enc))  # an encoder config's keys are str
    report = extract_cohort(
        Path(cfg.data.manifest).expanduser(),
        Path(cfg.out).expanduser(),
        encoder,
        column=cfg.data.column,
        spec=tiling_spec(cfg),
        tile_size=int(cfg.tile_size),
        batch_size=int(cfg.batch_size),
        num_workers=int(cfg.num_workers),
        device=str(cfg.device),
        precision=str(cfg.precision),
        on_error=str(cfg.on_error),
        manifest_out=cfg.manifest_out,
        suffix=str(cfg.suffix),
        progress=bool(cfg.progress),
    )
    print(
        f"extracted {len(report.extracted)} patient(s) ({report.tiles} tiles, {report.tiles_per_second:.1f} "
        f"tiles/s), resumed {len(report.resumed)}, given {len(report.given)}, failed {len(report.failed)}; "
        f"train on: fusion-train data.manifest={report.manifest}"
    )
    return report


@hydra.main(version_base="1.3", config_path="pkg://fusion.conf", config_name="extract_features")
@report_user_errors
def main(cfg: DictConfig) -> None:
    run_extraction(cfg)


if __name__ == "__main__":
    main()
