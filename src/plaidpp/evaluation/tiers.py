"""Stability tiers, and the bound that lets a relaxation stop once its crystal's tier can no longer change.

A crystal's tier is read off its energy above hull: ``stable`` (E_hull <= the stable cut), ``metastable``
(<= the metastable cut) or ``unstable``. For one composition E_hull is the energy per atom plus a constant (the
hull and the MP2020 terms), so the parent computes that ``offset`` before relaxing and the worker knows E_hull at
every step.

**The bound.** At a step with energy above hull ``h`` and largest generalised force ``f`` (eV/Å, what FIRE
converges on), the relaxed crystal's E_hull is taken to lie in ``[h - slope * f - floor, h]``:

- the upper end: a relaxation does not end above an energy it has passed through (FIRE with a cell filter is
  not monotone step by step, but its end point is the lowest energy of its path in the trajectories measured,
  ``benchmarks/fast_paths.py``);
- the lower end: the energy still to be lost is at most ``slope * f + floor`` per atom. **Measured false** on
  313 generated crystals (docs/evaluation.md, issue 30): the drop left is not bounded by the current force
  (drop / fmax p99 5.4, max 22 eV/atom per eV/Å), and every envelope tried loses tier agreement. That is why
  ``relax.tier_exit`` is off; the exit stays for measuring other envelopes.

When both ends fall in one tier, the tier is decided and the relaxation stops (``exit_reason: tier_decided``);
its E_hull is then the upper end, an overestimate by at most the bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from plaidpp.evaluation.relax import TierDecided
from plaidpp.evaluation.watchers import energy_and_fmax

TIER_NAMES = ("stable", "metastable", "unstable")


def tier(e_hull: float, stable: float, metastable: float) -> int:
    """0 stable, 1 metastable, 2 unstable (a NaN is unstable: no energy, no claim)."""
    if not math.isfinite(e_hull):
        return 2
    return 0 if e_hull <= stable else 1 if e_hull <= metastable else 2


@dataclass(frozen=True)
class TierExitRule:
    """The E_hull cuts that must not be crossed (eV/atom; the evaluation's stable and metastable thresholds, and
    the reward's pair tiers when it scores rollouts) and the envelope of the energy still to be lost."""

    cuts: tuple[float, ...]
    slope: float  # eV/atom per eV/Å of fmax
    floor: float  # eV/atom

    def decided(self, e_hull: float, fmax: float) -> bool:
        """True when no cut lies between the bound's two ends: whatever the rest of the relaxation does within
        the bound, the crystal stays on the same side of every cut."""
        low = e_hull - self.slope * fmax - self.floor
        return not any(low <= cut < e_hull for cut in self.cuts)

    @classmethod
    def candidates(cls, cuts: tuple[float, ...]) -> dict[str, TierExitRule]:
        """The envelopes ``benchmarks/fast_paths.py`` compares."""
        return {f"slope={slope},floor={floor}": cls(cuts, slope, floor)
                for slope in (0.25, 0.5, 1.0, 2.0) for floor in (0.0, 0.02, 0.05)}


def exit_index(e_hull: np.ndarray, fmax: np.ndarray, rule: TierExitRule) -> int | None:
    """The first step of a trajectory at which ``rule`` decides the tier, or None."""
    for t, (h, f) in enumerate(zip(e_hull, fmax, strict=True)):
        if math.isfinite(h) and rule.decided(float(h), float(f)):
            return t
    return None


@dataclass(frozen=True)
class TierExit:
    """A ``watchers.Watcher``: stops a relaxation as soon as ``rule`` decides the crystal's tier. ``offset`` is the
    composition's E_hull at zero energy per atom (eV/atom), computed by the parent."""

    rule: TierExitRule
    offset: float

    def observe(self, optimizer) -> None:
        energy, fmax, n_atoms = energy_and_fmax(optimizer)
        if self.rule.decided(energy / n_atoms + self.offset, fmax):
            raise TierDecided("tier_decided")

    def extra(self) -> dict:
        return {}

    def cache_tag(self) -> str:
        return f"tier_exit:{self.rule}:offset={self.offset:.6f}"
