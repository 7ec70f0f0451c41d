"""fusion-demo-data out=DIR n_patients=N seed=S: write the synthetic demo cohort."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import hydra
from omegaconf import DictConfig, OmegaConf

from fusion.cli.common import report_user_errors
from fusion.data.demo import write_demo_atomically


@hydra.main(version_base="1.3", config_path="pkg://fusion.conf", config_name="demo_data")
@report_user_errors
def main(cfg: DictConfig) -> None:
    # to_container of a DictConfig is a dict; its stubs give the return type for any config or value
    args = cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True))
    out = Path(args.pop("out")).expanduser().resolve()
    args.pop("task_name", None)
    manifest = write_demo_atomically(out, **args)
    print(f"wrote the demo cohort ({cfg.n_patients} patients) to {manifest}")


if __name__ == "__main__":
    main()
