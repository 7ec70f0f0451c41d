import pytest
import torch

from fusion.io.feature_files import is_feature_file, read_features, write_features


@pytest.mark.parametrize("name", ["bag.safetensors", "bag.h5"])
def test_round_trip_keeps_features_coords_and_metadata(tmp_path, name):
    features, coords = torch.randn(7, 16), torch.arange(14).view(7, 2) * 224
    slide_index = torch.tensor([0, 0, 0, 1, 1, 1, 1])
    path = write_features(
        tmp_path / name,
        features,
        coords,
        {"encoder": "resnet50", "tile_size": 224},
        {"slide_index": slide_index},
    )
    bag = read_features(path)
    assert torch.equal(bag.extra["slide_index"], slide_index)
    assert torch.equal(bag.features, features) and torch.equal(bag.coords, coords)
    assert bag.metadata["encoder"] == "resnet50" and bag.metadata["tile_size"] == "224"
    assert is_feature_file(path)
    assert not list(tmp_path.glob(".*tmp"))  # the temporary file is gone


def test_write_rejects_mismatched_shapes(tmp_path):
    with pytest.raises(ValueError, match=r"\(N, D\) and coords \(N, 2\)"):
        write_features(tmp_path / "x.safetensors", torch.randn(3, 4), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="extra tensor 'slide_index' must be new and have N=3 rows"):
        write_features(
            tmp_path / "x.safetensors", torch.randn(3, 4), torch.zeros(3, 2), extra={"slide_index": [0]}
        )


def test_truncated_file_is_a_clear_error(tmp_path):
    path = write_features(tmp_path / "x.safetensors", torch.randn(50, 32), torch.zeros(50, 2))
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="cannot read feature file") as err:
        read_features(path)
    assert str(path) in str(err.value)


def test_file_without_coords_names_what_is_missing(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "x.safetensors"
    save_file({"features": torch.randn(3, 4)}, str(path))
    with pytest.raises(ValueError, match=r"lacks \['coords'\]"):
        read_features(path)


def test_unsupported_suffix(tmp_path):
    with pytest.raises(ValueError, match="unsupported feature file type"):
        write_features(tmp_path / "x.pt", torch.randn(1, 2), torch.zeros(1, 2))
