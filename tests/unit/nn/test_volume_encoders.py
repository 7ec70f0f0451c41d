"""3D volume encoders: every name maps (n, C, D, H, W) -> (n, out_dim); the CPU default is cheap."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from fusion.nn.volume import VOLUME_ENCODERS, build_volume_encoder

FAST = ["cnn", "resnet10", "resnet50", "densenet121", "vit"]
SLOW = ["resnet18", "resnet34"]  # same BasicBlock family as resnet10, just deeper


def _output_shape(name: str, in_channels: int = 2, out_dim: int = 12) -> tuple[int, ...]:
    size = (32, 32, 32) if name == "densenet121" else (16, 16, 16)  # densenet downsamples 32x
    encoder = build_volume_encoder(name, in_channels, out_dim, size).eval()
    with torch.no_grad():
        return tuple(encoder(torch.randn(2, in_channels, *size)).shape)


def test_every_registered_name_is_tested() -> None:
    assert sorted(FAST + SLOW) == sorted(VOLUME_ENCODERS)


@pytest.mark.parametrize("name", FAST)
def test_encoder_output_shape(name: str) -> None:
    assert _output_shape(name) == (2, 12)


@pytest.mark.slow
@pytest.mark.parametrize("name", SLOW)
def test_deeper_resnet_output_shape(name: str) -> None:
    assert _output_shape(name) == (2, 12)


def test_cnn_is_size_agnostic_and_trains() -> None:
    encoder = build_volume_encoder("cnn", 1, 8, (32, 32, 32))
    assert encoder(torch.randn(3, 1, 24, 40, 16)).shape == (3, 8)
    encoder(torch.randn(2, 1, 16, 16, 16)).pow(2).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in encoder.parameters())


def test_cnn_forward_backward_is_cheap_on_cpu() -> None:
    """Quickstart default: batch 16 at 32^3, forward + backward well under 0.2 s.

    Measured on ONE thread (about 0.055 s; 0.035 s on 2 free cores): two OpenMP threads on a
    2-core machine shared with another busy process slow down 30-fold, which would make this flaky.
    """
    encoder = build_volume_encoder("cnn", 1, 64, (32, 32, 32))
    batch = torch.randn(16, 1, 32, 32, 32)
    threads, timings = torch.get_num_threads(), []
    torch.set_num_threads(1)
    try:
        for _ in range(4):  # best of 3 after a warm-up
            start = time.perf_counter()
            encoder(batch).sum().backward()
            timings.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    assert min(timings[1:]) < 0.2, timings


def test_unknown_name_lists_known_names() -> None:
    with pytest.raises(ValueError, match="unknown volume encoder 'unet'.*'cnn'.*'vit'"):
        build_volume_encoder("unet", 1, 8, (16, 16, 16))


@pytest.mark.parametrize(
    "name, kwargs, size, problem",
    [
        ("cnn", {}, (16, 16), "3 values"),
        ("cnn", {"channels": (8, 16), "strides": (2, 2, 2)}, (16, 16, 16), "2 channels but 3 strides"),
        ("vit", {"patch_size": 5}, (16, 16, 16), "must divide"),
        ("densenet121", {}, (16, 16, 16), "minimum of 32"),
        ("resnet10", {"pretrained": True}, (16, 16, 16), "local"),
    ],
)
def test_bad_settings_are_rejected(name: str, kwargs: dict, size: tuple, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        build_volume_encoder(name, 1, 8, size, **kwargs)


def test_resnet_loads_local_pretrained_backbone(tmp_path: Path) -> None:
    source = build_volume_encoder("resnet10", 1, 8, (16, 16, 16))
    path = tmp_path / "backbone.pt"
    torch.save(source[0].state_dict(), path)
    loaded = build_volume_encoder("resnet10", 1, 8, (16, 16, 16), pretrained=str(path))
    assert torch.equal(loaded[0].conv1.weight, source[0].conv1.weight)
    assert not torch.equal(loaded[1].weight, source[1].weight)  # the projection to out_dim stays fresh
