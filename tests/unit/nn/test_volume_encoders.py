"""3D volume encoders: every name maps (n, C, D, H, W) -> (n, out_dim); the CPU default is cheap."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.nn import TransformerEncoderLayer
from torch.utils.flop_counter import FlopCounterMode

from fusion.nn.volume import VOLUME_ENCODERS, CheckpointedSequential, build_volume_encoder
from tests.op_count import CountOps

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


def _cnn_step_cost(batch_size: int) -> tuple[int, int]:
    """(floating-point operations, ATen operations) of one forward + backward of the default cnn at 32^3."""
    torch.manual_seed(0)
    encoder = build_volume_encoder("cnn", 1, 64, (32, 32, 32))
    batch = torch.randn(batch_size, 1, 32, 32, 32)
    with FlopCounterMode(display=False) as flops, CountOps() as ops:
        encoder(batch).sum().backward()
    return flops.get_total_flops(), ops.ops


def test_cnn_forward_backward_is_cheap_on_cpu() -> None:
    """Quickstart default: batch 16 at 32^3, forward + backward (once measured at about 0.055 s on one
    thread). Counted, not timed: its floating-point operations (1.8 GFLOP with the default channels
    (8, 16, 32) and strides 2; twice the channels would be 7 GFLOP, a first stride of 1 14 GFLOP) and a
    number of tensor operations that does not grow with the batch (no per-sample loop)."""
    flops, ops = _cnn_step_cost(16)
    assert 0.5e9 < flops < 3e9, flops / 1e9
    assert _cnn_step_cost(2) == (flops // 8, ops)


def test_unknown_name_lists_known_names() -> None:
    with pytest.raises(ValueError, match="unknown volume encoder 'unet'.*'cnn'.*'vit'"):
        build_volume_encoder("unet", 1, 8, (16, 16, 16))


@pytest.mark.parametrize(
    "name, kwargs, size, problem",
    [
        ("cnn", {}, (16, 16), "3 values"),
        ("cnn", {"channels": (8, 16), "strides": (2, 2, 2)}, (16, 16, 16), "2 channels but 3 strides"),
        ("cnn", {}, (32, 32, 8), r"shrinks to \[4, 4, 1\].*needs at least 2 per axis"),
        ("vit", {"patch_size": 5}, (16, 16, 16), "must divide"),
        ("densenet121", {}, (16, 16, 16), "minimum of 32"),
        ("resnet10", {"pretrained": True}, (16, 16, 16), "local"),
    ],
)
def test_bad_settings_are_rejected(name: str, kwargs: dict, size: tuple, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        build_volume_encoder(name, 1, 8, size, **kwargs)


def test_medicalnet_style_backbone_file_with_extra_head_is_skipped(tmp_path: Path) -> None:
    source = build_volume_encoder("resnet10", 1, 8, (16, 16, 16))
    state = {f"module.{k}": v for k, v in source[0].state_dict().items()}  # DataParallel names
    state["module.conv_seg.0.weight"] = torch.zeros(2, 512, 3, 3, 3)  # its segmentation head
    torch.save({"state_dict": state}, tmp_path / "resnet_10.pth")
    with pytest.raises(ValueError, match=r"unexpected keys \(1\): 0.conv_seg.0.weight"):
        build_volume_encoder("resnet10", 1, 8, (16, 16, 16), pretrained=tmp_path / "resnet_10.pth")
    loaded = build_volume_encoder(
        "resnet10", 1, 8, (16, 16, 16), pretrained=tmp_path / "resnet_10.pth", pretrained_skip=["conv_seg"]
    )
    assert torch.equal(loaded[0].layer1[0].conv1.weight, source[0].layer1[0].conv1.weight)


def test_resnet_loads_local_pretrained_backbone(tmp_path: Path) -> None:
    source = build_volume_encoder("resnet10", 1, 8, (16, 16, 16))
    path = tmp_path / "backbone.pt"
    torch.save(source[0].state_dict(), path)
    loaded = build_volume_encoder("resnet10", 1, 8, (16, 16, 16), pretrained=str(path))
    assert torch.equal(loaded[0].conv1.weight, source[0].conv1.weight)
    assert not torch.equal(loaded[1].weight, source[1].weight)  # the projection to out_dim stays fresh


# ----------------------------------------------------------------------------- pretrained weights, freezing
def _encoder(name: str = "cnn", in_channels: int = 1, out_dim: int = 8, **kwargs) -> torch.nn.Module:
    size = (32, 32, 32) if name == "densenet121" else (16, 16, 16)
    return build_volume_encoder(name, in_channels, out_dim, size, **kwargs)


def _same(a: torch.nn.Module, b: torch.nn.Module, skip: str = "\0") -> bool:
    return all(
        torch.equal(x, y)
        for (k, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True)
        if not k.startswith(skip)
    )


@pytest.mark.parametrize("name", ["cnn", "resnet10", "densenet121", "vit"])
def test_pretrained_state_dict_round_trip(name: str, tmp_path: Path) -> None:
    source = _encoder(name)
    torch.save(source.state_dict(), tmp_path / "encoder.pth")
    loaded = _encoder(name, pretrained=tmp_path / "encoder.pth")
    assert _same(loaded, source) and not _same(_encoder(name), source)


def test_lightning_checkpoint_with_prefix_and_hint_without(tmp_path: Path) -> None:
    source = _encoder()
    state = {f"model.encoders.ct.{k}": v for k, v in source.state_dict().items()}
    state["model.fuser.weight"] = torch.zeros(2)  # the rest of the model: not the encoder's business
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "last.ckpt")
    assert _same(_encoder(pretrained=tmp_path / "last.ckpt", pretrained_prefix="model.encoders.ct."), source)
    with pytest.raises(ValueError, match="missing keys.*unexpected keys.*'model.encoders.ct.'"):
        _encoder(pretrained=tmp_path / "last.ckpt")
    with pytest.raises(ValueError, match="no key starts with pretrained_prefix 'encoders.mri.'"):
        _encoder(pretrained=tmp_path / "last.ckpt", pretrained_prefix="encoders.mri.")


def test_mismatch_lists_missing_unexpected_and_shapes(tmp_path: Path) -> None:
    state = _encoder(in_channels=2).state_dict()
    state["features.9.weight"] = torch.zeros(1)
    del state["features.2.conv.unit1.conv.bias"]
    torch.save(state, tmp_path / "w.pt")
    with pytest.raises(ValueError) as err:
        _encoder(pretrained=tmp_path / "w.pt")
    message = str(err.value)
    assert "volume encoder 'cnn'" in message and str(tmp_path / "w.pt") in message
    assert "missing keys (1): features.2.conv.unit1.conv.bias" in message
    assert "unexpected keys (1): features.9.weight" in message
    assert (
        "shape of features.0.conv.unit0.conv.weight: file (8, 2, 3, 3, 3) vs encoder (8, 1, 3, 3, 3)"
        in message
    )
    # skipping what does not fit loads the rest; the skipped parts stay fresh
    skip = ["features.0", "features.9", "features.2.conv.unit1.conv.bias"]
    loaded = _encoder(pretrained=tmp_path / "w.pt", pretrained_skip=skip)
    assert torch.equal(loaded.features[1].conv.unit0.conv.weight, state["features.1.conv.unit0.conv.weight"])


def test_projection_is_loaded_when_it_fits_and_fresh_otherwise(tmp_path: Path) -> None:
    source = _encoder(out_dim=8)
    torch.save(source.state_dict(), tmp_path / "w.pt")
    other = _encoder(out_dim=5, pretrained=tmp_path / "w.pt")  # another embed_dim: fresh projection
    assert other.head.weight.shape == (5, 32)
    assert torch.equal(other.features[0].conv.unit0.conv.weight, source.features[0].conv.unit0.conv.weight)
    torch.save({k: v for k, v in source.state_dict().items() if not k.startswith("head.")}, tmp_path / "b.pt")
    backbone_only = _encoder(out_dim=8, pretrained=tmp_path / "b.pt")
    assert _same(backbone_only, source, skip="head") and not torch.equal(
        backbone_only.head.weight, source.head.weight
    )


@pytest.mark.parametrize(
    "make, problem",
    [
        (lambda p: p / "absent.pt", "not found"),
        (lambda p: (p / "w.safetensors").write_bytes(b"{}") and p / "w.safetensors", "safetensors"),
        (lambda p: (p / "w.pt").write_text("not torch") and p / "w.pt", "cannot read torch weights"),
        (lambda p: torch.save([torch.zeros(1)], p / "w.pt") or p / "w.pt", "expected a state dict"),
    ],
)
def test_unreadable_weights_name_the_file(make, problem: str, tmp_path: Path) -> None:
    path = make(tmp_path)
    with pytest.raises((ValueError, FileNotFoundError), match=problem) as err:
        _encoder(pretrained=path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("name", ["cnn", "resnet10", "vit"])
def test_frozen_encoder_trains_only_its_projection(name: str) -> None:
    encoder = _encoder(name, freeze=True).train()
    trainable = [k for k, p in encoder.named_parameters() if p.requires_grad]
    assert trainable and all(k.startswith("head." if name != "resnet10" else "1.") for k in trainable)
    encoder(torch.randn(2, 1, 16, 16, 16)).pow(2).sum().backward()
    for key, param in encoder.named_parameters():
        assert (param.grad is not None) == (key in trainable), key


def test_frozen_batch_norm_keeps_running_statistics(tmp_path: Path) -> None:
    encoder = _encoder("resnet10", freeze=True).train()
    bn = encoder[0].bn1
    before = bn.running_mean.clone()
    encoder(torch.randn(2, 1, 16, 16, 16) + 3.0)
    assert not bn.training and torch.equal(bn.running_mean, before)
    torch.save(encoder.state_dict(), tmp_path / "frozen.pt")  # same keys as an unfrozen encoder
    assert _same(_encoder("resnet10", pretrained=tmp_path / "frozen.pt"), encoder)


# ----------------------------------------------------------------------------- gradient checkpointing
@pytest.mark.parametrize(
    "name", ["cnn", "resnet10", pytest.param("densenet121", marks=pytest.mark.slow), "vit"]
)  # densenet121 at 32^3: ~13 s on a busy 2-core machine
def test_gradient_checkpointing_recomputes_blocks_and_changes_nothing(name: str) -> None:
    torch.manual_seed(0)
    plain = _encoder(name).train()
    torch.manual_seed(0)
    ckpt = _encoder(name, gradient_checkpointing=True).train()
    assert list(ckpt.state_dict()) == list(plain.state_dict())  # same weight names: files interchange
    # one checkpointed block: a child of a CheckpointedSequential, or a ViT layer
    block = next(
        m[0] if isinstance(m, CheckpointedSequential) else m
        for m in ckpt.modules()
        if isinstance(m, CheckpointedSequential | TransformerEncoderLayer)
    )
    calls, forward = [], block.forward

    def counted(*args, **kwargs):  # (module hooks do not fire during the recomputation)
        calls.append(1)
        return forward(*args, **kwargs)

    block.forward = counted
    x = torch.randn(2, 1, *((32,) * 3 if name == "densenet121" else (16,) * 3))
    out_plain, out_ckpt = plain(x), ckpt(x)
    out_plain.pow(2).sum().backward()
    out_ckpt.pow(2).sum().backward()
    assert len(calls) == 2  # forward, then recomputed in backward: checkpointing is really on
    assert torch.allclose(out_ckpt, out_plain, atol=1e-6)
    for (key, p), q in zip(plain.named_parameters(), ckpt.parameters(), strict=True):
        assert torch.allclose(q.grad, p.grad, rtol=1e-4, atol=1e-6), key
    # batch-norm running statistics are updated once, as without checkpointing (not again on recompute)
    for (key, a), b in zip(plain.state_dict().items(), ckpt.state_dict().values(), strict=True):
        assert torch.allclose(b.float(), a.float(), atol=1e-6), key
    calls.clear()
    with torch.no_grad():
        ckpt.eval()(x)
    assert len(calls) == 1  # no checkpointing outside training


def test_gradient_checkpointing_given_in_encoder_kwargs_is_rejected() -> None:
    from fusion.modalities.imaging import ImagingModality

    with pytest.raises(ValueError, match="gradient_checkpointing"):
        ImagingModality("ct", encoder_kwargs={"gradient_checkpointing": True})
    encoder = ImagingModality("ct", spatial_size=(16, 16, 16), gradient_checkpointing=True).build_encoder()
    assert isinstance(encoder.features, CheckpointedSequential)
