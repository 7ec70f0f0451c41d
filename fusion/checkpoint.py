"""A fusion checkpoint and the trained pipeline it rebuilds, with nothing else needed.

Beside Lightning's weights, a checkpoint holds under ``"fusion"``: the resolved training config (a user
modality passed as an instance is recorded there by its class and constructor arguments), every
modality's fitted state (normalisers, vocabularies), salted hashes of the training split's patient ids
(under ``"training_patients"``, never the ids themselves: `training_patient_hashes`) and, in the
evaluated checkpoint, each head's training-split reference (`Head.fit_reference`, under
``"evaluation_reference"``) and each explained target's mean over the training split (the base value of
explanations, under ``"explain_base"``), and where it came from (`fusion.provenance.run_provenance`,
under ``"provenance"``: versions, config and input digests, split sizes). All of it is plain values, so
checkpoints load with `torch.load(weights_only=True)`. `load_model` refuses, in one line saying why, a
checkpoint whose preprocessing or model this installation cannot rebuild.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf

from fusion.errors import ConfigError
from fusion.heads.base import Head
from fusion.lit import LitFusion
from fusion.modalities.base import Modality
from fusion.pipeline import build_heads, build_modalities, build_model
from fusion.version import __version__

T = TypeVar("T")

REFERENCE_KEY = "evaluation_reference"
#: each explained target's mean over the training split: the base value of explanations (fusion.attribution)
EXPLAIN_BASE_KEY = "explain_base"
TRAINING_PATIENTS_KEY = "training_patients"
#: where the model came from (`fusion.provenance.run_provenance`): versions, config and input digests
PROVENANCE_KEY = "provenance"


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
    """The trained pipeline from a loaded checkpoint: config, fitted modalities, heads, weights.

    A checkpoint whose stored preprocessing or model this installation cannot rebuild (a modality or head
    class that no longer imports or accepts its stored arguments, fitted state its modality rejects,
    weights that do not fit the rebuilt model) is refused with a one-line `ConfigError` naming the part
    and the cause, and what to do: retrain, or install the fusion version that wrote it."""
    cfg = OmegaConf.create(checkpoint["fusion"]["config"])
    remedy = _remedy(checkpoint)
    modalities: dict[str, Modality] = {}
    for name in cfg.get("modality") or {}:
        modalities[name] = _rebuilt(f"modality '{name}'", remedy, _build_one, cfg, "modality", name)
        _rebuilt(
            f"modality '{name}': its stored fitted state (normalisers, vocabularies)",
            remedy,
            modalities[name].load_state_dict,
            checkpoint["fusion"]["modality_state"].get(name, {}),
        )
    heads: dict[str, Head] = {}
    for name in cfg.get("head") or {}:
        heads[name] = _rebuilt(f"head '{name}'", remedy, _build_one, cfg, "head", name)
    if not modalities or not heads:  # the builders' own message: nothing selected
        modalities, heads = modalities or build_modalities(cfg), heads or build_heads(cfg)
    model = _rebuilt("the model (fuser and encoders)", remedy, build_model, cfg, modalities, heads)
    lit = LitFusion(model)
    problem = weights_mismatch(lit.state_dict(), checkpoint["state_dict"])
    if problem:
        raise ConfigError(
            f"the checkpoint's weights do not fit the model this fusion rebuilds: {problem}; {remedy}"
        )
    lit.load_state_dict(checkpoint["state_dict"])
    return cfg, modalities, heads, lit


def _build_one(cfg: DictConfig, group: str, name: str) -> Any:
    """The modality or head `name` of `cfg`, built alone (so a failure names it)."""
    one = cfg.copy()
    one[group] = {name: cfg[group][name]}
    return (build_modalities if group == "modality" else build_heads)(one)[name]


def _rebuilt(part: str, remedy: str, build: Callable[..., T], *args: Any) -> T:
    """`build(*args)`, or a one-line ConfigError: `part` of the checkpoint cannot be rebuilt, why, remedy."""
    try:
        return build(*args)
    except Exception as err:  # any failure of a user's or an older class: the message says which part
        raise ConfigError(f"checkpoint cannot be rebuilt: {part}: {_cause(err)}; {remedy}") from err


def _cause(err: BaseException) -> str:
    """The root of `err` on one line: Hydra's instantiation errors wrap the class's own (``__cause__``)."""
    while isinstance(err, InstantiationException) and err.__cause__ is not None:
        err = err.__cause__
    return f"{type(err).__name__}: {' '.join(str(err).split())}"


def _remedy(checkpoint: dict) -> str:
    """What to do about a checkpoint this installation cannot rebuild, with the version that wrote it."""
    stored = checkpoint.get("fusion", {}).get(PROVENANCE_KEY) or {}
    version, commit = stored.get("fusion_version"), stored.get("git_commit")
    if version:
        wrote = f"fusion {version}" + (f" (git commit {commit[:12]})" if commit else "")
        return f"retrain with this fusion ({__version__}), or predict with {wrote}, which wrote it"
    return (
        f"retrain with this fusion ({__version__}), or predict with the fusion version that wrote it "
        "(the checkpoint predates fusion's provenance record, so it does not say which)"
    )


def weights_mismatch(expected: Mapping[str, torch.Tensor], stored: Mapping[str, Any]) -> str | None:
    """Why `stored` weights cannot load into a model whose state is `expected` (missing or unexpected
    entries, other shapes), naming the first one and the modality or head it belongs to; None: they fit."""
    missing = [k for k in expected if k not in stored]
    unexpected = [k for k in stored if k not in expected]
    shapes = [
        k
        for k in expected
        if k in stored and hasattr(stored[k], "shape") and tuple(stored[k].shape) != tuple(expected[k].shape)
    ]
    for keys, what in ((missing, "missing"), (unexpected, "unexpected"), (shapes, "of another shape")):
        if keys:
            first = keys[0]
            detail = (
                f" (stored {tuple(stored[first].shape)}, expected {tuple(expected[first].shape)})"
                if what == "of another shape"
                else ""
            )
            return f"{len(keys)} weight(s) {what}, first '{first}'{_part_of(first)}{detail}"
    return None


def _part_of(key: str) -> str:
    """' (modality 'ct')' for an encoder's weight, ' (head 'grade')' for a head's; '' otherwise."""
    parts = key.split(".")
    for group, label in (("encoders", "modality"), ("heads", "head")):
        if group in parts and parts.index(group) + 1 < len(parts):
            return f" ({label} '{parts[parts.index(group) + 1]}')"
    return ""


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
