"""fusion-extract-features: tile sources, tile encoders, the extraction engine and its CLI, tiny cohorts."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from fusion.errors import ConfigError
from fusion.features.extract import ExtractionError, autocast_dtype, encode_source, extract_cohort
from fusion.features.sources import FolderSource, make_source, parse_coords
from fusion.io.feature_files import read_features
from fusion.nn.tile_encoders import build_tile_encoder

TILE = 32


def _encoder(**kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random init is intended here
        torch.manual_seed(0)
        return build_tile_encoder("small_cnn", channels=(8, 16), out_dim=16, **kwargs)


def _tiles(folder: Path, n: int, named: bool, seed: int) -> list[tuple[int, int]]:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    coords = [(TILE * 7 * i, TILE * 3 * (i % 2)) for i in range(n)]
    for i, (x, y) in enumerate(coords):
        name = f"tile_x{x}_y{y}.png" if named else f"t{i:03d}.png"
        Image.fromarray(rng.integers(0, 255, (TILE, TILE, 3), dtype=np.uint8)).save(folder / name)
    return coords


@pytest.fixture
def cohort(tmp_path: Path) -> Path:
    """Four patients: named tiles, unnamed tiles, no histology, and a given feature file; plus a CT column
    and a genomics table beside the manifest, to check the derived manifest keeps them usable."""
    root = tmp_path / "cohort"
    _tiles(root / "tiles" / "p1", 5, named=True, seed=1)
    _tiles(root / "tiles" / "p2", 3, named=False, seed=2)
    from fusion.io.feature_files import write_features

    write_features(root / "given" / "p4.safetensors", torch.ones(2, 16), torch.zeros(2, 2), {"encoder": "x"})
    (root / "ct").mkdir()
    (root / "ct" / "p1.nii.gz").write_bytes(b"not read here")
    pd.DataFrame({"patient_id": ["p1", "p2"], "g1": [0.5, 1.5]}).to_csv(root / "genomics.csv", index=False)
    frame = pd.DataFrame(
        {
            "patient_id": ["p1", "p2", "p3", "p4"],
            "histology": ["tiles/p1", "tiles/p2", "", "given/p4.safetensors"],
            "ct": ["ct/p1.nii.gz", "", "", ""],
            "grade": [1, 2, 0, 1],
            "survival_time": [3.5, 10.0, 7.25, 1.0],
        }
    )
    frame.to_csv(root / "manifest.csv", index=False)
    return root / "manifest.csv"


def _extract(manifest: Path, out: Path, **kwargs):
    options = {"tile_size": TILE, "batch_size": 2, "num_workers": 0, "device": "cpu", "progress": False}
    return extract_cohort(manifest, out, _encoder(), **{**options, **kwargs})


def test_parse_coords_from_names_or_index():
    assert parse_coords(["tile_x10_y20.png", "a_x3-y4.jpg"]).tolist() == [[10, 20], [3, 4]]
    assert parse_coords(["tile_x10_y20.png", "other.png"]).tolist() == [[0, 0], [1, 0]]  # partial: index
    assert parse_coords(["x1_y1.png", "b_x1_y1.png"]).tolist() == [[0, 0], [1, 0]]  # duplicates: index
    assert parse_coords(["t.png"]).dtype == np.int64


def test_cohort_files_have_features_coords_and_metadata(cohort: Path, tmp_path: Path):
    out = tmp_path / "features"
    report = _extract(cohort, out)
    assert report.extracted == ["p1", "p2"] and report.given == ["p4"] and not report.failed
    assert report.tiles == 8
    bag1, bag2 = read_features(out / "p1.safetensors"), read_features(out / "p2.safetensors")
    assert bag1.features.shape == (5, 16) and bag2.features.shape == (3, 16)
    assert bag1.coords.tolist() == sorted([[TILE * 7 * i, TILE * 3 * (i % 2)] for i in range(5)], key=str)
    assert bag2.coords.tolist() == [[0, 0], [1, 0], [2, 0]]
    meta = bag1.metadata
    assert meta["encoder"] == "small_cnn" and meta["weights"] == "none" and meta["patient_id"] == "p1"
    assert (meta["tile_size"], meta["feature_dim"], meta["mpp"], meta["source"]) == ("32", "16", "null", "p1")
    assert not (out / "p3.safetensors").exists()
    # the features are the encoder's output on the same tiles, in coords order
    source = FolderSource(cohort.parent / "tiles" / "p1", TILE)
    with torch.inference_mode():
        expected = _encoder()(torch.from_numpy(source.read(0, len(source))))
    torch.testing.assert_close(bag1.features, expected, rtol=1e-4, atol=1e-5)


def test_workers_give_the_same_features(cohort: Path, tmp_path: Path):
    source = make_source(cohort.parent / "tiles" / "p1", TILE)
    encoder, device = _encoder(), torch.device("cpu")
    serial = encode_source(source, encoder, device, batch_size=2, num_workers=0)
    parallel = encode_source(source, encoder, device, batch_size=2, num_workers=2)
    torch.testing.assert_close(serial, parallel)


def test_resume_skips_done_patients_and_ignores_stale_temp_files(cohort: Path, tmp_path: Path):
    out = tmp_path / "features"
    out.mkdir()
    stale = out / ".p1.safetensors.abc123.tmp"  # what a killed write leaves behind
    stale.write_bytes(b"half a file")
    first = _extract(cohort, out)
    assert first.extracted == ["p1", "p2"]
    done = {p: (out / f"{p}.safetensors").stat().st_mtime_ns for p in ("p1", "p2")}
    (out / "p2.safetensors").unlink()
    second = _extract(cohort, out)
    assert second.resumed == ["p1"] and second.extracted == ["p2"]
    assert (out / "p1.safetensors").stat().st_mtime_ns == done["p1"]


def test_corrupt_tile_raises_naming_patient_and_file_or_is_skipped(cohort: Path, tmp_path: Path):
    bad = cohort.parent / "tiles" / "p2" / "t001.png"
    bad.write_bytes(b"\x89PNG truncated")
    with pytest.raises(ExtractionError, match=r"patient 'p2'.*t001\.png"):
        _extract(cohort, tmp_path / "a", num_workers=1)
    assert not (tmp_path / "a" / "p2.safetensors").exists()
    report = _extract(cohort, tmp_path / "b", on_error="skip")
    assert list(report.failed) == ["p2"] and "t001.png" in report.failed["p2"]
    assert report.extracted == ["p1"]
    derived = pd.read_csv(report.manifest, keep_default_na=False)
    assert derived.set_index("patient_id").loc["p2", "histology"] == ""  # missing, training proceeds


def test_missing_folder_is_an_error_naming_the_patient(cohort: Path, tmp_path: Path):
    frame = pd.read_csv(cohort)
    frame.loc[0, "histology"] = "tiles/nope"
    frame.to_csv(cohort, index=False)
    with pytest.raises(ExtractionError, match=r"patient 'p1'.*nope"):
        _extract(cohort, tmp_path / "out")


def test_derived_manifest_points_at_features_and_keeps_other_columns(cohort: Path, tmp_path: Path):
    report = _extract(cohort, tmp_path / "features")
    assert report.manifest == tmp_path / "features" / "manifest.csv"
    original = pd.read_csv(cohort, keep_default_na=False)
    derived = pd.read_csv(report.manifest, keep_default_na=False)
    root = report.manifest.parent
    assert derived["patient_id"].tolist() == original["patient_id"].tolist()
    pd.testing.assert_frame_equal(derived[["grade", "survival_time"]], original[["grade", "survival_time"]])
    cells = dict(zip(derived["patient_id"], derived["histology"], strict=True))
    assert cells["p3"] == "" and not Path(cells["p1"]).is_absolute()
    for pid in ("p1", "p2", "p4"):
        assert read_features(root / cells[pid]).features.shape[1] == 16
    assert (root / cells["p4"]).resolve() == (cohort.parent / "given" / "p4.safetensors").resolve()
    # other file columns still resolve to the same files; the genomics table travels with the manifest
    assert (root / derived.loc[0, "ct"]).resolve() == (cohort.parent / "ct" / "p1.nii.gz").resolve()
    assert (root / "genomics.csv").read_bytes() == (cohort.parent / "genomics.csv").read_bytes()
    from fusion.data.cohort import Cohort

    loaded = Cohort.load(report.manifest)
    assert len(loaded) == 4 and loaded.find_table("genomics") == (root / "genomics.csv").resolve()
    paths = loaded.paths("histology")
    assert paths["p3"] is None and all(paths[pid].exists() for pid in ("p1", "p2", "p4"))


def test_tile_encoders_weights_and_errors(tmp_path: Path):
    from safetensors.torch import save_file

    encoder = _encoder()
    x = torch.randint(0, 255, (2, TILE, TILE, 3), dtype=torch.uint8)
    save_file(encoder.backbone.state_dict(), tmp_path / "w.safetensors")
    loaded = build_tile_encoder("small_cnn", weights=tmp_path / "w.safetensors", channels=(8, 16), out_dim=16)
    assert loaded.weights_name == "w.safetensors" and not loaded.training
    torch.testing.assert_close(loaded(x), encoder(x))
    bad = {"module.proj.weight": torch.zeros(3), "extra.bias": torch.zeros(1)}
    torch.save({"state_dict": bad}, tmp_path / "bad.pt")
    with pytest.raises(
        ConfigError, match=r"bad\.pt.*missing key.*unexpected key.*extra\.bias.*shape mis.*proj\.weight"
    ):
        build_tile_encoder("small_cnn", weights=tmp_path / "bad.pt", channels=(8, 16), out_dim=16)
    with pytest.raises(FileNotFoundError, match="nothere"):
        build_tile_encoder("small_cnn", weights=tmp_path / "nothere.pt")
    with pytest.warns(UserWarning, match="RANDOM weights"):
        resnet = build_tile_encoder("resnet50")
    assert resnet.feature_dim == 2048 and resnet(x).shape == (2, 2048)
    with pytest.raises(ConfigError, match="unknown tile encoder"):
        build_tile_encoder("vgg")
    try:
        import timm  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="timm"):
            build_tile_encoder("timm:resnet18")
    assert autocast_dtype("auto", torch.device("cpu")) is None
    assert autocast_dtype("auto", torch.device("cuda")) is torch.bfloat16


def test_slide_source_tiles_a_pyramidal_tiff(tmp_path: Path):
    wsi = pytest.importorskip("fusion.wsi")
    pyramid = pytest.importorskip("tests.unit.wsi.pyramid")
    path = pyramid.write_pyramidal_tiff(tmp_path / "case.tif", pyramid.he_like_image(768, 512), mpp=0.25)
    spec = wsi.TilingSpec(tile_size=TILE, target_mpp=0.5)
    manifest = tmp_path / "m.csv"
    pd.DataFrame({"patient_id": ["s1"], "histology": ["case.tif"]}).to_csv(manifest, index=False)
    report = _extract(manifest, tmp_path / "out", spec=spec, batch_size=16)
    bag = read_features(tmp_path / "out" / "s1.safetensors")
    with wsi.Slide(path) as slide:
        expected = wsi.tile_coordinates(slide, spec)
    assert report.tiles == len(expected) > 0
    assert bag.coords.numpy().tolist() == np.asarray(expected).tolist() and bag.features.shape[1] == 16
    assert bag.metadata["mpp"] == "0.5" and bag.metadata["slide_mpp"] == "0.25"


def test_several_slides_of_one_patient_make_one_bag_with_slide_index(tmp_path: Path):
    wsi = pytest.importorskip("fusion.wsi")
    pyramid = pytest.importorskip("tests.unit.wsi.pyramid")
    image = pyramid.he_like_image(768, 512)
    for name in ("a.tif", "b.tif"):
        pyramid.write_pyramidal_tiff(tmp_path / name, image, mpp=0.25)
    spec = wsi.TilingSpec(tile_size=TILE, target_mpp=0.5)
    manifest = tmp_path / "m.csv"
    pd.DataFrame({"patient_id": ["s1", "s2"], "histology": ["a.tif; b.tif", "a.tif"]}).to_csv(
        manifest, index=False
    )
    _extract(manifest, tmp_path / "out", spec=spec, batch_size=5)
    both, one = (read_features(tmp_path / "out" / f"{p}.safetensors") for p in ("s1", "s2"))
    n = len(one.coords)
    assert len(both.coords) == 2 * n and both.extra["slide_index"].tolist() == [0] * n + [1] * n
    assert "slide_index" not in one.extra
    assert torch.allclose(both.features[:n], one.features, atol=1e-5)  # same slide twice: same features
    assert torch.allclose(both.features[n:], one.features, atol=1e-5)
    assert both.metadata["slides"] == '["a.tif", "b.tif"]'


def test_cli_runs_through_hydra(cohort: Path, tmp_path: Path):
    out, run_dir = tmp_path / "features", tmp_path / "run"
    args = [
        sys.executable,
        "-m",
        "fusion.cli.extract_features",
        f"data.manifest={cohort}",
        f"out={out}",
        "encoder=small_cnn",
        f"tile_size={TILE}",
        "num_workers=0",
        "progress=false",
        f"hydra.run.dir={run_dir}",
    ]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(args, capture_output=True, text=True, timeout=120, env=env, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "extracted 2 patient(s)" in done.stdout
    assert read_features(out / "p1.safetensors").metadata["encoder"] == "small_cnn"
    assert (out / "manifest.csv").is_file()
