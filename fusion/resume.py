"""Resuming a run in its own folder: the command that does it, and what the loggers keep across it.

A resumed run (`ckpt_path=<run>/checkpoints/....ckpt hydra.run.dir=<run>`) continues in the same run
folder, so the checkpoint callback finds its own folder in the checkpoint and restores the best
checkpoint's path and score; the W&B logger reuses the run id stored in the folder; the CSV log of the
epochs before the stop is kept beside the new one (Lightning would otherwise delete it).
"""

from __future__ import annotations

import logging
import re
import shlex
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.loggers import CSVLogger, WandbLogger

log = logging.getLogger(__name__)

#: the W&B run id of a run folder, read back when the run resumes
WANDB_RUN_ID = "wandb_run_id.txt"


def is_resuming(ckpt_path: str | None, output_dir: Path) -> bool:
    """A checkpoint is given, or Lightning will pick up a SLURM requeue checkpoint (`hpc_ckpt_*.ckpt`,
    which it loads by itself under SLURM when no `ckpt_path` is given)."""
    return bool(ckpt_path) or (SLURMEnvironment.detect() and any(output_dir.glob("hpc_ckpt_*.ckpt")))


def warn_other_folder(ckpt_path: str | None, output_dir: Path) -> None:
    """A checkpoint of another run folder resumes the weights and epoch, not that run's best checkpoint."""
    if not ckpt_path:
        return
    ckpt = Path(ckpt_path).resolve()
    run = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
    if run != output_dir:
        log.warning(
            "resuming from a checkpoint of another run folder (%s): its best checkpoint is not carried "
            "over to %s; add hydra.run.dir=%s to continue that run in its own folder",
            run,
            output_dir,
            shlex.quote(str(run)),
        )


def wandb_resume_kwargs(node: Any, output_dir: Path, resuming: bool) -> dict[str, Any]:
    """Extra arguments for a WandbLogger config node: the stored run id when resuming, else none."""
    stored = output_dir / WANDB_RUN_ID
    target = str(node.get("_target_", "")) if hasattr(node, "get") else ""
    if not (resuming and target.endswith("WandbLogger") and stored.exists()):
        return {}
    return {"id": stored.read_text().strip(), "resume": "allow"}


def remember_wandb_run(loggers: list[Any], output_dir: Path) -> None:
    """Store the W&B run id in the run folder (call once the experiment exists, on rank 0)."""
    for lg in loggers:
        if isinstance(lg, WandbLogger) and lg.version:
            (output_dir / WANDB_RUN_ID).write_text(str(lg.version))


def keep_csv_logs(loggers: list[Any]) -> None:
    """Move a CSV log of the epochs before a resume aside (`csv` -> `csv-before-resume-1`, ...)."""
    for lg in loggers:
        if not isinstance(lg, CSVLogger):
            continue
        log_dir = Path(lg.log_dir)
        if not (log_dir / "metrics.csv").exists():
            continue
        n = 1
        while (kept := log_dir.with_name(f"{log_dir.name}-before-resume-{n}")).exists():
            n += 1
        log_dir.rename(kept)
        log.info("the CSV log before the resume is kept in %s", kept)


def resume_command(ckpt: Path, output_dir: Path) -> str | None:
    """The `fusion-train` command that resumes this run from `ckpt` in the same folder: the original
    overrides plus `ckpt_path` and `hydra.run.dir`. None outside a `fusion-train` Hydra run."""
    if not HydraConfig.initialized():
        return None
    hydra = HydraConfig.get()
    if hydra.job.name != "train":
        return None
    replaced = ("ckpt_path=", "+ckpt_path=", "++ckpt_path=", "hydra.run.dir=", "hydra.mode=")
    kept = [o for o in [*hydra.overrides.hydra, *hydra.overrides.task] if not o.startswith(replaced)]
    args = [*kept, f"ckpt_path={_hydra_value(ckpt)}", f"hydra.run.dir={_hydra_value(output_dir)}"]
    return " ".join(["fusion-train", *(shlex.quote(a) for a in args)])


def _hydra_value(path: Path) -> str:
    """A path as a Hydra override value: quoted when it holds characters the override grammar reserves."""
    text = str(path)
    if re.fullmatch(r"[\w./:@+-]+", text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
