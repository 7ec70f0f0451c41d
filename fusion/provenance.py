"""Where a result came from: the provenance record of checkpoints, metrics.json, cv_metrics.json and the
``<predictions>.provenance.json`` sidecar of every predictions*.csv.

`run_provenance` returns plain JSON values: the fusion version and the git commit of its source tree
(None for an installed package), the versions of the libraries a result depends on, a SHA-256 of the
resolved config (canonical JSON), of the manifest file's content, and one digest over the input files
(relative path, size and modification time of each: see `files_fingerprint`), the patient count of
each split, the survival heads' time units, and the time the record was made (UTC).

No patient value, id or date is in it: the manifest and the input files appear only as digests and counts.
A predictions file names its model by `model_id`, the SHA-256 of the checkpoint file (`file_sha256`).

This module imports nothing of fusion but `fusion.version`, so any layer may use it.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
import platform
import subprocess
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from fusion.version import __version__

#: the libraries whose versions a result depends on (distribution names)
LIBRARIES = ("torch", "lightning", "monai")
#: how long `git rev-parse` may take before the commit is left out
GIT_TIMEOUT_S = 2.0
_SOURCE_ROOT = Path(__file__).resolve().parent.parent


def run_provenance(
    cfg_resolved: Mapping[str, Any] | None,
    manifest: str | Path | None,
    input_files: Iterable[str | Path] = (),
    n_patients: Mapping[str, int] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The provenance record of a run (JSON-able). `extra`: further plain values (e.g. ``model_id``).

    `cfg_resolved`: the resolved config as plain values; `manifest`: the manifest file; `input_files`:
    every file the run read for its patients (`referenced_files`); `n_patients`: split -> patient count.
    Never raises for a missing file or git: the field is then None.
    """
    manifest_path = Path(manifest) if manifest is not None else None
    record: dict[str, Any] = {
        "fusion_version": __version__,
        "git_commit": git_commit(),
        "python": platform.python_version(),
        **{name: library_version(name) for name in LIBRARIES},
        "config_sha256": config_sha256(cfg_resolved) if cfg_resolved is not None else None,
        "manifest_sha256": _file_sha256_or_none(manifest_path),
        "input_files": files_fingerprint(input_files, manifest_path.parent if manifest_path else None),
        "n_patients": dict(n_patients or {}),
        "time_units": time_units(cfg_resolved or {}),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    record.update(extra)
    return record


def config_sha256(cfg_resolved: Mapping[str, Any]) -> str:
    """SHA-256 of the config as canonical JSON (sorted keys, no whitespace; other values as text)."""
    text = json.dumps(cfg_resolved, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's content (the `model_id` of a checkpoint), read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _file_sha256_or_none(path: Path | None) -> str | None:
    try:
        return file_sha256(path) if path is not None else None
    except OSError:
        return None


def files_fingerprint(files: Iterable[str | Path], root: str | Path | None = None) -> dict[str, Any]:
    """``{"n_files", "sha256", "method"}``: one SHA-256 over each file's path (relative to `root` when
    under it), size and modification time (ns), sorted by path; a folder counts as every file in it.

    Size + mtime, not content: the inputs are CT/MRI/PET volumes and slide features, often gigabytes, and
    hashing them on every run would cost as much as reading the cohort; the disk cache keys its entries
    on the same two. A file touched or copied without its times changes the digest although its
    content did not: compare ``n_files`` and the manifest digest then. The paths themselves (they can
    hold patient ids) never leave this function, only the digest and the count.
    """
    base = Path(os.path.abspath(root)) if root is not None else None
    rows = sorted({row for path in files for row in _stat_rows(Path(path), base)})
    digest = hashlib.sha256(json.dumps(rows, separators=(",", ":")).encode()).hexdigest()
    return {"n_files": len(rows), "sha256": digest, "method": "path+size+mtime"}


def _stat_rows(path: Path, base: Path | None) -> list[tuple[str, int, int]]:
    path = path.expanduser()
    files = [Path(d, n) for d, _, names in os.walk(path) for n in names] if path.is_dir() else [path]
    rows = []
    for file in files:
        try:
            st = file.stat()
        except OSError:  # a missing input: the run reports it; the digest still differs
            rows.append((_relative(file, base), -1, -1))
            continue
        rows.append((_relative(file, base), st.st_size, st.st_mtime_ns))
    return rows


def _relative(file: Path, base: Path | None) -> str:
    absolute = Path(os.path.abspath(file))  # no symlink resolution: a stat per file is enough
    if base is not None and absolute.is_relative_to(base):
        return absolute.relative_to(base).as_posix()
    return absolute.as_posix()


def referenced_files(values: Iterable[Any]) -> list[Path]:
    """Every path (``os.PathLike``) inside `values`: patients' modality references (dataclasses, mappings,
    lists, tuples of paths) and tables; plain strings and other values are not paths."""
    found: list[Path] = []
    stack = list(values)
    while stack:
        value = stack.pop()
        if isinstance(value, os.PathLike):
            found.append(Path(os.fspath(value)))
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            stack.extend(getattr(value, f.name) for f in dataclasses.fields(value))
        elif isinstance(value, Mapping):
            stack.extend(value.values())
        elif isinstance(value, list | tuple | set):
            stack.extend(value)
    return found


def time_units(cfg_resolved: Mapping[str, Any]) -> dict[str, str]:
    """head name -> its ``time_unit`` (survival heads), from the resolved config."""
    heads = cfg_resolved.get("head") or {}
    return {
        str(node.get("name", name)): str(node["time_unit"])
        for name, node in heads.items()
        if isinstance(node, Mapping) and node.get("time_unit") is not None
    }


def library_version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def git_commit(root: Path = _SOURCE_ROOT) -> str | None:
    """The commit of the source tree fusion runs from: `git rev-parse HEAD` (at most `GIT_TIMEOUT_S`), else
    read from ``.git/HEAD``; None for an installed package or whenever either fails."""
    if not (root / ".git").exists():
        return None
    try:
        done = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            check=False,
        )
        if done.returncode == 0 and done.stdout.strip():
            return done.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return _head_from_files(root / ".git")


def _head_from_files(git: Path) -> str | None:
    """HEAD's commit from the files of a checkout's .git folder (a loose or packed ref); None otherwise."""
    try:
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head or None
        ref = head[5:]
        loose = git / ref
        if loose.exists():
            return loose.read_text().strip()
        for line in (git / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split()[0]
    except OSError:
        pass
    return None
