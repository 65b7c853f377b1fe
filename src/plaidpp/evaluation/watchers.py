"""Things that watch a relaxation step by step, sent with a job to the worker that relaxes it.

A watcher is a small picklable object. In the worker, ``observe(optimizer)`` is called after every step (and at
the starting point) by ``relax.relax_structure``; it may raise ``relax.TierDecided`` to end the relaxation early.
``extra()`` returns the columns it adds to the job's result dict. ``cache_tag()`` is joined to the relaxation's
cache key: a watcher that can change the result (an early exit) must name everything it decides by, and one
that only records (``TrajectoryRecorder``) returns None, which keeps the plain key.

- ``TrajectoryRecorder``  the energy, the largest generalised force and the cell and fractional coordinates at
  every step: what ``benchmarks/scoring_profile.py`` replays to judge a cheaper relaxation without running it.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np


class Watcher(Protocol):
    def observe(self, optimizer: Any) -> None: ...

    def extra(self) -> dict[str, Any]: ...

    def cache_tag(self) -> str | None: ...


def energy_and_fmax(optimizer: Any) -> tuple[float, float, int]:
    """The optimiser's current energy (eV per cell), the largest generalised force it converges on (eV/Å; atoms
    and, through the cell filter, the cell) and the number of atoms; no new force call (ASE caches them)."""
    optimizable = optimizer.optimizable
    atoms = optimizable.filterobj.atoms if hasattr(optimizable, "filterobj") else optimizer.atoms
    return (float(optimizable.get_value()), float(optimizable.gradient_norm(optimizable.get_gradient())),
            len(atoms))


class TrajectoryRecorder:
    """Records, per step: energy per atom (eV/atom), fmax (eV/Å), and the cell (Å) and fractional coordinates
    (float32, enough to rebuild the crystal at any step for symmetry and matching)."""

    def __init__(self) -> None:
        self.energy: list[float] = []
        self.fmax: list[float] = []
        self.cells: list[np.ndarray] = []
        self.frac: list[np.ndarray] = []
        self.symbols: list[str] = []

    def observe(self, optimizer: Any) -> None:
        energy, fmax, n_atoms = energy_and_fmax(optimizer)
        atoms = optimizer.optimizable.filterobj.atoms
        self.energy.append(energy / n_atoms)
        self.fmax.append(fmax)
        self.cells.append(np.asarray(atoms.cell[:], dtype=np.float32))
        self.frac.append(np.asarray(atoms.get_scaled_positions(wrap=True), dtype=np.float32))
        self.symbols = atoms.get_chemical_symbols()

    def extra(self) -> dict[str, Any]:
        return {"trajectory": {"energy_per_atom": self.energy, "fmax": self.fmax,
                               "cells": np.asarray(self.cells).tolist(), "frac": np.asarray(self.frac).tolist(),
                               "symbols": self.symbols}}

    def cache_tag(self) -> str | None:
        return None
