"""Space group of a (relaxed) structure by pyxtal at the paper's tolerance, with a time budget.

pyxtal/spglib can take very long on large or nearly-degenerate cells; a SIGALRM budget turns that into the
counted reason ``spacegroup_timeout`` (only possible on a process's main thread - evaluation workers are
processes, so that is where this runs; elsewhere the call is unguarded).
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

from pymatgen.core import Structure

PAPER_TOLERANCE = 0.01  # Å, paper appendix 7.2


class SymmetryTimeout(Exception):
    pass


@contextmanager
def time_budget(seconds: float):
    """Raise SymmetryTimeout after ``seconds`` of wall time (main thread only; a no-op elsewhere)."""
    if seconds <= 0 or threading.current_thread() is not threading.main_thread():
        yield
        return

    def _alarm(signum, frame):  # noqa: ARG001
        raise SymmetryTimeout(f"> {seconds} s")

    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def spacegroup_number(
    structure: Structure, tolerance: float = PAPER_TOLERANCE, time_limit_s: float = 20.0
) -> tuple[int | None, str | None]:
    """(space-group number, None) or (None, reason): "spacegroup_timeout" / "spacegroup_error:<Type>"."""
    from pyxtal import pyxtal

    try:
        with time_budget(time_limit_s):
            crystal = pyxtal()
            crystal.from_seed(structure, tol=tolerance)
            return int(crystal.group.number), None
    except SymmetryTimeout:
        return None, "spacegroup_timeout"
    except Exception as exc:  # noqa: BLE001 - pyxtal raises many types; counted, never a default "P1"
        return None, f"spacegroup_error:{type(exc).__name__}"
