"""What each of the 230 space groups allows in a Wyckoff text: its symbol, lattice, and Wyckoff positions.

The constrained sampler (``plaidpp.constraint``) needs, for every group, the symbol the encoder writes,
the crystal system (which lattice parameters are tied), the number of lattice points of the conventional cell
(to bound the atoms of the primitive cell), and for every Wyckoff position its multiplicity, letter and the
form of its generating point, ``wp.ops[0]`` (the encoder writes ``ops[0]`` applied to pyxtal's point, so each
coordinate is a constant, a free parameter, or a function of earlier ones: ``x, 2x, 1/4``).

Building these from pyxtal takes ~4 s (230 ``Group`` objects), so they are generated once into
``spacegroups.json`` beside this file (``python -m plaidpp.constraint.spacegroups``) and a test checks
the file against pyxtal.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import numpy as np

TABLE_FILE = Path(__file__).with_name("spacegroups.json")

# Lattice points per conventional cell, by the first letter of the Hermann-Mauguin symbol (R: the hexagonal
# setting pyxtal uses, three points per cell).
CENTERING = {"P": 1, "A": 2, "B": 2, "C": 2, "I": 2, "R": 3, "F": 4}


@dataclass(frozen=True)
class Position:
    """One Wyckoff position: coordinate ``i`` of its generating point is ``sum_j rotation[i][j] * p_j +
    translation[i]`` for free parameters ``p`` (x, y, z)."""

    letter: str
    multiplicity: int
    rotation: tuple[tuple[int, int, int], ...]
    translation: tuple[float, float, float]
    label: str = ""  # multiplicity + letter, as the text writes it ("4c")
    fixed: bool = False  # no free parameter: one orbit fills it, so two sites cannot both sit on it

    def __post_init__(self) -> None:
        object.__setattr__(self, "label", f"{self.multiplicity}{self.letter}")
        object.__setattr__(self, "fixed", not any(any(row) for row in self.rotation))


@dataclass(frozen=True)
class SpaceGroup:
    number: int
    symbol: str  # as the encoder writes it (pyxtal's ``Group.symbol``)
    lattice_type: str  # triclinic, monoclinic, orthorhombic, tetragonal, trigonal, hexagonal, cubic
    positions: tuple[Position, ...]  # general position first, as pyxtal lists them
    operations: tuple[str, ...] = ()  # the general position's operations, centring included ("-x, y, -z+1/2")

    @property
    def centering(self) -> int:
        return CENTERING[self.symbol[0]]

    def orbit(self, point) -> np.ndarray:
        """The distinct images in the conventional cell (fractional, in [0, 1)) of ``point`` under the group: as
        many as the multiplicity of the Wyckoff position the point lies on. Points within ``SAME_POINT`` of each
        other (per coordinate, periodic) are one: the text's coordinates are rounded to 0.001, and a hexagonal
        image (x - y) of rounded values can be 0.002 off."""
        images = self.images(np.asarray([point], dtype=float))[0]
        same = coincide(images, images)
        return images[~np.tril(same, -1).any(axis=1)]  # an image equal to an earlier one is not a new point

    def images(self, points: np.ndarray) -> np.ndarray:
        """``points`` (n, 3) under every operation of the general position (repeats included), in [0, 1):
        (n, operations, 3)."""
        rotations, translations = operators(self.operations)
        images = (points @ rotations.reshape(-1, 3).T).reshape(len(points), *translations.shape) + translations
        return images - np.floor(images)  # % 1.0, 15x faster in numpy (measured)

    def site_symmetry(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The images of ``points`` (``images``) and which of them are the point itself (n, operations): the
        position a point lies on has multiplicity operations / (images that are the point)."""
        images = self.images(points)
        return images, coincide(images, points[:, None, :], pairwise=False)

    def position(self, label: str) -> Position | None:
        return next((p for p in self.positions if p.label == label), None)


SAME_POINT = 0.0035  # fractional; 0.0035 of a 3-10 Å axis is 0.01-0.035 Å, far inside the 0.5 Å validity rule


def coincide(a: np.ndarray, b: np.ndarray, pairwise: bool = True) -> np.ndarray:
    """``[i, j]``: fractional points ``a[i]`` and ``b[j]`` are the same point of the periodic cell (every
    coordinate within ``SAME_POINT``); ``pairwise=False``: ``a`` and ``b`` broadcast against each other."""
    difference = (a[:, None, :] - b[None, :, :]) if pairwise else (a - b)
    return np.all(np.abs(difference - np.rint(difference)) < SAME_POINT, axis=-1)


@lru_cache(maxsize=512)
def operators(operations: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    from pymatgen.core.operations import SymmOp

    matrices = np.array([SymmOp.from_xyz_str(op).affine_matrix for op in operations])
    return matrices[:, :3, :3], matrices[:, :3, 3]


def build_tables() -> list[dict]:
    """The tables from pyxtal (slow; used to write ``spacegroups.json`` and by its test)."""
    from pyxtal.symmetry import Group

    tables = []
    for number in range(1, 231):
        group = Group(number)
        positions = []
        for wp in group.Wyckoff_positions:
            matrix = wp.ops[0].affine_matrix
            rotation = [[int(round(v)) for v in row[:3]] for row in matrix[:3]]
            translation = [str(Fraction(float(row[3]) % 1.0).limit_denominator(24)) for row in matrix[:3]]
            positions.append({"letter": wp.letter, "multiplicity": int(wp.multiplicity), "rotation": rotation,
                              "translation": translation})
        tables.append({"number": number, "symbol": group.symbol, "lattice_type": group.lattice_type,
                       "positions": positions,
                       "operations": [op.as_xyz_str() for op in group.Wyckoff_positions[0].ops]})
    return tables


@lru_cache(maxsize=1)
def space_groups() -> dict[int, SpaceGroup]:
    """All 230 groups by number, from the vendored table."""
    groups = {}
    for entry in json.loads(TABLE_FILE.read_text()):
        positions = tuple(
            Position(p["letter"], p["multiplicity"], tuple(tuple(r) for r in p["rotation"]),
                     tuple(float(Fraction(t)) for t in p["translation"]))
            for p in entry["positions"])
        groups[entry["number"]] = SpaceGroup(entry["number"], entry["symbol"], entry["lattice_type"], positions,
                                             tuple(entry["operations"]))
    return groups


if __name__ == "__main__":
    TABLE_FILE.write_text(json.dumps(build_tables(), separators=(",", ":")) + "\n")
    print(f"wrote {TABLE_FILE}")
