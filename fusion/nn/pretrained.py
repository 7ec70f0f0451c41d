"""Pretrained weights from local files, with strict key checking, and backbone freezing.

Used by the volume encoders (and reusable by any encoder that ends in an `nn.Linear` projection):
nothing is downloaded, and a mismatch lists the missing, unexpected and mis-shaped keys so the
user can fix the file or the prefix rather than guess.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

log = logging.getLogger(__name__)
#: how many keys an error message lists per kind of problem
_LISTED = 8


def projection_name(encoder: nn.Module) -> str:
    """Module name of the final projection to `out_dim`: by construction the encoder's last `nn.Linear`."""
    names = [name for name, module in encoder.named_modules() if isinstance(module, nn.Linear)]
    if not names:
        raise ValueError(f"{type(encoder).__name__}: no nn.Linear projection to out_dim found")
    return names[-1]


def _under(key: str, prefixes: Sequence[str]) -> bool:
    return any(key == p or key.startswith(p.rstrip(".") + ".") for p in prefixes)


def _listed(keys: Iterable[str]) -> str:
    keys = sorted(keys)
    more = f", ... and {len(keys) - _LISTED} more" if len(keys) > _LISTED else ""
    return ", ".join(keys[:_LISTED]) + more


def read_state_dict(path: str | Path, prefix: str | None = None) -> dict[str, torch.Tensor]:
    """Tensors of a local torch file: a state dict, or a (Lightning) checkpoint's ``state_dict``.

    With `prefix`, only the keys starting with it are kept, and it is stripped (e.g.
    ``model.encoders.ct.`` for the CT encoder of a fusion checkpoint). A leading ``module.``
    (DataParallel) is stripped too. Files are read with ``weights_only=True``: no code is run.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights not found: {path}")
    if path.suffix == ".safetensors":
        raise ValueError(f"'{path}': safetensors files are not supported; save a torch state dict (.pt)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # not a torch file, or pickled objects beyond tensors and containers
        raise ValueError(f"'{path}': cannot read torch weights ({type(err).__name__}: {err})") from err
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(
            f"'{path}': expected a state dict (parameter name -> tensor), got {type(obj).__name__}"
        )
    state = {str(k).removeprefix("module."): v for k, v in obj.items()}
    if prefix:
        kept = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if not kept:
            raise ValueError(
                f"'{path}': no key starts with pretrained_prefix '{prefix}'; keys: {_listed(state)}"
            )
        state = kept
    return state


def load_pretrained(
    encoder: nn.Module,
    path: str | Path,
    prefix: str | None = None,
    skip: Sequence[str] = (),
    what: str = "encoder",
) -> None:
    """Load a local state dict into `encoder`, strictly: every key must match by name and shape.

    By design the final projection (`projection_name`) is loaded when the file has it with the same
    shape and stays freshly initialised otherwise, so a backbone saved without it, or with another
    `out_dim`, fits. `skip` lists further keys (or module prefixes) to leave out on both sides, e.g. a
    first convolution made for another number of channels. A file holding only the backbone of a
    `Sequential` encoder (resnet: keys without the leading ``0.``) is matched to that child.
    Anything else that differs -- missing keys, unexpected keys, shapes -- is a ValueError listing it.
    """
    target = encoder.state_dict()
    # `skip` may name keys as the file has them or as the encoder has them (after `_match_child`)
    state = {k: v for k, v in read_state_dict(path, prefix).items() if not _under(k, skip)}
    state = {k: v for k, v in _match_child(state, target).items() if not _under(k, skip)}
    projection = projection_name(encoder)
    optional = [k for k in target if _under(k, [projection])]
    # bookkeeping buffers that older files lack, and whose absence changes nothing
    optional += [k for k in target if k.endswith("num_batches_tracked")]
    checked = [k for k in target if not _under(k, skip) and k not in optional]
    missing = [k for k in checked if k not in state]
    unexpected = [k for k in state if k not in target]
    shapes = [k for k in checked if k in state and state[k].shape != target[k].shape]
    if missing or unexpected or shapes:
        problems = []
        if missing:
            problems.append(f"missing keys ({len(missing)}): {_listed(missing)}")
        if unexpected:
            problems.append(f"unexpected keys ({len(unexpected)}): {_listed(unexpected)}")
        for key in shapes[:_LISTED]:
            problems.append(
                f"shape of {key}: file {tuple(state[key].shape)} vs encoder {tuple(target[key].shape)}"
            )
        raise ValueError(
            f"{what}: pretrained weights '{path}' do not fit: " + "; ".join(problems) + _hint(state, target)
        )
    loaded = {k: v for k, v in state.items() if k not in optional or v.shape == target[k].shape}
    fresh = [k for k in target if k not in loaded and not k.endswith("num_batches_tracked")]
    encoder.load_state_dict({**target, **loaded}, strict=True)
    log.info("%s: loaded %d tensors from %s; fresh: %s", what, len(loaded), path, _listed(fresh) or "none")


def _match_child(state: dict[str, torch.Tensor], target: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """`state` as is when any key matches; else prefixed with the child module name that matches most."""
    if any(k in target for k in state):
        return state
    children = {k.split(".", 1)[0] for k in target if "." in k}
    best = max(children, key=lambda c: sum(f"{c}.{k}" in target for k in state), default=None)
    if best is None or not any(f"{best}.{k}" in target for k in state):
        return state
    return {f"{best}.{k}": v for k, v in state.items()}


def _hint(state: Mapping[str, Any], target: Mapping[str, Any]) -> str:
    """A `pretrained_prefix` to suggest when the file's keys are the encoder's under some prefix."""
    for key in target:
        for file_key in state:
            if file_key.endswith("." + key):
                return f" (the file has them under '{file_key[: -len(key)]}': set pretrained_prefix to that)"
    return ""


class FrozenBatchNorm3d(nn.BatchNorm3d):
    """A `BatchNorm3d` that stays in eval mode: running statistics are used, and never updated."""

    def train(self, mode: bool = True) -> FrozenBatchNorm3d:
        return super().train(False)


def freeze_backbone(encoder: nn.Module) -> None:
    """Train only the final projection (`projection_name`): no gradient for anything else.

    BatchNorm3d layers become `FrozenBatchNorm3d` (same parameters and buffers, so checkpoints load
    either way): training then neither normalises with batch statistics nor moves the running ones.
    """
    projection = projection_name(encoder)
    for name, param in encoder.named_parameters():
        param.requires_grad_(_under(name, [projection]))
    for name, module in encoder.named_modules():
        if type(module) is nn.BatchNorm3d and not _under(name, [projection]):
            module.__class__ = FrozenBatchNorm3d
            module.eval()
