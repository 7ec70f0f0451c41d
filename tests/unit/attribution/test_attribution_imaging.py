"""3D saliency maps: computed on the model's grid, drawn back onto the scan's own grid by world coordinates.

The scans are tiny real files: a NIfTI with an oblique, x-flipped, anisotropic affine and a coronal DICOM
series (whose world geometry the tests compute from the DICOM tags themselves). Each holds a bright marker
at a known world point P. The model's encoder reads only a small box of its input grid around the marker,
so the map must peak at P in world coordinates once written in the scan's geometry.
"""

from __future__ import annotations

import copy
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Resize, ResizeWithPadOrCrop
from monai.visualize import OcclusionSensitivity
from PIL import Image
from pydicom.data import get_testdata_file
from torch import nn

from fusion.attribution.context import PatientContext
from fusion.attribution.imaging import ImagingMapError, imaging_saliency, write_saliency_maps
from fusion.attribution.imaging_geometry import resample
from fusion.attribution.imaging_occlusion import box_starts, occlusion_saliency
from fusion.attribution.imaging_png import saliency_peak
from fusion.fusers import TransformerFuser
from fusion.heads import GradeHead, SurvivalHead
from fusion.modalities.imaging import ImagingModality
from fusion.modalities.imaging_grid import fitted_affine
from fusion.modalities.imaging_roi import ImagingRef
from fusion.model import FusionModel

PIXDIM, SIZE = (3.0, 3.0, 3.0), (8, 8, 8)
TISSUE_HU, MARKER_HU = 40.0, 250.0
DIM = 8


def oblique_affine() -> np.ndarray:
    """Voxel -> RAS: x flipped, 2 x 3 x 2.5 mm, turned 10 degrees about z, origin off the world centre."""
    angle = np.deg2rad(10.0)
    rotation = np.array(
        [[np.cos(angle), -np.sin(angle), 0.0], [np.sin(angle), np.cos(angle), 0.0], [0.0, 0.0, 1.0]]
    )
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([-2.0, 3.0, 2.5])
    affine[:3, 3] = [14.0, -16.0, -13.0]
    return affine


def marked(shape: tuple[int, int, int], voxel: tuple[int, int, int]) -> np.ndarray:
    """Tissue everywhere, a 3-voxel marker cube centred on `voxel`."""
    hu = np.full(shape, TISSUE_HU, dtype=np.float32)
    hu[tuple(slice(v - 1, v + 2) for v in voxel)] = MARKER_HU
    return hu


def write_nifti_scan(folder: Path) -> tuple[Path, np.ndarray]:
    """(path, marker world point) of a (14, 11, 12) CT NIfTI on `oblique_affine`."""
    voxel, affine = (4, 3, 8), oblique_affine()
    path = folder / "scan.nii.gz"
    nib.save(nib.Nifti1Image(marked((14, 11, 12), voxel), affine), str(path))
    return path, affine[:3, :3] @ np.asarray(voxel, float) + affine[:3, 3]


#: coronal slices: rows run feet-ward, columns to patient left; the slice normal is +y (posterior) in LPS
ROW_DIR, COL_DIR = np.array([1.0, 0.0, 0.0]), np.array([0.0, 0.0, -1.0])
ROW_SPACING, COL_SPACING, SLICE_SPACING = 2.5, 2.0, 3.0  # PixelSpacing = [row spacing, column spacing]
DICOM_ORIGIN = np.array([-12.0, -10.0, 14.0])  # LPS position of the first slice's first pixel


def dicom_world(column: float, row: float, k: float) -> np.ndarray:
    """RAS world point of voxel (column, row, slice k), from the DICOM definition (PS3.3 C.7.6.2.1.1)."""
    normal = np.cross(ROW_DIR, COL_DIR)
    lps = (
        DICOM_ORIGIN
        + k * SLICE_SPACING * normal
        + column * COL_SPACING * ROW_DIR
        + row * ROW_SPACING * COL_DIR
    )
    return lps * np.array([-1.0, -1.0, 1.0])


def write_dicom_scan(folder: Path) -> tuple[Path, np.ndarray]:
    """(folder, marker world point) of a coronal CT series: 12 columns x 10 rows x 9 slices."""
    template = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    columns, rows, slices, voxel = 12, 10, 9, (8, 3, 6)
    hu = marked((columns, rows, slices), voxel)
    folder.mkdir(parents=True)
    normal = np.cross(ROW_DIR, COL_DIR)
    for k in range(slices):
        ds = copy.deepcopy(template)
        ds.Rows, ds.Columns = rows, columns
        ds.PixelSpacing = [ROW_SPACING, COL_SPACING]
        ds.ImageOrientationPatient = [*ROW_DIR, *COL_DIR]
        ds.ImagePositionPatient = [float(v) for v in DICOM_ORIGIN + k * SLICE_SPACING * normal]
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = f"1.2.3.4.{k + 1}"
        ds.InstanceNumber = k + 1
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        ds.PixelData = np.ascontiguousarray(
            (hu[:, :, k].T + 1024).astype(np.int16)
        ).tobytes()  # rows x columns
        ds.save_as(folder / f"slice{(5 * k + 2) % 9}.dcm")
    return folder, dicom_world(*voxel)


def dicom_affine() -> np.ndarray:
    affine = np.eye(4)
    origin = dicom_world(0, 0, 0)
    for axis in range(3):
        affine[:3, axis] = dicom_world(*np.eye(3)[axis]) - origin
    affine[:3, 3] = origin
    return affine


@pytest.fixture(scope="module")
def scans(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, np.ndarray, np.ndarray]]:
    """kind -> (path, marker world point, the scan's voxel -> world affine, computed independently)."""
    root = tmp_path_factory.mktemp("scans")
    nifti, nifti_point = write_nifti_scan(root)
    dicom, dicom_point = write_dicom_scan(root / "dicom")
    return {"nifti": (nifti, nifti_point, oblique_affine()), "dicom": (dicom, dicom_point, dicom_affine())}


def modality(**kwargs: object) -> ImagingModality:
    return ImagingModality("ct", kind="ct", pixdim=PIXDIM, spatial_size=SIZE, augment=False, **kwargs)  # type: ignore[arg-type]


def marker_centroid(volume: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """World centre of mass of the voxels above half the marker's contrast over the tissue (the median)."""
    excess = np.clip(volume - np.median(volume), 0, None)
    weights = np.where(excess >= 0.5 * excess.max(), excess, 0.0)
    index = (np.argwhere(weights > 0) * weights[weights > 0][:, None]).sum(0) / weights.sum()
    return affine[:3, :3] @ index + affine[:3, 3]


# ----------------------------------------------------------------------------- the model grid's affine
@pytest.mark.parametrize("shape", [(20, 9, 8), (5, 8, 13)])
@pytest.mark.parametrize("mode", ["crop", "resize"])
def test_fitted_affine_matches_monai_s_own_affine_tracking(shape: tuple[int, int, int], mode: str) -> None:
    affine = oblique_affine()
    fit = ResizeWithPadOrCrop(SIZE) if mode == "crop" else Resize(SIZE, mode="trilinear")
    moved = fit(MetaTensor(torch.zeros(1, *shape), affine=torch.as_tensor(affine)))
    assert isinstance(moved, MetaTensor)
    np.testing.assert_allclose(fitted_affine(affine, shape, SIZE, mode), moved.affine.numpy(), atol=1e-6)


@pytest.mark.parametrize("kind", ["nifti", "dicom"])
@pytest.mark.parametrize("mode", ["crop", "resize", "lesion"])
def test_a_marker_in_the_scan_lies_at_the_same_world_point_on_the_model_grid(
    scans: dict, kind: str, mode: str, tmp_path: Path
) -> None:
    path, point, _ = scans[kind]
    ref: object = path
    if mode == "lesion":  # a lesion mask 6 mm beside the marker: the box is cut off the scan's centre
        mask_affine = np.diag([2.0, 2.0, 2.0, 1.0])
        mask_affine[:3, 3] = point + np.array([6.0, 0.0, 0.0]) - 10.0
        mask = np.zeros((11, 11, 11), dtype=np.uint8)
        mask[4:7, 4:7, 4:7] = 1
        nib.save(nib.Nifti1Image(mask, mask_affine), str(tmp_path / "mask.nii.gz"))
        ref = ImagingRef(Path(path), tmp_path / "mask.nii.gz")
    loaded = modality(
        mask_column="mask" if mode == "lesion" else None, resize_mode="resize" if mode == "resize" else "crop"
    )
    data, grid = loaded.load_on_grid(ref)
    torch.testing.assert_close(data, loaded.load(ref), rtol=0, atol=0)
    np.testing.assert_allclose(marker_centroid(data[0].numpy(), grid), point, atol=1.0)


# ----------------------------------------------------------------------------- maps
class RegionEncoder(nn.Module):
    """Reads only the mean of one box of the input grid (all channels): the output depends on it alone."""

    def __init__(self, box: tuple[slice, ...]):
        super().__init__()
        self.box = box
        self.calls = 0
        self.register_buffer("direction", torch.linspace(-1.0, 1.0, DIM))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        value = x[(slice(None), slice(None), *self.box)].mean(dim=(1, 2, 3, 4))
        return 4.0 * value[:, None] * self.direction[None]


def context(ref: object, loaded: ImagingModality, box: tuple[slice, ...] | None = None) -> PatientContext:
    """A patient whose model reads a 3-voxel box of the model grid around the loaded marker (or `box`)."""
    name = loaded.name
    data = loaded.load(ref)[None]
    if box is None:
        peak = np.unravel_index(int(torch.argmax(data[0].sum(0))), SIZE)
        box = tuple(slice(max(0, int(p) - 1), int(p) + 2) for p in peak)
    torch.manual_seed(0)
    heads = {"grade": GradeHead(16, classes=[1, 2, 3]), "survival": SurvivalHead(16)}
    fuser = TransformerFuser({name: DIM}, d_model=16, n_heads=2, n_layers=1, dim_feedforward=32)
    model = FusionModel({name: RegionEncoder(box)}, {name: DIM}, fuser, heads).eval()
    inputs = {name: {"present": torch.tensor([True]), "data": data}}
    return PatientContext("P7", model, dict(model.heads), inputs, {name: ref})


@pytest.mark.parametrize("kind", ["nifti", "dicom"])
@pytest.mark.parametrize("method", ["occlusion", "gradients"])
def test_the_map_peaks_at_the_region_the_model_reads_in_the_scan_s_own_geometry(
    scans: dict, kind: str, method: str, tmp_path: Path
) -> None:
    path, point, scan_affine = scans[kind]
    loaded = modality()
    ctx = context(path, loaded)
    maps = imaging_saliency(ctx, "ct", loaded, method)
    assert set(maps) == set(ctx.target_keys)  # every target of every head
    for saliency in maps.values():
        assert saliency.shape == SIZE and np.abs(saliency).max() > 0
    files = write_saliency_maps(maps, ctx, "ct", loaded, tmp_path)
    names = sorted(f.name for f in files)
    assert names == ["P7_ct_grade.nii.gz", "P7_ct_grade.png", "P7_ct_survival.nii.gz", "P7_ct_survival.png"]
    stored = nib.load(str(path)) if kind == "nifti" else None
    for head in ("grade", "survival"):
        written = nib.load(str(tmp_path / "imaging" / f"P7_ct_{head}.nii.gz"))
        expected_shape = stored.shape if stored is not None else (12, 10, 9)
        assert written.shape == expected_shape
        np.testing.assert_allclose(written.affine, scan_affine, atol=1e-4)
        peak = saliency_peak(np.asarray(written.dataobj))
        world = written.affine[:3, :3] @ np.asarray(peak, float) + written.affine[:3, 3]
        assert np.linalg.norm(world - point) <= np.sqrt(3) * PIXDIM[0]  # within one model voxel
        with Image.open(tmp_path / "imaging" / f"P7_ct_{head}.png") as png:
            png.verify()
            assert png.size[0] > 300


def test_occlusion_runs_every_box_in_one_encoder_call_and_matches_occluding_one_box_at_a_time(
    scans: dict,
) -> None:
    path = scans["nifti"][0]
    loaded = modality()
    ctx = context(path, loaded, box=(slice(2, 4), slice(5, 7), slice(3, 5)))
    encoder = ctx.model.encoders["ct"]
    assert isinstance(encoder, RegionEncoder)
    encoder.calls = 0
    data = ctx.inputs["ct"]["data"]
    maps = occlusion_saliency(ctx, "ct", data, patch=(3, 3, 3), stride=(2, 2, 2))
    assert encoder.calls == 1
    # one box by hand: the mean drop of the boxes covering voxel (2, 5, 3)
    key = ("survival", "survival_log_hazard")
    with torch.no_grad():
        base = float(ctx.targets_from_data("ct", data)[key][0])
        drops = []
        for a in box_starts(8, 3, 2):
            for b in box_starts(8, 3, 2):
                for c in box_starts(8, 3, 2):
                    if a <= 2 < a + 3 and b <= 5 < b + 3 and c <= 3 < c + 3:
                        occluded = data.clone()
                        occluded[:, :, a : a + 3, b : b + 3, c : c + 3] = 0.0
                        drops.append(base - float(ctx.targets_from_data("ct", occluded)[key][0]))
    assert maps[key][2, 5, 3] == pytest.approx(np.mean(drops), abs=1e-5)
    assert maps[key][7, 0, 7] == 0.0  # boxes that miss the region change nothing
    assert box_starts(8, 3, 2) == [0, 2, 4, 5]  # the last box ends at the edge


def test_resample_is_zero_outside_the_source_and_exact_on_a_shifted_grid() -> None:
    volume = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    source = np.diag([2.0, 2.0, 2.0, 1.0])
    target = source.copy()
    target[:3, 3] = [-2.0, 0.0, 0.0]  # one voxel further along -x
    out = resample(volume, source, target, (5, 5, 6), order=0)
    np.testing.assert_array_equal(out[1:], volume)
    assert not out[0].any()


def test_bad_input_is_refused_naming_the_patient(scans: dict) -> None:
    loaded = modality()
    ctx = context(scans["nifti"][0], loaded)
    assert imaging_saliency(ctx, "ct", object(), "occlusion") == {}  # type: ignore[arg-type]
    with pytest.raises(ImagingMapError, match="unknown imaging saliency method 'lrp'"):
        imaging_saliency(ctx, "ct", loaded, "lrp")
    ctx.refs["ct"] = None
    maps = imaging_saliency(ctx, "ct", loaded, "gradients")
    with pytest.raises(ImagingMapError, match="patient 'P7', modality 'ct': no scan path"):
        write_saliency_maps(maps, ctx, "ct", loaded, "/nonexistent")


class Targets(nn.Module):
    """The patient's targets as a network of the volume alone, for MONAI's OcclusionSensitivity."""

    def __init__(self, ctx: PatientContext):
        super().__init__()
        self.ctx = ctx

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        targets = self.ctx.targets_from_data("ct", x)
        return torch.stack([targets[key] for key in self.ctx.target_keys], dim=1)


def test_occlusion_agrees_with_monai_occlusion_sensitivity_where_monai_is_right(scans: dict) -> None:
    # MONAI with a constant 0 fill and no activation averages the occluded outputs over the windows that
    # cover a voxel: the baseline minus its map is our mean drop (its mean_patch and activate=True are not)
    ctx = context(scans["nifti"][0], modality(), box=(slice(2, 5), slice(4, 6), slice(1, 4)))
    data = ctx.inputs["ct"]["data"]
    ours = occlusion_saliency(ctx, "ct", data, patch=(4, 4, 4), stride=(2, 2, 2))
    monai = OcclusionSensitivity(
        Targets(ctx), mask_size=4, n_batch=512, verbose=False, mode=0.0, overlap=0.5, activate=False
    )
    with torch.no_grad():
        occluded, _ = monai(data)
        base = Targets(ctx)(data)[0]
    for k, key in enumerate(ctx.target_keys):
        expected = (base[k] - torch.as_tensor(occluded)[0, k]).numpy()
        np.testing.assert_allclose(ours[key], expected, atol=1e-5)


def test_an_mri_folder_s_map_takes_the_grid_of_its_first_present_sequence(
    scans: dict, tmp_path: Path
) -> None:
    folder = tmp_path / "mri"
    folder.mkdir()
    (folder / "t2.nii.gz").write_bytes(scans["nifti"][0].read_bytes())  # t1 is missing: t2 is the grid
    loaded = ImagingModality(
        "mri", kind="mri", sequences=["t1", "t2"], pixdim=PIXDIM, spatial_size=SIZE, augment=False
    )
    ctx = context(folder, loaded)
    maps = imaging_saliency(ctx, "mri", loaded, "gradients")
    write_saliency_maps(maps, ctx, "mri", loaded, tmp_path)
    written = nib.load(str(tmp_path / "imaging" / "P7_mri_grade.nii.gz"))
    assert written.shape == (14, 11, 12)
    np.testing.assert_allclose(written.affine, oblique_affine(), atol=1e-4)
    peak = saliency_peak(np.asarray(written.dataobj))
    world = written.affine[:3, :3] @ np.asarray(peak, float) + written.affine[:3, 3]
    assert np.linalg.norm(world - scans["nifti"][1]) <= np.sqrt(3) * PIXDIM[0]
