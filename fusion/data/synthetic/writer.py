"""`write_demo_cohort`: the synthetic demo cohort as a folder of real files (the README's cohort layout).

    manifest.csv  genomics.csv  ehr.csv  truth.csv  cohort.json
    ct/<pid>/<random hex>.dcm      mri/<pid>/{t1,t2,flair}.nii.gz
    pet/<pid>.nii.gz               histology/<pid>/tile_XXXX.png
    ct_mask/<pid>.nii.gz           (the CT lesion mask, in CT's world geometry, for patients with CT)
    truth/genes.csv                gene, latent, loading: every signal gene, its block's latent and
                                   its signed loading (the other genes are noise)
    truth/tiles.csv                patient_id, tile, tumour: each tile's file name and 1 = tumour,
                                   0 = stroma (what tile explanations are checked against)

`truth.csv` holds each patient's hidden latents and the Bayes-optimal predictions; `truth/` the
per-gene and per-tile truth. Both record what the generator drew, nothing more: the other files do
not depend on them.

Paths in the manifest are relative to its folder; an empty cell means the modality (or label) is
missing. Everything is deterministic given `seed`; nothing is printed.
"""

from __future__ import annotations

import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import cast

import numpy as np
import pandas as pd

from fusion.data.synthetic import dicom, histology, imaging, tables
from fusion.data.synthetic.latent import LATENTS, MODALITIES, SIGNAL_DESIGN, patient_rng, sample_patients
from fusion.data.synthetic.oracle import GRADE_PROB_COLUMNS, oracle_from_frame

MANIFEST_COLUMNS = (
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
)
TRUTH_COLUMNS = ("patient_id", *LATENTS, "true_risk", *GRADE_PROB_COLUMNS, "response_prob")
FILE_MODALITIES = ("ct", "mri", "pet", "histology")


def _check_arguments(
    n_patients: int,
    volume_shape: tuple[int, int, int],
    tile_size: int,
    tiles_per_patient: tuple[int, int],
    n_genes: int,
    modality_missing_rate: float,
    label_missing_rate: float,
) -> None:
    problems = []
    if n_patients < 1:
        problems.append(f"n_patients must be >= 1, got {n_patients}")
    if len(volume_shape) != 3 or min(volume_shape) < 2:
        problems.append(f"volume_shape must be 3 sizes >= 2, got {volume_shape}")
    if tile_size < 8:
        problems.append(f"tile_size must be >= 8 pixels, got {tile_size}")
    if len(tiles_per_patient) != 2 or not 1 <= tiles_per_patient[0] <= tiles_per_patient[1]:
        problems.append(f"tiles_per_patient must be (low, high), 1 <= low <= high, got {tiles_per_patient}")
    if n_genes < 3:
        problems.append(f"n_genes must be >= 3, got {n_genes}")
    for name, rate in (
        ("modality_missing_rate", modality_missing_rate),
        ("label_missing_rate", label_missing_rate),
    ):
        if not 0.0 <= rate < 1.0:
            problems.append(f"{name} must be in [0, 1), got {rate}")
    if problems:
        raise ValueError("write_demo_cohort: " + "; ".join(problems))


def _write_patient_files(
    root: Path,
    patient: pd.Series,
    index: int,
    seed: int,
    volume_shape: tuple[int, int, int],
    tile_size: int,
    tiles_per_patient: tuple[int, int],
) -> tuple[dict[str, str], list[tuple[str, str, int]]]:
    """Write one patient's imaging and histology; returns modality -> manifest path (relative), and
    the `truth/tiles.csv` rows of its tiles (patient_id, tile file name, 1 = tumour)."""
    pid = patient["patient_id"]
    latents = {name: float(patient[name]) for name in LATENTS}
    lesion = imaging.draw_lesion(seed, index, latents)
    paths = {}
    tiles: list[tuple[str, str, int]] = []
    if patient["has_ct"]:
        rng = patient_rng(seed, index, "ct")
        hu = imaging.render_ct(volume_shape, lesion, patient["site"], rng)
        spacing, origin = imaging.ct_geometry(volume_shape)
        age = int(patient["age"])
        identity = dicom.fake_identifiers(index, age, seed)
        dicom.write_ct_series(
            root / "ct" / pid, hu, spacing, origin, pid, identity, patient["sex"], age, seed, rng
        )
        paths["ct"] = f"ct/{pid}"
        if imaging.write_ct_mask(root / "ct_mask" / f"{pid}.nii.gz", volume_shape, lesion):
            paths["ct_mask"] = f"ct_mask/{pid}.nii.gz"
    if patient["has_mri"]:
        imaging.write_mri(
            root / "mri" / pid, volume_shape, lesion, patient["site"], patient_rng(seed, index, "mri")
        )
        paths["mri"] = f"mri/{pid}"
    if patient["has_pet"]:
        imaging.write_pet(
            root / "pet" / f"{pid}.nii.gz", volume_shape, lesion, patient_rng(seed, index, "pet")
        )
        paths["pet"] = f"pet/{pid}.nii.gz"
    if patient["has_histology"]:
        low, high = tiles_per_patient
        n_tiles = int(patient_rng(seed, index, "tile-count").integers(low, high + 1))
        written = histology.write_tiles(root / "histology" / pid, seed, index, latents, n_tiles, tile_size)
        tiles = [(pid, path.name, int(tumour)) for path, tumour in written]
        paths["histology"] = f"histology/{pid}"
    return paths, tiles


def _json_safe(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 4)


def write_demo_cohort(
    out: str | Path,
    n_patients: int = 400,
    seed: int = 0,
    volume_shape: tuple[int, int, int] = (32, 32, 32),
    tile_size: int = 32,
    tiles_per_patient: tuple[int, int] = (4, 12),
    n_genes: int = 64,
    modality_missing_rate: float = 0.1,
    label_missing_rate: float = 0.05,
) -> Path:
    """Write the cohort folder and return the manifest path.

    A hidden tumour state per patient drives every modality and label; each modality sees only
    part of it (`latent.SIGNAL_DESIGN`), and `truth.csv` holds the Bayes-optimal predictions
    (see `oracle_metrics`). Files already in `out` with other names are left alone; a patient's
    own CT and tile folders are emptied of slices/tiles before writing.
    """
    # 3 sizes: `_check_arguments` refuses any other number
    volume_shape = cast(tuple[int, int, int], tuple(int(n) for n in volume_shape))
    tiles_per_patient = (int(tiles_per_patient[0]), int(tiles_per_patient[1]))
    _check_arguments(
        n_patients,
        volume_shape,
        tile_size,
        tiles_per_patient,
        n_genes,
        modality_missing_rate,
        label_missing_rate,
    )
    root = Path(out).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    patients = sample_patients(n_patients, seed, modality_missing_rate, label_missing_rate)

    manifest = patients[["patient_id", "site"]].copy()
    for modality in (*FILE_MODALITIES, "ct_mask"):
        manifest[modality] = ""
    # file writing and compression release the GIL: threads overlap them; every patient has its
    # own random streams, so the result does not depend on the scheduling
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        written = pool.map(
            lambda item: _write_patient_files(
                root, item[1], int(item[0]), seed, volume_shape, tile_size, tiles_per_patient
            ),
            patients.iterrows(),
        )
        tile_truth = []
        for index, (paths, tiles) in zip(patients.index, written, strict=True):
            for modality, path in paths.items():
                manifest.loc[index, modality] = path
            tile_truth.extend(tiles)
    for label in ("grade", "survival_time", "survival_event", "response"):
        manifest[label] = patients[label]
    manifest = manifest[list(MANIFEST_COLUMNS)]

    manifest_path = root / "manifest.csv"
    manifest.to_csv(manifest_path, index=False)
    tables.genomics_table(patients, n_genes, seed).to_csv(root / "genomics.csv", index=False)
    tables.ehr_table(patients, seed).to_csv(root / "ehr.csv", index=False)
    truth = patients[list(TRUTH_COLUMNS)].round(6)
    truth.to_csv(root / "truth.csv", index=False)
    (root / "truth").mkdir(exist_ok=True)
    tables.gene_truth(n_genes, seed).to_csv(root / "truth" / "genes.csv", index=False)
    pd.DataFrame(tile_truth, columns=["patient_id", "tile", "tumour"]).to_csv(
        root / "truth" / "tiles.csv", index=False
    )

    oracle = oracle_from_frame(manifest.merge(truth, on="patient_id"))
    summary = {
        "generator": "fusion.data.synthetic.write_demo_cohort",
        "parameters": {
            "n_patients": n_patients,
            "seed": seed,
            "volume_shape": list(volume_shape),
            "tile_size": tile_size,
            "tiles_per_patient": list(tiles_per_patient),
            "n_genes": n_genes,
            "modality_missing_rate": modality_missing_rate,
            "label_missing_rate": label_missing_rate,
        },
        "oracle": {key: _json_safe(value) for key, value in oracle.items()},
        "patients_with_modality": {m: int(patients[f"has_{m}"].sum()) for m in MODALITIES},
        "labelled_patients": {
            "grade": int(patients["grade"].notna().sum()),
            "survival": int(patients["survival_time"].notna().sum()),
            "response": int(patients["response"].notna().sum()),
        },
        "censored_fraction": _json_safe(float(1.0 - patients["survival_event"].dropna().astype(float).mean()))
        if patients["survival_event"].notna().any()
        else None,
        "grade_classes": {"grade_prob_1": 1, "grade_prob_2": 2, "grade_prob_3": 3},
        "signal_design": SIGNAL_DESIGN,
        "genomics_signal_genes": tables.gene_blocks(n_genes, seed),
        "geometry": {
            "ct_spacing_mm": [round(float(s), 4) for s in imaging.ct_geometry(volume_shape)[0]],
            "mri_affine": np.round(imaging.mri_affine(volume_shape), 4).tolist(),
            "pet_shape": list(imaging.pet_shape(volume_shape)),
            "pet_affine": np.round(imaging.pet_affine(imaging.pet_shape(volume_shape)), 4).tolist(),
        },
    }
    (root / "cohort.json").write_text(json.dumps(summary, indent=2) + "\n")
    return manifest_path
