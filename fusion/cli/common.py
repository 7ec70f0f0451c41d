"""What every command shares: a quiet console, and one-line errors for bad input instead of tracebacks."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from fusion.console import quiet_third_party
from fusion.errors import FusionError

#: the user's to fix: a FusionError (bad cohort, config, modality input, ...) or a path that is not there
USER_ERRORS = (FusionError, FileNotFoundError, FileExistsError)


def report_user_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Bad input is the user's to fix: print what and where, exit 1; keep tracebacks for our bugs.

    Also quiets the libraries' console noise (`fusion.console.quiet_third_party`) before the command runs.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        quiet_third_party()
        try:
            return func(*args, **kwargs)
        except USER_ERRORS as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(1)
        except MissingMandatoryValue as err:
            cfg = next((a for a in args if isinstance(a, DictConfig)), None)
            print(f"error: {missing_value_message(err, cfg)}", file=sys.stderr)
            sys.exit(1)

    return wrapper


def missing_value_message(err: MissingMandatoryValue, cfg: DictConfig | None = None) -> str:
    """`ckpt_path is required: e.g. fusion-predict ckpt_path=CKPT_PATH data.manifest=MANIFEST (...)`: the
    key the command stopped at, and an invocation giving it and every other `???` of the config."""
    key = str(err.full_key or err.key or "a value")
    missing = [key, *(k for k in (OmegaConf.missing_keys(cfg) if cfg is not None else ()) if k != key)]
    command = command_name()
    example = " ".join(f"{k}={k.rsplit('.', 1)[-1].upper()}" for k in missing)
    required = " and ".join(missing) + (" are" if len(missing) > 1 else " is")
    return f"{required} required: e.g. {command} {example} (more examples: {command} --help)"


def command_name() -> str:
    """The console command being run (`fusion-predict`): its help's app_name, else the script's name."""
    if HydraConfig.initialized():
        return str(HydraConfig.get().help.app_name)
    return Path(sys.argv[0]).name
