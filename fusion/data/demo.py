"""Make sure the configured cohort exists; write the synthetic demo cohort when the config asks for it.

`fusion-train experiment=quickstart` must work on a fresh install with no data: its config sets
`data.demo` (generator arguments), and the cohort is written once to the cache folder. It is
written to a temporary sibling folder and renamed into place, so an interrupted first run never
leaves a half-written cohort that a later run would trust.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any, cast

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
        if demo:
            check_demo_generator(manifest.parent)
        return manifest
    if manifest.name != "manifest.csv":
        raise ConfigError(f"data.demo writes 'manifest.csv'; data.manifest must end with it, got {manifest}")
    # to_container of a DictConfig is a dict; its stubs give the return type for any config or value
    write_demo_atomically(manifest.parent, **cast(dict[str, Any], OmegaConf.to_container(demo, resolve=True)))
    return manifest


def check_demo_generator(root: Path) -> None:
    """A cached demo cohort written by a generator with other label rules is an error, not a silent reuse."""
    from fusion.data.synthetic.latent import SIGNAL_DESIGN

    summary = root / "cohort.json"
    written = json.loads(summary.read_text()).get("signal_design") if summary.exists() else None
    if written is None:
        return  # a cohort the user put there: theirs to vouch for
    changed = sorted(k for k in SIGNAL_DESIGN if written.get(k) != SIGNAL_DESIGN[k])
    if changed:
        raise ConfigError(
            f"the demo cohort in {root} was written by an older generator: its {', '.join(changed)} rule "
            f"is '{written[changed[0]]}', this version's is '{SIGNAL_DESIGN[changed[0]]}'. Remove the folder "
            "and the next run writes the current cohort."
        )


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
