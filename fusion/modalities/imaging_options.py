"""Parsing the imaging modality's settings: Hydra containers to plain values, windows, augmentations.

Kept apart from `ImagingModality` so the class reads as the pipeline it is; each function raises a
ValueError that names the setting.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import hydra
from monai.transforms import Compose

from fusion.modalities.imaging_transforms import augmentation


def plain(value: Any) -> Any:
    """Hydra hands over DictConfig/ListConfig; turn them into dicts/lists before they reach MONAI."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [plain(v) for v in value]
    return value


def triple(value: Any, what: str, cast: type) -> tuple:
    values = tuple(cast(v) for v in plain(value))
    if len(values) != 3 or any(v <= 0 for v in values):
        raise ValueError(f"{what} must be 3 positive numbers, got {list(values)}")
    return values


def parse_window(value: Any, what: str) -> tuple[float, float]:
    window = tuple(float(v) for v in plain(value))
    if len(window) != 2 or window[0] >= window[1]:
        raise ValueError(f"{what} must be [low, high] with low < high, got {list(window)}")
    return window


def parse_ct_windows(value: Any, kind: str, where: str) -> list[list[float]] | None:
    """`ct_windows` as a list of [low, high] (None when not given); CT only."""
    if value is None:
        return None
    if kind != "ct":
        raise ValueError(f"{where}: ct_windows is for kind 'ct', not '{kind}'")
    windows = plain(value)
    if not windows:
        raise ValueError(f"{where}: ct_windows must hold at least one [low, high] (or be null)")
    return [list(parse_window(w, f"{where}: ct_windows[{i}]")) for i, w in enumerate(windows)]


def build_augmentations(specs: Sequence[Any] | None, where: str) -> Compose:
    """The training augmentation: the built-in list for None, else the given transforms in order."""
    if specs is None:
        return augmentation()
    transforms = []
    for i, spec in enumerate(specs):
        if isinstance(spec, Mapping):
            if "_target_" not in spec:
                raise ValueError(f"{where}: augmentations[{i}] has no _target_: {plain(spec)}")
            try:
                spec = hydra.utils.instantiate(plain(spec), _convert_="all")
            except Exception as err:  # a typo in a target or an argument: say which entry
                raise ValueError(f"{where}: augmentations[{i}] cannot be built: {err}") from err
        if not callable(spec):
            raise ValueError(f"{where}: augmentations[{i}] is not a transform: {spec!r}")
        transforms.append(spec)
    return Compose(transforms)
