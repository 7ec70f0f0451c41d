"""What a fusion-explain folder holds for one patient (README "Explaining a prediction"): the modality
contributions, the table features' attributions and the map PNGs (`tiles/`, `imaging/`)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from fusion.errors import FusionError

CONTRIBUTIONS = "modality_contributions.csv"
FEATURES = "features.csv"
#: the folders of map PNGs, with what their images show
MAP_FOLDERS = {"tiles": "whole-slide tiles", "imaging": "imaging"}


class ExplanationsError(FusionError, ValueError):
    """An explanations folder that is not one (missing, or a table without its columns)."""


@dataclass
class Explanations:
    """A fusion-explain folder's tables (empty when a file is absent) and its map PNGs per patient."""

    folder: Path
    contributions: pd.DataFrame
    features: pd.DataFrame
    maps: dict[str, list[Path]] = field(default_factory=dict)  # patient id -> PNGs, tiles then imaging

    @classmethod
    def load(cls, folder: str | Path, patient_ids: Iterable[str]) -> Explanations:
        folder = Path(folder)
        if not folder.is_dir():
            raise ExplanationsError(
                f"explanations folder {folder} does not exist (run fusion-explain out=DIR first)"
            )
        ids = [str(p) for p in patient_ids]
        contributions = _table(
            folder / CONTRIBUTIONS, ("patient_id", "head", "target", "modality", "contribution")
        )
        features = _table(
            folder / FEATURES, ("patient_id", "head", "target", "modality", "feature", "attribution")
        )
        by_folder = [_pngs_by_patient(folder / sub, set(ids)) for sub in MAP_FOLDERS]
        maps = {pid: [png for pngs in by_folder for png in pngs.get(pid, [])] for pid in ids}
        return cls(folder, contributions, features, maps)

    def of(self, table: pd.DataFrame, patient_id: str) -> pd.DataFrame:
        """A table's rows of one patient."""
        return table[table["patient_id"] == patient_id] if len(table) else table


def _table(path: Path, required: tuple[str, ...]) -> pd.DataFrame:
    if not path.is_file():
        return pd.DataFrame(columns=list(required))
    frame = pd.read_csv(path, dtype={"patient_id": str})
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ExplanationsError(f"{path} has no column {', '.join(missing)}: not a fusion-explain table")
    return frame


def _pngs_by_patient(folder: Path, patient_ids: set[str]) -> dict[str, list[Path]]:
    """`<id>.png` and `<id>_*.png` per patient; a file goes to the longest id it starts with (P1_b's
    maps are not P1's)."""
    found: dict[str, list[Path]] = {}
    if not folder.is_dir():
        return found
    for png in sorted(folder.glob("*.png")):
        stem = png.stem
        cuts = [len(stem)] + [i for i in range(len(stem) - 1, 0, -1) if stem[i] == "_"]
        owner = next((stem[:cut] for cut in cuts if stem[:cut] in patient_ids), None)
        if owner is not None:
            found.setdefault(owner, []).append(png)
    return found
