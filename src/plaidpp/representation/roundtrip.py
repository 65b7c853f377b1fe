"""Why a round trip failed: a category for every ``decode(encode(s))`` that StructureMatcher rejects.

The round-trip criterion is pymatgen's StructureMatcher at its defaults, which first reduces both crystals to
primitive cells at a 0.25 Å tolerance. Text rounding (coordinates to 3 or 2 decimals, lengths to 2 or 1) can
move a pseudo-translation inside that tolerance in one crystal and not the other, so the matcher compares a
cell with its half and says "no" although the text is faithful. Measured on the vendored MP-20 rows, every
Wyckoff failure is of that kind (docs/representations.md); this module tells it apart from a real change.
"""

from __future__ import annotations

from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Structure

STRICT_PRIMITIVE_TOLERANCE = 0.01  # Å: a pseudo-translation this close would survive any rounding we do

MISMATCH_KINDS = {
    "composition_changed": "the decoded crystal has another composition",
    "matcher_primitive_reduction": (
        "faithful: the same crystal under a 0.01 Å primitive reduction; StructureMatcher's 0.25 Å reduction "
        "finds a pseudo-translation in only one of the two"
    ),
    "structure_changed": "the decoded crystal differs from the original beyond StructureMatcher's tolerances",
}


def mismatch_kind(original: Structure, decoded: Structure) -> str:
    """One of MISMATCH_KINDS for a pair that StructureMatcher() does not fit."""
    if original.composition.reduced_composition != decoded.composition.reduced_composition:
        return "composition_changed"
    strict = [s.get_primitive_structure(tolerance=STRICT_PRIMITIVE_TOLERANCE) for s in (original, decoded)]
    if StructureMatcher(primitive_cell=False).fit(*strict):
        return "matcher_primitive_reduction"
    return "structure_changed"
