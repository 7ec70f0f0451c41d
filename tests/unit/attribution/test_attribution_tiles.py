"""Tile explanations: attention and Integrated Gradients per tile, for tile folders and feature bags,
ABMIL and TransMIL; names and coordinates aligned with the files; completeness; the PNG maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch import nn

from fusion.attribution.context import PatientContext
from fusion.attribution.tile_maps import write_tile_maps
from fusion.attribution.tiles import TILE_COLUMNS, bag_tokens, instance_embeddings, tile_attributions
from fusion.fusers.transformer import TransformerFuser
from fusion.heads.grade import GradeHead
from fusion.heads.response import ResponseHead
from fusion.io.feature_files import write_features
from fusion.modalities.histology import HistologyEncoder, HistologyModality
from fusion.model import FusionModel
from tests.unit.wsi.pyramid import he_like_image, write_pyramidal_tiff

DIM = 8
N_TILES = 7
SIGNAL = 3  # the one tile that carries the signal
AGGREGATORS = ("abmil", "transmil")


def tile_folder(folder: Path) -> Path:
    """7 tiles, black except the SIGNAL one (white); plus a hidden file that is not a tile."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(N_TILES):
        value = 255 if i == SIGNAL else 0
        Image.fromarray(np.full((8, 8, 3), value, dtype=np.uint8)).save(folder / f"tile_{i:04d}.png")
    (folder / "._tile_0000.png").write_bytes(b"not an image")
    return folder


def feature_file(path: Path, slide: str = "case.tif") -> Path:
    """7 rows: feature 0 is 1 on the SIGNAL row only; feature 1 is 1 everywhere (carries nothing)."""
    features = torch.zeros(N_TILES, 4)
    features[SIGNAL, 0] = 1.0
    features[:, 1] = 1.0
    coords = torch.tensor([[64 * (i % 4), 64 * (i // 4)] for i in range(N_TILES)])
    slide_index = torch.tensor([0, 0, 0, 1, 1, 1, 1])
    metadata = {"source": slide, "tile_size": 32, "mpp": 0.5, "slide_mpp": 0.25}
    return write_features(path, features, coords, metadata, {"slide_index": slide_index})


def modality_for(kind: str, aggregator: str, max_tiles_eval: int | None = None) -> HistologyModality:
    return HistologyModality(
        input=kind,
        feature_dim=4 if kind == "features" else None,
        tile_size=8,
        embed_dim=DIM,
        tile_channels=(4,),
        attention_dim=4,
        dropout=0.0,
        aggregator=aggregator,
        transmil_layers=1,
        transmil_heads=2,
        transmil_landmarks=4,
        max_tiles_eval=max_tiles_eval,
    )


def make_context(modality: HistologyModality, ref: Path, seed: int = 0) -> PatientContext:
    torch.manual_seed(seed)
    encoder = modality.build_encoder()
    fuser = TransformerFuser(
        {"histology": DIM}, d_model=DIM, n_heads=2, n_layers=1, dropout=0.0, modality_dropout=0.0
    )
    heads = [GradeHead(DIM, classes=[1, 2, 3]), ResponseHead(DIM)]
    model = FusionModel({"histology": encoder}, {"histology": DIM}, fuser, heads).eval()
    data = modality.collate([modality.transform(modality.load(ref), train=False)])
    inputs = {"histology": {"present": torch.tensor([True]), "data": data}}
    return PatientContext("P1", model, dict(model.heads), inputs, {"histology": ref})


def signal_only(ctx: PatientContext, kind: str) -> None:
    """Hand-set the instance embedding so that only the SIGNAL tile's is non-zero: tile folders, a
    brightness detector in place of the tile CNN; feature bags, feature 0 copied into every dimension."""
    encoder = ctx.model.encoders["histology"]
    pattern = torch.linspace(0.2, 2.0, DIM)  # not constant: LayerNorm (TransMIL) maps constants to 0
    with torch.no_grad():
        if kind == "tiles":
            brightness, spread = nn.Linear(3, 1), nn.Linear(1, DIM)
            brightness.weight.fill_(1.0)
            brightness.bias.zero_()
            spread.weight[:, 0] = pattern
            spread.bias.zero_()
            encoder.tile_cnn = nn.Sequential(
                nn.AdaptiveAvgPool2d(1), nn.Flatten(), brightness, nn.ReLU(), spread
            )
        else:
            linear = encoder.embed[0]
            linear.weight.zero_()
            linear.weight[:, 0] = pattern
            linear.bias.zero_()


@pytest.fixture
def refs(tmp_path: Path) -> dict[str, Path]:
    return {
        "tiles": tile_folder(tmp_path / "P1"),
        "features": feature_file(tmp_path / "feats" / "P1.safetensors"),
    }


@pytest.mark.parametrize("aggregator", AGGREGATORS)
@pytest.mark.parametrize("kind", ["tiles", "features"])
def test_the_signal_tile_is_ranked_first_for_every_target(
    refs: dict[str, Path], kind: str, aggregator: str
) -> None:
    modality = modality_for(kind, aggregator)
    ctx = make_context(modality, refs[kind])
    signal_only(ctx, kind)
    frame = tile_attributions(ctx, "histology", modality)
    assert list(frame.columns) == list(TILE_COLUMNS)
    assert len(frame) == N_TILES * len(ctx.target_keys)
    expected = f"tile_{SIGNAL:04d}.png" if kind == "tiles" else SIGNAL
    for (head, target), rows in frame.groupby(["head", "target"]):
        ranked = rows.assign(size=rows["attribution"].abs()).sort_values("size", ascending=False)
        assert ranked["tile"].iloc[0] == expected, (head, target)
        assert ranked["size"].iloc[0] > 1e-4 and ranked["size"].iloc[1:].max() < 1e-6 * ranked["size"].iloc[0]
    assert set(frame["modality"]) == {"histology"}
    assert {tuple(k) for k in frame[["head", "target"]].drop_duplicates().to_numpy()} == set(ctx.target_keys)


def test_non_zero_tiles_that_carry_nothing_get_nothing(refs: dict[str, Path]) -> None:
    """Every tile embedded (feature 1 is on everywhere); uniform ABMIL attention and a projection blind to
    all dimensions but 0: only the SIGNAL tile moves the output, and only it is credited."""
    modality = modality_for("features", "abmil")
    ctx = make_context(modality, refs["features"])
    encoder = ctx.model.encoders["histology"]
    with torch.no_grad():
        encoder.embed[0].weight.zero_()
        encoder.embed[0].weight[0, 0] = 1.0
        encoder.embed[0].weight[1:, 1] = 1.0
        encoder.embed[0].bias.zero_()
        encoder.aggregator.attention_w.weight.zero_()
        encoder.proj.weight[:, 1:] = 0.0
    frame = tile_attributions(ctx, "histology", modality)
    for _, rows in frame.groupby(["head", "target"]):
        others = rows[rows["tile"] != SIGNAL]["attribution"].abs()
        assert others.max() < 1e-6 < abs(float(rows[rows["tile"] == SIGNAL]["attribution"].iloc[0]))
    np.testing.assert_allclose(frame["attention"], 1.0 / N_TILES, rtol=1e-6)


#: TransMIL's gradients through the Nystrom pinv are unreliable where the landmark kernel is near singular
#: (a small random model: near-uniform attention): autograd disagrees with finite differences there
TRANSMIL_PINV = pytest.mark.xfail(
    strict=True, reason="TransMIL's Nystrom pinv gradient (fusion/nn/transmil.py)"
)


@pytest.mark.parametrize("aggregator", ["abmil", pytest.param("transmil", marks=TRANSMIL_PINV)])
@pytest.mark.parametrize("kind", ["tiles", "features"])
def test_completeness_attributions_add_up_to_the_change_from_the_zero_bag(
    refs: dict[str, Path], kind: str, aggregator: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    modality = modality_for(kind, aggregator)
    ref = refs[kind]
    if kind == "tiles":  # random tiles, so that every tile is embedded differently
        rng = np.random.default_rng(1)
        ref = tmp_path / "random"
        ref.mkdir()
        for i in range(N_TILES):
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(ref / f"t{i}.png")
    ctx = make_context(modality, ref, seed=2)
    frame = tile_attributions(ctx, "histology", modality, n_steps=64)
    encoder = ctx.model.encoders["histology"]
    h, mask, _ = instance_embeddings(encoder, ctx.inputs["histology"]["data"])
    with torch.no_grad():
        at_zero = ctx.targets_with("histology", bag_tokens(encoder, torch.zeros_like(h), mask))
    prediction = ctx.prediction()
    sums = frame.groupby(["head", "target"])["attribution"].sum()
    changes = []
    for key in ctx.target_keys:
        change = prediction[key] - float(at_zero[key][0])
        changes.append(abs(change))
        assert sums[key] == pytest.approx(change, abs=1e-3 + 1e-2 * abs(change)), key
    assert max(changes) > 1e-3  # the check is not vacuous
    assert "do not add up" not in caplog.text


def test_a_completeness_miss_is_warned_without_patient_values(
    refs: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    modality = modality_for("features", "transmil")
    ctx = make_context(modality, refs["features"], seed=2)
    tile_attributions(ctx, "histology", modality)
    assert "do not add up" in caplog.text and "P1" not in caplog.text


def test_tile_names_follow_the_evaluation_subsample(refs: dict[str, Path]) -> None:
    modality = modality_for("tiles", "abmil", max_tiles_eval=3)  # evenly spaced: tiles 0, 3, 6
    ctx = make_context(modality, refs["tiles"])
    signal_only(ctx, "tiles")
    frame = tile_attributions(ctx, "histology", modality)
    assert list(frame["tile"].iloc[:3]) == ["tile_0000.png", "tile_0003.png", "tile_0006.png"]
    top = frame.loc[frame["attribution"].abs().groupby([frame["head"], frame["target"]]).idxmax()]
    assert set(top["tile"]) == {"tile_0003.png"}  # the white tile, named as on disk
    assert frame[["x", "y", "slide_index"]].isna().all().all()
    assert np.allclose(frame.groupby(["head", "target"])["attention"].sum(), 1.0, atol=1e-5)


def test_feature_bags_keep_rows_coordinates_and_slide_index(refs: dict[str, Path]) -> None:
    modality = modality_for("features", "transmil", max_tiles_eval=4)  # rows 0, 2, 4, 6
    ctx = make_context(modality, refs["features"])
    frame = tile_attributions(ctx, "histology", modality)
    one = frame[frame["target"] == frame["target"].iloc[0]]
    assert list(one["tile"]) == [0, 2, 4, 6]
    assert list(one["x"]) == [0, 128, 0, 128] and list(one["y"]) == [0, 0, 64, 64]
    assert list(one["slide_index"]) == [0, 0, 1, 1]


def test_a_modality_that_is_not_histology_gets_an_empty_frame(refs: dict[str, Path]) -> None:
    ctx = make_context(modality_for("tiles", "abmil"), refs["tiles"])
    assert tile_attributions(ctx, "histology", object()).empty  # type: ignore[arg-type]


def test_a_tile_folder_that_changed_since_loading_is_named(refs: dict[str, Path]) -> None:
    modality = modality_for("tiles", "abmil")
    ctx = make_context(modality, refs["tiles"])
    (refs["tiles"] / "tile_0099.png").write_bytes((refs["tiles"] / "tile_0000.png").read_bytes())
    with pytest.raises(ValueError, match=r"patient 'P1'.*7 tiles in the model input but 8"):
        tile_attributions(ctx, "histology", modality)


def _decoded(paths: list[Path]) -> list[str]:
    names = []
    for path in paths:
        if path.suffix == ".png":
            with Image.open(path) as image:
                image.load()
                assert image.size[0] > 100 and image.size[1] > 50
        names.append(path.name)
    return names


def test_tile_folder_maps_are_a_csv_and_decodable_mosaics(refs: dict[str, Path], tmp_path: Path) -> None:
    modality = modality_for("tiles", "transmil")
    ctx = make_context(modality, refs["tiles"])
    frame = tile_attributions(ctx, "histology", modality)
    paths = write_tile_maps(frame, ctx, "histology", modality, tmp_path / "out")
    assert _decoded(paths) == ["P1.csv", "P1.png", "P1_grade.png", "P1_response.png"]
    assert all(p.parent == tmp_path / "out" / "tiles" for p in paths)
    pd.testing.assert_frame_equal(
        pd.read_csv(paths[0]), frame.astype({"x": float, "y": float, "slide_index": float}), check_dtype=False
    )
    other = write_tile_maps(frame, ctx, "he", modality, tmp_path / "out")
    assert [p.name for p in other][:2] == ["P1_he.csv", "P1_he.png"]  # a second histology modality


def test_feature_bag_maps_on_the_slide_thumbnail_and_without_it(
    refs: dict[str, Path], tmp_path: Path
) -> None:
    modality = modality_for("features", "abmil")
    one_slide = feature_file(tmp_path / "one" / "P1.safetensors")
    write_features(  # the same bag from one slide only, which lies next to the feature file
        one_slide,
        torch.rand(N_TILES, 4),
        torch.tensor([[64 * i, 32] for i in range(N_TILES)]),
        {"source": "case.tif", "tile_size": 32, "mpp": 0.5, "slide_mpp": 0.25},
    )
    write_pyramidal_tiff(tmp_path / "one" / "case.tif", he_like_image(512, 256), mpp=0.25, levels=2)
    ctx = make_context(modality, one_slide)
    frame = tile_attributions(ctx, "histology", modality)
    on_slide = write_tile_maps(frame, ctx, "histology", modality, tmp_path / "slide")
    assert _decoded(on_slide) == ["P1.csv", "P1.png", "P1_grade.png", "P1_response.png"]

    ctx = make_context(modality, refs["features"])  # two slides, neither on disk: the coordinate plane
    frame = tile_attributions(ctx, "histology", modality)
    plane = write_tile_maps(frame, ctx, "histology", modality, tmp_path / "plane")
    assert _decoded(plane) == ["P1.csv", "P1.png", "P1_grade.png", "P1_response.png"]
    assert Image.open(on_slide[1]).tobytes() != Image.open(plane[1]).tobytes()
    assert write_tile_maps(frame.iloc[:0], ctx, "histology", modality, tmp_path / "none") == []


def test_gradients_flow_with_no_grad_active_outside(refs: dict[str, Path]) -> None:
    modality = modality_for("tiles", "abmil")
    ctx = make_context(modality, refs["tiles"])
    with torch.no_grad():
        frame = tile_attributions(ctx, "histology", modality)
    assert frame["attribution"].abs().sum() > 0
    assert isinstance(ctx.model.encoders["histology"], HistologyEncoder)
