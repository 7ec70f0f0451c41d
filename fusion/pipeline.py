"""Build the parts of a run from a config: modalities, heads, fuser, model, data module.

Shared by `fusion-train`, `fusion-cv`, `fusion-predict`, `fusion-validate` and the Python API, so
every entry point builds exactly the same thing from the same config.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from fusion.data.cohort import Cohort
from fusion.data.datamodule import FusionDataModule
from fusion.errors import ConfigError
from fusion.heads.base import Head
from fusion.modalities.base import Modality
from fusion.model import OUTPUTS, FusionModel


def build_modalities(cfg: DictConfig) -> dict[str, Modality]:
    """One `Modality` per entry of `cfg.modality` (the config key is the modality's name)."""
    nodes = cfg.get("modality") or {}
    if not nodes:
        raise ConfigError("no modality selected: choose some with 'modality=[ct,genomics,...]'")
    modalities = {}
    for key, node in nodes.items():
        modality = instantiate(node, _convert_="all")
        if not isinstance(modality, Modality):
            raise TypeError(
                f"modality.{key}: _target_ must build a fusion.Modality, got {type(modality).__name__}"
            )
        if modality.name != key:
            raise ConfigError(
                f"modality.{key}: its name is '{modality.name}'; the config key and name must match"
            )
        modalities[key] = modality
    return modalities


def record_modalities(cfg: DictConfig, modalities: dict[str, Modality]) -> None:
    """Put the instances' own configs (`Modality.init_config`) in `cfg.modality`, in place of whatever the
    config selected, after checking that each rebuilds from it: the checkpoint's config is then the truth
    that `fusion-predict` rebuilds from (the Python API's object route, `fusion.train(modalities=[...])`)."""
    if not modalities:
        raise ConfigError("no modality given: pass at least one Modality instance")
    configs = {}
    for key, modality in modalities.items():
        if modality.name != key:
            raise ConfigError(f"modality '{modality.name}' was passed under the name '{key}'")
        configs[key] = modality.init_config()
    with open_dict(cfg):
        cfg.modality = configs
    build_modalities(cfg)  # the recorded configs must rebuild the same modalities, now rather than at predict


def build_heads(cfg: DictConfig) -> dict[str, Head]:
    """One head per entry of `cfg.head`, sized to the fuser's output (`cfg.fuser.d_model`)."""
    nodes = cfg.get("head") or {}
    if not nodes:
        raise ConfigError("no head selected: choose some with 'head=[grade,survival,response]'")
    heads = {}
    for key, node in nodes.items():
        head = instantiate(node, in_dim=cfg.fuser.d_model, _convert_="all")
        if head.name != key:
            raise ConfigError(f"head.{key}: its name is '{head.name}'; the config key and name must match")
        heads[key] = head
    return heads


def build_model(cfg: DictConfig, modalities: dict[str, Modality], heads: dict[str, Head]) -> FusionModel:
    """Encoders (after the modalities are fitted) -> fuser -> heads."""
    out_dims = {name: int(m.out_dim) for name, m in modalities.items()}
    fuser = instantiate(cfg.fuser, in_dims=out_dims, _convert_="all")
    if fuser.out_dim != cfg.fuser.d_model:
        raise ConfigError(f"fuser.out_dim {fuser.out_dim} != fuser.d_model {cfg.fuser.d_model}")
    encoders = {name: m.build_encoder() for name, m in modalities.items()}
    model = FusionModel(encoders, out_dims, fuser, heads, output=model_output(cfg))
    compile_model(model, cfg.get("compile", False))
    return model


def unimodal_weight(cfg: DictConfig) -> float:
    """`loss.unimodal_weight`: the weight of the auxiliary one-modality loss (0 = off)."""
    return float((cfg.get("loss") or {}).get("unimodal_weight", 0.0))


def model_output(cfg: DictConfig) -> str:
    """`model.output` resolved: ``auto`` is ``ensemble`` when the auxiliary loss trains the one-modality
    passes (`loss.unimodal_weight` > 0), else ``fused``. Checkpoints written before the setting existed
    have no `model` block and predict from the fused pass, as they were trained and selected to.
    """
    if cfg.get("model") is None:
        return "fused"
    output = cfg.model.get("output", "auto")
    if output == "auto":
        return "ensemble" if unimodal_weight(cfg) > 0 else "fused"
    if output not in OUTPUTS:
        raise ConfigError(f"model.output must be auto or one of {list(OUTPUTS)}, got {output!r}")
    if output == "ensemble" and unimodal_weight(cfg) == 0:
        raise ConfigError(
            "model.output=ensemble averages the one-modality passes that the auxiliary loss trains, but "
            "loss.unimodal_weight is 0: set loss.unimodal_weight > 0 or model.output=fused (or auto)"
        )
    return output


#: what `compile:` accepts besides true/false: torch.compile modes
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def compile_model(model: FusionModel, setting: bool | str | None) -> None:
    """`compile: true` or a mode name: `torch.compile` each encoder and the fuser, in place.

    In place (`nn.Module.compile`) keeps module types and weight names, so checkpoints load with or
    without it. The FusionModel itself is not compiled: its per-batch missing-modality branches would
    recompile; the encoders, where the compute is, see one tensor each.
    """
    if setting in (None, False):
        return
    if setting is not True and setting not in COMPILE_MODES:
        raise ConfigError(f"compile must be true, false or one of {list(COMPILE_MODES)}, got {setting!r}")
    mode = None if setting is True else setting
    for module in [*model.encoders.values(), model.fuser]:
        module.compile(mode=mode)


def build_datamodule(
    cfg: DictConfig,
    cohort: Cohort,
    modalities: dict[str, Modality],
    heads: dict[str, Head],
    splits: dict[str, list[str]] | None = None,
    fit_modalities: bool = True,
) -> FusionDataModule:
    data = cfg.data
    return FusionDataModule(
        cohort,
        modalities,
        heads,
        splits=splits,
        # to_container of a DictConfig is a dict; its stubs give the return type for any config or value
        split=cast(dict[str, Any], OmegaConf.to_container(data.split, resolve=True)),
        batch_size=data.batch_size,
        num_workers=data.num_workers,
        pin_memory=data.get("pin_memory", False),
        persistent_workers=data.get("persistent_workers", True),
        prefetch_factor=data.get("prefetch_factor"),
        cache=data.get("cache", "memory"),
        cache_dir=data.get("cache_dir"),
        augment_on=data.get("augment_on", "auto"),
        fit_modalities=fit_modalities,
    )


def to_plain(value: Any) -> Any:
    """numpy/tensor values -> lists and floats, so checkpoints load with `weights_only=True`."""
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if hasattr(value, "tolist") and hasattr(value, "detach"):
        return value.detach().cpu().tolist()
    return value


def modality_states(modalities: dict[str, Modality]) -> dict[str, Any]:
    return {name: to_plain(m.state_dict()) for name, m in modalities.items()}
