"""CT, MRI and PET volumes of one synthetic patient, rendered from one physical scene.

The scene lives in patient world coordinates (RAS, millimetres): an elliptic body with a
subcutaneous fat shell, a spine posteriorly and one spherical lesion. Each modality samples it on
its own voxel grid through its own affine (CT: anisotropic DICOM grid in LPS; MRI: 2 mm, x
flipped; PET: 4 mm, half the voxels, x and y flipped), so the lesion is at the same place in the
world in every modality and a reader that ignores orientation or spacing is caught.

What the lesion looks like follows the hidden state (`latent.SIGNAL_DESIGN`): its size follows
aggressiveness, MRI T1 enhancement proliferation, MRI T2 signal sensitivity, PET uptake
proliferation, each with its own noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import cast

import nibabel as nib
import numpy as np
from scipy.special import expit

from fusion.data.synthetic.latent import SITES, patient_rng

#: voxel sizes at 32 voxels per axis; scaled by 32 / n so the field of view stays the same
CT_SPACING_MM = (1.5, 1.5, 3.0)
MRI_SPACING_MM = 2.0
PET_SPACING_MM = 4.0  # PET has half the voxels per axis
REFERENCE_VOXELS = 32
BODY_SEMI_AXES_MM = (22.0, 17.0)
SPINE_CENTRE_MM, SPINE_RADIUS_MM = (0.0, -12.0), 3.5
EDGE_MM = 0.8

HU_AIR, HU_FAT, HU_TISSUE, HU_BONE = -1000.0, -100.0, 40.0, 700.0
SITE_HU_OFFSET = dict(zip(SITES, (0.0, -8.0, 6.0, 12.0), strict=True))
SITE_MRI_SCALE = dict(zip(SITES, (1.0, 0.85, 1.15, 0.95), strict=True))
#: MRI signal of (air, tissue, fat, bone) per sequence, arbitrary units
MRI_TISSUE = {
    "t1": (0.0, 420.0, 800.0, 80.0),
    "t2": (0.0, 330.0, 620.0, 60.0),
    "flair": (0.0, 300.0, 520.0, 60.0),
}
MRI_SEQUENCES = tuple(MRI_TISSUE)


@dataclass(frozen=True)
class Lesion:
    """The tumour as every imaging modality sees it (world RAS mm and per-modality contrast)."""

    centre: tuple[float, float, float]
    radius_mm: float
    ct_contrast_hu: float
    t1_enhancement: float
    t2_ratio: float
    oedema_mm: float
    suv_max: float


def draw_lesion(seed: int, index: int, latents: dict[str, float]) -> Lesion:
    """The lesion of one patient: each imaging feature follows one latent variable, plus noise."""
    rng = patient_rng(seed, index, "imaging")
    z = rng.standard_normal(6)
    centre = (float(rng.uniform(-6, 6)), float(rng.uniform(-3, 3)), float(rng.uniform(-10, 10)))
    a, p, s = latents["aggressiveness"], latents["proliferation"], latents["sensitivity"]
    return Lesion(
        centre=centre,
        radius_mm=float(3.0 + 10.0 * expit(1.3 * (a + 0.35 * z[0]))),
        ct_contrast_hu=float(90.0 + 10.0 * z[1]),
        t1_enhancement=float(0.15 + 0.9 * expit(1.1 * (0.7 * p + 0.7 * z[2]))),
        t2_ratio=float(1.1 + 1.2 * expit(1.1 * (0.75 * s + 0.65 * z[3]))),
        oedema_mm=float(1.0 + 5.0 * expit(a + 0.7 * z[4])),
        suv_max=float(1.8 + 9.0 * expit(1.2 * (p + 0.45 * z[5]))),
    )


def _grid_axes(shape: tuple[int, ...], reference_spacing: tuple[float, ...], voxels: int) -> np.ndarray:
    return np.array([sp * voxels / n for sp, n in zip(reference_spacing, shape, strict=True)])


def nifti_affine(shape: tuple[int, int, int], spacing: np.ndarray, flips: tuple[int, int, int]) -> np.ndarray:
    """Voxel -> world RAS affine with the grid centred on the origin; `flips` are +-1 per axis."""
    affine = np.diag([*(f * s for f, s in zip(flips, spacing, strict=True)), 1.0])
    affine[:3, 3] = -affine[:3, :3] @ ((np.asarray(shape) - 1) / 2.0)
    return affine


def world_coordinates(shape: tuple[int, int, int], affine: np.ndarray) -> np.ndarray:
    """(3, *shape) world coordinates of every voxel centre."""
    ijk = np.stack(np.meshgrid(*(np.arange(n, dtype=float) for n in shape), indexing="ij"))
    return np.einsum("ab,b...->a...", affine[:3, :3], ijk) + affine[:3, 3].reshape(3, 1, 1, 1)


def _soft_inside(signed_mm: np.ndarray) -> np.ndarray:
    """Partial-volume weight from a signed distance (positive inside)."""
    return expit(signed_mm / EDGE_MM)


def scene_weights(world: np.ndarray, lesion: Lesion) -> dict[str, np.ndarray]:
    """Soft tissue-class weights (body, fat, bone, lesion, oedema, lesion distance) at world points."""
    x, y, z = world
    ax, ay = BODY_SEMI_AXES_MM
    radial = np.sqrt((x / ax) ** 2 + (y / ay) ** 2)
    body = _soft_inside((1.0 - radial) * ay)
    fat = body * _soft_inside((radial - 0.82) * ay)
    bone = _soft_inside(SPINE_RADIUS_MM - np.hypot(x - SPINE_CENTRE_MM[0], y - SPINE_CENTRE_MM[1]))
    cx, cy, cz = lesion.centre
    dist = np.sqrt((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2)
    tumour = body * _soft_inside(lesion.radius_mm - dist) * (1.0 - bone)
    oedema = body * _soft_inside(lesion.radius_mm + lesion.oedema_mm - dist) * (1.0 - bone) - tumour
    return {"body": body, "fat": fat, "bone": bone, "lesion": tumour, "oedema": oedema, "dist": dist}


def _blend(values: tuple[float, float, float, float], w: dict[str, np.ndarray]) -> np.ndarray:
    air, tissue, fat, bone = values
    out = air * (1 - w["body"]) + w["body"] * (tissue * (1 - w["fat"]) + fat * w["fat"])
    return out * (1 - w["bone"]) + bone * w["bone"]


# ----------------------------------------------------------------------------- CT
def ct_geometry(shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(spacing (col, row, slice) mm, LPS position of the first voxel) of the CT grid."""
    spacing = _grid_axes(shape, CT_SPACING_MM, REFERENCE_VOXELS)
    origin = -spacing * (np.asarray(shape) - 1) / 2.0
    return spacing, origin


def ct_affine(shape: tuple[int, int, int]) -> np.ndarray:
    """Voxel -> world RAS affine of the CT grid: the DICOM series' LPS geometry, turned to RAS."""
    spacing, origin = ct_geometry(shape)
    lps_to_ras = np.diag([-1.0, -1.0, 1.0, 1.0])
    grid = np.diag([*spacing, 1.0])
    grid[:3, 3] = origin
    return lps_to_ras @ grid


def render_ct(shape: tuple[int, int, int], lesion: Lesion, site: str, rng: np.random.Generator) -> np.ndarray:
    """Hounsfield units on the (columns, rows, slices) grid: index i -> patient left, j -> posterior."""
    w = scene_weights(world_coordinates(shape, ct_affine(shape)), lesion)
    hu = _blend((HU_AIR, HU_TISSUE, HU_FAT, HU_BONE), w)
    hu += w["lesion"] * (HU_TISSUE + lesion.ct_contrast_hu - hu)
    hu += w["body"] * SITE_HU_OFFSET[site] + rng.normal(0.0, 10.0, size=shape)
    return hu


# ----------------------------------------------------------------------------- MRI / PET
def mri_affine(shape: tuple[int, int, int]) -> np.ndarray:
    return nifti_affine(shape, _grid_axes(shape, (MRI_SPACING_MM,) * 3, REFERENCE_VOXELS), (-1, 1, 1))


def pet_shape(shape: tuple[int, int, int]) -> tuple[int, int, int]:
    return cast(tuple[int, int, int], tuple(max(2, n // 2) for n in shape))  # as many sizes as `shape`


def pet_affine(shape: tuple[int, int, int]) -> np.ndarray:
    """Affine of the PET grid (`shape` is the PET shape itself)."""
    spacing = _grid_axes(shape, (PET_SPACING_MM,) * 3, REFERENCE_VOXELS // 2)
    return nifti_affine(shape, spacing, (-1, -1, 1))


def render_mri(
    shape: tuple[int, int, int], lesion: Lesion, site: str, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """T1 (post-contrast), T2 and FLAIR with Rician noise; the same lesion in three contrasts."""
    w = scene_weights(world_coordinates(shape, mri_affine(shape)), lesion)
    tissue = {seq: values[1] for seq, values in MRI_TISSUE.items()}
    lesion_signal = {
        "t1": tissue["t1"] * (1.0 + lesion.t1_enhancement),
        "t2": tissue["t2"] * lesion.t2_ratio,
        "flair": tissue["flair"] * 1.7,
    }
    oedema_signal = {"t1": tissue["t1"] * 0.9, "t2": tissue["t2"] * 1.25, "flair": tissue["flair"] * 1.35}
    out = {}
    for seq in MRI_SEQUENCES:
        img = _blend(MRI_TISSUE[seq], w)
        img += w["oedema"] * (oedema_signal[seq] - img) + w["lesion"] * (lesion_signal[seq] - img)
        img *= SITE_MRI_SCALE[site]
        noise = rng.normal(0.0, 12.0, size=(2, *shape))
        # integer-valued, as scanners store magnitude images
        out[seq] = np.rint(np.sqrt((img + noise[0]) ** 2 + noise[1] ** 2))
    return out


def render_pet(shape: tuple[int, int, int], lesion: Lesion, rng: np.random.Generator) -> np.ndarray:
    """SUV on the coarse PET grid: low body uptake and a blurred hot lesion (PSF ~ Gaussian)."""
    w = scene_weights(world_coordinates(shape, pet_affine(shape)), lesion)
    suv = _blend((0.0, 0.9, 0.4, 1.2), w)
    sigma = 0.55 * lesion.radius_mm + 2.0
    hot = np.exp(-(w["dist"] ** 2) / (2.0 * sigma**2)) * w["body"]
    suv = suv * (1 - hot) + lesion.suv_max * hot
    suv *= 1.0 + 0.12 * rng.standard_normal(shape)
    return np.clip(suv, 0.0, None)


def ct_lesion_mask(shape: tuple[int, int, int], lesion: Lesion) -> np.ndarray:
    """The tumour as a 0/1 mask on the CT grid: voxels that are at least half lesion (partial volume)."""
    w = scene_weights(world_coordinates(shape, ct_affine(shape)), lesion)
    return (w["lesion"] >= 0.5).astype(np.uint8)


def write_ct_mask(path: Path, shape: tuple[int, int, int], lesion: Lesion) -> bool:
    """The CT lesion mask as a uint8 NIfTI in the CT's world geometry; False (nothing written) when the
    lesion covers no voxel centre, as a tiny lesion on a coarse grid may: no mask rather than an empty one."""
    mask = ct_lesion_mask(shape, lesion)
    if not mask.any():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    save_nifti(path, mask, ct_affine(shape), "fusion synthetic CT lesion mask", dtype=np.uint8)
    return True


def save_nifti(
    path: Path, data: np.ndarray, affine: np.ndarray, description: str, dtype: type = np.float32
) -> None:
    """NIfTI-1 (float32 unless told) with scanner-coordinate qform and sform, millimetre units."""
    img = nib.Nifti1Image(data.astype(dtype), affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.header.set_xyzt_units("mm", "sec")
    img.header["descrip"] = description.encode()[:79]
    nib.save(img, path)


def write_mri(
    folder: Path, shape: tuple[int, int, int], lesion: Lesion, site: str, rng: np.random.Generator
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    affine = mri_affine(shape)
    for seq, img in render_mri(shape, lesion, site, rng).items():
        save_nifti(folder / f"{seq}.nii.gz", img, affine, f"fusion synthetic MRI {seq.upper()}")


def write_pet(path: Path, shape: tuple[int, int, int], lesion: Lesion, rng: np.random.Generator) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    coarse = pet_shape(shape)
    save_nifti(path, render_pet(coarse, lesion, rng), pet_affine(coarse), "fusion synthetic PET SUV")
