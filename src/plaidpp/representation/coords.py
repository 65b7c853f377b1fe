"""3D-coordinate text in the crystal-text-llm style (Gruver et al., 2024), the paper's ablation baseline.

Layout::

    6.0 6.0 4.3          lattice lengths, Å, 1 decimal
    90 90 141            lattice angles, degrees, rounded to integers
    La                   then, for every atom of the cell: element on one line,
    0.86 0.14 0.75       fractional coordinates (2 decimals) on the next

crystal-text-llm truncates angles with ``int()`` (119.99 -> 119); we round, which loses less. Training may
translate all atoms by one random vector first (the augmentation crystal-text-llm uses); ``encode`` itself is
deterministic. Decoding tokenises on whitespace, so line breaks are not load-bearing.
"""

from __future__ import annotations

import numpy as np
from pymatgen.core import Structure

from plaidpp.representation.base import (
    MAX_ATOMS,
    Deadline,
    DecodeError,
    build_lattice,
    checked_structure,
    checked_tokens,
    parse_element,
    parse_floats,
)


class CoordsRepresentation:
    """Lattice + per-atom fractional coordinates <-> pymatgen Structure."""

    name = "coords"

    def encode(self, structure: Structure, translation: np.ndarray | None = None) -> str:
        structure = checked_structure(structure)
        frac = structure.frac_coords if translation is None else structure.frac_coords + translation
        a, b, c = structure.lattice.abc
        angles = " ".join(str(int(round(x))) for x in structure.lattice.angles)
        lines = [f"{a:.1f} {b:.1f} {c:.1f}", angles]
        for site, xyz in zip(structure, np.mod(frac, 1.0)):
            lines.append(site.specie.symbol)
            lines.append(" ".join(f"{(round(x, 2) % 1.0) + 0.0:.2f}" for x in xyz))
        return "\n".join(lines)

    def decode(self, text: str) -> Structure:
        tokens = checked_tokens(text)
        deadline = Deadline()
        if len(tokens) < 10:
            raise DecodeError("syntax", "need 6 lattice numbers and at least one atom")
        lattice = build_lattice(parse_floats(tokens[0:3], 3, "lengths"), parse_floats(tokens[3:6], 3, "angles"))
        atom_tokens = tokens[6:]
        if len(atom_tokens) % 4:
            raise DecodeError("syntax", "atoms must be 'Element' then 'x y z'")
        if len(atom_tokens) // 4 > MAX_ATOMS:
            raise DecodeError("too_large", f"more than {MAX_ATOMS} atoms")
        species, coords = [], []
        for i in range(0, len(atom_tokens), 4):
            deadline.check()
            species.append(parse_element(atom_tokens[i]))
            coords.append(parse_floats(atom_tokens[i + 1 : i + 4], 3, "coordinates"))
        structure = Structure(lattice, species, np.mod(coords, 1.0))
        structure.properties["decode_warnings"] = []
        return structure
