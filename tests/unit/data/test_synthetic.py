"""The synthetic demo cohort: layout contract, real file formats, determinism, ground truth, signal."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pydicom
import pytest
from PIL import Image
from pydicom.filewriter import dcmwrite
from pydicom.pixels import apply_rescale
from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian
from scipy.stats import spearmanr

from fusion.data.cohort import Cohort
from fusion.data.synthetic import imaging, oracle_metrics, write_demo_cohort
from fusion.data.synthetic.dicom import fake_identifiers
from fusion.data.synthetic.latent import LATENTS, MODALITIES, SITES, sample_patients
from fusion.data.synthetic.oracle import oracle_from_frame
from fusion.data.synthetic.tables import ehr_table, gene_names

SHAPE = (16, 14, 12)  # not a cube, so an axis mix-up shows
TILES = (2, 6)
TINY = dict(
    n_patients=12,
    seed=3,
    volume_shape=SHAPE,
    tile_size=16,
    tiles_per_patient=TILES,
    n_genes=24,
    modality_missing_rate=0.3,
    label_missing_rate=0.25,
)
MANIFEST_COLUMNS = [
    "patient_id",
    "site",
    "ct",
    "mri",
    "pet",
    "histology",
    "grade",
    "survival_time",
    "survival_event",
    "response",
    "ct_mask",
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_demo_cohort(tmp_path_factory.mktemp("tiny"), **TINY)


def _manifest(manifest_path: Path) -> pd.DataFrame:
    return pd.read_csv(manifest_path, dtype={"patient_id": str}, keep_default_na=True)


def _with(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    return frame[frame[column].notna()]


def _read_ct(folder: Path) -> tuple[list[pydicom.Dataset], np.ndarray]:
    """Slices ordered by position along the slice normal, and the HU volume (columns, rows, slices)."""
    slices = sorted(
        (pydicom.dcmread(f) for f in folder.glob("*.dcm")), key=lambda s: float(s.ImagePositionPatient[2])
    )
    hu = np.stack([apply_rescale(s.pixel_array, s).T for s in slices], axis=-1)
    return slices, hu


# --------------------------------------------------------------------------- layout
def test_layout_columns_and_cohort_loader(tiny: Path) -> None:
    root = tiny.parent
    assert tiny.name == "manifest.csv"
    for name in ("genomics.csv", "ehr.csv", "truth.csv", "cohort.json"):
        assert (root / name).is_file()
    manifest = _manifest(tiny)
    assert list(manifest.columns) == MANIFEST_COLUMNS
    assert list(manifest["patient_id"]) == [f"P{i:04d}" for i in range(1, 13)]
    assert set(manifest["site"]) <= set(SITES)
    assert set(_with(manifest, "grade")["grade"].astype(int)) <= {1, 2, 3}
    assert (_with(manifest, "survival_time")["survival_time"] > 0).all()
    assert set(_with(manifest, "survival_event")["survival_event"].astype(int)) <= {0, 1}
    assert set(_with(manifest, "response")["response"].astype(int)) <= {0, 1}
    for line in tiny.read_text().splitlines()[1:]:  # integer labels are written as 2, not 2.0
        cells = line.split(",")
        assert all("." not in cells[i] for i in (6, 8, 9)), line

    genomics = pd.read_csv(root / "genomics.csv")
    assert list(genomics.columns) == ["patient_id", *gene_names(24)] and gene_names(24)[0] == "GENE001"
    assert (genomics.drop(columns="patient_id").to_numpy() > 0).all()
    ehr = pd.read_csv(root / "ehr.csv")
    assert list(ehr.columns) == ["patient_id", "age", "sex", "stage", "ecog", "smoking", "ldh"]
    assert set(ehr["sex"]) <= {"F", "M"} and set(ehr["stage"]) <= {"I", "II", "III", "IV"}
    assert set(ehr["ecog"]) <= {0, 1, 2} and set(ehr["smoking"]) <= {"never", "former", "current"}
    truth = pd.read_csv(root / "truth.csv")
    assert list(truth.columns) == [
        "patient_id",
        *LATENTS,
        "true_risk",
        "grade_prob_1",
        "grade_prob_2",
        "grade_prob_3",
        "response_prob",
    ]
    np.testing.assert_allclose(
        truth[["grade_prob_1", "grade_prob_2", "grade_prob_3"]].sum(axis=1), 1.0, atol=1e-5
    )

    # the project's own loader reads it, and every non-empty path exists where the contract says
    cohort = Cohort.load(tiny)
    assert len(cohort) == 12
    for column in ("ct", "mri", "pet", "histology"):
        for pid, path in cohort.paths(column).items():
            if path is not None:
                assert path.exists(), (pid, column, path)
    for path in cohort.paths("mri").values():
        if path is not None:
            assert sorted(p.name for p in path.iterdir()) == ["flair.nii.gz", "t1.nii.gz", "t2.nii.gz"]
    for pid, path in cohort.paths("pet").items():
        assert path is None or path == root / "pet" / f"{pid}.nii.gz"
    assert cohort.find_table("genomics") == root / "genomics.csv"
    assert set(cohort.table(root / "ehr.csv").index) <= set(cohort.patient_ids)


def test_missing_cells_and_absent_table_rows(tiny: Path) -> None:
    manifest = _manifest(tiny)
    for column in ("ct", "mri", "pet", "histology", "grade", "survival_time", "response"):
        assert manifest[column].isna().any(), f"no missing cell in {column}"
    # survival time and event are missing together
    assert (manifest["survival_time"].isna() == manifest["survival_event"].isna()).all()
    for table in ("genomics.csv", "ehr.csv"):
        ids = set(pd.read_csv(tiny.parent / table)["patient_id"])
        assert 0 < len(ids) < 12


def test_every_patient_keeps_a_modality_and_rates_follow_parameters() -> None:
    patients = sample_patients(3000, seed=5, modality_missing_rate=0.6, label_missing_rate=0.2)
    has = patients[[f"has_{m}" for m in MODALITIES]]
    assert has.any(axis=1).all()
    assert has.mean().between(0.35, 0.45).all()  # 0.4 kept, plus the rescued patients
    assert patients["grade"].isna().mean() == pytest.approx(0.2, abs=0.03)
    ehr = ehr_table(sample_patients(1000, seed=5, modality_missing_rate=0.0, label_missing_rate=0.0), seed=5)
    assert ehr["ldh"].isna().mean() == pytest.approx(0.1, abs=0.03)


def test_tile_counts_vary_and_look_like_he(tiny: Path) -> None:
    manifest = _with(_manifest(tiny), "histology")
    counts = []
    for folder in manifest["histology"]:
        tiles = sorted((tiny.parent / folder).glob("*.png"))
        assert [t.name for t in tiles] == [f"tile_{i:04d}.png" for i in range(len(tiles))]
        counts.append(len(tiles))
        with Image.open(tiles[0]) as img:
            assert img.mode == "RGB" and img.size == (16, 16)
            pixels = np.asarray(img, dtype=float).reshape(-1, 3)
        red, green, blue = pixels.mean(axis=0)
        assert red > blue > green  # eosin pink / haematoxylin purple
    assert all(TILES[0] <= c <= TILES[1] for c in counts)
    assert len(set(counts)) > 1


def test_truth_files_name_the_signal_genes_and_the_tumour_tiles(tiny: Path) -> None:
    root = tiny.parent
    genes = pd.read_csv(root / "truth" / "genes.csv")
    assert list(genes.columns) == ["gene", "latent", "loading"]
    blocks = json.loads((root / "cohort.json").read_text())["genomics_signal_genes"]
    by_latent = {latent: sorted(rows["gene"]) for latent, rows in genes.groupby("latent")}
    assert by_latent == {latent: sorted(names) for latent, names in blocks.items()}
    assert set(genes["loading"].abs().round(6)) <= {0.9, 0.5} and (genes["loading"] < 0).any()
    # the sign is the one the expression follows: log expression correlates with the latent that way
    expression = np.log(pd.read_csv(root / "genomics.csv").set_index("patient_id"))
    latents = pd.read_csv(root / "truth.csv").set_index("patient_id").loc[expression.index]
    for gene, latent, loading in genes[genes["latent"] != "spread"].itertuples(index=False):
        assert np.sign(np.corrcoef(expression[gene], latents[latent])[0, 1]) == np.sign(loading), gene

    tiles = pd.read_csv(root / "truth" / "tiles.csv", dtype={"patient_id": str})
    assert list(tiles.columns) == ["patient_id", "tile", "tumour"]
    manifest = _with(_manifest(tiny), "histology")
    assert set(tiles["patient_id"]) == set(manifest["patient_id"])
    for pid, folder in zip(manifest["patient_id"], manifest["histology"], strict=True):
        files = sorted(p.name for p in (root / folder).glob("*.png"))
        assert list(tiles.loc[tiles["patient_id"] == pid, "tile"]) == files
    assert set(tiles["tumour"]) == {0, 1}
    # tumour tiles hold more (darker, larger) nuclei than stroma tiles: the flag matches the pixels
    dark = [
        (np.asarray(Image.open(root / "histology" / pid / tile).convert("L")) < 150).mean()
        for pid, tile in zip(tiles["patient_id"], tiles["tile"], strict=True)
    ]
    tumour = tiles["tumour"].to_numpy() == 1
    assert np.mean(np.asarray(dark)[tumour]) > 2 * np.mean(np.asarray(dark)[~tumour])


# --------------------------------------------------------------------------- DICOM
def test_ct_dicom_series_is_real_and_consistent(tiny: Path) -> None:
    pid = _with(_manifest(tiny), "ct")["patient_id"].iloc[0]
    folder = tiny.parent / "ct" / pid
    files = sorted(folder.glob("*.dcm"))
    assert len(files) == SHAPE[2]
    by_name = [int(pydicom.dcmread(f, stop_before_pixels=True).InstanceNumber) for f in files]
    assert by_name != sorted(by_name), "file names must not sort in slice order"

    slices, hu = _read_ct(folder)
    first = slices[0]
    assert first.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert first.SOPClassUID == CTImageStorage == first.file_meta.MediaStorageSOPClassUID
    assert (first.RescaleSlope, first.RescaleIntercept) == (1, -1024)
    assert first.pixel_array.dtype == np.uint16 and first.pixel_array.shape == (SHAPE[1], SHAPE[0])
    assert hu.min() < -900 and hu.max() > 400  # air and bone
    body = hu[(hu > -50) & (hu < 130)]
    assert 20 < np.median(body) < 70  # soft tissue

    spacing = np.array(
        [float(first.PixelSpacing[1]), float(first.PixelSpacing[0]), float(first.SliceThickness)]
    )
    np.testing.assert_allclose(spacing, imaging.ct_geometry(SHAPE)[0], atol=1e-3)
    assert spacing[2] > spacing[0]  # anisotropic
    positions = np.array([[float(v) for v in s.ImagePositionPatient] for s in slices])
    np.testing.assert_allclose(np.diff(positions[:, 2]), spacing[2], atol=1e-3)
    np.testing.assert_allclose(positions[:, :2], positions[:1, :2].repeat(len(slices), 0))
    assert [int(s.InstanceNumber) for s in slices] == list(range(1, SHAPE[2] + 1))
    np.testing.assert_allclose([float(s.SliceLocation) for s in slices], positions[:, 2])
    assert [float(v) for v in first.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
    assert len({s.SeriesInstanceUID for s in slices}) == 1 and len({s.SOPInstanceUID for s in slices}) == len(
        slices
    )
    for uid in (first.StudyInstanceUID, first.SeriesInstanceUID, first.SOPInstanceUID):
        assert UID(uid).is_valid
    assert first.SeriesDescription and first.Modality == "CT"

    index, age = int(pid[1:]) - 1, int(first.PatientAge[:3])
    ehr = pd.read_csv(tiny.parent / "ehr.csv").set_index("patient_id")
    assert pid in ehr.index and ehr.loc[pid, "age"] == age  # the same fake person everywhere
    identity = fake_identifiers(index, age, TINY["seed"])
    assert str(first.PatientName) == identity["PatientName"] == f"FAKE^PATIENT{index + 1:06d}"
    assert first.PatientID == identity["PatientID"] and first.AccessionNumber == identity["AccessionNumber"]
    assert first.PatientBirthDate == identity["PatientBirthDate"] < first.StudyDate == identity["StudyDate"]
    assert (
        first.InstitutionName == "Fake General Hospital"
        and str(first.ReferringPhysicianName) == "FAKE^DOCTOR"
    )

    # byte-identical to what pydicom.dcmwrite makes of the same dataset
    buffer = io.BytesIO()
    dcmwrite(buffer, pydicom.dcmread(files[0]), enforce_file_format=True)
    assert buffer.getvalue() == files[0].read_bytes()


def test_no_identifier_outside_the_dicom_headers(tiny: Path) -> None:
    root = tiny.parent
    for name in ("manifest.csv", "genomics.csv", "ehr.csv", "truth.csv", "cohort.json"):
        text = (root / name).read_text()
        assert "FAKE" not in text.upper() and "MRN" not in text, name


def test_monai_reads_the_series_folder_with_the_right_geometry(tiny: Path) -> None:
    from monai.transforms import LoadImage

    manifest = _with(_manifest(tiny), "ct").set_index("patient_id")
    truth = pd.read_csv(tiny.parent / "truth.csv").set_index("patient_id")
    loader = LoadImage(reader="PydicomReader", image_only=True)
    for pid in manifest.index[:3]:
        image = loader(str(tiny.parent / "ct" / pid))
        volume, affine = np.asarray(image), np.asarray(image.affine)
        assert volume.shape == SHAPE
        np.testing.assert_allclose(volume, _read_ct(tiny.parent / "ct" / pid)[1])
        # the lesion (enhancing soft tissue, away from the spine) sits where the scene put it
        world = imaging.world_coordinates(SHAPE, affine)
        near_spine = (
            np.hypot(world[0] - imaging.SPINE_CENTRE_MM[0], world[1] - imaging.SPINE_CENTRE_MM[1]) < 6
        )
        lesion = (volume > 100) & (volume < 400) & ~near_spine
        centroid = affine[:3, :3] @ np.argwhere(lesion).mean(axis=0) + affine[:3, 3]
        index = int(pid[1:]) - 1
        expected = imaging.draw_lesion(TINY["seed"], index, truth.loc[pid, list(LATENTS)].to_dict()).centre
        assert np.linalg.norm(centroid - np.array(expected)) < 5.0, (pid, centroid, expected)


# --------------------------------------------------------------------------- NIfTI
def test_nifti_volumes_have_real_non_identity_affines(tiny: Path) -> None:
    manifest = _manifest(tiny).set_index("patient_id")
    truth = pd.read_csv(tiny.parent / "truth.csv").set_index("patient_id")
    pid = manifest.dropna(subset=["mri", "pet"]).index[0]
    lesion = imaging.draw_lesion(TINY["seed"], int(pid[1:]) - 1, truth.loc[pid, list(LATENTS)].to_dict())
    for sequence in ("t1", "t2", "flair"):
        img = nib.load(tiny.parent / manifest.loc[pid, "mri"] / f"{sequence}.nii.gz")
        assert img.shape == SHAPE and img.get_data_dtype() == np.float32
        assert not np.allclose(img.affine, np.eye(4))
        assert nib.aff2axcodes(img.affine) == ("L", "A", "S")
        np.testing.assert_allclose(img.header.get_zooms(), [2.0 * 32 / n for n in SHAPE])
        assert int(img.header["sform_code"]) == 1 and int(img.header["qform_code"]) == 1
    pet = nib.load(tiny.parent / manifest.loc[pid, "pet"])
    assert pet.shape == tuple(n // 2 for n in SHAPE) and pet.get_data_dtype() == np.float32
    assert nib.aff2axcodes(pet.affine) == ("L", "P", "S")
    suv = pet.get_fdata()
    assert suv.min() >= 0 and suv.max() > 1.5 > np.median(suv[suv > 0.2])  # hot lesion over low body uptake
    weights = np.clip(suv - 0.5 * suv.max(), 0, None)
    centroid = nib.affines.apply_affine(
        pet.affine, (np.argwhere(weights > 0) * weights[weights > 0, None]).sum(0) / weights.sum()
    )
    assert np.linalg.norm(centroid - np.array(lesion.centre)) < 6.0


# --------------------------------------------------------------------------- determinism
def test_same_seed_same_cohort_and_other_seed_differs(tiny: Path, tmp_path: Path) -> None:
    again = write_demo_cohort(tmp_path / "again", **TINY)
    for name in ("manifest.csv", "genomics.csv", "ehr.csv", "truth.csv", "cohort.json"):
        assert (again.parent / name).read_bytes() == (tiny.parent / name).read_bytes(), name
    pid = _with(_manifest(tiny), "ct")["patient_id"].iloc[0]
    for f in sorted((tiny.parent / "ct" / pid).glob("*.dcm")):
        assert (again.parent / "ct" / pid / f.name).read_bytes() == f.read_bytes()
    other = write_demo_cohort(tmp_path / "other", **{**TINY, "seed": TINY["seed"] + 1})
    assert (other.parent / "truth.csv").read_bytes() != (tiny.parent / "truth.csv").read_bytes()
    # a rerun into the same folder with another seed leaves one consistent series per patient
    rerun = write_demo_cohort(tmp_path / "again", **{**TINY, "seed": TINY["seed"] + 1})
    for folder in _with(_manifest(rerun), "ct")["ct"]:
        assert len(list((rerun.parent / folder).glob("*.dcm"))) == SHAPE[2]


def test_patients_do_not_depend_on_cohort_size() -> None:
    small = sample_patients(5, seed=11, modality_missing_rate=0.1, label_missing_rate=0.05)
    large = sample_patients(40, seed=11, modality_missing_rate=0.1, label_missing_rate=0.05)
    pd.testing.assert_frame_equal(small, large.iloc[:5])


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="n_patients"):
        write_demo_cohort(tmp_path, n_patients=0)
    with pytest.raises(ValueError, match="modality_missing_rate"):
        write_demo_cohort(tmp_path, n_patients=2, modality_missing_rate=1.0)
    with pytest.raises(ValueError, match="tiles_per_patient"):
        write_demo_cohort(tmp_path, n_patients=2, tiles_per_patient=(5, 2))
    assert not (tmp_path / "manifest.csv").exists()


# --------------------------------------------------------------------------- oracle
def test_oracle_metrics_keys_subsets_and_errors(tiny: Path) -> None:
    keys = {"oracle/grade_auroc", "oracle/survival_cindex", "oracle/response_auroc"}
    full = oracle_metrics(tiny.parent)
    assert set(full) == keys
    assert all(0.0 <= v <= 1.0 for v in full.values())  # NaN fails: all three are defined on these 12
    assert oracle_metrics(tiny) == full  # the manifest path works too
    recorded = json.loads((tiny.parent / "cohort.json").read_text())["oracle"]
    assert all(recorded[k] == pytest.approx(full[k], abs=1e-4) for k in keys)  # rounded to 4 decimals
    single = oracle_metrics(tiny.parent, ["P0001"])
    assert set(single) == keys and all(math.isnan(v) for v in single.values())  # no pair to rank
    manifest = _manifest(tiny)
    unlabelled = list(manifest.loc[manifest["grade"].isna(), "patient_id"])
    assert math.isnan(oracle_metrics(tiny.parent, unlabelled)["oracle/grade_auroc"])  # skipped, not scored
    with pytest.raises(ValueError, match="P9999"):
        oracle_metrics(tiny.parent, ["P0001", "P9999"])
    with pytest.raises(FileNotFoundError, match="not found"):
        oracle_metrics(tiny.parent / "ct")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_oracle_on_400_patients_is_in_the_target_band(seed: int) -> None:
    patients = sample_patients(400, seed=seed, modality_missing_rate=0.1, label_missing_rate=0.05)
    oracle = oracle_from_frame(patients)
    assert 0.83 <= oracle["oracle/grade_auroc"] <= 0.93
    assert 0.73 <= oracle["oracle/survival_cindex"] <= 0.84
    assert 0.78 <= oracle["oracle/response_auroc"] <= 0.91
    assert 0.25 <= 1 - patients["survival_event"].dropna().astype(float).mean() <= 0.45  # censored
    assert patients["grade"].dropna().astype(int).value_counts(normalize=True).min() > 0.2


def test_oracle_reads_truth_written_with_index_named_grade_columns() -> None:
    """truth.csv names P(grade = k) grade_prob_<k> for grades 1-3, as the grade head names its columns;
    a cohort written before (grade_prob_0..2 by class index) gives the same oracle."""
    patients = sample_patients(60, seed=0, modality_missing_rate=0.1, label_missing_rate=0.05)
    assert patients[["grade_prob_1", "grade_prob_2", "grade_prob_3"]].notna().all().all()
    before = patients.rename(
        columns={
            "grade_prob_1": "grade_prob_0",
            "grade_prob_2": "grade_prob_1",
            "grade_prob_3": "grade_prob_2",
        }
    )
    assert oracle_from_frame(before) == oracle_from_frame(patients)


# --------------------------------------------------------------------------- signal
def test_each_modality_carries_part_of_the_signal(tmp_path: Path) -> None:
    """Cheap per-modality summaries follow their own latent, none explains the risk, fused they do."""
    manifest_path = write_demo_cohort(
        tmp_path, n_patients=200, seed=1, volume_shape=(8, 8, 8), tile_size=16, tiles_per_patient=(1, 2)
    )
    root = manifest_path.parent
    manifest = _manifest(manifest_path).set_index("patient_id")
    truth = pd.read_csv(root / "truth.csv").set_index("patient_id")
    info = json.loads((root / "cohort.json").read_text())
    rows: dict[str, dict[str, float]] = {}
    for pid, row in manifest.iterrows():
        f = rows.setdefault(pid, {})
        if isinstance(row["ct"], str):
            hu = _read_ct(root / row["ct"])[1]
            f["ct"] = float(np.clip((hu - 40) / 90, 0, 1)[hu < 400].sum())  # lesion load, bone excluded
        if isinstance(row["pet"], str):
            f["pet"] = float(nib.load(root / row["pet"]).get_fdata().max())  # SUVmax
        if isinstance(row["mri"], str):
            t2 = nib.load(root / row["mri"] / "t2.nii.gz").get_fdata()
            f["mri"] = float(t2.max() / np.median(t2[t2 > 100]))  # T2 lesion ratio
        if isinstance(row["histology"], str):
            tiles = [np.asarray(Image.open(t), dtype=float) for t in (root / row["histology"]).glob("*.png")]
            f["histology"] = float(np.mean([(t.mean(-1) < 150).mean() for t in tiles]))  # nuclear area
    feats = pd.DataFrame.from_dict(rows, orient="index")
    genes = np.log(pd.read_csv(root / "genomics.csv").set_index("patient_id"))
    block = genes[info["genomics_signal_genes"]["proliferation"]]
    block = block - block.mean()
    feats["genomics"] = pd.Series(
        np.linalg.svd(block.to_numpy(), full_matrices=False)[0][:, 0], index=block.index
    )
    ehr = pd.read_csv(root / "ehr.csv").set_index("patient_id")
    feats["ehr"] = ehr["stage"].map({"I": 1, "II": 2, "III": 3, "IV": 4})

    own = {
        "ct": "aggressiveness",
        "pet": "proliferation",
        "mri": "sensitivity",
        "histology": "proliferation",
        "genomics": "proliferation",
        "ehr": "spread",
    }
    blind = {
        "ct": "proliferation",
        "mri": "proliferation",
        "genomics": "aggressiveness",
        "ehr": "sensitivity",
    }
    for modality in own:
        both = feats[[modality]].join(truth).dropna()
        assert len(both) > 150
        assert abs(spearmanr(both[modality], both[own[modality]])[0]) > 0.3, modality
        assert abs(spearmanr(both[modality], both["true_risk"])[0]) < 0.85, modality  # only part of the risk
        if modality in blind:
            assert abs(spearmanr(both[modality], both[blind[modality]])[0]) < 0.25, modality

    filled = feats.fillna(feats.mean())
    risk = truth.loc[filled.index, "true_risk"].to_numpy()

    def r2(columns: list[str]) -> float:
        design = np.column_stack([np.ones(len(filled)), filled[columns].to_numpy()])
        coef = np.linalg.lstsq(design, risk, rcond=None)[0]
        return 1.0 - np.var(risk - design @ coef) / np.var(risk)

    best_single = max(r2([m]) for m in own)
    assert best_single < 0.6 and r2(list(own)) > best_single + 0.1
    oracle = info["oracle"]
    assert oracle["oracle/grade_auroc"] > 0.8 and oracle["oracle/survival_cindex"] > 0.72
    assert oracle["oracle/response_auroc"] > 0.78
