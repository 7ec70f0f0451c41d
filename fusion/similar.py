"""Similar patients of a manifest: each patient's k nearest reference patients by the cosine of the fused
embedding, with their outcomes (`fusion.retrieval`).

The reference set is the one fusion-train stored beside the checkpoint (its training patients, embedded with
the selected weights), or one built here from a labelled cohort (``reference=MANIFEST``), embedded with this
checkpoint and saved in the output folder for reuse. Either way the query and the reference embeddings come
from the same weights; a stored set built with other weights is refused (`ReferenceSet.check_weights`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from fusion.checkpoint import load_checkpoint, load_model, stored_references
from fusion.data.cohort import Cohort
from fusion.errors import ConfigError
from fusion.heads.base import Head
from fusion.modalities.base import Modality
from fusion.modalities.privacy import MIN_GROUP
from fusion.model import FusionModel
from fusion.pipeline import build_datamodule
from fusion.retrieval.embeddings import state_dict_digest
from fusion.retrieval.neighbours import NEIGHBOURS_CSV, check_k, neighbour_tables, write_neighbour_tables
from fusion.retrieval.reference_set import FILENAME, ReferenceSet, build_reference_set, stored_reference_set
from fusion.retrieval.summaries import summary_horizons

log = logging.getLogger(__name__)

#: the split names of the query and reference patients in their data modules
QUERY, REFERENCE = "predict", "reference"


@dataclass
class SimilarResult:
    """The two tables written (`neighbours`, `summary`), the folder they are in, and the reference set file
    used (the stored one, or the one built from ``reference=MANIFEST``; None when too small to be saved)."""

    neighbours: pd.DataFrame
    summary: pd.DataFrame
    output_dir: Path
    reference_path: Path | None


def similar_manifest(
    ckpt_path: str | Path,
    manifest: str | Path,
    k: int = 10,
    output: str | Path | None = None,
    reference: str | Path | None = None,
    batch_size: int = 32,
    num_workers: int = 0,
    accelerator: str = "auto",
    horizons: Sequence[float] | None = None,
) -> SimilarResult:
    """Write ``neighbours.csv`` and ``neighbour_summary.csv`` for every patient of `manifest` into `output`
    (default: the current folder) and return them.

    `reference`: a labelled manifest to search instead of the reference set stored beside the checkpoint;
    it is embedded with this checkpoint and saved as ``reference_set.pt`` in `output`. `horizons`: the
    survival horizons of ``km_survival_<h>`` (default: the training event-time quartiles the checkpoint
    stores). Bad input (k, a missing or mismatched reference set, an unknown manifest) is a ConfigError.
    """
    out = Path(output) if output is not None else Path(".")
    checkpoint = load_checkpoint(ckpt_path)
    cfg, modalities, heads, lit = load_model(checkpoint)
    cfg.data.batch_size, cfg.data.num_workers = batch_size, num_workers
    model = lit.model.to(_device(accelerator))
    min_group = int(cfg.get("privacy", {}).get("min_group", MIN_GROUP))
    reference_path: Path | None
    if reference is None:
        reference_set = stored_reference_set(ckpt_path, checkpoint)
        reference_path = Path(ckpt_path).expanduser().parent / FILENAME
    else:
        reference_set = reference_from_manifest(
            reference,
            cfg,
            modalities,
            heads,
            model,
            state_dict_digest(checkpoint["state_dict"]),
            Path(ckpt_path).name,
        )
        reference_path = reference_set.save(out, min_group)
    check_k(k, reference_set)  # before embedding the queries: a wrong k fails fast

    cohort = Cohort.load(manifest)
    datamodule = build_datamodule(
        cfg, cohort, modalities, heads, splits={QUERY: cohort.patient_ids}, fit_modalities=False
    )
    datamodule.setup("predict")
    neighbours, summary = neighbour_tables(
        model,
        heads,
        datamodule.loader(QUERY),
        reference_set,
        k,
        summary_horizons(heads, stored_references(checkpoint), horizons),
        patient_ids=cohort.patient_ids,
    )
    write_neighbour_tables(out, neighbours, summary)
    log.info("%d patients, %d neighbours each: %s", len(summary), k, out / NEIGHBOURS_CSV)
    return SimilarResult(neighbours, summary, out, reference_path)


def reference_from_manifest(
    manifest: str | Path,
    cfg: Any,
    modalities: dict[str, Modality],
    heads: dict[str, Head],
    model: FusionModel,
    weights_sha256: str,
    checkpoint_name: str = "",
) -> ReferenceSet:
    """Every patient of a labelled manifest with at least one of the model's modalities, embedded with
    `model` (whose weights hash to `weights_sha256`), with their labels."""
    path = Path(manifest).expanduser()
    if not path.is_file():
        raise ConfigError(f"reference={manifest}: no such manifest (give a labelled cohort's manifest.csv)")
    cohort = Cohort.load(path)
    datamodule = build_datamodule(
        cfg, cohort, modalities, heads, splits={REFERENCE: cohort.patient_ids}, fit_modalities=False
    )
    datamodule.setup("predict")
    records = datamodule.records.get(REFERENCE, [])
    if not any(label is not None for r in records for label in r.labels.values()):
        columns = sorted({c for head in heads.values() for c in head.columns})
        raise ConfigError(
            f"reference={manifest}: no patient has a label ({', '.join(columns)}): a reference set needs a "
            "labelled cohort"
        )
    return build_reference_set(
        model,
        heads,
        records,
        datamodule.loader(REFERENCE),
        weights_sha256,
        checkpoint_name,
    )


def _device(accelerator: str) -> torch.device:
    """cuda for ``gpu``/``cuda``, or for ``auto`` when there is one; else cpu."""
    wants_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    return torch.device("cuda" if wants_gpu else "cpu")
