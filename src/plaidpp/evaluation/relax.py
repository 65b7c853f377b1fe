"""Relax one structure with an MLIP (an ASE optimiser, FIRE by default, + a cell filter) and report a number or a counted reason.

``relax_structure`` never raises for a bad crystal: NaN/inf energies or forces, energies outside a sane
window, cells that blow up during relaxation, time-outs and errors inside the MLIP all come back as a
``RelaxResult`` with ``fail_reason`` set (keys of RELAX_REASONS, plus ``mlip_error:<ExceptionType>``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from pymatgen.core import Structure
from pymatgen.io.ase import AseAtomsAdaptor

from plaidpp.settings.evaluation import RelaxSettings

RELAX_REASONS: dict[str, str] = {
    "energy_nan": "the MLIP returned a NaN/inf energy, force or stress",
    "energy_out_of_range": "energy per atom outside relax.energy_window (eV/atom): an exploding potential",
    "cell_exploded": "volume per atom left relax.max_volume_per_atom during relaxation",
    "relax_timeout": "relaxation exceeded relax.time_limit_s",
}


@dataclass
class RelaxResult:
    energy_total: float = math.nan  # eV per cell, as the MLIP predicts it (no correction)
    energy_per_atom: float = math.nan  # eV/atom
    n_steps: int = 0
    converged: bool = False
    cif_relaxed: str | None = None
    fail_reason: str | None = None
    fail_detail: str | None = None
    seconds: float = 0.0  # wall time of the whole relaxation in its worker
    force_calls: int = 0  # the potential's own calculate() calls
    potential_seconds: float = 0.0  # time inside them: the potential's compute, the rest is overhead
    exit_reason: str | None = None  # why it stopped before convergence or the step cap (TierDecided), else None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class TierDecided(Exception):
    """Raised by an observer: the crystal's tier can no longer change, so further steps buy nothing."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Abort(Exception):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


def _finite(atoms) -> bool:
    e = atoms.get_potential_energy()
    f = atoms.get_forces()
    return bool(np.isfinite(e) and np.all(np.isfinite(f)))


class _TimedCalls:
    """Counts a calculator's ``calculate`` calls and the time inside them while attached (the instance attribute
    shadows the method ASE's ``get_property`` calls), so overhead around the potential can be measured. A
    duck-typed calculator without ``calculate`` (not an ASE ``Calculator``) is left alone and counts nothing."""

    def __init__(self, calculator) -> None:
        self.calculator, self.calls, self.seconds = calculator, 0, 0.0
        self._inner = getattr(calculator, "calculate", None)

    def __call__(self, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return self._inner(*args, **kwargs)
        finally:
            self.calls += 1
            self.seconds += time.perf_counter() - t0

    def __enter__(self) -> _TimedCalls:
        if self._inner is not None:
            self.calculator.calculate = self
        return self

    def __exit__(self, *exc) -> None:
        if self._inner is not None:
            del self.calculator.calculate


def relax_structure(structure: Structure, calculator, settings: RelaxSettings, *,
                    observer: Callable[[Any], None] | None = None) -> RelaxResult:
    """Relax ``structure`` in place of a copy; always returns (see module docstring).

    ``observer(optimizer)`` is called after the sanity checks of every step (the starting point included), with
    the ASE optimiser whose ``optimizable`` holds the current cell and forces: benchmarks record trajectories
    through it. It may raise ``TierDecided`` to stop the relaxation early (``tiers.TierExit``); the result then
    carries the crystal as it stands, with ``exit_reason`` saying why."""
    start = time.monotonic()
    with _TimedCalls(calculator) as timed:
        result = _relax(structure, calculator, settings, start, observer)
    result.force_calls, result.potential_seconds = timed.calls, timed.seconds
    result.seconds = time.monotonic() - start
    return result


OPTIMIZERS = {"fire": "FIRE", "fire2": "FIRE2", "bfgs": "BFGS", "lbfgs": "LBFGS",
              "bfgs_linesearch": "BFGSLineSearch", "lbfgs_linesearch": "LBFGSLineSearch", "mdmin": "MDMin"}


def primitive_cell(structure: Structure) -> Structure:
    """The primitive cell (same energy per atom, up to 4x fewer atoms), or the cell as given if reduction fails."""
    try:
        return structure.get_primitive_structure()
    except Exception:  # noqa: BLE001 - a failed reduction just means relaxing the cell as given
        return structure


def phases(settings: RelaxSettings) -> list[tuple[str, float, int]]:
    """(optimiser, fmax, step cap) run one after the other: the optimiser alone, or, with ``relax.polish``, the
    optimiser down to ``polish_from_fmax`` and then the polishing optimiser down to ``fmax``. A crystal whose first
    phase hits its cap is polished all the same."""
    if settings.polish == "none":
        return [(settings.optimizer, settings.fmax, settings.steps)]
    return [(settings.optimizer, max(settings.polish_from_fmax, settings.fmax), settings.steps),
            (settings.polish, settings.fmax, settings.polish_steps)]


def _relax(structure: Structure, calculator, settings: RelaxSettings, start: float,
           observer: Callable[[Any], None] | None) -> RelaxResult:
    import ase.optimize
    from ase.filters import ExpCellFilter, FrechetCellFilter

    result = RelaxResult()
    if settings.primitive:
        structure = primitive_cell(structure)
    atoms = AseAtomsAdaptor.get_atoms(structure)
    atoms.calc = calculator
    n_atoms = len(atoms)
    low, high = settings.energy_window

    def check() -> None:
        # Called by the optimiser after every step: stop early instead of grinding 500 steps on garbage.
        e = atoms.get_potential_energy()
        if not math.isfinite(e) or not np.all(np.isfinite(atoms.get_forces())):
            raise _Abort("energy_nan", f"energy={e}")
        if not low <= e / n_atoms <= high:
            raise _Abort("energy_out_of_range", f"{e / n_atoms:.3g} eV/atom")
        if atoms.get_volume() / n_atoms > settings.max_volume_per_atom:
            raise _Abort("cell_exploded", f"{atoms.get_volume() / n_atoms:.1f} A^3/atom")
        if time.monotonic() - start > settings.time_limit_s:
            raise _Abort("relax_timeout", f"> {settings.time_limit_s:.0f} s")

    try:
        check()  # the starting point too: a NaN there would make FIRE divide by it
        cell_filter = FrechetCellFilter if settings.cell_filter == "frechet" else ExpCellFilter
        try:
            for name, fmax, steps in phases(settings):
                # each phase starts a new filter at the cell as it stands (what benchmarks/polish_paths.py measured)
                opt = getattr(ase.optimize, OPTIMIZERS[name])(cell_filter(atoms), logfile=None)
                # irun yields after the starting point and after every step (what opt.run(...) does, with the
                # checks and the observer between the steps)
                for converged in opt.irun(fmax=fmax, steps=steps):
                    check()
                    result.converged = bool(converged)
                    if observer is not None:
                        observer(opt)
                result.n_steps += int(opt.nsteps)
        except TierDecided as decided:
            result.n_steps += int(opt.nsteps)
            result.exit_reason = None if result.converged else decided.reason
        check()
        energy = float(atoms.get_potential_energy())
        result.energy_total = energy
        result.energy_per_atom = energy / n_atoms
        relaxed = AseAtomsAdaptor.get_structure(atoms)
        result.cif_relaxed = relaxed.to(fmt="cif")
    except _Abort as exc:
        result.fail_reason, result.fail_detail = exc.reason, exc.detail
    except Exception as exc:  # noqa: BLE001 - any MLIP failure becomes a counted reason, never a crash
        result.fail_reason = f"mlip_error:{type(exc).__name__}"
        result.fail_detail = str(exc)[:200]
    return result
