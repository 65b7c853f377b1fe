"""Sampling temperature per RLIP iteration (PLaID++ section 4.2, appendix 7.2 Figure 7).

Raising T across iterations acts as an entropy regulariser against mode collapse. The paper's flagship
raises T by 0.2 every two iterations from 0.7 (0.7, 0.7, 0.9, 0.9, 1.1, 1.1, 1.3); its ablations are a
constant T and faster ramps of 0.1 or 0.2 per iteration, both worse on S.U.N.

    T_i = min(start + step * floor((i - 1) / every), max)      i = 1, 2, ...

or an explicit ``values`` list (the last value repeats when the run is longer than the list).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from plaidpp.errors import UserError


@dataclass(frozen=True)
class Schedule:
    name: str = "flagship"
    start: float = 0.7
    step: float = 0.2  # added every `every` iterations
    every: int = 2
    max: float | None = None  # cap, e.g. 1.5; None = no cap
    values: tuple[float, ...] | None = None  # explicit list overrides the ramp

    def __post_init__(self) -> None:
        if self.every < 1:
            raise UserError(f"schedule.every must be >= 1, got {self.every}")
        if self.values is not None and (not self.values or min(self.values) <= 0):
            raise UserError("schedule.values must be a non-empty list of positive temperatures")
        if self.values is None and self.start <= 0:
            raise UserError(f"schedule.start must be positive, got {self.start}")

    @classmethod
    def from_mapping(cls, mapping: Any) -> Schedule:
        data = dict(mapping)
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise UserError(f"unknown schedule settings {sorted(unknown)}")
        if data.get("values") is not None:
            data["values"] = tuple(float(v) for v in data["values"])
        return cls(**data)

    def temperature(self, iteration: int) -> float:
        """Temperature for RLIP iteration ``iteration`` (1-based: iteration 1 samples from the SFT model)."""
        if iteration < 1:
            raise ValueError(f"RLIP iterations are 1-based, got {iteration}")
        if self.values is not None:
            return self.values[min(iteration, len(self.values)) - 1]
        t = self.start + self.step * ((iteration - 1) // self.every)
        if self.max is not None:
            t = min(t, self.max)
        return round(t, 6)  # 0.7 + 0.2 + 0.2 is 1.0999999999999999 in floats

    def temperatures(self, iterations: int) -> list[float]:
        return [self.temperature(i) for i in range(1, iterations + 1)]
