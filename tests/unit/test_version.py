"""One version source: the distribution metadata, written by pip from pyproject.toml."""

from importlib import metadata
from pathlib import Path

import pytest

import fusion
from fusion import version
from fusion.data import disk_cache

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_version_is_the_installed_metadata_and_pyproject_version() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    declared = tomllib.loads(PYPROJECT.read_text())["project"]["version"]
    assert fusion.__version__ == metadata.version("fusion-oncology") == declared
    assert disk_cache.__version__ is fusion.__version__  # the disk-cache key uses the same value


def test_source_tree_fallback_reads_the_project_table(tmp_path: Path) -> None:
    assert version.version_from_source_tree(PYPROJECT) == fusion.__version__
    other = tmp_path / "pyproject.toml"
    other.write_text(
        '[tool.x]\nversion = "9"\n\n[project]\nname = "x"\nversion = "1.2.3"\n\n[tool.y]\nversion = "8"\n'
    )
    assert version.version_from_source_tree(other) == "1.2.3"
    assert version.version_from_source_tree(tmp_path / "absent.toml") == version.UNKNOWN
