"""CT, MRI and PET: 3D scans from NIfTI files or DICOM series, through MONAI, to one embedding each.

`load` reads a scan, reorients it to RAS, resamples it to `pixdim` mm, scales intensities by
kind (CT window, MRI z-score, PET SUV clip) and centre-crops/pads it to `spatial_size`. It returns
a plain float32 tensor (C, D, H, W): no MetaTensor, so no DICOM header value (patient name, IDs,
dates, institution) ever leaves `load` -- not into caches, batches, checkpoints or logs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pydicom
import torch
from monai.data import MetaTensor
from monai.transforms import (
    Compose,
    Orientation,
    ResampleToMatch,
    Resize,
    ResizeWithPadOrCrop,
    Spacing,
)
from torch import nn

from fusion.modalities.base import Modality
from fusion.modalities.imaging_transforms import (
    KINDS,
    augmentation,
    dicom_files,
    find_sequence,
    intensity_transform,
    is_nifti,
    read_volume,
)
from fusion.nn.volume import VOLUME_ENCODERS, build_volume_encoder

RESIZE_MODES = ("crop", "resize")


def _plain(value: Any) -> Any:
    """Hydra hands over DictConfig/ListConfig; turn them into dicts/lists before they reach MONAI."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [_plain(v) for v in value]
    return value


def _triple(value: Any, what: str, cast: type) -> tuple:
    values = tuple(cast(v) for v in _plain(value))
    if len(values) != 3 or any(v <= 0 for v in values):
        raise ValueError(f"{what} must be 3 positive numbers, got {list(values)}")
    return values


class ImagingModality(Modality):
    """A 3D scan per patient (CT, MRI or PET); see the module docstring for the preprocessing.

    Args:
        name, column, on_error: see `Modality`.
        kind: ``ct`` | ``mri`` | ``pet``; selects the intensity handling.
        sequences: channel names. When set, the patient's path is a folder holding
            ``<seq>.nii.gz``, ``<seq>.nii`` or a ``<seq>/`` DICOM folder per channel; a missing
            sequence becomes a zero channel. None: the path is one scan (a single channel).
        pixdim: target voxel spacing in mm (RAS order).
        spatial_size: output grid (D, H, W) in voxels.
        ct_window: HU range mapped to [0, 1] (clipped), CT only.
        pet_suv_max: SUV mapped to 1 (clipped to [0, pet_suv_max]), PET only.
        resize_mode: ``crop`` (centre crop/pad, keeps mm scale) or ``resize`` (squash whole field of view).
        augment: random flips/affine/noise/intensity scaling during training.
        encoder, encoder_kwargs: network from `fusion.nn.volume` (``cnn``, ``resnet18``, ``vit``, ...).
        embed_dim: size of the embedding (`out_dim`).
    """

    def __init__(
        self,
        name: str,
        column: str | None = None,
        on_error: str = "raise",
        kind: str = "ct",
        sequences: Sequence[str] | None = None,
        pixdim: Sequence[float] = (3.0, 3.0, 3.0),
        spatial_size: Sequence[int] = (32, 32, 32),
        ct_window: Sequence[float] = (-200.0, 300.0),
        pet_suv_max: float = 10.0,
        resize_mode: str = "crop",
        augment: bool = True,
        encoder: str = "cnn",
        encoder_kwargs: Mapping[str, Any] | None = None,
        embed_dim: int = 64,
    ):
        super().__init__(name=name, column=column, on_error=on_error)
        where = f"modality '{name}'"
        if kind not in KINDS:
            raise ValueError(f"{where}: kind must be one of {list(KINDS)}, got '{kind}'")
        if resize_mode not in RESIZE_MODES:
            raise ValueError(f"{where}: resize_mode must be one of {list(RESIZE_MODES)}, got '{resize_mode}'")
        if encoder not in VOLUME_ENCODERS:
            raise ValueError(f"{where}: unknown encoder '{encoder}'; known: {sorted(VOLUME_ENCODERS)}")
        if isinstance(sequences, str):
            sequences = [sequences]
        self.sequences = None if sequences is None else [str(s) for s in _plain(sequences)]
        if self.sequences is not None and (
            not self.sequences or len(set(self.sequences)) < len(self.sequences)
        ):
            raise ValueError(f"{where}: sequences must be distinct names, got {self.sequences}")
        self.kind = kind
        self.pixdim = _triple(pixdim, f"{where}: pixdim", float)
        self.spatial_size = _triple(spatial_size, f"{where}: spatial_size", int)
        self.ct_window = tuple(float(v) for v in _plain(ct_window))
        if len(self.ct_window) != 2 or self.ct_window[0] >= self.ct_window[1]:
            raise ValueError(
                f"{where}: ct_window must be [low, high] with low < high, got {list(self.ct_window)}"
            )
        self.pet_suv_max = float(pet_suv_max)
        if self.pet_suv_max <= 0:
            raise ValueError(f"{where}: pet_suv_max must be > 0, got {self.pet_suv_max}")
        self.resize_mode = resize_mode
        self.augment = bool(augment)
        self.encoder = encoder
        self.encoder_kwargs = dict(_plain(encoder_kwargs or {}))
        self.embed_dim = int(embed_dim)
        if self.embed_dim <= 0:
            raise ValueError(f"{where}: embed_dim must be > 0, got {self.embed_dim}")

        # Centre crop/pad by default: after resampling to `pixdim` the voxels already have the right
        # physical size, so cropping keeps anatomy at true scale (demo volumes are about the target
        # size anyway), whereas `Resize` would squash a whole-body scan into the same 32 voxels.
        # Padding value 0 is background for every kind (air after the CT window, MRI/PET zero).
        fit_to_size = (
            ResizeWithPadOrCrop(self.spatial_size)
            if resize_mode == "crop"
            else Resize(self.spatial_size, mode="trilinear")
        )
        self._preprocess = Compose(
            [
                Orientation(axcodes="RAS", labels=None),  # labels from the MetaTensor space (RAS)
                Spacing(pixdim=self.pixdim, mode="bilinear"),
                intensity_transform(kind, self.ct_window, self.pet_suv_max),
                fit_to_size,
            ]
        )
        self._match = ResampleToMatch(mode="bilinear", padding_mode="zeros")
        self._augment = augmentation()

    # ----------------------------------------------------------------- cohort side
    @property
    def in_channels(self) -> int:
        return 1 if self.sequences is None else len(self.sequences)

    def check(self, ref: Any) -> list[str]:
        """Cheap checks: the path exists, DICOM folders are not empty, NIfTI headers are 3D."""
        if ref is None:
            return []
        path = Path(ref)
        if not path.exists():
            return [f"path does not exist: {path}"]
        if self.sequences is None:
            return _check_scan(path)
        if not path.is_dir():
            return [f"expected a folder holding sequences {self.sequences}, got a file: {path}"]
        found = [p for p in (find_sequence(path, s) for s in self.sequences) if p is not None]
        if not found:
            return [
                f"folder holds none of the sequences {self.sequences} (.nii.gz, .nii, DICOM folder): {path}"
            ]
        return [problem for scan in found for problem in _check_scan(scan)]

    # ----------------------------------------------------------------- data side
    def load(self, ref: Any) -> torch.Tensor:
        """Read and preprocess one scan -> float32 (C, D, H, W); ValueError naming the file if broken."""
        path = Path(ref)
        if self.sequences is None:
            volumes = {0: read_volume(path)}
        else:
            if not path.is_dir():
                raise ValueError(f"'{path}': expected a folder holding sequences {self.sequences}")
            found = {i: find_sequence(path, seq) for i, seq in enumerate(self.sequences)}
            volumes = {i: read_volume(scan) for i, scan in found.items() if scan is not None}
            if not volumes:
                raise ValueError(
                    f"'{path}': none of the sequences {self.sequences} found "
                    "(looked for <seq>.nii.gz, <seq>.nii and <seq>/ DICOM folders)"
                )
        present = list(volumes)
        reference = volumes[present[0]]
        # Sequences may come on different grids: resample each onto the first one's, in world coordinates.
        aligned = [reference] + [self._align(volumes[i], reference) for i in present[1:]]
        stacked = MetaTensor(torch.cat([v.as_tensor() for v in aligned]), meta=dict(reference.meta))
        image = self._preprocess(stacked)
        data = (image.as_tensor() if isinstance(image, MetaTensor) else torch.as_tensor(image)).float()
        out = torch.zeros((self.in_channels, *self.spatial_size), dtype=torch.float32)
        out[present] = data  # absent sequences stay zero channels
        return out

    def _align(self, volume: MetaTensor, reference: MetaTensor) -> MetaTensor:
        if volume.shape == reference.shape and np.allclose(volume.affine, reference.affine, atol=1e-4):
            return volume
        return self._match(volume, img_dst=reference)

    def transform(self, item: torch.Tensor, train: bool) -> torch.Tensor:
        """Random augmentation when training with `augment`; identity otherwise."""
        if not (train and self.augment):
            return item
        # Seed MONAI's own RNGs from torch's, which Lightning seeds and DataLoader varies per worker:
        # runs are reproducible and workers do not repeat each other's augmentations.
        self._augment.set_random_state(seed=int(torch.randint(0, 2**31 - 1, ()).item()))
        out = self._augment(item)
        return (out.as_tensor() if isinstance(out, MetaTensor) else torch.as_tensor(out)).float()

    def collate(self, items: list[torch.Tensor]) -> torch.Tensor:
        """(n, C, D, H, W) from the n patients who have this modality."""
        return torch.stack(items)

    # ----------------------------------------------------------------- model side
    def build_encoder(self) -> nn.Module:
        return build_volume_encoder(
            self.encoder, self.in_channels, self.embed_dim, self.spatial_size, **self.encoder_kwargs
        )

    @property
    def out_dim(self) -> int:
        return self.embed_dim

    # ----------------------------------------------------------------- fitted state
    def _preprocessing(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "sequences": self.sequences,
            "pixdim": list(self.pixdim),
            "spatial_size": list(self.spatial_size),
            "ct_window": list(self.ct_window),
            "pet_suv_max": self.pet_suv_max,
            "resize_mode": self.resize_mode,
        }

    def state_dict(self) -> dict[str, Any]:
        """Nothing is fitted; the preprocessing is stored so a checkpoint never gets inputs made otherwise."""
        return {"preprocessing": self._preprocessing()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = state.get("preprocessing")
        if saved is None:
            return
        current = self._preprocessing()
        differ = {k: (saved.get(k), v) for k, v in current.items() if saved.get(k) != v}
        if differ:
            details = ", ".join(f"{k}: checkpoint {a!r} vs config {b!r}" for k, (a, b) in differ.items())
            raise ValueError(
                f"modality '{self.name}': preprocessing differs from the checkpoint's ({details})"
            )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, kind={self.kind!r}, sequences={self.sequences}, "
            f"pixdim={list(self.pixdim)}, spatial_size={list(self.spatial_size)}, encoder={self.encoder!r})"
        )


def _check_scan(path: Path) -> list[str]:
    """Cheap problems with one scan path (reads at most a file header)."""
    if path.is_dir():
        return [] if dicom_files(path) else [f"DICOM folder is empty: {path}"]
    if is_nifti(path):
        try:
            shape = nib.load(str(path)).shape
        except Exception as err:  # a corrupt header is a broken file, whatever nibabel raises
            return [f"cannot read NIfTI header ({type(err).__name__}: {err}): {path}"]
        if len(shape) != 3 and not (len(shape) == 4 and shape[3] == 1):
            return [f"expected a 3D volume, NIfTI header has shape {tuple(shape)}: {path}"]
        return []
    if not pydicom.misc.is_dicom(str(path)):
        return [f"unsupported file type (expected .nii, .nii.gz or a DICOM series folder): {path}"]
    return []
