"""Where the Hydra configuration lives and how stages receive it.

Every stage is an ordinary function ``fn(cfg: DictConfig) -> dict`` composed from ``conf/<stage>.yaml``.
The CLI, DVC (whose ``cmd`` is the CLI) and tests all take this same path; tests use ``compose()`` to build
the real config and then shrink it.
"""

from __future__ import annotations

import os
from pathlib import Path

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from omegaconf import DictConfig

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def conf_dir() -> Path:
    """``$PLAIDPP_CONF`` if set, else ``conf/`` beside ``src/`` (the project is installed editable)."""
    path = Path(os.environ.get("PLAIDPP_CONF", PROJECT_ROOT / "conf"))
    if not (path / "prepare.yaml").exists():
        raise FileNotFoundError(f"no Hydra configs in {path}; set PLAIDPP_CONF to the project's conf/ folder")
    return path


def compose(stage: str, overrides: list[str] | None = None) -> DictConfig:
    """The config a stage would get from ``plaidpp <stage> <overrides>`` (without Hydra's run dir)."""
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3", job_name=stage):
        return hydra_compose(config_name=stage, overrides=list(overrides or []))
