"""Frozen tile encoders for feature extraction: uint8 RGB tiles (b, h, w, 3) -> features (b, D).

Each encoder owns its ImageNet normalisation (as buffers, so it moves with the model), which keeps
the extraction loop free of per-model preprocessing. Weights come only from local files: no hub
downloads at run time. Random init is allowed (tests, benchmarks) but warned about loudly, since
its features mean nothing for real work.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from fusion.errors import ConfigError
from fusion.nn.tile_cnn import TileCNN

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BUILTIN = ("resnet50", "small_cnn")
log = logging.getLogger("fusion")


class TileEncoder(nn.Module):
    """Normalise uint8 (b, h, w, 3) tiles with ImageNet statistics, run `backbone` -> (b, feature_dim)."""

    #: buffers (`register_buffer`), declared for type checkers (nn.Module types them Tensor | Module)
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, backbone: nn.Module, feature_dim: int, name: str, weights: str | None):
        super().__init__()
        self.backbone = backbone
        self.feature_dim = int(feature_dim)
        self.name = name
        self.weights_name = Path(weights).name if weights else "none"
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255.0, persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255.0, persistent=False)

    def forward(self, tiles: torch.Tensor) -> torch.Tensor:
        if tiles.ndim != 4 or tiles.shape[-1] != 3:
            raise ValueError(f"tile encoder expects (b, h, w, 3) RGB tiles, got {tuple(tiles.shape)}")
        x = tiles.permute(0, 3, 1, 2).float()
        return self.backbone((x - self.mean) / self.std).flatten(1)


def load_state(weights: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a local `.safetensors` or torch file (also unwraps `state_dict` / `model` keys)."""
    path = Path(weights).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"tile encoder weights not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: object = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # whatever the reader raises for a corrupt file
        raise ConfigError(f"cannot read tile encoder weights '{path}': {type(err).__name__}: {err}") from err
    for key in ("state_dict", "model"):
        if isinstance(state, Mapping) and key in state and isinstance(state[key], Mapping):
            state = state[key]
    if not isinstance(state, Mapping):
        raise ConfigError(f"tile encoder weights '{path}': expected a state dict, got {type(state).__name__}")
    # DataParallel / Lightning prefixes are common in saved checkpoints
    cleaned = {}
    for key, value in state.items():
        for prefix in ("module.", "model.", "backbone."):
            if key.startswith(prefix):
                key = key[len(prefix) :]
        cleaned[key] = value
    return cleaned


def load_strict(model: nn.Module, weights: str | Path, ignore_prefixes: Sequence[str] = ()) -> None:
    """Load `weights` into `model`; ValueError listing missing/unexpected keys and shape mismatches."""
    state = {k: v for k, v in load_state(weights).items() if not k.startswith(tuple(ignore_prefixes))}
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(state))
        if tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or shapes:

        def _few(items: list[str]) -> str:
            return ", ".join(items[:5]) + (f", ... ({len(items)} in all)" if len(items) > 5 else "")

        parts = [f"{len(missing)} missing key(s): {_few(missing)}" if missing else ""]
        parts += [f"{len(unexpected)} unexpected key(s): {_few(unexpected)}" if unexpected else ""]
        parts += [f"{len(shapes)} shape mismatch(es): {_few(shapes)}" if shapes else ""]
        raise ConfigError(
            f"tile encoder weights '{weights}' do not match {type(model).__name__}: "
            + "; ".join(p for p in parts if p)
        )
    model.load_state_dict(state, strict=True)


def _warn_random(name: str) -> None:
    message = (
        f"tile encoder '{name}' has RANDOM weights (encoder.weights=null): its features are meaningless "
        "for real work; pass encoder.weights=PATH to a local checkpoint"
    )
    warnings.warn(message, UserWarning, stacklevel=3)
    log.warning(message)


def build_tile_encoder(
    name: str,
    weights: str | Path | None = None,
    channels: Sequence[int] = (16, 32, 64),
    out_dim: int = 64,
) -> TileEncoder:
    """`resnet50` (MONAI, 2048-d), `small_cnn` (TileCNN, `out_dim`-d, for tests) or `timm:<name>`.

    The model is returned in eval mode with gradients off: extraction never trains it.
    """
    weights = str(weights) if weights not in (None, "") else None
    if name == "resnet50":
        from monai.networks.nets import resnet50

        backbone: nn.Module = resnet50(spatial_dims=2, n_input_channels=3, feed_forward=False)
        dim = 2048
        ignore: tuple[str, ...] = ("fc.",)  # an ImageNet classifier head is unused with feed_forward=False
    elif name == "small_cnn":
        backbone = TileCNN(channels=channels, out_dim=out_dim)
        dim, ignore = int(out_dim), ()
    elif name.startswith("timm:"):
        try:
            import timm
        except ImportError as err:
            raise ConfigError(
                f"tile encoder '{name}' needs the `timm` package, which is not installed "
                f"(pip install timm), or use one of {BUILTIN}"
            ) from err
        created = timm.create_model(name[len("timm:") :], pretrained=False, num_classes=0)
        backbone, dim, ignore = created, int(created.num_features), ("head.", "fc.", "classifier.")
    else:
        raise ConfigError(f"unknown tile encoder '{name}': use one of {BUILTIN} or 'timm:<model name>'")
    if weights is None:
        _warn_random(name)
    else:
        load_strict(backbone, weights, ignore_prefixes=ignore)
    encoder = TileEncoder(backbone, dim, name, weights)
    encoder.eval().requires_grad_(False)
    return encoder
