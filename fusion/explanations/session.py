"""A checkpoint opened for explaining a manifest's patients: the model, its fitted modalities, the chosen
heads, the base values, and one `PatientContext` per patient (a batch of one: encoders run once per patient).

Shared by `fusion-explain` (`fusion.explanations.runner`) and whatever else explains patient by patient (the
explanation benchmark's faithfulness check), so both see exactly the same patients and predictions.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.apply_func import move_data_to_device

from fusion.attribution.base_value import from_nested, mean_targets
from fusion.attribution.context import PatientContext, TargetKey
from fusion.checkpoint import load_checkpoint, load_model, stored_explain_base
from fusion.data.cohort import Cohort
from fusion.explanations.requests import chosen_heads, chosen_modalities, chosen_patients
from fusion.heads.base import Head
from fusion.modalities.base import Modality
from fusion.model import FusionModel
from fusion.pipeline import build_datamodule

log = logging.getLogger(__name__)
#: the data module's split of the explained patients (as fusion-predict's)
SPLIT = "predict"


@dataclass
class ExplainSession:
    """model: eval mode, on `device`; modalities: the checkpoint's, fitted; heads: the explained ones;
    mapped: the modalities whose maps and features are wanted; ids: the chosen patients (manifest order);
    base: (head, target) -> base value, and where it came from (`base_source`, a sentence)."""

    model: FusionModel
    modalities: dict[str, Modality]
    heads: dict[str, Head]
    mapped: list[str]
    ids: list[str]
    base: dict[TargetKey, float]
    base_source: str
    datamodule: Any
    refs: dict[str, dict[str, Any]]
    device: torch.device

    def contexts(self) -> Iterator[PatientContext]:
        """One context per chosen patient who has at least one of the model's modalities."""
        for batch in self.datamodule.loader(SPLIT):
            batch = move_data_to_device(batch, self.device)
            pid = batch["patient_id"][0]
            refs = {name: self.refs[name].get(pid) for name in self.refs}
            yield PatientContext(pid, self.model, self.heads, batch["inputs"], refs)


def open_session(
    ckpt_path: str | Path,
    manifest: str | Path,
    patients: Sequence[str] | None = None,
    heads: Sequence[str] | None = None,
    modalities: Sequence[str] | None = None,
    accelerator: str = "cpu",
    num_workers: int = 0,
) -> ExplainSession:
    """Load the checkpoint and the manifest; unknown heads, modalities or patients are one-line errors here,
    before any work (`fusion.explanations.requests`)."""
    checkpoint = load_checkpoint(ckpt_path)
    cfg, built, all_heads, lit = load_model(checkpoint)  # all_heads: the model's own head modules
    model = lit.model
    head_names = chosen_heads(heads, list(all_heads))
    mapped = chosen_modalities(modalities, list(built))
    cohort = Cohort.load(manifest)
    ids = chosen_patients(patients, cohort.patient_ids, str(manifest))
    cfg.data.batch_size, cfg.data.num_workers = 1, num_workers
    splits = {SPLIT: ids}
    datamodule = build_datamodule(cfg, cohort, built, all_heads, splits=splits, fit_modalities=False)
    datamodule.setup("predict")
    gpu = accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available()
    device = torch.device("cuda" if gpu else "cpu")
    model = model.to(device).eval()
    explained = {h: all_heads[h] for h in head_names}
    base, source = _base_values(checkpoint, model, explained, datamodule)
    refs = {name: built[name].gather(cohort) for name in mapped}
    return ExplainSession(model, built, explained, mapped, ids, base, source, datamodule, refs, device)


def _base_values(
    checkpoint: dict, model: FusionModel, heads: dict[str, Head], datamodule: Any
) -> tuple[dict[TargetKey, float], str]:
    """The stored training-split means, or (older checkpoints) the mean over the explained patients."""
    stored = from_nested(stored_explain_base(checkpoint))
    wanted = [(h, t) for h, head in heads.items() for t in _target_names(head)]
    if wanted and set(wanted) <= set(stored):
        return {key: stored[key] for key in wanted}, (
            "each target's mean over the training split, stored in the checkpoint by fusion-train"
        )
    log.warning(
        "the checkpoint holds no training-split mean outputs (written before fusion kept them): the base "
        "value of the modality contributions is the mean over the explained patients instead"
    )
    return mean_targets(model, heads, datamodule.loader(SPLIT)), (
        "each target's mean over the explained patients (this checkpoint predates the stored training-split "
        "means; retrain to get them)"
    )


def _target_names(head: Head) -> list[str]:
    """The names of `head`'s explained targets (from one forward pass of a zero embedding)."""
    device = next(head.parameters()).device
    with torch.no_grad():
        return list(head.explain_targets(head(torch.zeros(1, head.in_dim, device=device))))
