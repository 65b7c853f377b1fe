"""The PLaID++ Wyckoff text: a crystal as its space group, lattice and one line per Wyckoff orbit.

Layout (paper, appendix 7.2 and Table 3)::

    Ho4Al4Ni4                      full conventional-cell formula, elements in site order
    Spacegroup: Pnma               Hermann-Mauguin symbol (pyxtal spelling, no underscores)
    abc: 6.91 4.32 7.44            lengths, Å, 2 decimals
    angles: 90.00 90.00 90.00      degrees, 2 decimals
    Sites (12)                     atoms in the conventional cell
    Ho 0.005 0.250 0.195 4c        element, generating point (3 decimals), multiplicity + letter
    ...

Encoding finds the symmetry with pyxtal at tolerance 0.01 and falls back to tighter tolerances when
pyxtal fails there. "Fails" includes pyxtal returning a symmetrised crystal that no longer matches the
input under StructureMatcher (it happens: ~0.3 % of MP-20 at 0.01 Å, e.g. a C2/c Mg4FeO5 that pyxtal
distorts; at 0.005 Å it is P-1 and exact). ``encode_with_info`` returns the tolerance used. Decoding applies the
Wyckoff position's symmetry operations of the standard setting to each generating point.

Decisions about what a model may get wrong (documented in docs/representations.md):
- The site lines are the crystal. The formula line and the ``Sites (N)`` count are redundant headers; by
  default a disagreement is tolerated and recorded in ``structure.properties["decode_warnings"]``
  (so validity metrics, not the parser, judge the crystal); ``strict=True`` rejects it instead.
- A generating point that is not on its Wyckoff position is projected onto it by the position's first
  operation (the same way a special position's coordinates are fixed), so the orbit has exactly the
  stated multiplicity.
- The whole text may be on one line (as Table 3 prints it): parsing is by whitespace-separated tokens.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Structure
from pyxtal import pyxtal
from pyxtal.symmetry import Group, Wyckoff_position, get_symbol_and_number

from plaidpp.representation.base import (
    MAX_ATOMS,
    Deadline,
    DecodeError,
    EncodeError,
    build_lattice,
    checked_structure,
    checked_tokens,
    parse_element,
    parse_float,
    parse_floats,
)

SYMMETRY_TOLERANCES = (0.01, 0.005, 0.001, 0.0001)  # pyxtal tolerance (Å); the first is the paper's
_LABEL = re.compile(r"^(\d+)([a-zA-Z])$")
_FORMULA_PART = re.compile(r"([A-Z][a-z]{0,2})(\d*)")


@dataclass
class EncodeInfo:
    """How a structure was encoded: the pyxtal tolerance used and what failed before it."""

    tolerance: float
    failed_tolerances: list[float] = field(default_factory=list)  # pyxtal raised, or round trip mismatched
    spacegroup_number: int = 0


@lru_cache(maxsize=1)
def _symbol_table() -> dict[str, int]:
    """Normalised Hermann-Mauguin symbol -> space-group number, for all 230 standard settings."""
    # get_symbol_and_number is pyxtal's symbol lookup without building the groups (230 Group()s take ~4 s).
    return {_normalise_symbol(get_symbol_and_number(n, 3)[0]): n for n in range(1, 231)}


def _normalise_symbol(symbol: str) -> str:
    # "P 6_3/m m c", "P6_3/mmc" and "P63/mmc" are the same group; no two of the 230 collide after this.
    return symbol.replace(" ", "").replace("_", "").lower()


def spacegroup_number(symbol: str) -> int:
    """Space-group number for a Hermann-Mauguin symbol (any common spelling) or a number string."""
    if symbol.isdigit() and 1 <= int(symbol) <= 230:
        return int(symbol)
    number = _symbol_table().get(_normalise_symbol(symbol))
    if number is None:
        raise DecodeError("unknown_spacegroup", f"{symbol[:30]!r} is not a space-group symbol")
    return number


@lru_cache(maxsize=1)
def _matcher() -> StructureMatcher:
    return StructureMatcher()  # pymatgen defaults: ltol 0.2, stol 0.3, angle_tol 5


@lru_cache(maxsize=4096)
def _wyckoff_position(number: int, letter: str) -> Wyckoff_position | None:
    group = Group(number)
    for wp in group.Wyckoff_positions:
        if wp.letter == letter:
            return wp
    return None


def format_coordinate(x: float) -> str:
    """A fractional coordinate as the text writes it (3 decimals, in [0, 1)); the constraint forces the same."""
    value = round(float(x) % 1.0, 3) % 1.0  # 0.9996 -> 0.000, never "1.000"
    return f"{value + 0.0:.3f}"  # + 0.0 turns -0.0 into 0.0


def _format_formula(counts: dict[str, int]) -> str:
    return "".join(f"{el}{n if n != 1 else ''}" for el, n in counts.items())


class WyckoffRepresentation:
    """Wyckoff text <-> pymatgen Structure (see module docstring for the layout)."""

    name = "wyckoff"

    def __init__(
        self, tolerances: tuple[float, ...] = SYMMETRY_TOLERANCES, strict: bool = False, verify: bool = True
    ) -> None:
        self.tolerances = tolerances
        self.strict = strict
        self.verify = verify  # check decode(encode(s)) matches s before accepting a tolerance

    # ----- encode -----------------------------------------------------------------------------
    def encode(self, structure: Structure) -> str:
        return self.encode_with_info(structure)[0]

    def encode_with_info(self, structure: Structure) -> tuple[str, EncodeInfo]:
        structure = checked_structure(structure)
        failed: list[float] = []
        mismatched = False
        for tol in self.tolerances:
            crystal = pyxtal()
            try:
                crystal.from_seed(structure, tol=tol)
            except Exception:  # pyxtal raises many types when symmetry search fails at a tolerance
                failed.append(tol)
                continue
            if not crystal.valid or sum(s.wp.multiplicity for s in crystal.atom_sites) == 0:
                failed.append(tol)
                continue
            text = self._format(crystal)
            if self.verify and not self._round_trips(structure, text):
                failed.append(tol)
                mismatched = True
                continue
            info = EncodeInfo(tolerance=tol, failed_tolerances=failed, spacegroup_number=crystal.group.number)
            return text, info
        reason = "round_trip_mismatch" if mismatched else "no_symmetry"
        raise EncodeError(reason, f"no pyxtal tolerance in {list(self.tolerances)} gave a matching crystal")

    def _round_trips(self, structure: Structure, text: str) -> bool:
        try:
            decoded = self.decode(text)
        except DecodeError:
            return False
        return _matcher().fit(structure, decoded)

    @staticmethod
    def _format(crystal: pyxtal) -> str:
        counts: dict[str, int] = {}
        site_lines = []
        for site in crystal.atom_sites:
            counts[site.specie] = counts.get(site.specie, 0) + site.wp.multiplicity
            # Canonical generating point: the Wyckoff position's first operation applied to pyxtal's.
            point = site.wp.ops[0].operate(np.asarray(site.position, dtype=float))
            coords = " ".join(format_coordinate(x) for x in point)
            site_lines.append(f"{site.specie} {coords} {site.wp.multiplicity}{site.wp.letter}")
        a, b, c, alpha, beta, gamma = crystal.lattice.get_para(degree=True)
        header = [
            _format_formula(counts),
            f"Spacegroup: {crystal.group.symbol}",
            f"abc: {a:.2f} {b:.2f} {c:.2f}",
            f"angles: {alpha:.2f} {beta:.2f} {gamma:.2f}",
            f"Sites ({sum(counts.values())})",
        ]
        return "\n".join(header + site_lines)

    # ----- decode -----------------------------------------------------------------------------
    def decode(self, text: str) -> Structure:
        tokens = checked_tokens(text)
        deadline = Deadline()
        formula, number, abc, angles, n_sites, site_tokens = self._parse_header(tokens)
        lattice = build_lattice(abc, angles)

        species, coords, counts = [], [], Counter()
        for i in range(0, len(site_tokens), 5):
            deadline.check()
            element, x, y, z, label = site_tokens[i : i + 5]
            el = parse_element(element)
            point = np.array([parse_float(v, "site coordinate") for v in (x, y, z)])
            orbit = self._orbit(number, label, point)
            if len(species) + len(orbit) > MAX_ATOMS:
                raise DecodeError("too_large", f"more than {MAX_ATOMS} atoms")
            species.extend([el] * len(orbit))
            coords.extend(orbit)
            counts[el.symbol] += len(orbit)
        if not species:
            raise DecodeError("syntax", "no site lines")

        warnings = self._header_warnings(formula, n_sites, counts)
        if warnings and self.strict:
            raise DecodeError("inconsistent_header", "; ".join(warnings))
        structure = Structure(lattice, species, np.mod(coords, 1.0))
        structure.properties["spacegroup_number"] = number
        structure.properties["decode_warnings"] = warnings
        return structure

    @staticmethod
    def _parse_header(tokens: list[str]):
        try:
            sg_at, abc_at, angles_at, sites_at = (tokens.index(k) for k in ("Spacegroup:", "abc:", "angles:", "Sites"))
        except ValueError:
            raise DecodeError("syntax", "missing one of 'Spacegroup:', 'abc:', 'angles:', 'Sites'") from None
        if not (sg_at == 1 and sg_at + 1 < abc_at and angles_at == abc_at + 4 and sites_at == angles_at + 4):
            raise DecodeError("syntax", "header lines out of order")
        number = spacegroup_number("".join(tokens[sg_at + 1 : abc_at]))
        abc = parse_floats(tokens[abc_at + 1 : abc_at + 4], 3, "abc")
        angles = parse_floats(tokens[angles_at + 1 : angles_at + 4], 3, "angles")
        count = tokens[sites_at + 1] if sites_at + 1 < len(tokens) else ""
        match = re.fullmatch(r"\((\d{1,6})\)", count)
        if not match:
            raise DecodeError("syntax", f"'Sites' must be followed by '(N)', got {count[:20]!r}")
        site_tokens = tokens[sites_at + 2 :]
        if len(site_tokens) % 5:
            raise DecodeError("syntax", "site lines must be 'Element x y z label'")
        return tokens[0], number, abc, angles, int(match.group(1)), site_tokens

    @staticmethod
    def _orbit(number: int, label: str, point: np.ndarray) -> np.ndarray:
        match = _LABEL.match(label)
        if not match:
            raise DecodeError("bad_wyckoff_label", f"{label[:20]!r} is not like '4c'")
        multiplicity, letter = int(match.group(1)), match.group(2)
        wp = _wyckoff_position(number, letter)
        if wp is None:
            raise DecodeError("bad_wyckoff_label", f"space group {number} has no position {letter!r}")
        if wp.multiplicity != multiplicity:
            raise DecodeError(
                "multiplicity_mismatch", f"{label} in group {number}: {letter} has multiplicity {wp.multiplicity}"
            )
        # wp.ops[0] maps any point onto the position (it fixes special coordinates); the rest fill the orbit.
        generator = wp.ops[0].operate(point)
        return np.mod([op.operate(generator) for op in wp.ops], 1.0)

    @staticmethod
    def _header_warnings(formula: str, n_sites: int, counts: Counter) -> list[str]:
        warnings = []
        if n_sites != sum(counts.values()):
            warnings.append(f"Sites ({n_sites}) but the site lines give {sum(counts.values())} atoms")
        parts = _FORMULA_PART.findall(formula)
        written = Counter()
        for el, n in parts:
            written[el] += int(n) if n else 1
        if "".join(f"{el}{n}" for el, n in parts) != formula or written != counts:
            warnings.append(f"formula {formula[:40]!r} disagrees with the site lines ({dict(counts)})")
        return warnings
