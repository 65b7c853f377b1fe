"""Every setting of every stage, typed and documented, in one place.

Layers, lowest first (each may set what the ones below left open):

1. the dataclasses here: type, unit, allowed values, help text, and the default where one makes sense;
2. ``conf/``: Hydra presets (``conf/mlip/sevennet.yaml``, ``conf/model/tiny.yaml``, ...) holding only what
   differs from the dataclass, and each stage's defaults list;
3. ``params.yaml``: the pipeline's knobs (``settings.params``), the only home of those values;
4. an ``+experiment=`` file, then the command line.

``plaidpp.config.compose(stage, overrides)`` builds the typed, validated config a stage receives;
``plaidpp config <stage>`` prints it with each setting's help.
"""

from __future__ import annotations

from functools import lru_cache

from plaidpp.settings.base import SettingError, describe, leaf_fields, setting, validate
from plaidpp.settings.params import PipelineParams
from plaidpp.settings.stages import STAGE_CONFIGS


@lru_cache(maxsize=1)
def register() -> None:
    """Put every stage's schema into Hydra's ConfigStore as ``<stage>_schema`` (``conf/<stage>.yaml`` lists it
    first in its defaults, so every preset merged below it is checked against the dataclass)."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    for name, cls in STAGE_CONFIGS.items():
        store.store(name=f"{name}_schema", node=cls)


__all__ = ["PipelineParams", "STAGE_CONFIGS", "SettingError", "describe", "leaf_fields", "register", "setting",
           "validate"]
