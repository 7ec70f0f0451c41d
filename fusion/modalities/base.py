"""The `Modality` contract: everything `fusion` knows about one kind of patient input.

A modality owns the whole path from a cohort entry to an embedding:

    gather(cohort)   patient_id -> reference (a path, a table row) or None when missing
    check(ref)       cheap problems with one reference, found before training (fusion-validate)
    load(ref)        read + deterministic preprocessing; state-free, so the result can be cached
    cache_key()      the settings `load` depends on (part of the disk-cache key, `data.cache=disk`)
    fit(items)       learn state (normalisers, vocabularies) from *training* items only
    transform(item)  apply fitted state, plus random augmentation when `train=True`
    collate(items)   batch the items of the patients who *have* this modality
    augment_batch    optional: the training augmentation of collated rows, on the training device
    build_encoder()  nn.Module: collated batch -> (n, n_tokens, out_dim) or (n, out_dim)

The fuser learns nothing about a modality beyond `out_dim`. Missing data is never an error:
a patient without this modality simply has no item, and the model masks it out.
"""

from __future__ import annotations

import inspect
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from fusion.errors import ConfigError, FusionError

if TYPE_CHECKING:
    from fusion.io.cohort import Cohort

ON_ERROR_POLICIES = ("raise", "drop_modality")


class ModalityError(FusionError, ValueError):
    """A broken input (not a missing one): names the patient, the modality, the file and the problem."""

    def __init__(self, patient_id: str, modality: str, problem: str, file: str | Path | None = None):
        self.patient_id, self.modality, self.problem, self.file = patient_id, modality, problem, file
        where = f", file '{file}'" if file is not None else ""
        super().__init__(f"patient '{patient_id}', modality '{modality}'{where}: {problem}")


class Modality(ABC):
    """Base class for built-in and user modalities.

    Args:
        name: key of this modality in batches, configs and the fuser (e.g. ``ct``).
        column: manifest column holding each patient's path; defaults to ``name``.
        on_error: ``raise`` (broken input stops the run before training) or ``drop_modality``
            (warn and treat the modality as missing for that patient).
    """

    #: True when `fit` learns something; the data module then loads training items to fit on.
    needs_fit: bool = False

    #: True when `load` marks missing values with NaN on purpose (table modalities: EHR, genomics) and
    #: `transform` / the encoder handle them. False (the default): a NaN or inf in a loaded or
    #: transformed item is a broken input, a `ModalityError` naming the patient (infinities always are).
    missing_as_nan: bool = False

    #: Optional batched form of the training augmentation: a method ``augment_batch(data) -> data``
    #: taking this modality's collated rows (what `collate` returned, moved to the training device)
    #: and returning them augmented. When ``data.augment_on`` resolves to ``device``, the data module
    #: gives these items the evaluation `transform` and calls `augment_batch` on each training batch
    #: instead. None (the default): the modality augments per sample only, in `transform`. A subclass
    #: that has one defines the method (`ImagingModality.augment_batch`); ask `augments_per_batch`.
    augment_batch: Callable[[Any], Any] | None = None

    #: (args, kwargs) of the constructor call, set by `__new__` (absent on an instance made without it)
    _init_arguments: tuple[tuple[Any, ...], dict[str, Any]]

    def __new__(cls, *args: Any, **kwargs: Any) -> Modality:
        # the constructor arguments, so that `init_config` can rebuild this instance in another process
        instance = super().__new__(cls)
        instance._init_arguments = (args, kwargs)
        return instance

    def __init__(self, name: str, column: str | None = None, on_error: str = "raise"):
        if on_error not in ON_ERROR_POLICIES:
            raise ValueError(
                f"modality '{name}': on_error must be one of {ON_ERROR_POLICIES}, got '{on_error}'"
            )
        self.name = name
        self.column = column or name
        self.on_error = on_error

    # ----------------------------------------------------------------- cohort side
    def gather(self, cohort: Cohort) -> dict[str, Any]:
        """patient_id -> reference to this patient's raw input, or None when missing.

        Default: the manifest column ``self.column`` holds a path relative to the manifest folder.
        """
        return cohort.paths(self.column)

    def check(self, ref: Any) -> list[str]:
        """Cheap problems with one patient's reference (no full read). Default: the path exists."""
        if isinstance(ref, Path) and not ref.exists():
            return [f"path does not exist: {ref}"]
        return []

    # ----------------------------------------------------------------- data side
    @abstractmethod
    def load(self, ref: Any) -> Any:
        """Read one patient's input and apply the deterministic preprocessing (cacheable)."""

    def fit(self, items: list[Any]) -> None:  # noqa: B027 - optional hook, not abstract
        """Learn state from the training split's loaded items. Default: nothing to learn."""

    def transform(self, item: Any, train: bool) -> Any:
        """Apply fitted state, and random augmentation when ``train``. Default: identity."""
        return item

    def collate(self, items: list[Any]) -> Any:
        """Batch the items of the patients who have this modality. Default: stack tensors."""
        return torch.stack([torch.as_tensor(x) for x in items])

    @property
    def augments_per_batch(self) -> bool:
        """Whether this modality has a batched training augmentation (`augment_batch` is defined)."""
        return self.augment_batch is not None

    def cache_key(self) -> str:
        """Stable JSON of the settings `load` depends on; part of the disk-cache key (`data.cache=disk`).

        Default: every constructor argument (of this class and its bases) that the instance keeps
        under the same attribute name with a plain value (str, number, bool, None, path, or lists /
        dicts of those), sorted by name. Fitted state is not a constructor argument, so `fit` and
        `load_state_dict` leave the key unchanged. Override it when `load` depends on settings kept
        under other names or as non-plain objects (a callable, a transform): those are left out here,
        so changing them would not invalidate cached items. Overriding it to return only what `load`
        uses also keeps the cache valid when e.g. only the encoder changes.
        """
        settings = {}
        for cls in type(self).__mro__:
            init = cls.__dict__.get("__init__")
            if init is None or cls is object:
                continue
            for param in inspect.signature(init).parameters.values():
                if param.name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                    continue
                if param.name in settings or not hasattr(self, param.name):
                    continue
                value = _plain_setting(getattr(self, param.name))
                if value is not _NOT_PLAIN:
                    settings[param.name] = value
        return json.dumps(settings, sort_keys=True)

    def init_config(self) -> dict[str, Any]:
        """The config that rebuilds this modality: ``_target_`` (the class's import path) and the
        constructor arguments the instance was built with, as plain values.

        `fusion.train(cfg, modalities=[instance])` records it in the checkpoint's config in place of the
        YAML, so `fusion-predict`, `fusion-robustness` and the Python API rebuild exactly this modality
        (then restore its fitted state). A class the new process could not import (defined in a script's
        ``__main__`` or inside a function) or an argument that is not a plain value (a function, a tensor,
        an open file) cannot be recorded: a ConfigError names it.
        """
        cls = type(self)
        target = f"{cls.__module__}.{cls.__qualname__}"
        if cls.__module__ == "__main__" or "<locals>" in cls.__qualname__:
            where = "a script (__main__)" if cls.__module__ == "__main__" else "a function"
            raise ConfigError(
                f"modality '{self.name}': class {cls.__qualname__} is defined in {where}, so a later "
                "process (fusion-predict) could not import it; define it in an importable module"
            )
        args, kwargs = getattr(self, "_init_arguments", ((), {}))
        signature = inspect.signature(cls.__init__)
        bound = signature.bind(self, *args, **kwargs)
        given = set(bound.arguments)
        bound.apply_defaults()  # defaults too: the checkpoint then says every setting it was trained with
        config: dict[str, Any] = {"_target_": target}
        for key, value in list(bound.arguments.items())[1:]:  # after self
            kind = signature.parameters[key].kind
            if kind == inspect.Parameter.VAR_POSITIONAL:
                if value:
                    raise ConfigError(
                        f"modality '{self.name}': positional *{key} arguments cannot be recorded by name; "
                        "pass keyword arguments"
                    )
                continue
            for name, item in value.items() if kind == inspect.Parameter.VAR_KEYWORD else [(key, value)]:
                plain = _plain_setting(item)
                if plain is not _NOT_PLAIN:
                    config[name] = plain
                elif key in given:  # a default that is not plain is rebuilt by the class itself
                    raise ConfigError(
                        f"modality '{self.name}': constructor argument '{name}' ({type(item).__name__}) "
                        "cannot be recorded in the checkpoint; pass plain values (numbers, strings, paths, "
                        "lists, dicts) so fusion-predict can rebuild the modality"
                    )
        return config

    # ----------------------------------------------------------------- model side
    @abstractmethod
    def build_encoder(self) -> nn.Module:
        """The encoder for this modality; called after `fit`, so it may depend on fitted state."""

    @property
    @abstractmethod
    def out_dim(self) -> int:
        """Feature size of the encoder's output tokens."""

    # ----------------------------------------------------------------- fitted state
    def state_dict(self) -> dict[str, Any]:
        """Fitted state to store in checkpoints (plain Python / numpy values). Default: none."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:  # noqa: B027 - optional hook
        """Restore what `state_dict` returned (used by fusion-predict)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


_NOT_PLAIN = object()


def _plain_setting(value: Any) -> Any:
    """`value` as JSON-ready data (tuples -> lists, paths -> str), or `_NOT_PLAIN`."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, Mapping):
        items = {str(k): _plain_setting(v) for k, v in value.items()}
        return _NOT_PLAIN if any(v is _NOT_PLAIN for v in items.values()) else items
    if isinstance(value, Sequence) and not isinstance(value, bytes):  # lists, tuples, ListConfig
        entries = [_plain_setting(v) for v in value]
        return _NOT_PLAIN if any(v is _NOT_PLAIN for v in entries) else entries
    return _NOT_PLAIN
