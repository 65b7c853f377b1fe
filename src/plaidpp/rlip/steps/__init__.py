"""The steps of an RLIP iteration, one module each: PLaID++ Algorithm 1's five, and the reward audit.

Every step module has the same three parts, so the driver and the DVC graph (``plaidpp.pipeline``) treat them
alike:

- ``READS``: the parts of the RLIP config the step reads (DVC tracks exactly those);
- ``paths(cfg, layout, i) -> (inputs, outputs)``: the files it reads and writes;
- ``run(cfg, layout, i) -> summary``: the work (resumable: a killed step continues where it stopped).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from plaidpp.settings.rlip import RLIP_STEPS


def step_module(step: str) -> ModuleType:
    """``plaidpp.rlip.steps.<step>``, imported on first use (each pulls in different heavy libraries)."""
    if step not in RLIP_STEPS:
        raise ValueError(f"unknown RLIP step {step!r}")
    return importlib.import_module(f"plaidpp.rlip.steps.{step}")
