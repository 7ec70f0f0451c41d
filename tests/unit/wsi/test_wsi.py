"""Whole-slide reading: Slide metadata and pixels, tissue mask, tiling at a target mpp, errors."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from fusion.wsi import SLIDE_SUFFIXES, Slide, TilingSpec, iter_tiles, tile_coordinates
from fusion.wsi.slide import to_rgb
from fusion.wsi.tiling import tile_footprint, tissue_fractions
from fusion.wsi.tissue import otsu_threshold, saturation, slide_tissue_mask, tissue_mask
from tests.unit.wsi.pyramid import blob_mask, he_like_image, write_pyramidal_tiff

W, H = 2048, 1536


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return he_like_image(W, H)


@pytest.fixture(scope="module")
def slide_path(image: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_pyramidal_tiff(tmp_path_factory.mktemp("wsi") / "case.tif", image, mpp=0.25, levels=3)


def test_slide_metadata_and_pixels(slide_path: Path, image: np.ndarray) -> None:
    with Slide(slide_path) as slide:
        assert slide.mpp == pytest.approx(0.25)
        assert slide.dimensions == (W, H)
        assert slide.level_count == 3
        assert slide.level_downsamples == pytest.approx((1.0, 2.0, 4.0))
        region = slide.read_region((100, 200), 0, (64, 32))
        assert region.dtype == np.uint8 and region.shape == (32, 64, 3)
        np.testing.assert_array_equal(region, image[200:232, 100:164])
        assert slide.read_level(2).shape == (H // 4, W // 4, 3)
        assert slide.best_level_for_downsample(3.0) == 1
        assert slide.best_level_for_downsample(0.5) == 0
        assert slide.best_level_for_downsample(100.0) == 2
    assert ".tif" in SLIDE_SUFFIXES and ".svs" in SLIDE_SUFFIXES


def test_otsu_matches_brute_force_and_splits_modes() -> None:
    rng = np.random.default_rng(1)
    values = np.clip(np.concatenate([rng.normal(0.1, 0.03, 3000), rng.normal(0.6, 0.05, 1000)]), 0, 1)
    cut = otsu_threshold(values)
    assert 0.2 < cut < 0.5
    best, best_var = None, -1.0
    for t in np.linspace(0, 1, 257)[1:-1]:
        lo, hi = values[values <= t], values[values > t]
        if len(lo) and len(hi):
            var = len(lo) * len(hi) * (lo.mean() - hi.mean()) ** 2
            if var > best_var:
                best, best_var = t, var
    assert abs(cut - best) < 0.02
    assert otsu_threshold(np.full(10, 0.3)) == pytest.approx(0.3)


def test_saturation_and_to_rgb() -> None:
    px = np.array([[[255, 255, 255], [255, 0, 0], [0, 0, 0], [200, 100, 100]]], dtype=np.uint8)
    np.testing.assert_allclose(saturation(px)[0], [0.0, 1.0, 0.0, 0.5])
    rgba = np.array([[[10, 20, 30, 255], [10, 20, 30, 0]]], dtype=np.uint8)
    np.testing.assert_array_equal(to_rgb(rgba)[0], [[10, 20, 30], [255, 255, 255]])
    assert to_rgb(np.zeros((2, 3, 1), np.uint8)).shape == (2, 3, 3)


def test_mask_covers_blob_not_background(slide_path: Path) -> None:
    with Slide(slide_path) as slide:
        mask, ds = slide_tissue_mask(slide, downsample=8.0)
    assert ds == pytest.approx(8.0) and mask.shape == (H // 8, W // 8)
    truth = np.asarray(Image.fromarray(blob_mask(W, H)).resize(mask.shape[::-1], Image.Resampling.NEAREST))
    iou = (mask & truth).sum() / (mask | truth).sum()
    assert iou > 0.9, iou
    assert not mask[:10, :].any() and not mask[:, -20:].any()  # glass above and right of the blob


@pytest.mark.parametrize("level", [240, 190])  # bright glass, and dim grey glass that is not "white"
def test_blank_image_has_no_tissue(level: int) -> None:
    rng = np.random.default_rng(2)
    blank = np.clip(level + rng.normal(0, 4, (64, 64, 3)), 0, 255).astype(np.uint8)
    assert not tissue_mask(blank).any()


def test_mpp_ignores_unusable_values(slide_path: Path) -> None:
    with Slide(slide_path) as slide:
        real = slide._slide
        slide._slide = SimpleNamespace(properties={"tiffslide.mpp-x": 0.0, "openslide.mpp-x": "0.5"})
        assert slide.mpp == 0.5
        slide._slide = SimpleNamespace(properties={"tiffslide.mpp-x": "nan", "openslide.mpp-x": "x"})
        assert slide.mpp is None
        slide._slide = real


def test_coords_inside_blob_row_major(slide_path: Path) -> None:
    spec = TilingSpec(tile_size=128, target_mpp=0.5, tissue_threshold=0.5)
    truth = blob_mask(W, H)
    with Slide(slide_path) as slide:
        fp = tile_footprint(slide, spec)
        coords = tile_coordinates(slide, spec)
        everything = tile_coordinates(slide, TilingSpec(tile_size=128, target_mpp=0.5, tissue_threshold=0.0))
    assert fp == 256
    assert coords.dtype == np.int64 and coords.ndim == 2 and coords.shape[1] == 2
    assert len(coords) >= 10
    assert (coords % fp == 0).all()
    order = np.lexsort((coords[:, 0], coords[:, 1]))
    np.testing.assert_array_equal(order, np.arange(len(coords)))
    for x, y in coords:
        assert truth[y : y + fp, x : x + fp].mean() >= 0.35, (x, y)
    assert len(everything) == (W // fp) * (H // fp)  # threshold 0 keeps the whole grid
    assert len(coords) < len(everything)
    # every grid tile that is fully blob must be kept
    full = [(x, y) for x, y in everything if truth[y : y + fp, x : x + fp].all()]
    assert full and set(full) <= {tuple(c) for c in coords}


def test_tile_at_half_mpp_covers_twice_the_pixels(slide_path: Path, image: np.ndarray) -> None:
    spec = TilingSpec(tile_size=224, target_mpp=0.5)
    with Slide(slide_path) as slide:
        coords = tile_coordinates(slide, spec)
        assert tile_footprint(slide, spec) == 448
        batches = list(iter_tiles(slide, coords, spec, batch_size=3))
    assert [len(b) for b in batches] == [min(3, len(coords) - i) for i in range(0, len(coords), 3)]
    tiles = np.concatenate(batches)
    assert tiles.shape == (len(coords), 224, 224, 3) and tiles.dtype == np.uint8
    for tile, (x, y) in zip(tiles, coords, strict=True):
        expected = np.asarray(Image.fromarray(image[y : y + 448, x : x + 448]).resize((224, 224), Image.BOX))
        assert np.abs(tile.astype(int) - expected.astype(int)).mean() < 2.0


def test_resized_tiles_match_physical_area(slide_path: Path, image: np.ndarray) -> None:
    # 300 level-0 px per tile: read at level 1 (150 px) and resized to 100 px
    spec = TilingSpec(tile_size=100, target_mpp=0.75, tissue_threshold=0.9)
    with Slide(slide_path) as slide:
        coords = tile_coordinates(slide, spec)[:4]
        tiles = next(iter_tiles(slide, coords, spec, batch_size=8))
    assert tiles.shape == (len(coords), 100, 100, 3)
    for tile, (x, y) in zip(tiles, coords, strict=True):
        expected = np.asarray(Image.fromarray(image[y : y + 300, x : x + 300]).resize((100, 100), Image.BOX))
        assert np.abs(tile.astype(int) - expected.astype(int)).mean() < 12.0
        wrong = np.asarray(Image.fromarray(image[y : y + 200, x : x + 200]).resize((100, 100), Image.BOX))
        assert (
            np.abs(tile.astype(int) - wrong.astype(int)).mean()
            > np.abs(tile.astype(int) - expected.astype(int)).mean()
        )


def test_no_tissue_slide_raises(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    blank = np.clip(243 + rng.normal(0, 3, (768, 1024, 3)), 0, 255).astype(np.uint8)
    path = write_pyramidal_tiff(tmp_path / "blank.tif", blank)
    with Slide(path) as slide, pytest.raises(ValueError, match=r"blank\.tif.*no tissue found"):
        tile_coordinates(slide, TilingSpec())


@pytest.mark.parametrize("content", [b"", b"not a tiff at all" * 100, b"II*\x00\x08\x00\x00\x00\xff\xff"])
def test_corrupt_or_missing_file_raises(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.svs"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=r"broken\.svs"):
        Slide(path)
    with pytest.raises(ValueError, match=r"nowhere\.tif.*not found"):
        Slide(tmp_path / "nowhere.tif")


def test_truncated_slide_raises(slide_path: Path, tmp_path: Path) -> None:
    path = tmp_path / "cut.tif"
    path.write_bytes(slide_path.read_bytes()[:5000])
    with pytest.raises(ValueError, match=r"cut\.tif"), Slide(path) as slide:
        slide.read_region((0, 0), 0, (512, 512))


def test_missing_mpp_needs_fallback(image: np.ndarray, tmp_path: Path) -> None:
    path = write_pyramidal_tiff(tmp_path / "nompp.tif", image, mpp=None)
    with Slide(path) as slide:
        assert slide.mpp is None
        with pytest.raises(ValueError, match=r"nompp\.tif.*fallback_mpp"):
            tile_coordinates(slide, TilingSpec())
        spec = TilingSpec(tile_size=128, target_mpp=0.5, fallback_mpp=0.5)
        assert tile_footprint(slide, spec) == 128
        coords = tile_coordinates(slide, spec)
        assert len(coords) > 0 and (coords % 128 == 0).all()


def test_tissue_fractions_exact() -> None:
    mask = np.zeros((4, 4), bool)
    mask[:2, :2] = True
    coords = np.array([[0, 0], [8, 0], [0, 8], [4, 4]], dtype=np.int64)
    np.testing.assert_allclose(tissue_fractions(mask, 4.0, coords, 8), [1.0, 0.0, 0.0, 0.25])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"tile_size": 0},
        {"tile_size": 2.5},
        {"target_mpp": 0.0},
        {"target_mpp": "fast"},
        {"tissue_threshold": 1.5},
        {"fallback_mpp": -1.0},
    ],
)
def test_spec_validation(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="TilingSpec"):
        TilingSpec(**kwargs)  # type: ignore[arg-type]


def test_spec_coerces_config_strings() -> None:
    spec = TilingSpec(tile_size=224, target_mpp="0.5", fallback_mpp="0.25")  # type: ignore[arg-type]
    assert spec.target_mpp == 0.5 and spec.fallback_mpp == 0.25
