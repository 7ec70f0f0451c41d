"""A fusion checkpoint and the trained pipeline it rebuilds, with nothing else needed.

Beside Lightning's weights, a checkpoint holds under ``"fusion"``: the resolved training config (a user
modality passed as an instance is recorded there by its class and constructor arguments), every
modality's fitted state (normalisers, vocabularies), salted hashes of the training split's patient ids
(under ``"training_patients"``, never the ids themselves: `training_patient_hashes`) and, in the
evaluated checkpoint, each head's training-split reference (`Head.fit_reference`, under
``"evaluation_reference"``) and each explained target's mean over the training split (the base value of
explanations, under ``"explain_base"``). All of it is plain values, so checkpoints load with
`torch.load(weights_only=True)`.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from fusion.errors import ConfigError
from fusion.heads.base import Head
from fusion.lit import LitFusion
from fusion.modalities.base import Modality
from fusion.pipeline import build_heads, build_modalities, build_model

REFERENCE_KEY = "evaluation_reference"
#: each explained target's mean over the training split: the base value of explanations (fusion.attribution)
EXPLAIN_BASE_KEY = "explain_base"
TRAINING_PATIENTS_KEY = "training_patients"


def load_checkpoint(ckpt_path: str | Path) -> dict:
    path = Path(ckpt_path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if "fusion" not in checkpoint:
        raise ConfigError(
            f"{path} is not a fusion checkpoint (no 'fusion' entry with config and modality state)"
        )
    return checkpoint


def load_model(checkpoint: dict) -> tuple[DictConfig, dict[str, Modality], dict[str, Head], LitFusion]:
    """The trained pipeline from a loaded checkpoint: config, fitted modalities, heads, weights."""
    cfg = OmegaConf.create(checkpoint["fusion"]["config"])
    modalities = build_modalities(cfg)
    for name, modality in modalities.items():
        modality.load_state_dict(checkpoint["fusion"]["modality_state"].get(name, {}))
    heads = build_heads(cfg)
    lit = LitFusion(build_model(cfg, modalities, heads))
    lit.load_state_dict(checkpoint["state_dict"])
    return cfg, modalities, heads, lit


def store_references(path: str | Path, references: dict[str, dict[str, Any]]) -> None:
    """Add the heads' training-split references (head name -> plain values) to a saved checkpoint."""
    _store(path, REFERENCE_KEY, references)


def stored_references(checkpoint: dict) -> dict[str, dict[str, Any]]:
    """head name -> reference, as `store_references` wrote them (empty for checkpoints without)."""
    return _stored(checkpoint, REFERENCE_KEY)


def store_explain_base(path: str | Path, base: dict[str, dict[str, float]]) -> None:
    """Add the explanations' base values ({head: {target: training-split mean}}) to a saved checkpoint."""
    _store(path, EXPLAIN_BASE_KEY, base)


def stored_explain_base(checkpoint: dict) -> dict[str, dict[str, float]]:
    """What `store_explain_base` wrote (empty for a checkpoint without: written before fusion kept it)."""
    return _stored(checkpoint, EXPLAIN_BASE_KEY)


def _store(path: str | Path, key: str, value: dict[str, Any]) -> None:
    """Add plain values under ``checkpoint["fusion"][key]`` to a saved checkpoint, in place."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    checkpoint.setdefault("fusion", {})[key] = value
    torch.save(checkpoint, path)


def _stored(checkpoint: dict, key: str) -> dict[str, Any]:
    return dict(checkpoint.get("fusion", {}).get(key) or {})


def training_patient_hashes(patient_ids: Iterable[str]) -> dict[str, Any]:
    """What a checkpoint keeps of its training patients: ``{"salt": hex, "sha256": [hex, ...]}``.

    A checkpoint may be shared with another hospital, so it must not carry patient ids in clear. The salt
    is random per run: the same patient gives different digests in different checkpoints, and no table
    of precomputed digests matches them. Whoever holds an id can still test it against the checkpoint
    (that is the point: `seen_in_training`), so ids that are easy to guess (P001, P002, ...) are
    confirmable by guessing; the digests hide the list, not membership. Sorted, so their order tells
    nothing either.
    """
    salt = secrets.token_hex(16)
    return {"salt": salt, "sha256": sorted({_salted_digest(salt, p) for p in patient_ids})}


def seen_in_training(checkpoint: dict, patient_ids: Sequence[str]) -> list[bool] | None:
    """Per patient id, whether it was in the checkpoint's training split; None when the checkpoint
    predates the training-patient hashes (unknown)."""
    stored = checkpoint.get("fusion", {}).get(TRAINING_PATIENTS_KEY)
    if stored is None:
        return None
    digests = set(stored["sha256"])
    return [_salted_digest(stored["salt"], str(p)) in digests for p in patient_ids]


def _salted_digest(salt: str, patient_id: str) -> str:
    return hashlib.sha256(f"{salt}:{patient_id}".encode()).hexdigest()
