"""The syntax of the two crystal texts as Lark grammars for llguidance (the context-free part of the constraint).

The grammar fixes the layout, the number formats and their ranges, the vocabulary of elements and the 230
space-group symbols. What depends on earlier choices (which elements and positions still fit, the lattice
parameters a crystal system ties, coordinates a Wyckoff position fixes) is ``constraint.WyckoffState``'s job.

Ranges (Å, degrees) are the MP-20 training texts' with a margin: lengths 1.00-99.99; conventional-cell angles
30.00-150.00; the coords text's cell is the CIF's (a primitive rhombohedral cell has angles down to ~20 and up to
~165), so its integer angles are 1-179.
"""

from __future__ import annotations

from functools import lru_cache

from plaidpp.constraint.spacegroups import space_groups

# The 87 elements of MP-20 (the only ones the model has seen); every one is known to the shipped potentials
# and has an elemental reference in the hull data (tests/test_constraint.py checks both).
ELEMENTS = (
    "H He Li Be B C N O F Na Mg Al Si P S Cl K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge As Se Br Kr Rb Sr Y Zr Nb Mo "
    "Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm Eu Gd Tb Dy Ho Er Tm Yb Lu Hf Ta W Re Os Ir Pt Au "
    "Hg Tl Pb Bi Ac Th Pa U Np Pu"
).split()

LENGTH = r"/([1-9]|[1-9][0-9])\.[0-9][0-9]/"  # 1.00-99.99 Å
ANGLE = r"/([3-9][0-9]|1[0-4][0-9])\.[0-9][0-9]|150\.00/"  # 30.00-150.00 degrees


def _alternatives(words) -> str:
    # longest first, so that no alternative is a prefix of an earlier one in the listing (lexing is by the
    # grammar, not by order; this only keeps the file readable)
    return " | ".join(f'"{w}"' for w in sorted(words, key=lambda w: (-len(w), w)))


@lru_cache(maxsize=1)
def wyckoff_grammar() -> str:
    symbols = [g.symbol for g in space_groups().values()]
    return "\n".join([
        r'start: formula "\n" "Spacegroup: " SYMBOL "\n" "abc: " LENGTH " " LENGTH " " LENGTH "\n" '
        r'"angles: " ANGLE " " ANGLE " " ANGLE "\n" "Sites (" COUNT ")" site+',
        r'site: "\n" ELEMENT " " COORD " " COORD " " COORD " " LABEL',
        "formula: (ELEMENT FORMULA_COUNT?)+",
        f"ELEMENT: {_alternatives(ELEMENTS)}",
        f"SYMBOL: {_alternatives(symbols)}",
        f"LENGTH: {LENGTH}",
        f"ANGLE: {ANGLE}",
        "COORD: /0\\.[0-9][0-9][0-9]/",
        "LABEL: /[1-9][0-9]{0,2}[a-zA-Z]/",
        "COUNT: /[1-9][0-9]{0,2}/",
        "FORMULA_COUNT: /[2-9]|[1-9][0-9]{1,2}/",  # a count of 1 is not written
    ]) + "\n"


@lru_cache(maxsize=4)
def coords_grammar(max_atoms: int) -> str:
    """The 3D-coordinate text: lengths (1 decimal), integer angles, then element / coordinate line pairs."""
    return "\n".join([
        r'start: LENGTH1 " " LENGTH1 " " LENGTH1 "\n" DEGREES " " DEGREES " " DEGREES atom{1,%d}' % max_atoms,
        r'atom: "\n" ELEMENT "\n" FRACTION " " FRACTION " " FRACTION',
        f"ELEMENT: {_alternatives(ELEMENTS)}",
        r"LENGTH1: /([1-9]|[1-9][0-9])\.[0-9]/",
        r"DEGREES: /[1-9]|[1-9][0-9]|1[0-7][0-9]/",  # the cell as MP-20 gives it: primitive rhombohedral ones too
        r"FRACTION: /0\.[0-9][0-9]/",
    ]) + "\n"
