"""The reference set that similar patients are found in: the fused embedding of every training patient, with
their outcomes, stored beside the checkpoint as ``reference_set.pt``.

It holds patient ids, embeddings (N, d), the outcomes (one list per manifest label column), the SHA-256 of
the weights that computed the embeddings and the fusion version: no inputs, no EHR values, no dates. It is
patient data (ids with outcomes), to be shared like the outcomes themselves, which is why it lives beside the
checkpoint and not inside it: a checkpoint can go to another hospital without it. Plain values, so it loads
with ``torch.load(weights_only=True)``. A set of fewer than ``privacy.min_group`` patients is not written.

The digest ties it to one set of weights: an embedding from other weights lives in another space, and a
search across the two would return noise, so `check_weights` refuses it with the way out.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from fusion.data.records import PatientRecord
from fusion.errors import ConfigError
from fusion.heads.base import Head
from fusion.model import FusionModel
from fusion.retrieval.embeddings import fused_embeddings, state_dict_digest
from fusion.retrieval.labels import label_table
from fusion.version import __version__

log = logging.getLogger(__name__)

#: the file beside the checkpoint (or in fusion-similar's output folder when built from reference=MANIFEST)
FILENAME = "reference_set.pt"


@dataclass
class ReferenceSet:
    """patient_ids (N); embeddings (N, d) float32; labels: manifest column -> N values (None = unknown);
    weights_sha256: `fusion.retrieval.embeddings.state_dict_digest` of the weights that embedded them;
    checkpoint: the file name of that checkpoint (for the error message of a mismatch)."""

    patient_ids: list[str]
    embeddings: torch.Tensor
    labels: dict[str, list[Any]]
    weights_sha256: str
    checkpoint: str = ""
    fusion_version: str = field(default=__version__)

    def __post_init__(self) -> None:
        self.embeddings = torch.as_tensor(self.embeddings, dtype=torch.float32)
        n = len(self.patient_ids)
        if self.embeddings.dim() != 2 or self.embeddings.shape[0] != n:
            raise ValueError(f"{n} patient ids for embeddings of shape {tuple(self.embeddings.shape)}")
        wrong = [c for c, values in self.labels.items() if len(values) != n]
        if wrong:
            raise ValueError(f"label columns {wrong} do not hold one value per patient ({n})")

    def __len__(self) -> int:
        return len(self.patient_ids)

    def index_of(self) -> dict[str, int]:
        """patient id -> row."""
        return {p: i for i, p in enumerate(self.patient_ids)}

    # ------------------------------------------------------------- files
    def to_dict(self) -> dict[str, Any]:
        return {
            "patient_ids": list(self.patient_ids),
            "embeddings": self.embeddings.contiguous(),
            "labels": {c: list(v) for c, v in self.labels.items()},
            "weights_sha256": self.weights_sha256,
            "checkpoint": self.checkpoint,
            "fusion_version": self.fusion_version,
        }

    def save(self, folder: str | Path, min_group: int) -> Path | None:
        """Write ``folder/reference_set.pt``; None (and a log line) with fewer than `min_group` patients."""
        if len(self) < min_group:
            log.info(
                "reference set not written: %d patients, fewer than privacy.min_group=%d",
                len(self),
                min_group,
            )
            return None
        path = Path(folder) / FILENAME
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(self.to_dict(), path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> ReferenceSet:
        data = torch.load(Path(path), map_location="cpu", weights_only=True)
        try:
            return cls(
                [str(p) for p in data["patient_ids"]],
                data["embeddings"],
                dict(data["labels"]),
                str(data["weights_sha256"]),
                str(data.get("checkpoint", "")),
                str(data.get("fusion_version", "")),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ConfigError(f"{path} is not a fusion reference set ({err})") from None

    def check_weights(self, weights_sha256: str, ckpt_path: str | Path, where: str | Path) -> None:
        """ConfigError unless this set was embedded with these weights (`where`: the set's file)."""
        if self.weights_sha256 == weights_sha256:
            return
        built = f"checkpoint {self.checkpoint}" if self.checkpoint else "another checkpoint"
        raise ConfigError(
            f"{where} was built with {built} (weights sha256 {self.weights_sha256[:12]}), not with "
            f"{ckpt_path} (weights sha256 {weights_sha256[:12]}): its embeddings are in another space; pass "
            "ckpt_path= the checkpoint it was built with, or reference=MANIFEST to build one from a labelled "
            "cohort"
        )


def stored_reference_set(ckpt_path: str | Path, checkpoint: dict[str, Any]) -> ReferenceSet:
    """The reference set fusion-train wrote beside `ckpt_path` (`checkpoint`: that file, loaded), checked
    against its weights. ConfigError when there is none (a checkpoint trained before fusion stored one) or it
    was built with other weights."""
    path = Path(ckpt_path).expanduser().parent / FILENAME
    if not path.exists():
        raise ConfigError(
            f"no reference set ({FILENAME}) beside {ckpt_path}: the checkpoint was trained before fusion "
            "stored one (or its training split had fewer than privacy.min_group patients); retrain, or run "
            "fusion-similar with reference=MANIFEST to build one from a labelled cohort"
        )
    reference_set = ReferenceSet.load(path)
    reference_set.check_weights(state_dict_digest(checkpoint["state_dict"]), ckpt_path, path)
    return reference_set


def build_reference_set(
    model: FusionModel,
    heads: dict[str, Head],
    records: Sequence[PatientRecord],
    batches: Iterable[dict[str, Any]],
    weights_sha256: str,
    checkpoint: str = "",
) -> ReferenceSet:
    """Embed every patient of `batches` (the loader of `records`) and keep their labels; patients with none
    of the model's modalities are left out (they have no embedding)."""
    ids, embeddings, has_any = fused_embeddings(model, batches)
    by_id = {r.patient_id: r for r in records}
    kept = [i for i, p in enumerate(ids) if has_any[i] and p in by_id]
    kept_ids = [ids[i] for i in kept]
    labels = label_table([by_id[p] for p in kept_ids], heads)
    width = embeddings.shape[1] if embeddings.dim() == 2 else 0
    rows = embeddings[kept] if kept else torch.zeros(0, width)
    return ReferenceSet(kept_ids, rows, labels, weights_sha256, checkpoint)
