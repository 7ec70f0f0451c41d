"""3D volume encoders: (n, C, D, H, W) -> (n, out_dim), built by name for the imaging modalities.

Every encoder ends in one embedding per volume, so the fuser sees one token per imaging modality.
The networks are MONAI's; this file only picks sensible small defaults and adds the projection
to `out_dim`. Nothing is downloaded: weights come from local files only (`load_pretrained`), and
`freeze_backbone` trains only the final projection.

`gradient_checkpointing` trades compute for memory on large volumes: during training each block's
activations are dropped after the forward pass and recomputed in the backward pass (about 1.3x the
compute, activation memory of one block instead of all). It changes no result and no weight name.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from functools import partial
from pathlib import Path
from typing import Any

import torch
from monai.networks import nets
from monai.networks.blocks import PatchEmbeddingBlock, ResidualUnit
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.checkpoint import checkpoint

from fusion.nn.pretrained import freeze_backbone, load_pretrained


@contextmanager
def _norm_stats_kept(module: nn.Module) -> Iterator[None]:
    """Restore batch-norm running statistics after the recomputation, so they are updated once, not twice."""
    saved = [(m, {k: v.clone() for k, v in m.named_buffers(recurse=False)}) for m in module.modules()]
    saved = [(m, buffers) for m, buffers in saved if isinstance(m, _BatchNorm) and buffers]
    try:
        yield
    finally:
        with torch.no_grad():
            for m, buffers in saved:
                for name, value in buffers.items():
                    getattr(m, name).copy_(value)


def _recompute_contexts(module: nn.Module) -> tuple[Any, Any]:
    return nullcontext(), _norm_stats_kept(module)


def checkpointed(module: nn.Module, *args: torch.Tensor, **kwargs: Any) -> torch.Tensor:
    """`module(*args, **kwargs)` whose activations are recomputed in backward when training with grad."""
    if not (module.training and torch.is_grad_enabled()):
        return module(*args, **kwargs)
    return checkpoint(
        module, *args, use_reentrant=False, context_fn=partial(_recompute_contexts, module), **kwargs
    )


class CheckpointedSequential(nn.Sequential):
    """`nn.Sequential` that checkpoints each child (same children and weight names as the original)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for module in self:
            x = checkpointed(module, x)
        return x


class ConvVolumeEncoder(nn.Module):
    """Small residual 3D CNN + global average pooling + linear: the cheap CPU default (`cnn`).

    Global pooling (rather than MONAI `Regressor`'s flatten) keeps the encoder independent of the
    input size, so `spatial_size` can be changed without touching the encoder.

    Batch norm by default, not instance norm: instance norm rescales every volume's feature maps to zero
    mean and unit variance, which throws away what the volume's absolute intensities say (PET uptake in
    SUV, contrast enhancement, CT density) and most of how much of the field a lesion fills. On the demo
    cohort's quickstart split one-modality grade AUROC went from 0.52 / 0.65 / 0.77 (CT / MRI / PET,
    instance) to 0.62 / 0.72 / 0.82 with batch norm (experiments/ablation/README.md).
    """

    def __init__(
        self,
        in_channels: int,
        out_dim: int,
        channels: Sequence[int] = (8, 16, 32),
        strides: Sequence[int] = (2, 2, 2),
        subunits: int = 2,
        norm: str | tuple = "batch",
        act: str | tuple = "prelu",
        dropout: float | None = None,
    ):
        super().__init__()
        if len(channels) != len(strides):
            raise ValueError(f"cnn encoder: {len(channels)} channels but {len(strides)} strides given")
        blocks, c_in = [], in_channels
        for c_out, stride in zip(channels, strides, strict=True):
            blocks.append(
                ResidualUnit(
                    spatial_dims=3,
                    in_channels=c_in,
                    out_channels=c_out,
                    strides=stride,
                    subunits=subunits,
                    norm=norm,
                    act=act,
                    dropout=dropout,
                )
            )
            c_in = c_out
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.head = nn.Linear(c_in, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(x)).flatten(1))


class ViTVolumeEncoder(nn.Module):
    """Vision transformer over 3D patches; tokens are mean-pooled and projected to `out_dim`.

    MONAI's patch embedding (conv projection + learnable positions) feeds a pre-norm
    `nn.TransformerEncoder` -- the same layout as MONAI's `ViT`, which cannot be used here because
    it needs the optional `einops` package. Defaults are deliberately tiny (2 layers, hidden 96) so
    it runs on CPU; scale them up via `encoder_kwargs` on a GPU. `patch_size` must divide `spatial_size`.
    """

    def __init__(
        self,
        in_channels: int,
        out_dim: int,
        spatial_size: Sequence[int],
        patch_size: int | Sequence[int] = 8,
        hidden_size: int = 96,
        mlp_dim: int = 192,
        num_layers: int = 2,
        num_heads: int = 4,
        dropout_rate: float = 0.0,
    ):
        super().__init__()
        patch = [patch_size] * 3 if isinstance(patch_size, int) else list(patch_size)
        if len(patch) != 3 or any(s % p for s, p in zip(spatial_size, patch, strict=True)):
            raise ValueError(f"vit encoder: patch_size {patch} must divide spatial_size {list(spatial_size)}")
        self.patches = PatchEmbeddingBlock(
            in_channels=in_channels,
            img_size=tuple(spatial_size),
            patch_size=tuple(patch),
            hidden_size=hidden_size,
            num_heads=num_heads,
            proj_type="conv",
            pos_embed_type="learnable",
            dropout_rate=dropout_rate,
            spatial_dims=3,
        )
        layer = nn.TransformerEncoderLayer(
            hidden_size,
            num_heads,
            mlp_dim,
            dropout_rate,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.blocks = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(hidden_size)
        self.head = nn.Linear(hidden_size, out_dim)
        self.gradient_checkpointing = False  # set by `enable_gradient_checkpointing`

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patches(x)
        if self.gradient_checkpointing and self.training:
            for layer in self.blocks.layers:  # what nn.TransformerEncoder does without masks
                tokens = checkpointed(layer, tokens)
        else:
            tokens = self.blocks(tokens)
        return self.head(self.norm(tokens).mean(dim=1))


def _resnet(depth: int) -> Callable[..., nn.Module]:
    def build(in_channels: int, out_dim: int, spatial_size: Sequence[int], **kwargs: Any) -> nn.Module:
        # weights come through `load_pretrained`: MONAI's pretrained=True would download them
        backbone = getattr(nets, f"resnet{depth}")(
            pretrained=False,
            spatial_dims=3,
            n_input_channels=in_channels,
            feed_forward=False,
            **kwargs,
        )
        return nn.Sequential(backbone, nn.Linear(backbone.in_planes, out_dim))

    return build


def _densenet121(in_channels: int, out_dim: int, spatial_size: Sequence[int], **kwargs: Any) -> nn.Module:
    if min(spatial_size) < 32:
        raise ValueError(f"densenet121 encoder: spatial_size {list(spatial_size)} is below its minimum of 32")
    return nets.DenseNet121(spatial_dims=3, in_channels=in_channels, out_channels=out_dim, **kwargs)


def _cnn(in_channels: int, out_dim: int, spatial_size: Sequence[int], **kwargs: Any) -> nn.Module:
    strides = kwargs.get("strides", (2, 2, 2))
    last = [size // math.prod(strides) for size in spatial_size]
    if kwargs.get("norm", "batch") is not None and min(last) < 2:
        raise ValueError(
            f"cnn encoder: spatial_size {list(spatial_size)} shrinks to {last} voxels after strides "
            f"{list(strides)}; its normalisation needs at least 2 per axis: use a larger spatial_size or "
            "fewer or smaller strides"
        )
    return ConvVolumeEncoder(in_channels, out_dim, **kwargs)


def _vit(in_channels: int, out_dim: int, spatial_size: Sequence[int], **kwargs: Any) -> nn.Module:
    return ViTVolumeEncoder(in_channels, out_dim, spatial_size, **kwargs)


def enable_gradient_checkpointing(encoder: nn.Module) -> list[str]:
    """Checkpoint the encoder's repeated blocks in place; return the names of the checkpointed parts.

    Block containers (`nn.Sequential`) become `CheckpointedSequential` with the same children, so
    state dicts, pretrained files and checkpoints are interchangeable with and without it.
    """
    if isinstance(encoder, ViTVolumeEncoder):
        encoder.gradient_checkpointing = True
        return ["blocks.layers"]
    if isinstance(encoder, ConvVolumeEncoder):
        names = ["features"]
    elif isinstance(encoder, nets.DenseNet):
        names = [f"features.{n}" for n, _ in encoder.features.named_children() if n.startswith("denseblock")]
    elif isinstance(encoder, nn.Sequential) and isinstance(encoder[0], nets.ResNet):
        names = [f"0.{n}" for n, _ in encoder[0].named_children() if n.startswith("layer")]
    else:
        raise ValueError(f"gradient checkpointing: no blocks known for {type(encoder).__name__}")
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = encoder.get_submodule(parent_name)
        setattr(parent, child, CheckpointedSequential(OrderedDict(getattr(parent, child).named_children())))
    return names


VOLUME_ENCODERS: dict[str, Callable[..., nn.Module]] = {
    "cnn": _cnn,
    "resnet10": _resnet(10),
    "resnet18": _resnet(18),
    "resnet34": _resnet(34),
    "resnet50": _resnet(50),
    "densenet121": _densenet121,
    "vit": _vit,
}


def build_volume_encoder(
    name: str,
    in_channels: int,
    out_dim: int,
    spatial_size: Sequence[int],
    pretrained: str | Path | None = None,
    pretrained_prefix: str | None = None,
    pretrained_skip: Sequence[str] = (),
    freeze: bool = False,
    gradient_checkpointing: bool = False,
    **kwargs: Any,
) -> nn.Module:
    """An encoder mapping (n, in_channels, *spatial_size) to (n, out_dim); `kwargs` go to the network.

    `pretrained` (a local file), `pretrained_prefix` and `pretrained_skip`: see `load_pretrained`;
    `freeze`: see `freeze_backbone`; `gradient_checkpointing`: see `enable_gradient_checkpointing`.
    All work for every encoder.
    """
    if name not in VOLUME_ENCODERS:
        raise ValueError(f"unknown volume encoder '{name}'; known: {sorted(VOLUME_ENCODERS)}")
    if len(spatial_size) != 3:
        raise ValueError(
            f"volume encoder '{name}': spatial_size must have 3 values, got {list(spatial_size)}"
        )
    if pretrained is True or pretrained is False:
        if pretrained:  # MONAI would download MedicalNet / ImageNet weights
            raise ValueError(
                f"volume encoder '{name}': pretrained=True would download weights; "
                "give the path of a local state dict instead"
            )
        pretrained = None
    encoder = VOLUME_ENCODERS[name](int(in_channels), int(out_dim), [int(s) for s in spatial_size], **kwargs)
    if pretrained is not None:
        load_pretrained(
            encoder, pretrained, pretrained_prefix, pretrained_skip, what=f"volume encoder '{name}'"
        )
    if freeze:
        freeze_backbone(encoder)
    if gradient_checkpointing:
        enable_gradient_checkpointing(encoder)
    return encoder
