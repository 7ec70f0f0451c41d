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
    if not requested:
        return list(available)
    unknown = [h for h in requested if h not in available]
    if unknown:
        raise ConfigError(
            f"heads={list(requested)}: this checkpoint has no head {', '.join(repr(h) for h in unknown)} "
            f"(it has {', '.join(available)})"
        )
    return [h for h in available if h in requested]


def chosen_modalities(requested: Sequence[str] | None, available: Sequence[str]) -> list[str]:
    """The modalities whose maps and feature attributions are written (all by default); a modality the
    checkpoint was not trained on is a `ConfigError`: it has no encoder to explain."""
    if not requested:
        return list(available)
    unknown = [m for m in requested if m not in available]
    if unknown:
        raise ConfigError(
            f"modalities={list(requested)}: the checkpoint was trained without "
            f"{', '.join(repr(m) for m in unknown)}, so no map or attribution can be made for it "
            f"(it has {', '.join(available)})"
        )
    return [m for m in available if m in requested]


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
