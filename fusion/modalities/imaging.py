"""CT, MRI and PET: 3D scans from NIfTI files or DICOM series, through MONAI, to one embedding each.

`load` reads a scan, reorients it to RAS, resamples it to `pixdim` mm, scales intensities by
kind (CT parse_window(s), MRI z-score, PET SUV clip) and brings it to `spatial_size`: a box centred on the
lesion when the patient has a tumour mask (`mask_column`, see `imaging_roi`), else a centre crop/pad
or a resize. It returns a plain float32 tensor (C, D, H, W): no MetaTensor, so no DICOM header value
(patient name, IDs, dates, institution) ever leaves `load` -- not into caches, batches, checkpoints or logs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

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
from fusion.modalities.batch_memory import stack
from fusion.modalities.imaging_batch_augment import BatchAugment, seeded_call
from fusion.modalities.imaging_grid import fitted_affine
from fusion.modalities.imaging_options import (
    build_augmentations,
    parse_ct_windows,
    parse_window,
    plain,
    triple,
)
from fusion.modalities.imaging_roi import (
    ImagingRef,
    check_mask,
    crop_around,
    lesion_centre,
    read_mask,
    world_to_voxel,
)
from fusion.modalities.imaging_transforms import (
    KINDS,
    apply_intensity,
    dicom_files,
    find_sequence,
    intensity_transform,
    is_nifti,
    nifti_header_problems,
    read_volume,
)
from fusion.nn.volume import VOLUME_ENCODERS, build_volume_encoder

RESIZE_MODES = ("crop", "resize")
#: preprocessing keys added after the first release, and what checkpoints without them were made with
_PREPROCESSING_DEFAULTS = {"ct_windows": None, "lesion_crop": False}

log = logging.getLogger(__name__)


class ImagingModality(Modality):
    """A 3D scan per patient (CT, MRI or PET); see the module docstring for the preprocessing.

    Args:
        name, column, on_error: see `Modality`.
        kind: ``ct`` | ``mri`` | ``pet``; selects the intensity handling.
        sequences: channel names. When set, the patient's path is a folder holding
            ``<seq>.nii.gz``, ``<seq>.nii`` or a ``<seq>/`` DICOM folder per channel; a missing
            sequence becomes a zero channel. None: the path is one scan (a single channel).
        series: when a DICOM folder holds several series, the one whose SeriesDescription matches this
            regular expression (case-insensitive); None: the folder must hold exactly one series.
        mask_column: manifest column with a NIfTI tumour mask per patient (voxels > 0), in the scan's
            world geometry; the `spatial_size` box is then centred on the lesion (at true mm scale,
            whatever `resize_mode`). An empty cell (or no such column) gives the no-mask behaviour.
        pixdim: target voxel spacing in mm (RAS order).
        spatial_size: output grid (D, H, W) in voxels.
        ct_window: HU range mapped to [0, 1] (clipped), CT only.
        ct_windows: several HU ranges, one channel each (e.g. soft tissue, lung, bone), replacing
            `ct_window`; with `sequences`, each sequence gives its windows in turn.
        pet_suv_max: SUV mapped to 1 (clipped to [0, pet_suv_max]), PET only.
        resize_mode: ``crop`` (centre crop/pad, keeps mm scale) or ``resize`` (squash whole field of view).
        augment: random augmentation during training (off: none at all).
        augmentations: the training augmentation, MONAI array transforms applied in order to the
            (C, D, H, W) tensor: built transforms or ``{_target_: ..., **kwargs}`` dicts. None: the
            built-in list (`imaging_transforms.augmentation`). Seeded from torch on every call.
        encoder, encoder_kwargs: network from `fusion.nn.volume` (``cnn``, ``resnet18``, ``vit``, ...).
        embed_dim: size of the embedding (`out_dim`).
        pretrained, pretrained_prefix, pretrained_skip, freeze: encoder weights from a local file and
            freezing all but the final projection; see `fusion.nn.volume.load_pretrained`.
        gradient_checkpointing: recompute the encoder's block activations in backward (less GPU memory
            for large volumes, ~30% more compute); see `fusion.nn.volume.enable_gradient_checkpointing`.
    """

    def __init__(
        self,
        name: str,
        column: str | None = None,
        on_error: str = "raise",
        kind: str = "ct",
        sequences: Sequence[str] | None = None,
        series: str | None = None,
        mask_column: str | None = None,
        pixdim: Sequence[float] = (3.0, 3.0, 3.0),
        spatial_size: Sequence[int] = (32, 32, 32),
        ct_window: Sequence[float] = (-200.0, 300.0),
        ct_windows: Sequence[Sequence[float]] | None = None,
        pet_suv_max: float = 10.0,
        resize_mode: str = "crop",
        augment: bool = True,
        augmentations: Sequence[Any] | None = None,
        encoder: str = "cnn",
        encoder_kwargs: Mapping[str, Any] | None = None,
        embed_dim: int = 64,
        pretrained: str | Path | None = None,
        pretrained_prefix: str | None = None,
        pretrained_skip: Sequence[str] | None = None,
        freeze: bool = False,
        gradient_checkpointing: bool = False,
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
        self.sequences = None if sequences is None else [str(s) for s in plain(sequences)]
        if self.sequences is not None and (
            not self.sequences or len(set(self.sequences)) < len(self.sequences)
        ):
            raise ValueError(f"{where}: sequences must be distinct names, got {self.sequences}")
        self.kind = kind
        self.series = series
        self.mask_column = None if mask_column in (None, "") else str(mask_column)
        self.pixdim = triple(pixdim, f"{where}: pixdim", float)
        self.spatial_size = triple(spatial_size, f"{where}: spatial_size", int)
        self.ct_window = parse_window(ct_window, f"{where}: ct_window")
        self.ct_windows = parse_ct_windows(ct_windows, kind, where)
        self.pet_suv_max = float(pet_suv_max)
        if self.pet_suv_max <= 0:
            raise ValueError(f"{where}: pet_suv_max must be > 0, got {self.pet_suv_max}")
        self.resize_mode = resize_mode
        self.augment = bool(augment)
        self.encoder = encoder
        self.encoder_kwargs = dict(plain(encoder_kwargs or {}))
        self.embed_dim = int(embed_dim)
        if self.embed_dim <= 0:
            raise ValueError(f"{where}: embed_dim must be > 0, got {self.embed_dim}")
        self.pretrained = None if pretrained in (None, "") else str(pretrained)
        self.pretrained_prefix = pretrained_prefix or None
        self.pretrained_skip = [str(k) for k in plain(pretrained_skip or [])]
        self.freeze = bool(freeze)
        self.gradient_checkpointing = bool(gradient_checkpointing)
        clash = {"pretrained", "pretrained_prefix", "pretrained_skip", "freeze", "gradient_checkpointing"}
        clash &= set(self.encoder_kwargs)
        if clash:
            raise ValueError(f"{where}: give {sorted(clash)} as modality keys, not inside encoder_kwargs")
        self._weights_from_checkpoint = False  # set by load_state_dict: the checkpoint has the weights

        # Centre crop/pad by default: after resampling to `pixdim` the voxels already have the right
        # physical size, so cropping keeps anatomy at true scale (demo volumes are about the target
        # size anyway), whereas `Resize` would squash a whole-body scan into the same 32 voxels.
        # Padding value 0 is background for every kind (air after the CT window, MRI/PET zero).
        self._fit_to_size = (
            ResizeWithPadOrCrop(self.spatial_size)
            if resize_mode == "crop"
            else Resize(self.spatial_size, mode="trilinear")
        )
        self._geometry = Compose(
            [
                Orientation(axcodes="RAS", labels=None),  # labels from the MetaTensor space (RAS)
                # float32 resampling (MONAI's default is float64: 2x the memory, same result to ~1e-6)
                Spacing(pixdim=self.pixdim, mode="bilinear", dtype=torch.float32),  # type: ignore[arg-type]  # MONAI's DtypeLike omits torch dtypes, which Spacing accepts
            ]
        )
        windows: Sequence[Sequence[float]] = self.ct_windows or [self.ct_window]
        self._intensity = [intensity_transform(kind, w, self.pet_suv_max) for w in windows]
        self._match = ResampleToMatch(mode="bilinear", padding_mode="zeros")
        self._augment = build_augmentations(augmentations, where)
        self._batch_augment = BatchAugment(self._augment.transforms)

    # ----------------------------------------------------------------- cohort side
    @property
    def in_channels(self) -> int:
        return len(self._intensity) * (1 if self.sequences is None else len(self.sequences))

    def gather(self, cohort: Any) -> dict[str, Any]:
        """Scan paths; with `mask_column`, `ImagingRef(scan, mask or None)` per patient who has a scan."""
        images = cohort.paths(self.column)
        if self.mask_column is None:
            return images
        if self.mask_column not in cohort.manifest.columns:
            log.warning(
                "modality '%s': the manifest has no column '%s' (mask_column): no scan gets a lesion crop",
                self.name,
                self.mask_column,
            )
        masks = cohort.paths(self.mask_column)
        return {pid: None if img is None else ImagingRef(img, masks[pid]) for pid, img in images.items()}

    def check(self, ref: Any) -> list[str]:
        """Cheap checks: the paths exist, DICOM folders are not empty, NIfTI headers are 3D."""
        if ref is None:
            return []
        if isinstance(ref, ImagingRef):
            return self.check(ref.image) + ([] if ref.mask is None else check_mask(ref.mask))
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
        return self.load_on_grid(ref)[0]

    def load_on_grid(self, ref: Any) -> tuple[torch.Tensor, np.ndarray]:
        """`load`'s tensor and the voxel -> world (RAS mm) affine of its grid (`imaging_grid.fitted_affine`),
        for maps drawn back onto the scan; for sequences, the grid of the first present one."""
        path, mask = (ref.image, ref.mask) if isinstance(ref, ImagingRef) else (Path(ref), None)
        volumes = self._read(Path(path))
        present = list(volumes)
        reference = volumes[present[0]]
        # Sequences may come on different grids: resample each onto the first one's, in world coordinates.
        aligned = [reference] + [self._align(volumes[i], reference) for i in present[1:]]
        centre = None if mask is None else lesion_centre(read_mask(Path(mask)), Path(mask), reference, path)
        # One scan is used as read (no copy); the scans read are let go before resampling (peak memory).
        stacked = aligned[0]
        if len(aligned) > 1:
            stacked = MetaTensor(torch.cat([v.as_tensor() for v in aligned]), meta=dict(reference.meta))
        del volumes, reference, aligned
        image = self._geometry(stacked)
        del stacked
        affine = image.affine
        data = image.as_tensor().float()
        del image
        # (present, windows, X, Y, Z): every window of every sequence, sequence-major
        data = apply_intensity(self._intensity, data).flatten(0, 1)
        box = None if centre is None else world_to_voxel(centre, affine)
        grid = fitted_affine(np.asarray(affine), data.shape[1:], self.spatial_size, self.resize_mode, box)
        if box is None:
            data = torch.as_tensor(self._fit_to_size(data))
        else:
            data = crop_around(data, box, self.spatial_size)
        windows = len(self._intensity)
        out = torch.zeros((self.in_channels // windows, windows, *self.spatial_size), dtype=torch.float32)
        out[present] = data.float().reshape(len(present), windows, *self.spatial_size)
        return out.flatten(0, 1), grid  # absent sequences stay zero channels

    def _read(self, path: Path) -> dict[int, MetaTensor]:
        """Sequence index -> scan as read; one entry (0) without `sequences`."""
        if self.sequences is None:
            return {0: read_volume(path, series=self.series, kind=self.kind)}
        if not path.is_dir():
            raise ValueError(f"'{path}': expected a folder holding sequences {self.sequences}")
        found = {i: find_sequence(path, seq) for i, seq in enumerate(self.sequences)}
        volumes = {
            i: read_volume(scan, series=self.series, kind=self.kind)
            for i, scan in found.items()
            if scan is not None
        }
        if not volumes:
            raise ValueError(
                f"'{path}': none of the sequences {self.sequences} found "
                "(looked for <seq>.nii.gz, <seq>.nii and <seq>/ DICOM folders)"
            )
        return volumes

    def _align(self, volume: MetaTensor, reference: MetaTensor) -> MetaTensor:
        if volume.shape == reference.shape and np.allclose(volume.affine, reference.affine, atol=1e-4):
            return volume
        # MONAI types a transform's output Tensor: a MetaTensor in gives a MetaTensor out
        return cast(MetaTensor, self._match(volume, img_dst=reference))

    def transform(self, item: torch.Tensor, train: bool) -> torch.Tensor:
        """Random augmentation when training with `augment`; identity otherwise."""
        if not (train and self.augment):
            return item
        return seeded_call(self._augment, item).float()  # seeded from torch: reproducible runs

    def augment_batch(self, data: torch.Tensor) -> torch.Tensor:
        """The training augmentation of collated rows (n, C, D, H, W), batched on their device.

        Used instead of `transform(train=True)` when ``data.augment_on`` resolves to ``device``;
        see `imaging_batch_augment` for what matches MONAI's per-sample transforms. Overwrites `data`.
        """
        return self._batch_augment(data) if self.augment else data

    def collate(self, items: list[torch.Tensor]) -> torch.Tensor:
        """(n, C, D, H, W) from the n patients who have this modality (in shared memory in a worker)."""
        return stack(items)

    # ----------------------------------------------------------------- model side
    def build_encoder(self) -> nn.Module:
        """The encoder; `pretrained` is not read after `load_state_dict`: the checkpoint's weights win."""
        pretrained = None if self._weights_from_checkpoint else self.pretrained
        return build_volume_encoder(
            self.encoder,
            self.in_channels,
            self.embed_dim,
            self.spatial_size,
            pretrained=pretrained,
            pretrained_prefix=self.pretrained_prefix,
            pretrained_skip=self.pretrained_skip,
            freeze=self.freeze,
            gradient_checkpointing=self.gradient_checkpointing,
            **self.encoder_kwargs,
        )

    @property
    def out_dim(self) -> int:
        return self.embed_dim

    # ----------------------------------------------------------------- fitted state
    def _preprocessing(self) -> dict[str, Any]:
        """Everything that decides what `load` makes of a file (augmentation is train-only: not here)."""
        return {
            "kind": self.kind,
            "series": self.series,
            "sequences": self.sequences,
            "pixdim": list(self.pixdim),
            "spatial_size": list(self.spatial_size),
            "ct_window": None if self.ct_windows else list(self.ct_window),
            "ct_windows": self.ct_windows,
            "pet_suv_max": self.pet_suv_max,
            "resize_mode": self.resize_mode,
            "lesion_crop": self.mask_column is not None,
        }

    def cache_key(self) -> str:
        """Only the preprocessing decides what `load` returns: a new encoder keeps the disk cache."""
        return json.dumps(self._preprocessing(), sort_keys=True)

    def state_dict(self) -> dict[str, Any]:
        """Nothing is fitted; the preprocessing is stored so a checkpoint never gets inputs made otherwise."""
        return {"preprocessing": self._preprocessing()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Check the checkpoint's preprocessing against this config; its weights then replace `pretrained`."""
        self._weights_from_checkpoint = True
        saved = state.get("preprocessing")
        if saved is None:
            return
        saved = {**_PREPROCESSING_DEFAULTS, **saved}
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
        return nifti_header_problems(path)
    if not pydicom.misc.is_dicom(str(path)):
        return [f"unsupported file type (expected .nii, .nii.gz or a DICOM series folder): {path}"]
    return []
