"""ImagingModality options: lesion-centred crop from a mask, CT windows as channels, augmentation from
config, encoder weights, and the preprocessing kept in checkpoints. Volumes of known geometry."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from monai.transforms import RandFlip

import fusion
from fusion.data.cohort import Cohort
from fusion.data.synthetic import imaging as synthetic
from fusion.data.synthetic import write_demo_cohort
from fusion.data.synthetic.latent import LATENTS
from fusion.modalities.imaging import ImagingModality
from fusion.modalities.imaging_roi import ImagingRef, crop_around, lesion_centre, read_mask
from fusion.modalities.imaging_transforms import read_volume

WINDOWS = [[-160, 240], [-1000, 200], [-500, 1300]]  # soft tissue, lung, bone


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data.astype(np.float32), affine), str(path))
    return path


def affine(spacing: float, flips: tuple[int, int, int], origin: tuple[float, float, float]) -> np.ndarray:
    out = np.diag([*(f * spacing for f in flips), 1.0])
    out[:3, 3] = origin
    return out


# A 40 mm cube at 1 mm voxels, x running right-to-left (LAS), with a bright 4 mm lesion near one corner.
IMAGE_AFFINE = affine(1.0, (-1, 1, 1), (20.0, -20.0, -20.0))
LESION = (slice(4, 8), slice(30, 34), slice(6, 10))  # voxel box of the lesion in the image grid


def lesion_world_centre() -> np.ndarray:
    centre = np.array([(s.start + s.stop - 1) / 2 for s in LESION])
    return IMAGE_AFFINE[:3, :3] @ centre + IMAGE_AFFINE[:3, 3]


@pytest.fixture(scope="module")
def scan(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The scan, its mask on the same grid, the mask on another grid (2 mm, RAS), an empty and a far mask."""
    root = tmp_path_factory.mktemp("roi")
    image = np.full((40, 40, 40), 1.0)
    image[LESION] = 9.0
    mask = np.zeros((40, 40, 40))
    mask[LESION] = 1.0
    # the same lesion on a coarser RAS grid: voxel (i, j, k) at world origin + 2 mm * (i, j, k)
    coarse_affine = affine(2.0, (1, 1, 1), (-21.0, -21.0, -21.0))
    world = lesion_world_centre()
    ijk = np.round((world - coarse_affine[:3, 3]) / 2.0).astype(int)
    coarse = np.zeros((22, 22, 22))
    coarse[tuple(slice(c - 1, c + 1) for c in ijk)] = 1.0
    far = affine(1.0, (-1, 1, 1), (520.0, -20.0, -20.0))  # 500 mm away: no overlap
    return {
        "image": write_nifti(root / "scan.nii.gz", image, IMAGE_AFFINE),
        "mask": write_nifti(root / "mask.nii.gz", mask, IMAGE_AFFINE),
        "coarse": write_nifti(root / "coarse.nii.gz", coarse, coarse_affine),
        "empty": write_nifti(root / "empty.nii.gz", np.zeros((40, 40, 40)), IMAGE_AFFINE),
        "far": write_nifti(root / "far.nii.gz", mask, far),
    }


def pet(**kwargs) -> ImagingModality:
    """PET kind: intensities just scaled (SUV 10 -> 1), so the lesion (9) and the body (1) stay apart."""
    return ImagingModality("pet", kind="pet", pixdim=(2, 2, 2), spatial_size=(12, 12, 12), **kwargs)


def bright_centroid(item: torch.Tensor) -> np.ndarray:
    return np.argwhere(item[0].numpy() > 0.4).mean(axis=0)


# ----------------------------------------------------------------------------- region of interest
def test_crop_around_puts_the_centre_in_the_middle_and_pads_outside() -> None:
    image = torch.arange(1.0, 1 + 10 * 10 * 10).reshape(1, 10, 10, 10)
    box = crop_around(image, (1.0, 5.0, 8.5), (6, 5, 4))
    assert box.shape == (1, 6, 5, 4)
    # middle (s - 1) / 2: x 1 -> 2.5, rounded to index 2; y 5 -> 2; z 8.5 -> 1.5 exactly (voxels 8, 9 -> 1, 2)
    assert box[0, 2, 2, 1] == image[0, 1, 5, 8] and box[0, 2, 2, 2] == image[0, 1, 5, 9]
    assert (box[0, 0] == 0).all() and (box[0, :, :, 3] == 0).all()  # beyond x = 0 and z = 9: padding
    assert (box[0, 1:, :, :3] > 0).all()
    assert (crop_around(image, (40.0, 5.0, 5.0), (4, 4, 4)) == 0).all()  # box beside the image


@pytest.mark.parametrize("mask", ["mask", "coarse"])
def test_lesion_crop_has_the_lesion_in_the_middle(scan: dict[str, Path], mask: str) -> None:
    item = pet(mask_column="roi").load(ImagingRef(scan["image"], scan[mask]))
    assert item.shape == (1, 12, 12, 12)
    assert np.abs(bright_centroid(item) - 5.5).max() <= 1.0, bright_centroid(item)
    # the same scan without a mask: centre crop, the corner lesion falls outside the 24 mm box
    assert float(pet().load(scan["image"]).max()) < 0.4


def test_lesion_centre_is_the_world_centre_of_the_mask_box(scan: dict[str, Path]) -> None:
    centre = lesion_centre(read_mask(scan["mask"]), scan["mask"], read_volume(scan["image"]), scan["image"])
    np.testing.assert_allclose(centre, lesion_world_centre(), atol=1e-4)


def test_patient_without_mask_gets_the_no_mask_behaviour(scan: dict[str, Path]) -> None:
    modality = pet(mask_column="roi", resize_mode="resize")
    resized = modality.load(ImagingRef(scan["image"], None))
    assert torch.equal(resized, pet(resize_mode="resize").load(scan["image"]))
    assert float(resized.max()) > 0.4  # resize keeps the whole field of view, lesion included


@pytest.mark.parametrize(
    "mask, problem", [("empty", "mask is empty"), ("far", "does not overlap"), ("absent", "does not exist")]
)
def test_bad_mask_is_an_error_naming_the_mask(scan: dict[str, Path], mask: str, problem: str) -> None:
    path = scan.get(mask, scan["image"].parent / "absent.nii.gz")
    with pytest.raises(ValueError, match=problem) as err:
        pet(mask_column="roi").load(ImagingRef(scan["image"], path))
    assert str(path) in str(err.value)


def test_gather_and_check_with_and_without_mask_column(
    scan: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    manifest = tmp_path / "manifest.csv"
    rows = {
        "patient_id": ["A", "B", "C", "D"],
        "ct": [scan["image"], scan["image"], "", scan["image"]],
        "ct_mask": [scan["mask"], "", scan["mask"], tmp_path / "gone.nii.gz"],
    }
    pd.DataFrame(rows).to_csv(manifest, index=False)
    cohort = Cohort.load(manifest)
    assert ImagingModality("ct").gather(cohort)["A"] == scan["image"]  # no mask_column: plain paths
    ct = ImagingModality("ct", mask_column="ct_mask")
    refs = ct.gather(cohort)
    assert refs["A"] == ImagingRef(scan["image"], scan["mask"]) and refs["C"] is None
    assert refs["B"] == ImagingRef(scan["image"], None)
    assert os.fspath(refs["A"]) == str(refs["A"]) == str(scan["image"])  # messages name the scan
    assert ct.check(refs["A"]) == [] and ct.check(refs["B"]) == []
    assert ct.check(refs["D"]) == [f"mask does not exist: {tmp_path / 'gone.nii.gz'}"]
    assert ct.check(ImagingRef(scan["image"], scan["image"].parent)) != []  # a folder is no NIfTI mask
    with caplog.at_level(logging.WARNING):
        refs = ImagingModality("ct", mask_column="lesion").gather(cohort)
    assert refs["A"] == ImagingRef(scan["image"], None) and "no column 'lesion'" in caplog.text


def test_demo_ct_masks_sit_on_the_lesion(tmp_path: Path) -> None:
    manifest = write_demo_cohort(
        tmp_path, n_patients=4, seed=2, volume_shape=(32, 32, 32), tiles_per_patient=(1, 1), n_genes=8
    )
    frame = pd.read_csv(manifest).dropna(subset=["ct"]).set_index("patient_id")
    truth = pd.read_csv(tmp_path / "truth.csv").set_index("patient_id")
    box = ImagingModality(
        "ct", mask_column="ct_mask", ct_window=(0, 300), pixdim=(2, 2, 2), spatial_size=(8,) * 3
    )
    refs = box.gather(Cohort.load(manifest))
    assert len(frame) >= 2 and all(frame["ct_mask"] == [f"ct_mask/{pid}.nii.gz" for pid in frame.index])
    for pid in frame.index:
        ref = refs[pid]
        mask, image = read_mask(ref.mask), read_volume(ref.image)  # NIfTI mask over a DICOM series
        expected = synthetic.draw_lesion(2, int(pid[1:]) - 1, truth.loc[pid, list(LATENTS)].to_dict()).centre
        assert np.linalg.norm(lesion_centre(mask, ref.mask, image, ref.image) - expected) < 1.6
        hu = image[0][torch.as_tensor(mask[0] > 0)]
        assert 90 < float(hu.median()) < 180  # tissue 40 HU + ~90 HU contrast: the mask covers the lesion
        item = box.load(ref)  # soft tissue 40 HU -> 0.13, lesion ~100-130 HU -> 0.33-0.43
        assert float(item[0, 3:5, 3:5, 3:5].mean()) > 0.28  # the middle of the box is lesion


# ----------------------------------------------------------------------------- CT windows
def test_ct_windows_give_one_channel_per_window(tmp_path: Path) -> None:
    hu = np.full((8, 8, 8), -1000.0)
    hu[2:6, 2:6, 2:6] = 40.0
    hu[3:5, 3:5, 3:5] = 1300.0
    path = write_nifti(tmp_path / "ct.nii.gz", hu, np.diag([2.0, 2.0, 2.0, 1.0]))
    kwargs = {"pixdim": (2, 2, 2), "spatial_size": (8, 8, 8)}
    ct = ImagingModality("ct", ct_windows=WINDOWS, **kwargs)
    item = ct.load(path)
    assert ct.in_channels == 3 and item.shape == (3, 8, 8, 8)
    for channel, (low, high) in enumerate(WINDOWS):
        expected = np.clip((np.array([-1000.0, 40.0, 1300.0]) - low) / (high - low), 0, 1)
        got = [float(item[channel, 0, 0, 0]), float(item[channel, 2, 2, 2]), float(item[channel, 4, 4, 4])]
        np.testing.assert_allclose(got, expected, atol=1e-5)
    single = ImagingModality("ct", ct_window=WINDOWS[1], **kwargs).load(path)
    assert torch.allclose(single[0], item[1])
    encoder = ImagingModality(
        "ct", ct_windows=WINDOWS, pixdim=(2, 2, 2), spatial_size=(16, 16, 16)
    ).build_encoder()
    assert encoder(torch.zeros(1, 3, 16, 16, 16)).shape == (1, 64)


def test_ct_windows_with_sequences_are_sequence_major(tmp_path: Path) -> None:
    grid = np.diag([2.0, 2.0, 2.0, 1.0])
    phases = {"arterial": np.full((8, 8, 8), 100.0), "venous": np.full((8, 8, 8), -600.0)}
    for phase, hu in phases.items():
        hu[0, 0, 0] = 3000.0  # not constant
        write_nifti(tmp_path / "p" / f"{phase}.nii.gz", hu, grid)
    ct = ImagingModality(
        "ct",
        sequences=["arterial", "delayed", "venous"],
        ct_windows=WINDOWS[:2],
        pixdim=(2, 2, 2),
        spatial_size=(8, 8, 8),
    )
    item = ct.load(tmp_path / "p")
    assert ct.in_channels == 6 and item.shape == (6, 8, 8, 8)
    expected = []
    for hu in (100.0, None, -600.0):  # delayed is absent: both its windows are zero
        expected += [
            0.0 if hu is None else min(max((hu - lo) / (hi - lo), 0.0), 1.0) for lo, hi in WINDOWS[:2]
        ]
    np.testing.assert_allclose(item[:, 4, 4, 4].numpy(), expected, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, problem",
    [
        ({"kind": "mri", "ct_windows": WINDOWS}, "for kind 'ct'"),
        ({"ct_windows": [[300, -200]]}, r"ct_windows\[0\]"),
        ({"ct_windows": []}, "at least one"),
        ({"augmentations": [{"prob": 0.5}]}, r"augmentations\[0\] has no _target_"),
        (
            {"augmentations": [{"_target_": "monai.transforms.RandFlap"}]},
            r"augmentations\[0\] cannot be built",
        ),
        ({"augmentations": [RandFlip(), 3]}, r"augmentations\[1\] is not a transform"),
        ({"encoder_kwargs": {"pretrained": "x.pt"}}, "not inside encoder_kwargs"),
    ],
)
def test_bad_options_are_rejected(kwargs: dict, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        ImagingModality("ct", **kwargs)


# ----------------------------------------------------------------------------- augmentation
def _runs(modality: ImagingModality, item: torch.Tensor, seed: int = 0) -> list[torch.Tensor]:
    torch.manual_seed(seed)
    return [modality.transform(item, train=True) for _ in range(4)]


def test_yaml_augmentation_list_is_the_built_in_default() -> None:
    shipped = fusion.compose(["modality=[ct,mri,pet]"]).modality
    specs = shipped.ct.augmentations
    item = torch.rand(1, 16, 16, 16)
    from_yaml = _runs(ImagingModality("ct", augmentations=specs), item)
    built_in = _runs(ImagingModality("ct"), item)
    assert all(torch.equal(a, b) for a, b in zip(from_yaml, built_in, strict=True))
    for name in ("mri", "pet"):
        assert shipped[name].augmentations == specs


def test_configured_augmentations_replace_the_default_and_stay_seeded() -> None:
    item = torch.rand(2, 8, 8, 8)
    flip = ImagingModality("ct", augmentations=[{"_target_": "monai.transforms.RandFlip", "prob": 1.0}])
    assert all(torch.equal(out, item.flip(1, 2, 3)) for out in _runs(flip, item))
    noisy = ImagingModality("ct", augmentations=[RandFlip(prob=0.5, spatial_axis=0)])  # already built
    first, again = _runs(noisy, item, seed=1), _runs(noisy, item, seed=1)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert any(torch.equal(o, item) for o in first) and any(not torch.equal(o, item) for o in first)
    assert all(torch.equal(o, item) for o in _runs(ImagingModality("ct", augmentations=[]), item))
    assert flip.transform(item, train=False) is item  # train only


# ----------------------------------------------------------------------------- checkpoint state
def test_state_covers_windows_and_lesion_crop_but_not_augmentation() -> None:
    state = ImagingModality("ct", ct_windows=WINDOWS, mask_column="ct_mask").state_dict()
    ImagingModality("ct", ct_windows=WINDOWS, mask_column="lesion", augmentations=[]).load_state_dict(state)
    with pytest.raises(ValueError, match="ct_windows"):
        ImagingModality("ct", ct_windows=WINDOWS[:2], mask_column="ct_mask").load_state_dict(state)
    with pytest.raises(ValueError, match="lesion_crop"):
        ImagingModality("ct", ct_windows=WINDOWS).load_state_dict(state)
    # a checkpoint from before these options (no such keys) fits the default config
    old = {"preprocessing": {k: v for k, v in ImagingModality("ct").state_dict()["preprocessing"].items()}}
    del old["preprocessing"]["ct_windows"], old["preprocessing"]["lesion_crop"]
    ImagingModality("ct").load_state_dict(old)


def test_pretrained_and_freeze_reach_the_encoder(tmp_path: Path) -> None:
    source = ImagingModality("ct", embed_dim=8).build_encoder()
    torch.save(
        {"state_dict": {f"model.encoders.ct.{k}": v for k, v in source.state_dict().items()}}, tmp_path / "w"
    )
    ct = ImagingModality(
        "ct", embed_dim=8, pretrained=tmp_path / "w", pretrained_prefix="model.encoders.ct.", freeze=True
    )
    encoder = ct.build_encoder()
    for a, b in zip(encoder.state_dict().values(), source.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert [n for n, p in encoder.named_parameters() if p.requires_grad] == ["head.weight", "head.bias"]
    # restored from a fusion checkpoint: its weights win, the pretrained file is not even read
    gone = ImagingModality("ct", pretrained=tmp_path / "absent.pt")
    with pytest.raises(FileNotFoundError, match="absent.pt"):
        gone.build_encoder()
    gone.load_state_dict(gone.state_dict())
    assert gone.build_encoder() is not None
