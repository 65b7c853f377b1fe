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
from dataclasses import dataclass

import numpy as np
from pymatgen.core import Composition, Structure
from smact.screening import smact_validity

MIN_DISTANCE_ANGSTROM = 0.5
OXIDATION_STATES_SET = "smact14"


@dataclass(frozen=True)
class StructuralCheck:
    valid: bool
    reason: str | None  # "overlapping_atoms", "volume_out_of_range", "non_finite_lattice"
    min_distance: float  # Å (periodic); inf for no neighbour within the cut-off


def structural_validity(
    structure: Structure,
    min_distance: float = MIN_DISTANCE_ANGSTROM,
    volume_per_atom: tuple[float, float] = (1.0, 500.0),
) -> StructuralCheck:
    """CDVAE's 0.5 Å rule plus a volume window in Å^3/atom (MP-20 spans ~5-60; the bounds are generous)."""
    matrix = structure.lattice.matrix
    if not np.all(np.isfinite(matrix)) or not math.isfinite(structure.volume) or structure.volume <= 0:
        return StructuralCheck(False, "non_finite_lattice", math.nan)
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
