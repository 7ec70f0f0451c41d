"""Histology modality: tile folders written with PIL -> load, transforms, padded bags, MIL encoder."""

from __future__ import annotations

import re
from importlib.resources import files
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image

from fusion.data.cohort import Cohort
from fusion.io.feature_files import write_features
from fusion.modalities.histology import HistologyEncoder, HistologyModality
from fusion.modalities.histology_inputs import dihedral_augment, hed_jitter
from fusion.nn.bag_encoder import FeatureBagEncoder
from fusion.nn.tile_cnn import TileCNN
from fusion.nn.transmil import TransMIL

YAML = Path(str(files("fusion.conf"))) / "modality" / "histology.yaml"


def write_tiles(folder: Path, n: int, size: int = 40, seed: int = 0, suffix: str = ".png") -> Path:
    """n random RGB tiles; tile i has its red channel's top-left pixel set to 10 * i (to check order)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        pixels[0, 0, 0] = 10 * i
        Image.fromarray(pixels).save(folder / f"tile_{i:03d}{suffix}")
    return folder


def small_modality(**kwargs) -> HistologyModality:
    args = {"tile_size": 16, "embed_dim": 8, "tile_channels": (4, 8), "attention_dim": 6, "dropout": 0.0}
    return HistologyModality(**(args | kwargs))


def dihedral_variants(tile: torch.Tensor) -> list[torch.Tensor]:
    return [torch.rot90(t, k, dims=(-2, -1)) for t in (tile, tile.flip(-1)) for k in range(4)]


# ----------------------------------------------------------------------------- load / check
def test_load_reads_every_tile_sorted_by_name_as_uint8(tmp_path: Path) -> None:
    folder = write_tiles(tmp_path / "p1", 5, size=16)
    Image.fromarray(np.zeros((16, 16), dtype=np.uint8)).save(folder / "tile_005.jpg")  # greyscale -> RGB
    Image.fromarray(np.zeros((16, 16, 4), dtype=np.uint8)).save(folder / "tile_006.tif")  # RGBA -> RGB
    (folder / "notes.txt").write_text("not a tile")
    (folder / "._tile_000.png").write_bytes(b"\x00\x05\x16\x07 macOS resource fork")
    tiles = small_modality().load(folder)
    assert tiles.dtype == torch.uint8 and tiles.shape == (7, 3, 16, 16)
    assert tiles[:5, 0, 0, 0].tolist() == [0, 10, 20, 30, 40]
    assert torch.all(tiles[5:] == 0)


def test_load_resizes_tiles_to_tile_size(tmp_path: Path) -> None:
    folder = write_tiles(tmp_path / "p1", 3, size=40)
    Image.fromarray(np.full((20, 30, 3), 200, dtype=np.uint8)).save(folder / "wide.png")
    tiles = small_modality(tile_size=32).load(folder)
    assert tiles.shape == (4, 3, 32, 32)
    assert torch.all(tiles[3] == 200)


@pytest.mark.parametrize("case", ["missing", "empty", "corrupt", "file"])
def test_broken_folders_raise_value_error_naming_the_path(tmp_path: Path, case: str) -> None:
    folder = tmp_path / "p1"
    bad = folder
    if case == "empty":
        folder.mkdir()
        (folder / "readme.txt").write_text("no images here")
    elif case == "corrupt":
        write_tiles(folder, 2)
        bad = folder / "tile_001.png"
        bad.write_bytes(bad.read_bytes()[:60])  # truncated PNG
    elif case == "file":
        folder = bad = tmp_path / "p1.png"
        write_tiles(tmp_path / "x", 1)
        (tmp_path / "x" / "tile_000.png").rename(bad)
    modality = small_modality()
    with pytest.raises(ValueError, match=re.escape(str(bad))):
        modality.load(folder)
    if case != "corrupt":  # check() is cheap and does not decode images
        problems = modality.check(folder)
        assert len(problems) == 1 and str(folder) in problems[0]


def test_check_accepts_a_good_folder_and_a_missing_reference(tmp_path: Path) -> None:
    modality = small_modality()
    assert modality.check(write_tiles(tmp_path / "p1", 2, suffix=".jpeg")) == []
    assert modality.check(None) == []


# ----------------------------------------------------------------------------- transforms
def test_train_subsample_respects_cap_and_eval_keeps_all() -> None:
    item = torch.arange(12).view(12, 1, 1, 1).expand(12, 3, 4, 4).to(torch.uint8).contiguous()
    modality = small_modality(max_tiles_train=5, augment=False)
    torch.manual_seed(0)
    seen = set()
    for _ in range(5):
        out = modality.transform(item, train=True)
        ids = out[:, 0, 0, 0].tolist()
        assert out.dtype == torch.uint8 and out.shape == (5, 3, 4, 4) and len(set(ids)) == 5
        seen.update(ids)
    assert len(seen) > 5  # random, not always the same tiles
    assert torch.equal(modality.transform(item, train=False), item)
    small = item[:3]
    assert torch.equal(modality.transform(small, train=True), small)  # below the cap: all tiles


def test_eval_cap_is_deterministic_and_evenly_spaced() -> None:
    item = torch.arange(10).view(10, 1, 1, 1).expand(10, 3, 2, 2).to(torch.uint8).contiguous()
    modality = small_modality(max_tiles_eval=4)
    first = modality.transform(item, train=False)
    assert first[:, 0, 0, 0].tolist() == [0, 3, 6, 9]
    assert torch.equal(modality.transform(item, train=False), first)


def test_augmentation_applies_dihedral_transforms_per_tile_without_touching_the_input() -> None:
    torch.manual_seed(0)
    item = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8)
    original = item.clone()
    out = dihedral_augment(item)
    assert torch.equal(item, original)
    assert not torch.equal(out, item)
    for tile, new in zip(item, out, strict=True):
        assert any(torch.equal(new, v) for v in dihedral_variants(tile))


def test_hed_jitter_is_mild_and_zero_strength_is_identity() -> None:
    torch.manual_seed(0)
    tiles = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    assert torch.equal(hed_jitter(tiles, 0.0), tiles)
    # the stain-space round trip alone reproduces the input (up to rounding)
    assert (hed_jitter(tiles, 1e-9).int() - tiles.int()).abs().max() <= 1
    jittered = hed_jitter(tiles, 0.05)
    assert jittered.dtype == torch.uint8 and not torch.equal(jittered, tiles)
    assert (jittered.float() - tiles.float()).abs().mean() < 40


def test_train_transform_with_augmentation_keeps_shape_and_dtype() -> None:
    item = torch.randint(0, 256, (20, 3, 16, 16), dtype=torch.uint8)
    out = small_modality(max_tiles_train=16).transform(item, train=True)
    assert out.shape == (16, 3, 16, 16) and out.dtype == torch.uint8


# ----------------------------------------------------------------------------- collate / encoder
def test_collate_pads_variable_bags_and_masks_real_tiles() -> None:
    bags = [torch.full((n, 3, 4, 4), n, dtype=torch.uint8) for n in (2, 5, 1)]
    batch = small_modality().collate(bags)
    assert batch["tiles"].shape == (3, 5, 3, 4, 4) and batch["tiles"].dtype == torch.uint8
    assert batch["mask"].dtype == torch.bool
    assert batch["mask"].sum(dim=1).tolist() == [2, 5, 1]
    assert torch.all(batch["tiles"][~batch["mask"]] == 0)
    assert torch.all(batch["tiles"][0, :2] == 2)
    with pytest.raises(ValueError, match="different shapes"):
        small_modality().collate(
            [torch.zeros(2, 3, 4, 4, dtype=torch.uint8), torch.zeros(1, 3, 8, 8, dtype=torch.uint8)]
        )


def _padded_tile_by_tile(bags: list[torch.Tensor], dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference: zeros, then a Python copy per tile (what the vectorised padding must equal)."""
    longest = max(bag.shape[0] for bag in bags)
    out = torch.zeros((len(bags), longest, *bags[0].shape[1:]), dtype=dtype)
    mask = torch.zeros((len(bags), longest), dtype=torch.bool)
    for b, bag in enumerate(bags):
        for t in range(bag.shape[0]):
            out[b, t] = bag[t].to(dtype)
            mask[b, t] = True
    return out, mask


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_padding_equals_a_tile_by_tile_copy_on_random_bags(seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    sizes = torch.randint(1, 40, (int(torch.randint(1, 9, (1,), generator=generator)),), generator=generator)
    tiles = [torch.randint(0, 256, (int(n), 3, 6, 6), generator=generator, dtype=torch.uint8) for n in sizes]
    batch = small_modality().collate(tiles)
    reference, mask = _padded_tile_by_tile(tiles, torch.uint8)
    assert batch["tiles"].dtype == torch.uint8 and torch.equal(batch["tiles"], reference)
    assert torch.equal(batch["mask"], mask)
    bags = [
        {
            "features": torch.randn(int(n), 5, generator=generator).to(
                torch.float16 if i % 2 else torch.float32
            ),
            "coords": torch.randint(0, 10_000, (int(n), 2), generator=generator),
        }
        for i, n in enumerate(sizes)
    ]
    dtype = torch.float32 if len(bags) > 1 else bags[0]["features"].dtype  # mixed dtypes -> float32
    batch = small_modality(input="features", feature_dim=5).collate(bags)
    features, mask = _padded_tile_by_tile([b["features"] for b in bags], dtype)
    coords, _ = _padded_tile_by_tile([b["coords"] for b in bags], torch.int64)
    assert batch["features"].dtype == dtype and torch.equal(batch["features"], features)
    assert torch.equal(batch["coords"], coords) and torch.equal(batch["mask"], mask)


def test_encoder_output_shape_and_attention() -> None:
    torch.manual_seed(0)
    modality = small_modality()
    bags = [torch.randint(0, 256, (n, 3, 16, 16), dtype=torch.uint8) for n in (3, 7)]
    encoder = modality.build_encoder().eval()
    out = encoder(modality.collate(bags))
    assert out.shape == (2, modality.out_dim) and torch.isfinite(out).all()
    attention = encoder.last_attention
    assert attention is not None and attention.shape == (2, 7)
    torch.testing.assert_close(attention.sum(dim=1), torch.ones(2))
    assert torch.all(attention[0, 3:] == 0) and torch.all(attention[0, :3] > 0)


def test_padding_does_not_change_a_bags_embedding() -> None:
    torch.manual_seed(0)
    modality = small_modality()
    small, big = (torch.randint(0, 256, (n, 3, 16, 16), dtype=torch.uint8) for n in (3, 9))
    encoder = modality.build_encoder().eval()
    with torch.no_grad():
        alone = encoder(modality.collate([small]))
        batched = encoder(modality.collate([small, big]))
    torch.testing.assert_close(batched[0:1], alone, atol=1e-5, rtol=1e-4)


def test_bag_embedding_is_permutation_invariant() -> None:
    torch.manual_seed(0)
    modality = small_modality()
    bag = torch.randint(0, 256, (6, 3, 16, 16), dtype=torch.uint8)
    encoder = modality.build_encoder().eval()
    with torch.no_grad():
        reference = encoder(modality.collate([bag]))
        shuffled = encoder(modality.collate([bag[torch.randperm(6)]]))
    torch.testing.assert_close(shuffled, reference, atol=1e-5, rtol=1e-4)


def test_backward_reaches_the_tile_cnn() -> None:
    torch.manual_seed(0)
    modality = small_modality(dropout=0.1)
    bags = [torch.randint(0, 256, (n, 3, 16, 16), dtype=torch.uint8) for n in (2, 4)]
    encoder = modality.build_encoder().train()
    encoder(modality.collate(bags)).sum().backward()
    grads = [p.grad for p in encoder.tile_cnn.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert encoder.tile_cnn.features[0].weight.grad.abs().sum() > 0


def test_encoder_rejects_a_bag_without_tiles() -> None:
    encoder = small_modality().build_encoder()
    batch = {
        "tiles": torch.zeros(2, 3, 3, 16, 16, dtype=torch.uint8),
        "mask": torch.tensor([[1, 1, 0], [0, 0, 0]]),
    }
    with pytest.raises(ValueError, match="no real instances"):
        encoder(batch)


@pytest.mark.parametrize("norm", ["group", "batch"])
def test_tile_cnn_embeds_tiles_of_any_size(norm: str) -> None:
    cnn = TileCNN(channels=(4, 8, 8), out_dim=5, norm=norm).eval()
    for size in (32, 7, 1):
        assert cnn(torch.rand(3, 3, size, size)).shape == (3, 5)
    with pytest.raises(ValueError, match="norm must be one of"):
        TileCNN(norm="layer")


# ----------------------------------------------------------------------------- fitted state / config
def test_fit_learns_channel_statistics_and_round_trips_through_state_dict() -> None:
    torch.manual_seed(0)
    items = [torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8) for n in (2, 5)]
    modality = small_modality(min_group=2)  # two training patients
    modality.fit(items)
    pixels = torch.cat(items).permute(1, 0, 2, 3).reshape(3, -1).double() / 255
    np.testing.assert_allclose(modality.mean, pixels.mean(dim=1).numpy(), atol=1e-9)
    np.testing.assert_allclose(modality.std, pixels.std(dim=1, correction=0).numpy(), atol=1e-9)
    restored = small_modality()
    restored.load_state_dict(modality.state_dict())
    assert restored.mean == modality.mean and restored.std == modality.std and restored.fitted
    encoder = restored.build_encoder()
    assert isinstance(encoder, HistologyEncoder)
    torch.testing.assert_close(encoder.mean.flatten(), torch.tensor(modality.mean, dtype=torch.float32))


def test_yaml_instantiates_the_modality_with_overrides() -> None:
    assert YAML.read_text().splitlines()[0] == "# @package modality.histology"
    config = OmegaConf.load(YAML)
    assert config.name == "histology"
    modality = instantiate(OmegaConf.merge(config, {"tile_size": 24, "embed_dim": 12}))
    assert isinstance(modality, HistologyModality)
    assert modality.tile_size == 24 and modality.out_dim == 12 and modality.column == "histology"
    assert modality.tile_channels == (16, 32, 64) and modality.max_tiles_eval is None


def test_constructor_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="max_tiles_train"):
        HistologyModality(max_tiles_train=0)
    with pytest.raises(ValueError, match="on_error"):
        HistologyModality(on_error="ignore")


def test_cohort_to_embedding_end_to_end(tmp_path: Path) -> None:
    """gather -> check -> load -> fit -> transform -> collate -> encoder, with a patient missing."""
    write_tiles(tmp_path / "tiles" / "a", 4, size=32, seed=1)
    write_tiles(tmp_path / "tiles" / "b", 9, size=32, seed=2, suffix=".jpg")
    manifest = pd.DataFrame({"patient_id": ["a", "b", "c"], "histology": ["tiles/a", "tiles/b", ""]})
    manifest.to_csv(tmp_path / "manifest.csv", index=False)
    modality = small_modality(max_tiles_train=6)
    refs = modality.gather(Cohort.load(tmp_path / "manifest.csv"))
    assert refs["c"] is None and refs["a"] == (tmp_path / "tiles" / "a").resolve()
    present = {pid: ref for pid, ref in refs.items() if ref is not None}
    assert all(modality.check(ref) == [] for ref in present.values())
    items = {pid: modality.load(ref) for pid, ref in present.items()}
    modality.fit(list(items.values()))
    torch.manual_seed(0)
    batch = modality.collate([modality.transform(item, train=True) for item in items.values()])
    assert batch["mask"].sum(dim=1).tolist() == [4, 6]
    out = modality.build_encoder()(batch)
    assert out.shape == (2, modality.out_dim) and torch.isfinite(out).all()


# ----------------------------------------------------------------------------- feature-file bags
def write_bag(path: Path, n: int, d: int = 12, seed: int = 0, dtype: torch.dtype = torch.float32) -> Path:
    """A feature file whose row i has feature 0 = i and coords (i, 2i) (to check alignment)."""
    features = torch.randn(n, d, generator=torch.Generator().manual_seed(seed))
    features[:, 0] = torch.arange(n)
    coords = torch.stack([torch.arange(n), 2 * torch.arange(n)], dim=1)
    return write_features(path, features.to(dtype), coords, {"encoder": "test"})


def feature_modality(**kwargs) -> HistologyModality:
    args = {"input": "features", "feature_dim": 12, "embed_dim": 8, "attention_dim": 6, "dropout": 0.0}
    return HistologyModality(**(args | kwargs))


@pytest.mark.parametrize(("suffix", "dtype"), [(".safetensors", torch.float16), (".h5", torch.float32)])
def test_feature_file_loads_checks_and_collates(tmp_path: Path, suffix: str, dtype: torch.dtype) -> None:
    path = write_bag(tmp_path / f"p1{suffix}", 5, dtype=dtype)
    modality = feature_modality()
    assert modality.check(path) == [] and not modality.needs_fit
    item = modality.load(path)
    assert set(item) == {"features", "coords"} and item["features"].dtype == dtype
    assert item["features"].shape == (5, 12) and item["coords"][:, 1].tolist() == [0, 2, 4, 6, 8]
    batch = modality.collate([item, modality.load(write_bag(tmp_path / f"p2{suffix}", 2, dtype=dtype))])
    assert set(batch) == {"features", "coords", "mask"} and batch["mask"].sum(dim=1).tolist() == [5, 2]
    assert batch["features"].shape == (2, 5, 12) and batch["coords"].shape == (2, 5, 2)


def test_feature_bags_subsample_to_the_cap_in_training_and_keep_all_in_evaluation(tmp_path: Path) -> None:
    item = feature_modality().load(write_bag(tmp_path / "p1.safetensors", 50))
    modality = feature_modality(max_tiles_train=8)
    torch.manual_seed(0)
    seen: set[int] = set()
    for _ in range(4):
        out = modality.transform(item, train=True)
        ids = out["features"][:, 0].long()
        assert out["features"].shape == (8, 12) and len(set(ids.tolist())) == 8
        assert torch.equal(out["coords"], torch.stack([ids, 2 * ids], dim=1))  # rows stay aligned
        seen.update(ids.tolist())
    assert len(seen) > 8
    assert modality.transform(item, train=False)["features"].shape == (50, 12)
    capped = feature_modality(max_tiles_eval=5).transform(item, train=False)
    assert capped["features"][:, 0].tolist() == [0, 12, 24, 37, 49]


@pytest.mark.parametrize("aggregator", ["abmil", "transmil"])
def test_feature_encoder_embeds_bags_and_keeps_attention(tmp_path: Path, aggregator: str) -> None:
    modality = feature_modality(aggregator=aggregator, transmil_heads=2, transmil_landmarks=4)
    items = [modality.load(write_bag(tmp_path / f"p{n}.h5", n, seed=n)) for n in (3, 9)]
    torch.manual_seed(0)
    encoder = modality.build_encoder().eval()
    with torch.no_grad():
        out = encoder(modality.collate(items))
        alone = encoder(modality.collate(items[:1]))
    assert out.shape == (2, modality.out_dim) and torch.isfinite(out).all()
    assert encoder.last_attention is not None and torch.all(encoder.last_attention[0, 3:] == 0)
    torch.testing.assert_close(out[:1], alone, atol=1e-4, rtol=1e-3)


def test_wrong_feature_dimension_is_found_before_training(tmp_path: Path) -> None:
    path = write_bag(tmp_path / "p1.safetensors", 4, d=10)
    modality = feature_modality()
    problems = modality.check(path)
    assert len(problems) == 1 and str(path) in problems[0]
    assert "dimension 10" in problems[0] and "feature_dim=12" in problems[0]
    with pytest.raises(ValueError, match=r"dimension 10, expected feature_dim=12"):
        modality.load(path)
    corrupt = tmp_path / "p2.safetensors"
    corrupt.write_bytes(b"\x10\x00\x00\x00not a header")
    assert str(corrupt) in modality.check(corrupt)[0]


def test_tile_folders_and_feature_files_do_not_mix(tmp_path: Path) -> None:
    folder = write_tiles(tmp_path / "a", 2, size=16)
    bag = write_bag(tmp_path / "b.safetensors", 3)
    for modality, wrong in ((feature_modality(), folder), (small_modality(), bag)):
        problems = modality.check(wrong)
        assert len(problems) == 1 and str(wrong) in problems[0] and "cannot mix" in problems[0]
        with pytest.raises(ValueError, match="cannot mix"):
            modality.load(wrong)
    items = [small_modality().load(folder), feature_modality().load(bag)]
    with pytest.raises(ValueError, match="mixes tile bags and feature bags"):
        small_modality().collate(items)


@pytest.mark.parametrize("input_kind", ["tiles", "features"])
def test_a_whole_slide_says_to_extract_features_first(tmp_path: Path, input_kind: str) -> None:
    slide = tmp_path / "p1.svs"
    slide.write_bytes(b"II*\x00")
    modality = small_modality(input=input_kind, feature_dim=12)
    assert "fusion-extract-features" in modality.check(slide)[0]
    with pytest.raises(ValueError, match=r"whole-slide image.*fusion-extract-features"):
        modality.load(slide)


def test_chunked_cnn_evaluation_equals_one_call() -> None:
    torch.manual_seed(0)
    bags = [torch.randint(0, 256, (n, 3, 16, 16), dtype=torch.uint8) for n in (11, 4)]
    chunked = small_modality(eval_chunk=3).build_encoder().eval()
    whole = small_modality(eval_chunk=10_000).build_encoder().eval()
    whole.load_state_dict(chunked.state_dict())
    calls: list[int] = []
    chunked.tile_cnn.register_forward_hook(lambda _m, args, _o: calls.append(args[0].shape[0]))
    batch = small_modality().collate(bags)
    with torch.no_grad():
        torch.testing.assert_close(chunked(batch), whole(batch), atol=1e-6, rtol=1e-5)
    assert calls == [3, 3, 3, 3, 3] and len(whole.last_attention[0]) == 11
    calls.clear()
    chunked.train()(batch)
    assert calls == [15]  # training: one call (autograd keeps every activation anyway)


def test_transmil_aggregator_works_on_tiles_too() -> None:
    modality = small_modality(aggregator="transmil", transmil_heads=2)
    bags = [torch.randint(0, 256, (n, 3, 16, 16), dtype=torch.uint8) for n in (2, 5)]
    encoder = modality.build_encoder()
    encoder(modality.collate(bags)).sum().backward()
    assert encoder.tile_cnn.features[0].weight.grad.abs().sum() > 0


def test_feature_input_needs_a_dimension_and_known_choices() -> None:
    with pytest.raises(ValueError, match="needs feature_dim"):
        HistologyModality(input="features")
    with pytest.raises(ValueError, match="input must be one of"):
        HistologyModality(input="slides")
    with pytest.raises(ValueError, match="aggregator must be one of"):
        HistologyModality(aggregator="mean")
    with pytest.raises(ValueError, match="divisible by transmil_heads"):
        HistologyModality(aggregator="transmil", embed_dim=10, transmil_heads=4)


def test_yaml_selects_feature_input_and_transmil() -> None:
    overrides = {"input": "features", "feature_dim": 1024, "aggregator": "transmil", "max_tiles_train": 4096}
    modality = instantiate(OmegaConf.merge(OmegaConf.load(YAML), overrides))
    assert modality.input == "features" and not modality.needs_fit
    encoder = modality.build_encoder()
    assert isinstance(encoder, FeatureBagEncoder) and isinstance(encoder.aggregator, TransMIL)
    assert small_modality().cache_key() != feature_modality().cache_key()
    assert small_modality().cache_key() == small_modality(aggregator="transmil", embed_dim=16).cache_key()


def test_feature_cohort_to_embedding_end_to_end(tmp_path: Path) -> None:
    write_bag(tmp_path / "features" / "a.safetensors", 40, seed=1)
    write_bag(tmp_path / "features" / "b.h5", 7, seed=2)
    manifest = pd.DataFrame(
        {"patient_id": ["a", "b", "c"], "histology": ["features/a.safetensors", "features/b.h5", ""]}
    )
    manifest.to_csv(tmp_path / "manifest.csv", index=False)
    modality = feature_modality(max_tiles_train=16, aggregator="transmil", transmil_heads=2)
    refs = modality.gather(Cohort.load(tmp_path / "manifest.csv"))
    present = {pid: ref for pid, ref in refs.items() if ref is not None}
    assert sorted(present) == ["a", "b"] and all(modality.check(ref) == [] for ref in present.values())
    items = [modality.transform(modality.load(ref), train=True) for ref in present.values()]
    batch = modality.collate(items)
    assert batch["mask"].sum(dim=1).tolist() == [16, 7]
    out = modality.build_encoder()(batch)
    assert out.shape == (2, modality.out_dim) and torch.isfinite(out).all()
