"""The package version, from one source: the ``version`` in pyproject.toml.

Installed (``pip install`` or ``pip install -e``), it is read from the distribution's metadata,
which pip wrote from pyproject.toml. Run straight from a source tree that was never installed
(``PYTHONPATH=.``), there is no metadata: it is then read from the pyproject.toml beside the package.
This module imports nothing from `fusion`, so any layer may import it (`fusion.data.disk_cache`
puts it in its cache keys).
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

DISTRIBUTION = "fusion-oncology"
#: the version when neither the metadata nor a pyproject.toml can be found
UNKNOWN = "0+unknown"


def version_from_source_tree(pyproject: Path | None = None) -> str:
    """``[project] version`` of the pyproject.toml next to the `fusion` package (`UNKNOWN` if absent)."""
    pyproject = pyproject or Path(__file__).resolve().parent.parent / "pyproject.toml"
    try:
        text = pyproject.read_text(encoding="utf-8")
    except OSError:
        return UNKNOWN
    section = re.search(r"^\[project\][ \t]*$(.*?)(?=^\[|\Z)", text, re.MULTILINE | re.DOTALL)
    found = section and re.search(r"^version\s*=\s*[\"']([^\"']+)[\"']", section.group(1), re.MULTILINE)
    return found.group(1) if found else UNKNOWN


try:
    __version__ = metadata.version(DISTRIBUTION)
except metadata.PackageNotFoundError:
    __version__ = version_from_source_tree()
