"""What a user asked fusion-explain for, checked against the checkpoint and the manifest before any work:
each unknown head, modality or patient is a one-line error naming it and what there is instead."""

from __future__ import annotations

from collections.abc import Sequence

from fusion.errors import ConfigError
from fusion.io.tables import closest_name

#: at most this many unknown patient ids are named in the error
NAMED_IDS = 5


def chosen_heads(requested: Sequence[str] | None, available: Sequence[str]) -> list[str]:
    """The heads to explain: all of the model's by default; an unknown name is a `ConfigError`."""
    return _chosen(requested, available, "heads", "this checkpoint has no head {}")


def chosen_modalities(requested: Sequence[str] | None, available: Sequence[str]) -> list[str]:
    """The modalities whose maps and feature attributions are written (all by default); a modality the
    checkpoint was not trained on is a `ConfigError`: it has no encoder to explain."""
    return _chosen(
        requested,
        available,
        "modalities",
        "the checkpoint was trained without {}, so no map or attribution can be made for it",
    )


def _chosen(requested: Sequence[str] | None, available: Sequence[str], key: str, problem: str) -> list[str]:
    """`requested` in the checkpoint's order (all of `available` when none); unknown names: `problem`."""
    if not requested:
        return list(available)
    unknown = [name for name in requested if name not in available]
    if unknown:
        names = ", ".join(repr(name) for name in unknown)
        raise ConfigError(f"{key}={list(requested)}: {problem.format(names)} (it has {', '.join(available)})")
    return [name for name in available if name in requested]


def chosen_patients(requested: Sequence[str] | None, manifest_ids: Sequence[str], manifest: str) -> list[str]:
    """The patients to explain, in manifest order (all by default); ids not in the manifest are an error."""
    if not requested:
        return list(manifest_ids)
    wanted = [str(p).strip() for p in requested]
    known = set(manifest_ids)
    unknown = [p for p in wanted if p not in known]
    if unknown:
        named = []
        for pid in unknown[:NAMED_IDS]:
            close = closest_name(pid, manifest_ids)
            named.append(f"'{pid}'" + (f" (closest: '{close}')" if close else ""))
        more = f" and {len(unknown) - NAMED_IDS} more" if len(unknown) > NAMED_IDS else ""
        raise ConfigError(f"patients: {', '.join(named)}{more} not in the manifest {manifest}")
    chosen = set(wanted)
    return [p for p in manifest_ids if p in chosen]
