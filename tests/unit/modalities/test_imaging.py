"""ImagingModality on real files: pydicom's CT sample as a series, nibabel samples, generated NIfTI."""

from __future__ import annotations

import gzip
import os
import pickle
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import hydra.utils
import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from hydra import compose, initialize_config_dir
from monai.data import MetaTensor
from monai.transforms import Orientation
from omegaconf import OmegaConf
from pydicom.data import get_testdata_file

import fusion
from fusion.modalities.imaging import ImagingModality
from fusion.modalities.imaging_transforms import read_volume

NIBABEL_DATA = Path(os.path.dirname(nib.__file__)) / "tests" / "data"
CONF = Path(__file__).parents[3] / "conf" / "modality"
YAMLS = ("ct.yaml", "mri.yaml", "pet.yaml", "base", "imaging.yaml")  # and what they share: base/imaging.yaml
SECRETS = {"PatientName": "Secretname^Jane", "PatientID": "SECRET-ID-4711", "PatientBirthDate": "19610203"}
SECRETS_EXTRA = {"InstitutionName": "Hidden Valley Hospital", "StudyDate": "20191231"}
HU = [0, 100, 200, 300, 400]  # slice k (in position order) holds HU[k]
INSTANCE_NUMBERS = [3, 1, 5, 2, 4]  # deliberately not in position order


def write_dicom_series(folder: Path) -> Path:
    """Five slices of pydicom's CT_small.dcm, 5 mm apart, shuffled names and InstanceNumbers."""
    folder.mkdir(parents=True)
    template = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    x0, y0, z0 = (float(v) for v in template.ImagePositionPatient)
    for k, hu in enumerate(HU):
        ds = template.copy()
        ds.ImagePositionPatient = [x0, y0, z0 + 5.0 * k]
        ds.InstanceNumber = INSTANCE_NUMBERS[k]
        raw = np.full((ds.Rows, ds.Columns), hu + 1024, dtype=np.int16)  # RescaleIntercept is -1024
        raw[:8, :8] = 0  # -1024 HU corner: air
        ds.PixelData = raw.tobytes()
        for key, value in {**SECRETS, **SECRETS_EXTRA}.items():
            setattr(ds, key, value)
        ds.save_as(folder / f"IMG{(7 * k + 3) % 5:04d}_{ds.SOPInstanceUID[-6:]}{k}")  # names not in order
    return folder


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data.astype(np.float32), np.eye(4) if affine is None else affine), str(path))
    return path


def blob(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """A positive random ball in a zero background, like a skull-stripped MRI."""
    grid = np.stack(np.meshgrid(*[np.arange(s) - s / 2 for s in shape], indexing="ij"))
    ball = (grid**2).sum(0) < (min(shape) / 2.5) ** 2
    return ball * (100 + 20 * np.random.default_rng(seed).standard_normal(shape))


@pytest.fixture(scope="module")
def dicom_series(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dicom_series(tmp_path_factory.mktemp("dicom") / "ct")


# ----------------------------------------------------------------------------- DICOM
def test_dicom_series_is_ordered_by_position_and_rescaled_to_hu(dicom_series: Path) -> None:
    raw = read_volume(dicom_series)
    ras = Orientation(axcodes="RAS", labels=None)(raw)
    assert ras.shape == (1, 128, 128, 5)
    assert [float(ras[0, 64, 64, k]) for k in range(5)] == HU
    assert float(ras.min()) == -1024.0
    assert np.allclose(np.abs(np.diag(ras.affine.numpy())[:3]), [0.661468, 0.661468, 5.0], atol=1e-4)


def test_load_dicom_ct_window_gives_plain_tensor_in_unit_range(dicom_series: Path) -> None:
    item = ImagingModality("ct", kind="ct").load(dicom_series)
    assert type(item) is torch.Tensor and item.dtype == torch.float32
    assert item.shape == (1, 32, 32, 32)
    assert float(item.min()) == 0.0 and float(item.max()) == 1.0
    # along S, window(-200, 300) of HU 0..400 rises from 0.4 and saturates at 1 (zero padding around)
    profile = item[0, 16, 16][item[0, 16, 16] > 0]
    assert profile[0] == pytest.approx(0.4, abs=1e-4) and profile[-1] == pytest.approx(1.0)
    assert torch.all(profile.diff() >= -1e-6)


def test_load_is_deterministic_across_threads(dicom_series: Path) -> None:
    ct = ImagingModality("ct")  # the item store loads patients in a thread pool with one modality object
    with ThreadPoolExecutor(3) as pool:
        items = list(pool.map(ct.load, [dicom_series] * 3))
    assert all(torch.equal(items[0], other) for other in items[1:])


def test_no_dicom_identifier_leaves_load(dicom_series: Path) -> None:
    item = ImagingModality("ct").load(dicom_series)
    assert not isinstance(item, MetaTensor) and not hasattr(item, "meta")
    dumped = pickle.dumps(item) + repr(item).encode()
    for value in [*SECRETS.values(), *SECRETS_EXTRA.values(), "Secretname"]:
        assert value.encode() not in dumped


# ----------------------------------------------------------------------------- NIfTI
def test_flipped_affine_is_reoriented_to_ras(tmp_path: Path) -> None:
    data = np.zeros((8, 8, 8))
    data[1, 2, 3] = 5.0  # SUV 5 -> 0.5 after PET scaling
    affine = np.diag([-2.0, 2.0, 2.0, 1.0])  # x runs right-to-left (LAS)
    path = write_nifti(tmp_path / "pet.nii.gz", data, affine)
    pet = ImagingModality("pet", kind="pet", pixdim=(2, 2, 2), spatial_size=(8, 8, 8), pet_suv_max=10.0)
    item = pet.load(path)
    assert item.shape == (1, 8, 8, 8)
    assert item[0, 8 - 1 - 1, 2, 3] == pytest.approx(0.5, abs=1e-4)
    assert torch.count_nonzero(item > 0.25) == 1


def test_anisotropic_spacing_is_resampled_to_pixdim(tmp_path: Path) -> None:
    data = np.zeros((30, 30, 8))
    data[9:21, 9:21, 2:5] = 8.0  # a 12 mm cube at 1 x 1 x 4 mm voxels
    path = write_nifti(tmp_path / "pet.nii", data, np.diag([1.0, 1.0, 4.0, 1.0]))
    item = ImagingModality("pet", kind="pet", pixdim=(3, 3, 3), spatial_size=(16, 16, 16)).load(path)
    extent = [
        int((item[0] > 0.4).any(dim=tuple(d for d in range(3) if d != axis)).sum()) for axis in range(3)
    ]
    assert all(3 <= e <= 5 for e in extent), extent  # 12 mm / 3 mm = 4 voxels on every axis


def test_resize_mode_keeps_whole_field_of_view_crop_does_not(tmp_path: Path) -> None:
    data = np.ones((8, 8, 40))
    data[:, :, -6:] = 9.0  # bright top end of a long (whole-body like) scan
    path = write_nifti(tmp_path / "long.nii.gz", data, np.diag([3.0, 3.0, 3.0, 1.0]))
    kwargs = {"kind": "pet", "pixdim": (3, 3, 3), "spatial_size": (8, 8, 8)}
    cropped = ImagingModality("pet", resize_mode="crop", **kwargs).load(path)
    resized = ImagingModality("pet", resize_mode="resize", **kwargs).load(path)
    assert float(cropped.max()) == pytest.approx(0.1, abs=1e-6) and float(resized.max()) > 0.5


def test_nibabel_sample_as_single_channel_mri() -> None:
    item = ImagingModality("mri", kind="mri").load(NIBABEL_DATA / "anatomical.nii")
    assert item.shape == (1, 32, 32, 32) and torch.isfinite(item).all()
    foreground = item[item != 0]
    assert abs(float(foreground.mean())) < 0.1 and float(foreground.std()) == pytest.approx(1.0, abs=0.1)


def test_mri_missing_sequence_becomes_zero_channel(tmp_path: Path) -> None:
    write_nifti(tmp_path / "p1" / "t1.nii.gz", blob((20, 20, 20), seed=1), np.diag([3.0, 3.0, 3.0, 1.0]))
    flair_affine = np.diag([-2.0, 2.0, 2.0, 1.0])  # another grid: resampled onto t1's in world space
    flair_affine[:3, 3] = [38.0, 0.0, 0.0]
    write_nifti(tmp_path / "p1" / "flair.nii", blob((30, 30, 30), seed=2), flair_affine)
    mri = ImagingModality("mri", kind="mri", sequences=["t1", "t2", "flair"])
    assert mri.check(tmp_path / "p1") == []
    item = mri.load(tmp_path / "p1")
    assert item.shape == (3, 32, 32, 32) and mri.in_channels == 3
    assert torch.count_nonzero(item[1]) == 0
    for channel in (0, 2):
        foreground = item[channel][item[channel] != 0]
        assert foreground.numel() > 500 and abs(float(foreground.mean())) < 0.05


def test_mri_sequence_as_dicom_folder(tmp_path: Path) -> None:
    write_dicom_series(tmp_path / "p2" / "t2")
    item = ImagingModality("mri", kind="mri", sequences=["t1", "t2"]).load(tmp_path / "p2")
    assert item.shape == (2, 32, 32, 32)
    assert torch.count_nonzero(item[0]) == 0 and torch.count_nonzero(item[1]) > 0


def test_mri_folder_without_any_sequence_is_an_error(tmp_path: Path) -> None:
    write_nifti(tmp_path / "p3" / "T1w.nii.gz", blob((8, 8, 8)))
    mri = ImagingModality("mri", kind="mri", sequences=["t1", "t2"])
    with pytest.raises(ValueError, match="none of the sequences") as err:
        mri.load(tmp_path / "p3")
    assert str(tmp_path / "p3") in str(err.value)
    assert "none of the sequences" in mri.check(tmp_path / "p3")[0]
    assert "expected a folder" in mri.check(tmp_path / "p3" / "T1w.nii.gz")[0]


# ----------------------------------------------------------------------------- broken inputs
def _truncated(tmp: Path) -> Path:
    path = write_nifti(tmp / "scan.nii.gz", blob((16, 16, 16)))
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:1000]))  # header + a few voxels
    return path


def _folder(tmp: Path, files: dict[str, bytes]) -> Path:
    (tmp / "series").mkdir()
    for name, content in files.items():
        (tmp / "series" / name).write_bytes(content)
    return tmp / "series"


def _file(tmp: Path, name: str, content: bytes) -> Path:
    (tmp / name).write_bytes(content)
    return tmp / name


BROKEN = {  # case -> (make the input in tmp, words expected in the error)
    "missing file": (lambda tmp: tmp / "absent.nii.gz", "does not exist"),
    "empty folder": (lambda tmp: _folder(tmp, {}), "empty"),
    "folder without dicom": (lambda tmp: _folder(tmp, {"notes.txt": b"hello"}), "no DICOM"),
    "truncated nii.gz": (_truncated, "cannot read image"),
    "nan volume": (
        lambda tmp: write_nifti(tmp / "nan.nii", np.where(blob((8, 8, 8)) > 0, np.nan, 1.0)),
        "NaN",
    ),
    "constant volume": (
        lambda tmp: write_nifti(tmp / "flat.nii.gz", np.full((8, 8, 8), -1024.0)),
        "constant",
    ),
    "unsupported type": (lambda tmp: _file(tmp, "scan.png", b"\x89PNG\r\n"), "unsupported"),
    "4d nifti": (lambda tmp: NIBABEL_DATA / "example4d.nii.gz", "4D"),
    "2d nifti": (lambda tmp: write_nifti(tmp / "slice.nii", blob((8, 8, 8))[:, :, 4]), "3D"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_input_raises_value_error_naming_the_file(tmp_path: Path, case: str) -> None:
    make, problem = BROKEN[case]
    path = make(tmp_path)
    with pytest.raises(ValueError, match=problem) as err:
        ImagingModality("ct").load(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("case", ["missing file", "empty folder", "4d nifti", "unsupported type"])
def test_check_reports_cheap_problems(tmp_path: Path, case: str) -> None:
    make, _ = BROKEN[case]
    path = make(tmp_path)
    problems = ImagingModality("ct").check(path)
    assert len(problems) == 1 and str(path) in problems[0]


def test_check_accepts_good_inputs_and_missing_modality(dicom_series: Path) -> None:
    ct = ImagingModality("ct")
    assert ct.check(None) == [] and ct.check(dicom_series) == []
    assert ct.check(NIBABEL_DATA / "anatomical.nii") == []


# ----------------------------------------------------------------------------- transform / batch / encoder
def test_augmentation_only_when_training_and_reproducible() -> None:
    item = torch.rand(1, 16, 16, 16)
    original = item.clone()
    ct = ImagingModality("ct", spatial_size=(16, 16, 16))
    assert ct.transform(item, train=False) is item
    assert ImagingModality("ct", augment=False).transform(item, train=True) is item
    outs = []
    for _ in range(2):
        torch.manual_seed(0)
        outs.append([ct.transform(item, train=True) for _ in range(4)])
    assert all(type(o) is torch.Tensor and o.shape == item.shape for o in outs[0])
    assert all(torch.equal(a, b) for a, b in zip(*outs, strict=True))
    assert any(not torch.equal(o, item) for o in outs[0])
    assert torch.equal(item, original)  # the cached item itself is never modified


def test_collate_and_encoder_shapes() -> None:
    mri = ImagingModality(
        "mri", kind="mri", sequences=["t1", "t2", "flair"], spatial_size=(16, 16, 16), embed_dim=24
    )
    batch = mri.collate([torch.rand(3, 16, 16, 16) for _ in range(3)])
    assert batch.shape == (3, 3, 16, 16, 16)
    assert mri.build_encoder()(batch).shape == (3, 24) and mri.out_dim == 24


def test_state_dict_round_trip_and_mismatch() -> None:
    state = ImagingModality("ct").state_dict()
    pickle.dumps(state)
    ImagingModality("ct").load_state_dict(state)
    with pytest.raises(ValueError, match="spatial_size"):
        ImagingModality("ct", spatial_size=(48, 48, 48)).load_state_dict(state)


@pytest.mark.parametrize(
    "kwargs, problem",
    [
        ({"kind": "xray"}, "kind"),
        ({"encoder": "unet"}, "unknown encoder"),
        ({"resize_mode": "stretch"}, "resize_mode"),
        ({"pixdim": (1, 1)}, "pixdim"),
        ({"ct_window": (300, -200)}, "ct_window"),
        ({"sequences": ["t1", "t1"]}, "sequences"),
    ],
)
def test_bad_configuration_is_rejected(kwargs: dict, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        ImagingModality("ct", **kwargs)


# ----------------------------------------------------------------------------- YAML configs
@pytest.mark.parametrize("name, kind, channels", [("ct", "ct", 1), ("mri", "mri", 3), ("pet", "pet", 1)])
def test_shipped_config_instantiates_and_overrides(name: str, kind: str, channels: int) -> None:
    override = OmegaConf.from_dotlist(["spatial_size=[16,16,16]"])
    cfg = OmegaConf.merge(fusion.compose([f"modality=[{name}]"]).modality[name], override)
    modality = hydra.utils.instantiate(cfg)
    assert isinstance(modality, ImagingModality)
    assert (modality.name, modality.column, modality.kind) == (name, name, kind)
    assert modality.in_channels == channels and modality.spatial_size == (16, 16, 16)
    assert modality.build_encoder()(torch.zeros(2, channels, 16, 16, 16)).shape == (2, modality.out_dim)


def test_configs_compose_side_by_side_under_hydra_1_3(tmp_path: Path) -> None:
    shutil.copytree(CONF, tmp_path / "modality", ignore=lambda _, names: [n for n in names if n not in YAMLS])
    (tmp_path / "main.yaml").write_text("defaults:\n  - modality: [ct, mri, pet]\n  - _self_\n")
    with initialize_config_dir(config_dir=str(tmp_path), version_base="1.3"):
        cfg = compose("main", overrides=["modality.ct.spatial_size=[48,48,48]", "modality.mri.encoder=vit"])
    assert sorted(cfg.keys()) == ["modality"] and sorted(cfg.modality) == ["ct", "mri", "pet"]
    assert list(cfg.modality.ct.spatial_size) == [48, 48, 48]
    assert list(cfg.modality.pet.spatial_size) == [32, 32, 32]
    assert cfg.modality.mri.encoder == "vit" and list(cfg.modality.mri.sequences) == ["t1", "t2", "flair"]


# ----------------------------------------------------------------------------- PACS exports (issue 3)
def test_pacs_folder_with_other_files_loads_like_the_clean_series(tmp_path: Path, dicom_series: Path) -> None:
    folder = tmp_path / "export"
    shutil.copytree(dicom_series, folder)
    (folder / "INDEX.TXT").write_text("exported by PACS")
    (folder / "thumb.jpg").write_bytes(b"\xff\xd8\xff\xe0 not an image we read")
    ct = ImagingModality("ct")
    assert torch.equal(ct.load(folder), ct.load(dicom_series))


def _export_with_scout(tmp_path: Path, dicom_series: Path) -> Path:
    """A PACS-style export: the CT series plus a one-slice scout series in the same folder."""
    folder = tmp_path / "export"
    shutil.copytree(dicom_series, folder)
    scout = pydicom.dcmread(sorted(dicom_series.iterdir())[0])
    scout.SeriesInstanceUID, scout.SeriesDescription = pydicom.uid.generate_uid(), "Topogram 0.6 T20f"
    scout.save_as(folder / "scout.dcm")
    return folder


def test_pacs_folder_with_two_series_names_them_in_the_error(tmp_path: Path, dicom_series: Path) -> None:
    folder = _export_with_scout(tmp_path, dicom_series)
    with pytest.raises(ValueError, match="2 DICOM series") as err:
        ImagingModality("ct").load(folder)
    assert str(folder) in str(err.value) and "'Topogram 0.6 T20f' (1 slice)" in str(err.value)
    assert read_volume(folder, series="^(?!topo)").shape == (1, 128, 128, 5)
    with pytest.raises(ValueError, match="expected a 3D volume"):  # the scout is picked, and is one slice
        read_volume(folder, series="topogram")


def test_series_selector_in_the_modality_config_picks_the_series(tmp_path: Path, dicom_series: Path) -> None:
    folder = _export_with_scout(tmp_path, dicom_series)
    picked = ImagingModality("ct", series="^(?!topo)").load(folder)
    assert torch.equal(picked, ImagingModality("ct").load(dicom_series))
    assert ImagingModality("ct", series="x").state_dict()["preprocessing"]["series"] == "x"
