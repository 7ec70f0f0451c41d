"""Patient ids as file names: a page is `<stem>.html`, so an id must not leave the pages folder."""

from __future__ import annotations

import re
from collections.abc import Iterable

from fusion.errors import FusionError

#: characters kept as they are in a file name; any other becomes "_"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
#: the longest stem written (file systems allow 255 bytes; leave room for ".html")
MAX_STEM = 200
#: the index page's own stem
INDEX_STEM = "index"


class PatientIdError(FusionError, ValueError):
    """A patient id that cannot name a page file (a path separator, empty, or clashing with another)."""


def page_stem(patient_id: str) -> str:
    """The file stem of a patient's page: the id, with characters outside letters, digits, `.`, `_` and
    `-` replaced by `_`. An id with a path separator (or `.`/`..`, NUL, empty) is refused, not rewritten:
    an id that looks like a path is a wrong column, not a name to mend."""
    pid = str(patient_id)
    if not pid or pid in {".", ".."} or any(sep in pid for sep in ("/", "\\", "\0")):
        raise PatientIdError(
            f"patient id {pid!r} cannot name a page file (empty, '.', '..' or a path separator / or \\): "
            "fix the manifest's patient_id column"
        )
    stem = _UNSAFE.sub("_", pid)
    if stem.startswith("."):
        stem = "_" + stem[1:]  # no hidden files
    if len(stem) > MAX_STEM:
        raise PatientIdError(
            f"patient id {pid[:40]!r}... is longer than {MAX_STEM} characters: too long for a file name"
        )
    return stem


def page_stems(patient_ids: Iterable[str]) -> dict[str, str]:
    """patient id -> page stem for every id, refusing two ids that would share a file (also on a
    case-insensitive file system) and an id that would overwrite index.html."""
    stems: dict[str, str] = {}
    owner: dict[str, str] = {INDEX_STEM: "the index page"}
    for pid in patient_ids:
        pid = str(pid)
        stem = page_stem(pid)
        other = owner.get(stem.lower())
        if other is not None and other != pid:
            raise PatientIdError(
                f"patient id {pid!r} would be written to {stem}.html, the file of {other}"
                + ("" if other == "the index page" else f" (id {other!r})")
                + ": make the ids differ in letters or digits"
            )
        owner[stem.lower()] = pid
        stems[pid] = stem
    return stems
