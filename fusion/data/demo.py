"""Make sure the configured cohort exists; write the synthetic demo cohort when the config asks for it.

`fusion-train experiment=quickstart` must work on a fresh install with no data: its config sets
`data.demo` (generator arguments), and the cohort is written once to the cache folder. It is
written to a temporary sibling folder and renamed into place, so an interrupted first run never
leaves a half-written cohort that a later run would trust.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from fusion.errors import ConfigError

log = logging.getLogger(__name__)


def ensure_demo_cohort(cfg: DictConfig) -> Path:
    """The manifest path of `cfg.data.manifest`, writing the demo cohort there first if configured."""
    manifest = cfg.data.get("manifest")
    if manifest is None:
        raise ConfigError(
            "no cohort given: set data.manifest=PATH (or use experiment=quickstart for the demo)"
        )
    manifest = Path(str(manifest)).expanduser().resolve()
    demo = cfg.data.get("demo")
    if manifest.exists() or not demo:
        if not manifest.exists():
            raise FileNotFoundError(f"data.manifest: no such file: {manifest}")
        return manifest
    if manifest.name != "manifest.csv":
        raise ConfigError(f"data.demo writes 'manifest.csv'; data.manifest must end with it, got {manifest}")
    write_demo_atomically(manifest.parent, **OmegaConf.to_container(demo, resolve=True))
    return manifest


def write_demo_atomically(out: Path, **kwargs) -> Path:
    from fusion.data.synthetic import write_demo_cohort

    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty; choose another folder or remove it first")
    out.parent.mkdir(parents=True, exist_ok=True)
    log.info("writing the synthetic demo cohort to %s (%s)", out, kwargs)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        write_demo_cohort(tmp, **kwargs)
        try:
            if out.exists():
                out.rmdir()
            tmp.rename(out)
        except OSError:
            # several ranks of a SLURM/torchrun job start at once and may all write it (same seed,
            # same files): the first rename wins, the others use its cohort
            if not (out / "manifest.csv").exists():
                raise
            log.info("another process wrote the demo cohort to %s first; using it", out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out / "manifest.csv"
