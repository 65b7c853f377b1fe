"""Proxy validity checks (CDVAE, Xie et al. 2021; paper appendix 7.1): cheap filters before any MLIP.

Structural validity: every periodic interatomic distance > 0.5 Å (an atom's distance to its own periodic
images included) and a volume per atom inside a sane window.
Compositional validity: SMACT charge neutrality plus the Pauling electronegativity test, with CDVAE's two
shortcuts - a single element passes and an all-metal composition (alloy) passes. The oxidation-state set is
pinned (``smact14``, the table CDVAE/MatterGen used) because SMACT >= 3 changed its default to an ICSD-2024
filter, which shifts the rate by several points.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
from pymatgen.core import Composition, Structure
from smact.screening import smact_validity

MIN_DISTANCE_ANGSTROM = 0.5
OXIDATION_STATES_SET = "smact14"


@dataclass(frozen=True)
class StructuralCheck:
    valid: bool
    reason: str | None  # "overlapping_atoms", "volume_out_of_range", "non_finite_lattice", "degenerate_cell"
    min_distance: float  # Å (periodic); inf for no neighbour within the cut-off


def structural_validity(
    structure: Structure,
    min_distance: float = MIN_DISTANCE_ANGSTROM,
    volume_per_atom: tuple[float, float] = (1.0, 500.0),
) -> StructuralCheck:
    """CDVAE's 0.5 Å rule plus a volume window in Å^3/atom (MP-20 spans ~5-60; the bounds are generous)."""
    matrix = structure.lattice.matrix
    if not np.all(np.isfinite(matrix)) or not math.isfinite(structure.volume):
        return StructuralCheck(False, "non_finite_lattice", math.nan)
    if structure.volume <= 1e-6 or min(structure.lattice.abc) <= 1e-6:  # Å^3, Å: a flat or zero cell
        return StructuralCheck(False, "degenerate_cell", math.nan)
    vpa = structure.volume / len(structure)
    # Neighbour search within a short radius only: cost stays linear even for huge cells. 4 Å reports the
    # real nearest-neighbour distance of any sane crystal; inf means "no neighbour within 4 Å".
    centers, neighbors, _images, distances = structure.get_neighbor_list(max(4.0, min_distance + 1e-8))
    real = distances > 1e-8 if len(distances) else distances.astype(bool)
    close = distances[real] if len(distances) else distances
    # Two sites at the same point have distance 0: get_neighbor_list drops exact zeros with self-pairs,
    # so look for coincident distinct sites explicitly.
    coincident = bool(np.any((distances <= 1e-8) & (centers != neighbors))) if len(distances) else False
    dmin = float(close.min()) if len(close) else math.inf
    if coincident:
        dmin = 0.0
    if dmin <= min_distance:
        return StructuralCheck(False, "overlapping_atoms", dmin)
    if not volume_per_atom[0] <= vpa <= volume_per_atom[1]:
        return StructuralCheck(False, "volume_out_of_range", dmin)
    return StructuralCheck(True, None, dmin)


_CELL_FIELD = re.compile(r"^\s*_cell_(length_[abc]|angle_(?:alpha|beta|gamma))\s+(\S+)", re.MULTILINE | re.IGNORECASE)


def cif_cell_problem(text: str) -> str | None:
    """What is wrong with a CIF's cell parameters as written, or None. pymatgen builds a cell from a negative
    length (a=-4 gives the mirrored vector, |a| = 4: a left-handed cell it relaxes as if nothing happened), so the
    numbers are checked as the file states them: lengths finite and > 0, angles in (0, 180) degrees and jointly
    a cell (1 - cos²α - cos²β - cos²γ + 2 cosα cosβ cosγ > 0, the squared volume of the unit cell)."""
    values: dict[str, float] = {}
    for name, raw in _CELL_FIELD.findall(text):
        try:
            values[name.lower()] = float(raw.split("(")[0])  # 5.431(2): the uncertainty is not part of the value
        except ValueError:
            return f"_cell_{name} {raw!r} is not a number"
    for name, value in values.items():
        if not math.isfinite(value):
            return f"_cell_{name} = {value}"
        if name.startswith("length") and value <= 0:
            return f"_cell_{name} = {value} (not > 0)"
        if name.startswith("angle") and not 0 < value < 180:
            return f"_cell_{name} = {value} (not in (0, 180))"
    angles = [values.get(f"angle_{x}") for x in ("alpha", "beta", "gamma")]
    if all(a is not None for a in angles):
        ca, cb, cg = (math.cos(math.radians(a)) for a in angles)
        if 1 - ca * ca - cb * cb - cg * cg + 2 * ca * cb * cg <= 1e-9:
            return f"angles {angles} make no cell"
    return None


def composition_validity(composition: Composition) -> bool:
    """SMACT validity with CDVAE's conventions (unaries and all-metal compositions pass)."""
    comp = Composition({el: amt for el, amt in composition.items()})
    # SMACT works on integer stoichiometries; a generated cell always has integer site counts.
    return bool(
        smact_validity(
            comp,
            use_pauling_test=True,
            include_alloys=True,
            oxidation_states_set=OXIDATION_STATES_SET,
        )
    )
