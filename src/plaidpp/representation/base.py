"""The contract every crystal text representation keeps.

A representation turns a pymatgen ``Structure`` into text and back. Decoding is where a language model's
output meets physics, so it is strict about one thing only: it either returns a ``Structure`` or raises
``DecodeError`` with a short, countable reason. It never hangs and never raises anything else.
"""

from __future__ import annotations

import math
import re
import time
from typing import Protocol, runtime_checkable

from pymatgen.core import Element, Lattice, Structure

# Reasons a text cannot become a structure. Evaluation and sampling count failures by these keys.
DECODE_REASONS: dict[str, str] = {
    "syntax": "the text does not follow the representation's layout",
    "unknown_element": "a site names something that is not a chemical element",
    "unknown_spacegroup": "the space-group symbol or number is not one of the 230",
    "bad_wyckoff_label": "the Wyckoff letter does not exist in the space group",
    "multiplicity_mismatch": "the multiplicity in the Wyckoff label disagrees with the space group's",
    "bad_lattice": "lattice lengths/angles are non-finite, non-positive or give no positive volume",
    "too_large": "more atoms or characters than any MP-20-like crystal (bounds decode time)",
    "inconsistent_header": "formula or 'Sites (N)' disagrees with the site lines (strict mode only)",
    "timeout": "decoding exceeded its time budget",
}

# Bounds that keep decoding fast whatever the input; MP-20 has at most 20 atoms per cell.
MAX_TEXT_CHARS = 20_000
MAX_ATOMS = 500
MAX_LENGTH_ANGSTROM = 200.0
MIN_LENGTH_ANGSTROM = 0.1
DECODE_TIME_BUDGET_S = 2.0

_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


class DecodeError(ValueError):
    """Raised when text cannot be turned into a crystal structure.

    Attributes:
        reason: one key of ``DECODE_REASONS`` (stable, meant for counting).
        detail: a short human-readable explanation.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        if reason not in DECODE_REASONS:
            raise ValueError(f"unknown decode reason {reason!r}")
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class EncodeError(ValueError):
    """Raised when a structure cannot be written as crystal text.

    ``reason``: ``disordered`` (partial occupancies), ``bad_lattice`` (non-finite or degenerate cell or
    coordinates), ``no_symmetry`` (pyxtal failed at every tolerance) or ``round_trip_mismatch`` (pyxtal gave
    crystals, but none matched the input after decoding). Any representation may raise the first two
    (``checked_structure``); the others come from the Wyckoff encoder.
    """

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        super().__init__(f"{reason}: {detail}")


@runtime_checkable
class Representation(Protocol):
    """A text format for crystals: ``decode(encode(s))`` matches ``s`` under StructureMatcher."""

    name: str

    def encode(self, structure: Structure) -> str: ...

    def decode(self, text: str) -> Structure: ...


class Deadline:
    """A wall-clock budget checked between units of work (signals don't work off the main thread)."""

    def __init__(self, seconds: float = DECODE_TIME_BUDGET_S) -> None:
        self.end = time.monotonic() + seconds

    def check(self) -> None:
        if time.monotonic() > self.end:
            raise DecodeError("timeout", "decode exceeded its time budget")


def checked_tokens(text: object) -> list[str]:
    """Whitespace tokens of a text to decode, refusing non-text and oversized input before any work."""
    if not isinstance(text, str):
        raise DecodeError("syntax", "input is not text")
    if len(text) > MAX_TEXT_CHARS:
        raise DecodeError("too_large", f"{len(text)} characters")
    return text.split()


def parse_float(token: str, what: str) -> float:
    """Parse one plain decimal number; anything else ('nan', '1_0', '0x1') is a syntax error."""
    if not _NUMBER.match(token):
        raise DecodeError("syntax", f"{what}: {token[:20]!r} is not a number")
    value = float(token)
    if not math.isfinite(value):
        raise DecodeError("syntax", f"{what}: {token[:20]!r} is not finite")
    return value


def parse_floats(tokens: list[str], n: int, what: str) -> list[float]:
    if len(tokens) != n:
        raise DecodeError("syntax", f"{what}: expected {n} numbers, got {len(tokens)}")
    return [parse_float(t, what) for t in tokens]


def parse_element(symbol: str) -> Element:
    """An element symbol as written by the encoder (no oxidation states, no dummy species)."""
    if not re.fullmatch(r"[A-Z][a-z]{0,2}", symbol) or not Element.is_valid_symbol(symbol):
        raise DecodeError("unknown_element", f"{symbol[:20]!r} is not an element")
    return Element(symbol)


def build_lattice(abc: list[float], angles: list[float]) -> Lattice:
    """A lattice from lengths (Å) and angles (degrees), rejecting impossible parameter sets."""
    if any(not MIN_LENGTH_ANGSTROM <= x <= MAX_LENGTH_ANGSTROM for x in abc):
        raise DecodeError("bad_lattice", f"lengths {abc} outside [{MIN_LENGTH_ANGSTROM}, {MAX_LENGTH_ANGSTROM}] Å")
    if any(not 0.0 < x < 180.0 for x in angles):
        raise DecodeError("bad_lattice", f"angles {angles} outside (0, 180) degrees")
    # The three angles must be able to close a cell: the metric's determinant must be positive.
    ca, cb, cg = (math.cos(math.radians(x)) for x in angles)
    det = 1 - ca * ca - cb * cb - cg * cg + 2 * ca * cb * cg
    if det <= 1e-6:
        raise DecodeError("bad_lattice", f"angles {angles} do not form a cell")
    return Lattice.from_parameters(*abc, *angles)


def checked_structure(structure: Structure) -> Structure:
    """A copy fit to encode: ordered, with a finite cell of positive volume and finite coordinates.

    Checked before any symmetry search: spglib (inside pyxtal) crashes the interpreter (SIGSEGV) on a cell
    with a NaN length, which a CIF can carry.
    """
    if not structure.is_ordered:
        # pyxtal would silently keep one species per site; refuse instead of inventing a crystal.
        raise EncodeError("disordered", "partial occupancies; crystal text needs an ordered crystal")
    values = [*structure.lattice.abc, *structure.lattice.angles, *structure.frac_coords.ravel()]
    if not all(math.isfinite(float(v)) for v in values) or not structure.volume > 0:
        raise EncodeError("bad_lattice", "the cell lengths, angles or coordinates are not finite, or the volume is 0")
    return without_oxidation_states(structure)


def without_oxidation_states(structure: Structure) -> Structure:
    """A copy with plain elements: the text formats carry no charges, so comparisons must not either."""
    copy = structure.copy()
    copy.remove_oxidation_states()
    return copy
