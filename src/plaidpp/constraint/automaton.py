"""Constrained decoding: every sampled Wyckoff text decodes, keeps to its space group and adds up.

Two layers, intersected at every step (``sampling.constraint``):

1. **Syntax** (context-free): the Lark grammar of ``grammar.py``, run by llguidance. It fixes the layout, the
   number formats and ranges, the element vocabulary and the 230 symbols, and turns them into a token mask
   for any tokenizer (llguidance walks the tokenizer's trie in Rust: 10.6 µs per token for the crystal BPE,
   25.2 µs for Qwen2.5's 151k tokens over training texts, measured alone on this CPU with the replay of
   ``benchmarks/bench_constraint.py``).
2. **State** (what a grammar cannot hold): ``WyckoffState``, a character-level automaton that knows, from the
   text so far, the formula's counts, the space group, the lattice parameters the crystal system ties
   (cubic: a = b = c, angles 90), the cell, the atoms still to place and the atoms already placed. In each
   field it allows a finite set of strings (elements and positions that still fit, forced lattice parameters
   and coordinates, the values of a site's last free coordinate that keep its atoms at least ``min_distance``
   from every atom, the ``Sites (N)`` count, the requested group) or leaves it free to the grammar. Its token mask
   is a walk of the tokenizer's sorted vocabulary guided by the automaton, so it only visits the tokens that
   can start an allowed string (``TokenTable.allowed``).

**Room for the formula** (``volume_fraction``): the formula line comes first, so the lattice lines can be held
to a cell of at least ``volume_fraction`` times the volume the formula predicts (``volumes.py``: per-element atomic
volumes fitted to MP-20, within 0.65-1.23 of every training cell). Each free lattice parameter is offered only the
values (as a range of its two-decimal numbers) with which the parameters still to come can reach that volume: the
lengths still free at their largest and the free angles at 90 deg (``WyckoffState._volume_bounds``), so the last
one always finds a value.

Feasibility (``feasibility.py``) is checked before every choice, so the automaton never leaves the sampler
without a token: a text that follows it ends with EOS once every atom of the formula is placed.

**No two atoms closer than ``min_distance``** (the evaluation's 0.5 Å validity rule): the lattice is written
before the sites, so once a coordinate fixes the last free parameter of a site's point, every value of it
(0.000-0.999) is checked at once: its images under the group must be as many as the position's multiplicity
and more than ``min_distance`` from each other and from every atom placed (by symmetry, the distances of the
point itself to the placed atoms and to its own other images are all of them). The values that pass are
offered as a finite set of strings, so a digit never leads where no value fits. Where none passes (a formula
too large for the cell), the rule falls back to "no two atoms at one point" and the state counts it
(``crowded``): the text still decodes and adds up, and the evaluation calls it invalid.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from pymatgen.analysis.molecule_structure_comparator import CovalentRadius

from plaidpp.constraint.feasibility import fits, next_counts, signature
from plaidpp.constraint.grammar import ELEMENTS, coords_grammar, wyckoff_grammar
from plaidpp.constraint.spacegroups import SpaceGroup, coincide, space_groups
from plaidpp.constraint.volumes import predicted_volume
from plaidpp.representation.base import DecodeError, build_lattice
from plaidpp.representation.wyckoff import format_coordinate
from plaidpp.settings.sampling import CONSTRAINTS

# Lattice parameters a crystal system ties in the conventional cell pyxtal writes (b-unique monoclinic,
# hexagonal axes for trigonal groups): the index of the length it copies, or None (free: the grammar's range).
TIED_LENGTHS = {"cubic": (None, 0, 0), "tetragonal": (None, 0, None), "hexagonal": (None, 0, None),
                "trigonal": (None, 0, None)}
FIXED_ANGLES = {"cubic": ("90.00", "90.00", "90.00"), "tetragonal": ("90.00", "90.00", "90.00"),
                "orthorhombic": ("90.00", "90.00", "90.00"), "hexagonal": ("90.00", "90.00", "120.00"),
                "trigonal": ("90.00", "90.00", "120.00"), "monoclinic": ("90.00", None, "90.00")}
SYMBOLS = {g.symbol: g.number for g in space_groups().values()}
_ELEMENT_SET = frozenset(ELEMENTS)
_WORDS_PER_LINE = {1: 2, 2: 4, 3: 4, 4: 2}  # "Spacegroup: P1", "abc: a b c", "angles: ...", "Sites (N)"; sites 5
_NEWLINE = frozenset("\n")
# Values for free parameters not written yet, when a site's coordinates so far are checked (``_generic_fits``): a
# point that lies on a special position for both sets lies on it for every value (a chance coincidence with a
# symmetry element, within the 0.0035 tolerance, would need both sets to meet one at once).
GENERIC = ((0.1372, 0.2913, 0.4187), (0.3119, 0.0671, 0.2288))
_NO_POINTS = np.zeros((0, 3))
COORDINATE_LENGTH = 5  # "0.ddd", the grammar's COORD
GRID = np.arange(1000) / 1000.0  # every value a coordinate can take ("0.ddd": the value is ddd / 1000)
COVALENT_RADII = CovalentRadius.radius  # Å, by element (Cordero et al. 2008; every element of the grammar has one)
LENGTH_RANGE = (100, 9999)  # hundredths of an Å: the grammar's LENGTH, 1.00-99.99
ANGLE_RANGE = (3000, 15000)  # hundredths of a degree: the grammar's ANGLE, 30.00-150.00
# The volume rule asks each lattice parameter written before the last free one for this much more room per free
# parameter still to come, so that the last finds a value on the 0.01 grid (far above the grid's own effect)
VOLUME_SLACK = 1e-3


@dataclass(frozen=True)
class Rules:
    """The constraint's settings: ``SamplerSettings``' fields of the same names, which document them."""

    max_atoms: int  # primitive-cell atoms
    min_distance: float  # Å between any two atoms (0: only no two atoms at one point)
    covalent_fraction: float  # and more than this fraction of the two atoms' covalent radii (0: off)
    volume_fraction: float  # the cell at least this fraction of the volume its formula predicts (0: off)

    @classmethod
    def of(cls, sampler) -> Rules:
        return cls(sampler.max_atoms, sampler.min_distance, sampler.covalent_fraction, sampler.volume_fraction)


@lru_cache(maxsize=200_000)
def _continuations(word: str, strings: frozenset[str], ends: str) -> frozenset[str]:
    """Characters that extend ``word`` towards one of ``strings``, plus ``ends`` when it is one already."""
    out = {s[len(word)] for s in strings if len(s) > len(word) and s.startswith(word)}
    if word in strings:
        out.update(ends)
    return frozenset(out)


@dataclass
class _Site:
    """The site line being written: its element, and the positions its coordinates so far still fit, each
    with the free parameters those coordinates fixed."""

    element: str
    alive: tuple[tuple[object, dict[int, float]], ...]
    applied: int = 0  # coordinates already used to narrow ``alive``
    # coordinate index -> (position -> (values over ``GRID`` it may take there or None: free, point known),
    # whether they keep the distance rule); computed once per site and coordinate (``WyckoffState._values``),
    # shared by the states that follow until the next coordinate narrows ``alive``
    values: dict = field(default_factory=dict)


@dataclass
class WyckoffState:
    """Where a Wyckoff text is and what may follow (see the module docstring).

    ``next_chars`` is the set of characters the rules allow next (None: the current word is the grammar's
    alone: a literal such as ``abc:`` or a free number); ``step`` returns the state after one more
    character, or None when the rules forbid it. A state is never changed once made.
    """

    rules: Rules
    requested: int | None = None  # the space group the prompt asks for, when the constraint fixes it
    line: int = 0  # 0 formula, 1 space group, 2 abc, 3 angles, 4 "Sites (N)", 5+ sites
    partial: str = ""  # the current line so far
    formula: dict[str, int] = field(default_factory=dict)
    group: SpaceGroup | None = None
    lengths: tuple[str, ...] = ()
    angles: tuple[str, ...] = ()
    lattice: np.ndarray | None = None  # rows: the cell vectors (Å) the decoder builds from the two lines
    remaining: dict[str, int] = field(default_factory=dict)  # atoms still to place, by element
    used: frozenset[str] = frozenset()  # fixed points taken
    occupied: np.ndarray = field(default_factory=lambda: _NO_POINTS)  # every atom placed so far (fractional)
    occupied_radius: np.ndarray = field(default_factory=lambda: np.zeros(0))  # their covalent radii (Å)
    formula_volume: float = 0.0  # Å^3 the formula fills in a typical MP-20 crystal (the volume rule's unit)
    placed: tuple[str, ...] = ()  # the site lines written so far (what ``occupied`` follows from, for ``key``)
    site: _Site | None = None
    loosened: int = 0  # coordinates at which no value kept the covalent floor (``min_distance`` alone was kept)
    crowded: int = 0  # coordinates at which no value kept ``min_distance`` (the rule fell back; module docstring)

    # ----------------------------------------------------------------------------- public
    def step(self, char: str) -> WyckoffState | None:
        allowed = self.next_chars()
        if allowed is not None and char not in allowed:
            return None
        new = object.__new__(WyckoffState)
        new.__dict__.update(self.__dict__)  # shallow: containers are replaced, never changed in place
        new.__dict__.pop("_next", None)
        if char in "\n " and self.line:
            words = self.partial.count(" ") + 1
            expected = _WORDS_PER_LINE.get(self.line, 5)
            empty = self.partial == "" or self.partial.endswith(" ")  # no word is empty in this layout
            if empty or (words != expected if char == "\n" else words >= expected) or not new._finish_word():
                return None
        if char == "\n":
            if not new._finish_line():
                return None
            new.line, new.partial = self.line + 1, ""
            return new
        new.partial = self.partial + char
        if self.line >= 5 and char.isdigit():
            words = new.partial.split(" ")
            # a coordinate is complete at its last digit (the grammar's COORD is 0.ddd): checked here, not at the
            # space after it, so a digit that completes a refused point is itself refused and never a dead end
            if 2 <= len(words) <= 4 and len(words[-1]) == COORDINATE_LENGTH and \
                    not new._narrow(len(words) - 2, words[-1]):
                return None
        return new

    def feed(self, text: str) -> WyckoffState | None:
        state: WyckoffState | None = self
        for char in text:
            state = state.step(char)
            if state is None:
                return None
        return state

    def can_end(self) -> bool:
        """EOS is allowed: a finished site line and no atom of the formula left to place."""
        if self.line < 5 or self.partial.count(" ") != 4 or self.site is None:
            return False
        label = self.partial.rsplit(" ", 1)[1]
        position = self._position(label)
        return position is not None and not any(self._after(position)[0].values())

    def in_coordinate(self) -> bool:
        """The text is inside a coordinate of a site line that is not complete yet."""
        if self.line < 5 or self.site is None:
            return False
        index = self.partial.count(" ")
        return 1 <= index <= 3 and self.site.applied < index

    def key(self) -> tuple:
        """Everything the allowed continuations depend on (states with equal keys allow the same tokens)."""
        site = None if self.site is None else (
            self.site.element, self.site.applied,
            tuple((p.label, tuple(sorted(params.items()))) for p, params in self.site.alive))
        return (self.requested, self.rules, self.line, self.partial,
                tuple(self.formula.items()), self.group.number if self.group else None, self.lengths, self.angles,
                tuple(sorted(self.remaining.items())), self.used, self.placed, site)

    def next_chars(self) -> frozenset[str] | None:
        if "_next" not in self.__dict__:
            if self.line == 0:  # depends on the text and the settings only: shared by every row of a run
                chars = _formula_next(self.partial, self.requested, self.rules.max_atoms)
            elif self.line == 1:
                chars = _symbol_next(self.partial, tuple(sorted(self.formula.values())), self.requested,
                                     self.rules.max_atoms)
            else:
                chars = self._word_next()
            self.__dict__["_next"] = chars
        return self.__dict__["_next"]

    # ----------------------------------------------------------------------------- words of lines 1+
    def _word_next(self) -> frozenset[str] | None:
        words = self.partial.split(" ")
        index, word = len(words) - 1, words[-1]
        if self.in_coordinate():
            allowed = self._coordinate_choices(index - 1)
            return None if allowed is None else _grid_next(word, allowed)
        if self.line in (2, 3) and 1 <= index <= 3:
            bounds = self._volume_bounds(index - 1)
            if bounds is not None:
                return _number_next(word, *bounds, "\n" if index == 3 else " ")
        strings, ends = self._word_choices(index)
        return None if strings is None else _continuations(word, strings, ends)

    def _word_choices(self, index: int) -> tuple[frozenset[str] | None, str]:
        """The complete words allowed as word ``index`` of the current line (None: free) and what may end it."""
        if self.line == 1:
            if index != 1:
                return None, " "
            counts = tuple(sorted(self.formula.values()))
            return _symbols_that_fit(counts, self.requested, self.rules.max_atoms), "\n"
        if self.line in (2, 3):
            if not 1 <= index <= 3:
                return None, " "
            if self.line == 2:
                tied = TIED_LENGTHS.get(self.group.lattice_type, (None,) * 3)[index - 1]
                forced = None if tied is None else self.lengths[tied]
            else:
                forced = FIXED_ANGLES.get(self.group.lattice_type, (None,) * 3)[index - 1]
                if self.group.lattice_type == "triclinic" and index == 3:
                    alpha, beta = (float(w) for w in self.partial.split(" ")[1:3])
                    return _closing_angles(alpha, beta, self._needed_factor()), "\n"
            return (None if forced is None else frozenset([forced])), "\n" if index == 3 else " "
        if self.line == 4:
            return (None, " ") if index == 0 else (frozenset([f"({sum(self.formula.values())})"]), "\n")
        # a site line: element, three coordinates, label
        if index == 0:
            return frozenset(self._site_choices()), " "
        if index <= 3:  # a coordinate: ``_word_next`` asks ``_coordinate_choices``; once complete (checked at its
            return None, " "  # last digit) only the space may follow
        # "\n" when atoms are left after this site (``_finish_line`` checks it for the label written), else EOS
        return frozenset(p.label for p, _ in self.site.alive), "\n"

    def _finish_word(self) -> bool:
        """Effects of the word just finished (the character after it is a separator)."""
        words = self.partial.split(" ")
        index, word = len(words) - 1, words[-1]
        if self.line == 0:
            return True
        strings, _ = self._word_choices(index)
        if strings is not None and word not in strings:
            return False
        if self.line == 2 and 1 <= index <= 3:
            self.lengths = self.lengths + (word,)
        elif self.line >= 5 and index == 0:
            self.site = _Site(word, tuple((p, {}) for p in self._site_choices()[word]))
        elif self.line >= 5 and index <= 3:
            return self.site.applied >= index  # complete: narrowed at its last digit (``step``); else too short
        return True

    def _finish_line(self) -> bool:
        if self.line == 0:
            self.formula = _parse_formula(self.partial)
            self.formula_volume = predicted_volume(self.formula)
        elif self.line == 1:
            self.group = space_groups()[SYMBOLS[self.partial.split(" ", 1)[1]]]
        elif self.line == 3:
            self.angles = tuple(self.partial.split(" ")[1:4])
            try:
                self.lattice = build_lattice([float(v) for v in self.lengths],
                                             [float(v) for v in self.angles]).matrix
            except DecodeError:  # the grammar and ``_closing_angles`` keep to a cell; were one to slip through,
                self.lattice = None  # the distance rule is off and the decoder reports it
        elif self.line == 4:
            self.remaining = dict(self.formula)
        elif self.line >= 5:
            position = self._position(self.partial.rsplit(" ", 1)[1])
            self.remaining, self.used = self._after(position)
            point = [float(w) for w in self.partial.split(" ")[1:4]]
            orbit = _orbit(self.group.number, tuple(point))
            self.occupied = np.concatenate([self.occupied, orbit])
            self.occupied_radius = np.concatenate([self.occupied_radius,
                                                   np.full(len(orbit), COVALENT_RADII[self.site.element])])
            self.placed = self.placed + (self.partial,)
            self.site = None
            if not any(self.remaining.values()):
                return False  # every atom is placed: the text ends here (EOS)
        return True

    # ----------------------------------------------------------------------------- the cell's volume
    def _needed_volume(self) -> float:
        """Å^3 the cell must hold: ``volume_fraction`` of the volume its formula predicts (0: no rule)."""
        return self.rules.volume_fraction * self.formula_volume

    def _needed_factor(self) -> float:
        """What the angles must give once the lengths are written: volume = a b c x factor(angles)."""
        return self._needed_volume() / math.prod(float(v) for v in self.lengths)

    def _volume_bounds(self, index: int) -> tuple[int, int] | None:
        """The range (hundredths) of free lattice parameter ``index`` (of the line's three) with which the cell can
        still hold the volume rule, or None (no rule, a forced parameter, or one the rule does not narrow).

        The volume is a b c x factor(alpha, beta, gamma), the factor at most 1 (sin 120 deg for the hexagonal
        axes), so a length needs room for the rule with the lengths still free at 99.99 and the free angles at
        90 deg; then the angles: sin alpha (>= factor with beta, gamma free), sin alpha sin beta (with gamma free,
        its best gamma = arccos(cos alpha cos beta)); the triclinic gamma is the set ``_closing_angles`` keeps."""
        needed = self._needed_volume()
        kind = self.group.lattice_type
        fixed = FIXED_ANGLES.get(kind, (None,) * 3)
        if not needed or (self.line == 3 and (fixed[index] is not None or kind == "triclinic" and index == 2)):
            return None
        free_angles = [i for i, a in enumerate(fixed) if a is None]
        if self.line == 2:
            tied = TIED_LENGTHS.get(kind, (None,) * 3)
            if tied[index] is not None:
                return None
            later = sum(t is None for t in tied[index + 1:]) + len(free_angles)
            power, product = 1, _cell_factor(*(90.0 if a is None else float(a) for a in fixed))
            for j in range(3):
                if j < index:
                    product *= float(self.lengths[j])
                elif j > index and tied[j] == index:
                    power += 1
                elif j > index:
                    product *= 99.99 if tied[j] is None else float(self.lengths[tied[j]])
            low = (needed * (1 + VOLUME_SLACK * later) / product) ** (1 / power)
            return _hundredths(low, None, LENGTH_RANGE)
        later = len([i for i in free_angles if i > index])
        sine = self._needed_factor() * (1 + VOLUME_SLACK * later)
        for written in self.partial.split(" ")[1:1 + index]:  # the triclinic alpha, when beta is asked for
            sine /= math.sin(math.radians(float(written)))
        if sine <= 0.5:  # sin 30 deg: every angle the grammar allows
            return None
        low = math.degrees(math.asin(min(sine, 1.0)))
        return _hundredths(low, 180.0 - low, ANGLE_RANGE)

    # ----------------------------------------------------------------------------- site lines
    def _site_choices(self) -> dict[str, tuple]:
        return _site_choices(self.group.number, tuple(sorted(self.remaining.items())), self.used)

    def _coordinate_choices(self, index: int) -> np.ndarray | None:
        """Which of the 1,000 values (``GRID``) coordinate ``index`` may take given the alive positions; None =
        free (a position leaves it to a free parameter that later coordinates still need)."""
        return self._values(index)[2]

    def _values(self, index: int) -> tuple[dict, float | None, np.ndarray | None]:
        """For each alive position, which values (``GRID``) coordinate ``index`` may take there (None: free) and
        whether the point is known once it is written; the distance rule they keep (``_rules``); and their union
        over the positions (None: free)."""
        if index in self.site.values:
            return self.site.values[index]
        choices: dict = {}
        completing = []  # (position, params, candidate values): this coordinate completes the point
        for position, params in self.site.alive:
            row, offset = position.rotation[index], position.translation[index]
            new = _new_parameter(row, params)
            later = {j for i in range(index + 1, 3) for j, v in enumerate(position.rotation[i]) if v} - set(params)
            known = not (later - {new})  # no parameter left for the coordinates after this one
            if new is not None and not known:
                choices[position] = (None, False)
                continue
            candidates = np.ones(len(GRID), dtype=bool)
            if new is None:
                value = sum(v * params[j] for j, v in enumerate(row) if v) + offset
                candidates[:] = False
                candidates[_grid_index(value)] = True
                if any(abs(v) >= 2 for v in row):  # 2x from a rounded x can be 0.001 off the encoder's rounding
                    candidates[[_grid_index(value - 0.001), _grid_index(value + 0.001)]] = True
            choices[position] = (candidates, known)
            if known and (new is not None or not index):  # known only now (a point known before was checked before)
                completing.append((position, params, candidates))
        rule = self._rules()[0]
        if completing:
            free = any(allowed is None for allowed, _ in choices.values())
            others = any(allowed is not None and allowed.any() for p, (allowed, _) in choices.items()
                         if all(p is not c[0] for c in completing))
            points = self._completed_points(completing, index)
            for rule in self._rules():  # the strictest rule that leaves the coordinate a value
                checked = self._check_points(points, completing, rule)
                if free or others or any(allowed.any() for allowed in checked):
                    break
            for (position, _, _), allowed in zip(completing, checked):
                choices[position] = (allowed, True)
        union = None if any(allowed is None for allowed, _ in choices.values()) else \
            np.logical_or.reduce([allowed for allowed, _ in choices.values()])
        self.site.values[index] = choices, rule, union
        return self.site.values[index]

    def _rules(self) -> tuple[float | None, ...]:
        """The distance rules, strictest first, as the covalent fraction each keeps beside ``min_distance``
        (0.0: ``min_distance`` alone); None, last: no two atoms at one point (module docstring)."""
        if self.lattice is None:
            return (None,)
        return tuple(f for f in dict.fromkeys((self.rules.covalent_fraction, 0.0)) if f > 0 or self.rules.min_distance > 0) \
            + (None,)

    def _completed_points(self, completing: list, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The points the candidate values of coordinate ``index`` complete, for every (position, parameters,
        candidates) of ``completing`` in one array, with their images under the group and which images are the
        point itself (``SpaceGroup.site_symmetry``)."""
        written = [float(w) for w in self.partial.split(" ")[1:1 + index]]
        blocks = []
        for position, params, candidates in completing:
            values = GRID[candidates]
            points = np.empty((len(values), 3))
            points[:, :index] = written
            points[:, index] = values
            new = _new_parameter(position.rotation[index], params)
            full = params if new is None else {**params, new: (values - position.translation[index]) % 1.0}
            for i in range(index + 1, 3):  # forced by the parameters, rounded as the text will write them
                value = sum(v * full[j] for j, v in enumerate(position.rotation[i]) if v) + position.translation[i]
                points[:, i] = np.round(value % 1.0, 3) % 1.0
            blocks.append(points)
        points = np.concatenate(blocks)
        images, same = self.group.site_symmetry(points)
        return points, images, same

    def _check_points(self, completed: tuple, completing: list, rule: float | None) -> list[np.ndarray]:
        """For each (position, parameters, candidate values over ``GRID``) of ``completing``, the candidates
        whose points (``_completed_points``) pass ``rule``. Every rule needs as many images as the position's
        multiplicity (a free position's point not on a special one). A fraction ``f``: every atom placed and
        every other image of the point farther than ``max(min_distance, f × (r_i + r_j))``, r the covalent
        radii (the evaluation's rule when f = 0; by symmetry the point's own distances are every image's).
        None: no two atoms at one point: the point is not an atom placed (a fixed position is not checked:
        ``used`` keeps it from being taken twice, and refusing its forced coordinates would be a dead end)."""
        points, images, same = completed
        multiplicity = np.concatenate([np.full(c.sum(), p.multiplicity) for p, _, c in completing])
        passes = same.sum(axis=1) * multiplicity == same.shape[1]
        if rule is not None:
            radius = COVALENT_RADII[self.site.element]
            own_floor = max(self.rules.min_distance, rule * 2 * radius)
            placed_floor = np.maximum(self.rules.min_distance, rule * (radius + self.occupied_radius))
            within = max(own_floor, float(placed_floor.max(initial=0.0)))
            own = np.where(same, np.inf, _lengths(images - points[:, None, :], self.lattice, within))
            passes &= own.min(axis=1) > own_floor  # the evaluation: valid above min_distance
            if len(self.occupied):
                placed = _lengths(self.occupied[None, :, :] - points[:, None, :], self.lattice, within)
                passes &= (placed > placed_floor).all(axis=1)
        elif len(self.occupied):
            fixed = np.concatenate([np.full(c.sum(), p.fixed) for p, _, c in completing])
            passes &= fixed | ~coincide(points, self.occupied).any(axis=1)
        out, start = [], 0
        for _, _, candidates in completing:
            allowed = np.zeros(len(GRID), dtype=bool)
            indices = np.flatnonzero(candidates)
            allowed[indices] = passes[start:start + len(indices)]
            out.append(allowed)
            start += len(indices)
        return out

    def _narrow(self, index: int, word: str) -> bool:
        """Keep the positions that coordinate ``index`` = ``word`` fits, recording the parameter it fixes."""
        try:
            value = float(word)
        except ValueError:  # the grammar would not let it through; the automaton says no as well
            return False
        choices, rule, _ = self._values(index)
        self.crowded += rule is None
        self.loosened += rule is not None and rule < self.rules.covalent_fraction
        alive = []
        written = [float(w) for w in self.partial.split(" ")[1:1 + index]] + [value]
        for position, params in self.site.alive:
            allowed, known = choices[position]
            if allowed is not None and not allowed[int(word[2:])]:
                continue
            new = _new_parameter(position.rotation[index], params)
            if new is not None:
                params = {**params, new: (value - position.translation[index]) % 1.0}
            if known or self._generic_fits(position, params, written):
                alive.append((position, params))
        self.site = _Site(self.site.element, tuple(alive), index + 1)
        return bool(alive)

    def _generic_fits(self, position, params: dict[int, float], written: list[float]) -> bool:
        """Before a site's point is known: the point with ``GENERIC`` values for the parameters still to come
        must not lie on a special position for every such value (a mirror through x = 0 with the general
        position, say), so the line is never led where no value fits."""
        points = np.empty((len(GENERIC), 3))
        for k, generic in enumerate(GENERIC):
            point = list(written)
            for i in range(len(written), 3):
                row, offset = position.rotation[i], position.translation[i]
                point.append(sum(v * params.get(j, generic[j]) for j, v in enumerate(row) if v) + offset)
            points[k] = point
        _, same = self.group.site_symmetry(points)
        return bool((same.sum(axis=1) * position.multiplicity == same.shape[1]).any())

    def _position(self, label: str):
        return next((p for p, _ in self.site.alive if p.label == label), None)

    def _after(self, position) -> tuple[dict[str, int], frozenset[str]]:
        remaining = {**self.remaining, self.site.element: self.remaining[self.site.element] - position.multiplicity}
        used = self.used | {position.label} if position.fixed else self.used
        return remaining, used


def _new_parameter(row, params: dict[int, float]) -> int | None:
    """The free parameter a coordinate (its row of the position's rotation) fixes, or None: every parameter it
    reads is fixed already (a position's coordinates each bring one new parameter at most, with coefficient 1)."""
    return next((j for j, v in enumerate(row) if v and j not in params), None)


def _grid_index(value: float) -> int:
    return int(format_coordinate(value)[2:])


def _grid_next(word: str, allowed: np.ndarray) -> frozenset[str]:
    """Characters that extend a coordinate prefix ``word`` ("", "0", "0.", "0.d", "0.dd") towards an allowed
    value; a finished coordinate is followed by the space (checked at its last digit, ``WyckoffState.step``)."""
    if len(word) < 2:
        return frozenset("0." [len(word)]) if allowed.any() else frozenset()
    digits = word[2:]
    if len(digits) == 3:
        return frozenset(" ")
    width = 10 ** (3 - len(digits))
    start = int(digits) * width if digits else 0
    block = allowed[start:start + width].reshape(10, -1).any(axis=1)
    return frozenset(str(d) for d in np.flatnonzero(block))


@lru_cache(maxsize=100_000)
def _orbit(number: int, point: tuple[float, float, float]) -> np.ndarray:
    return space_groups()[number].orbit(point)


def _lengths(difference: np.ndarray, lattice: np.ndarray, within: float) -> np.ndarray:
    """The length (Å) of the shortest periodic image of each fractional difference (..., 3), where it is below
    ``within``. A vector shorter than half the cell's smallest plane spacing has
    fractional components within (-1/2, 1/2), so the nearest image in fractional terms finds every distance
    below ``within`` when the spacing exceeds 2 ``within`` (true of every cell with planes > 1 Å apart, for
    the 0.5 Å rule); the 27 neighbouring cells are searched otherwise."""
    wrapped = difference - np.rint(difference)  # into [-1/2, 1/2]
    spacing = 1.0 / np.linalg.norm(np.linalg.inv(lattice), axis=0).max()
    shifts = np.zeros((1, 3)) if spacing > 2.0 * within else np.array(np.meshgrid(*[[-1, 0, 1]] * 3)).reshape(3, -1).T
    cartesian = wrapped @ lattice
    squared = np.einsum("...i,...i->...", cartesian, cartesian)
    if len(shifts) == 1:
        return np.sqrt(squared)
    # |v + s|^2 = |v|^2 + 2 v.s + |s|^2: one small matrix product instead of 27 shifted copies of every vector
    # (4.73 -> 1.21 s over the same 2,176 calls, the profile in docs/generator.md; identical texts)
    shifted = shifts @ lattice
    closest = (2.0 * cartesian @ shifted.T + np.einsum("ij,ij->i", shifted, shifted)).min(axis=-1)
    return np.sqrt(np.maximum(squared + closest, 0.0))


@lru_cache(maxsize=200_000)
def _formula_next(partial: str, requested: int | None, max_atoms: int) -> frozenset[str]:
    """Characters that may follow a formula prefix: the element may grow, take a count that still fits, or
    end (a count of 1 is not written) before the next element or the line's end."""
    counts, element, digits = _split_formula(partial)
    values = _count_choices(tuple(sorted(counts.values())), requested, max_atoms)
    if not digits:
        allowed = _new_elements(counts, requested, max_atoms)
        if not element:  # the start of an element
            return _first_letters(allowed)
        out = set(_continuations(element, allowed, ""))
        if element in allowed:
            out |= _count_digits(values, "")
            if 1 in values:
                out |= _after_element(counts, element, 1, requested, max_atoms)
        return frozenset(out)
    out = set(_count_digits(values, digits))
    if int(digits) in values and digits != "1":
        out |= _after_element(counts, element, int(digits), requested, max_atoms)
    return frozenset(out)


@lru_cache(maxsize=50_000)
def _count_digits(values: frozenset[int], digits: str) -> frozenset[str]:
    """Digits that extend ``digits`` towards a written count (2 or more) in ``values``."""
    return frozenset(str(v)[len(digits)] for v in values
                     if v >= 2 and len(str(v)) > len(digits) and str(v).startswith(digits))


@lru_cache(maxsize=50_000)
def _first_letters(elements: frozenset[str]) -> frozenset[str]:
    return frozenset(e[0] for e in elements)


def _after_element(counts: dict[str, int], element: str, count: int, requested: int | None,
                   max_atoms: int) -> frozenset[str]:
    """What may follow a finished element and count: the next element's first letter, or the line's end."""
    after = {**counts, element: count}
    return _first_letters(_new_elements(after, requested, max_atoms)) | _NEWLINE


def _new_elements(counts: dict[str, int], requested: int | None, max_atoms: int) -> frozenset[str]:
    """Elements that may start next: not yet in the formula, and some count of them still fits."""
    if not _room_for_another(tuple(sorted(counts.values())), requested, max_atoms):
        return frozenset()
    return _unused_elements(frozenset(counts))


@lru_cache(maxsize=50_000)
def _unused_elements(used: frozenset[str]) -> frozenset[str]:
    return _ELEMENT_SET.difference(used)


@lru_cache(maxsize=50_000)
def _room_for_another(counts: tuple[int, ...], requested: int | None, max_atoms: int) -> bool:
    if requested is None and sum(counts) < max_atoms:  # one more atom of a new element fits P1
        return True
    return bool(_count_choices(counts, requested, max_atoms))


@lru_cache(maxsize=50_000)
def _symbol_next(partial: str, counts: tuple[int, ...], requested: int | None, max_atoms: int) -> frozenset[str] | None:
    if " " not in partial:
        return None  # "Spacegroup:" is the grammar's
    return _continuations(partial.split(" ", 1)[1], _symbols_that_fit(counts, requested, max_atoms), "\n")


@lru_cache(maxsize=4096)
def _closing_angles(alpha: float, beta: float, factor: float) -> frozenset[str]:
    """The gammas (grammar range 30-150°, 2 decimals) with which alpha and beta close a cell whose volume is at
    least ``factor`` times a b c (0: any cell): the metric's determinant vanishes at gamma = |alpha - beta|,
    alpha + beta and 360 - alpha - beta; 0.05° of margin keeps it above the decoder's 1e-6
    (``representation.base.build_lattice``)."""
    low = max(30.0, abs(alpha - beta) + 0.05)
    high = min(150.0, alpha + beta - 0.05, 360.0 - alpha - beta - 0.05)
    hundredths = np.arange(math.ceil(low * 100), math.floor(high * 100) + 1)
    if factor > 0:
        hundredths = hundredths[_cell_factor(alpha, beta, hundredths / 100) >= factor]
    return frozenset(f"{v / 100:.2f}" for v in hundredths)


def _cell_factor(alpha, beta, gamma):
    """Volume / (a b c) of a cell with these angles (degrees; numpy arrays too; 0 where they close no cell)."""
    ca, cb, cg = (np.cos(np.radians(x)) for x in (alpha, beta, gamma))
    return np.sqrt(np.clip(1 - ca ** 2 - cb ** 2 - cg ** 2 + 2 * ca * cb * cg, 0, None))


def _hundredths(low: float, high: float | None, grammar: tuple[int, int]) -> tuple[int, int]:
    """[low, high] (high None: open) in hundredths, inside the grammar's range."""
    top = grammar[1] if high is None else min(grammar[1], math.floor(high * 100 + 1e-9))
    return max(grammar[0], math.ceil(low * 100 - 1e-9)), top


@lru_cache(maxsize=100_000)
def _number_next(word: str, low: int, high: int, end: str) -> frozenset[str]:
    """Characters that extend ``word`` towards a number with two decimals (``12.34``, no leading zero) whose
    value in hundredths is in [low, high], plus ``end`` once it is one."""
    out = {c for c in "0123456789." if _reaches(word + c, low, high)}
    whole, dot, decimals = word.partition(".")
    if dot and len(decimals) == 2 and _reaches(word, low, high):
        out.add(end)
    return frozenset(out)


def _reaches(prefix: str, low: int, high: int) -> bool:
    """Some number of ``_number_next``'s form in [low, high] hundredths starts with ``prefix``."""
    whole, dot, decimals = prefix.partition(".")
    if not whole.isdigit() or whole.startswith("0") or not (decimals.isdigit() or not decimals) or len(decimals) > 2:
        return False
    if dot:
        width = 10 ** (2 - len(decimals))
        start = int(whole) * 100 + (int(decimals) if decimals else 0) * width
        return start <= high and start + width - 1 >= low
    scale = 1  # integer parts that start with ``whole``: itself, or it followed by more digits
    while int(whole) * scale <= high // 100:
        if (int(whole) + 1) * scale * 100 - 1 >= low:
            return True
        scale *= 10
    return False


def _split_formula(text: str) -> tuple[dict[str, int], str, str]:
    """A formula prefix as (finished element -> count, the last element, its digits so far)."""
    counts: dict[str, int] = {}
    element, digits = "", ""
    for char in text:
        if char.isupper():
            if element:
                counts[element] = int(digits) if digits else 1
            element, digits = char, ""
        elif char.isdigit():
            digits += char
        else:
            element += char
    return counts, element, digits


def _parse_formula(text: str) -> dict[str, int]:
    counts, element, digits = _split_formula(text)
    return {**counts, element: int(digits) if digits else 1}


@lru_cache(maxsize=50_000)
def _groups_that_fit(counts: tuple[int, ...], requested: int | None, max_atoms: int) -> tuple[int, ...]:
    """Groups (the requested one, or any) in which a formula with these sorted counts can be written. A group
    that cannot hold a formula cannot hold it with one more element, so the search narrows the parent's list."""
    if requested:
        candidates: Iterable[int] = (requested,)
    elif len(counts) > 1:
        parent = list(counts)
        parent.remove(max(counts))
        candidates = _groups_that_fit(tuple(parent), None, max_atoms)
    else:
        candidates = range(1, 231)
    return tuple(n for n in candidates if fits(n, counts, max_atoms=max_atoms))


@lru_cache(maxsize=50_000)
def _count_choices(counts: tuple[int, ...], requested: int | None, max_atoms: int) -> frozenset[int]:
    """Counts the next formula element may have so that the formula still fits (the requested group, or some
    group)."""
    if requested is not None:
        return next_counts(requested, counts, max_atoms)
    out = set(range(1, max_atoms - sum(counts) + 1))  # P1 takes any formula of at most max_atoms atoms
    seen = set()
    for number in _groups_that_fit(counts, None, max_atoms):
        key = signature(number)
        if key[0] > 1 and key not in seen:  # beyond max_atoms only centred cells
            seen.add(key)
            out |= next_counts(number, counts, max_atoms)
    return frozenset(out)


@lru_cache(maxsize=100_000)
def _site_choices(number: int, remaining: tuple[tuple[str, int], ...], used: frozenset[str]) -> dict[str, tuple]:
    """Element -> positions a new site may take so that the atoms left after it still fit."""
    group = space_groups()[number]
    choices: dict[str, list] = {}
    for element, left in remaining:
        for position in group.positions:
            if not left or position.multiplicity > left or (position.fixed and position.label in used):
                continue
            after = [n - position.multiplicity if e == element else n for e, n in remaining]
            taken = used | {position.label} if position.fixed else used
            if fits(number, tuple(after), taken):
                choices.setdefault(element, []).append(position)
    return {e: tuple(p) for e, p in choices.items()}


@lru_cache(maxsize=50_000)
def _symbols_that_fit(counts: tuple[int, ...], requested: int | None, max_atoms: int) -> frozenset[str]:
    return frozenset(space_groups()[n].symbol for n in _groups_that_fit(counts, requested, max_atoms))


class TokenTable:
    """A tokenizer's vocabulary as sorted strings, for the automaton-guided walk (see ``allowed``)."""

    SEPARATORS = " \n"
    CACHE_SIZE = 50_000  # states; an entry is one array of token ids

    def __init__(self, tokenizer) -> None:
        strings: list[tuple[str, int]] = []
        for token_id in range(len(tokenizer)):
            if token_id in tokenizer.all_special_ids:
                continue
            text = tokenizer.decode([token_id])
            if text and text.isascii() and (text.isprintable() or "\n" in text):  # crystal texts are ASCII
                strings.append((text, token_id))
        strings.sort()
        self.strings = [s for s, _ in strings]
        self.ids = np.array([i for _, i in strings], dtype=np.int64)
        # index of the last separator in each token (-1: none): a token in a free field is accepted whole when
        # it has no separator past the walk's depth
        self.last_separator = np.array([max(s.rfind(c) for c in self.SEPARATORS) for s in self.strings])
        # length of each token's leading run of digits and points: only a token whose run reaches the end of a
        # coordinate can complete one
        self.numeric_run = np.array([len(s) - len(s.lstrip("0123456789.")) for s in self.strings])
        self.vocab_size = len(tokenizer)
        self._cache: dict[tuple, np.ndarray] = {}

    def allowed(self, state: WyckoffState, exact: bool = True) -> np.ndarray:
        """Token ids whose text the automaton accepts from ``state`` (EOS not included). Cached by the state's
        key: every text of a batch starts from the same state, and many share their first lines' prefixes.

        ``exact=False`` skips the costly part: the tokens inside a site's coordinate are taken whole, without
        testing the values they lead to (no atom within ``min_distance`` of another, no point on a special
        position, the forced values of a position), so the set can hold tokens too many. The compact sampler uses it and tests its draw with ``accepts``,
        removing a refused token and drawing again (exact; measured 3x faster than the exact walk, whose feed
        of every completing token dominated)."""
        key = (exact, state.key())
        hit = self._cache.get(key)
        if hit is None:
            out: list[np.ndarray] = []
            self._walk("", state, 0, len(self.strings), out, exact)
            hit = np.concatenate(out) if out else np.zeros(0, dtype=np.int64)
            if len(self._cache) >= self.CACHE_SIZE:
                self._cache.pop(next(iter(self._cache)))  # oldest first
            self._cache[key] = hit
        return hit

    def _walk(self, prefix: str, state: WyckoffState, lo: int, hi: int, out: list[np.ndarray], exact: bool) -> None:
        depth = len(prefix)
        if lo < hi and self.strings[lo] == prefix:
            if depth:
                out.append(self.ids[lo:lo + 1])
            lo += 1
        if lo >= hi:
            return
        # the superset (``exact=False``) leaves a site's coordinates free: walking their allowed values character
        # by character costs more than the draws it would save (``accepts`` checks the drawn value)
        loose = not exact and state.in_coordinate()
        chars = None if loose else state.next_chars()
        if chars is None:
            # a free word: "\n" and " " sort before every other printable character, so the tokens that start
            # the next word come first and are walked below; the rest stay in this word and are accepted
            # unless a separator follows inside the token
            split = bisect.bisect_left(self.strings, prefix + "!", lo, hi)
            whole = self.last_separator[split:hi] < depth
            if loose:  # the superset: tokens that run on past the coordinate too (``accepts`` checks the draw)
                whole[:] = True
            if exact and state.line >= 5:
                # a site's coordinate is checked at its last digit (``WyckoffState.step``): a token that completes
                # one is fed, not taken whole
                word = len(state.partial) - state.partial.rfind(" ") - 1
                whole &= self.numeric_run[split:hi] < depth + COORDINATE_LENGTH - word
            out.append(self.ids[split:hi][whole])
            for k in np.flatnonzero(~whole):  # a token that runs past a separator: check it character by character
                if state.feed(self.strings[split + k][depth:]) is not None:
                    out.append(self.ids[split + k:split + k + 1])
            hi, chars = split, "\n "
        if len(chars) <= 4:  # a few characters: look each up
            for char in sorted(chars):
                start = bisect.bisect_left(self.strings, prefix + char, lo, hi)
                end = bisect.bisect_left(self.strings, prefix + chr(ord(char) + 1), start, hi)
                if start < end:
                    self._branch(prefix, state, char, start, end, out, exact)
            return
        while lo < hi:  # many: jump over the characters the tokens here have
            char = self.strings[lo][depth]
            end = bisect.bisect_left(self.strings, prefix + chr(ord(char) + 1), lo, hi)
            if char in chars:
                self._branch(prefix, state, char, lo, end, out, exact)
            lo = end

    def _branch(self, prefix: str, state: WyckoffState, char: str, lo: int, hi: int, out: list[np.ndarray],
                exact: bool) -> None:
        following = state.step(char)
        if following is not None:
            self._walk(prefix + char, following, lo, hi, out, exact)


# ------------------------------------------------------------------------------------------- the sampler's side


class Constraint:
    """Everything built once per tokenizer and setting: the compiled grammar, llguidance's view of the
    tokenizer, and the token table of the automaton (Wyckoff text only; the coords text gets the grammar)."""

    def __init__(self, tokenizer, repr: str, mode: str, rules: Rules) -> None:
        import llguidance
        import llguidance.hf

        if mode not in CONSTRAINTS[1:]:
            raise ValueError(f"constraint must be one of {CONSTRAINTS[1:]}, got {mode!r}")
        self.mode, self.repr, self.rules = mode, repr, rules
        self.eos = tokenizer.eos_token_id
        self.vocab_size = len(tokenizer)
        self.ll_tokenizer = llguidance.hf.from_tokenizer(tokenizer)
        text = wyckoff_grammar() if repr == "wyckoff" else coords_grammar(rules.max_atoms)
        self._prototype = llguidance.LLMatcher(self.ll_tokenizer, llguidance.LLMatcher.grammar_from_lark(text))
        if self._prototype.is_error():
            raise RuntimeError(f"grammar does not compile: {self._prototype.get_error()}")
        self.table = TokenTable(tokenizer) if repr == "wyckoff" else None
        self.strings = {int(i): s for s, i in zip(self.table.strings, self.table.ids)} if self.table else None
        self._tokenizer = tokenizer

    def start(self, requested: list[int | None]) -> ConstrainedBatch:
        """One constrained text per row; ``requested`` is each row's prompted space group (or None)."""
        fixed = self.mode == "grammar+spacegroup"
        return ConstrainedBatch(self, [r if fixed else None for r in requested])

    def token_text(self, token: int) -> str:
        if self.strings is not None and token in self.strings:
            return self.strings[token]
        return self._tokenizer.decode([token])


@dataclass
class ConstrainedBatch:
    """The per-row matchers and automaton states of one batch; ``mask`` before each draw, ``advance`` after."""

    constraint: Constraint
    requested: list[int | None]
    matchers: list = field(default_factory=list)
    states: list = field(default_factory=list)
    dead_ends: int = 0  # rows whose every token was masked (never expected: counted, and the row left free)
    redraws: int = 0  # the sampler's count of forbidden draws it redrew (``accepts``)
    _fed: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        c = self.constraint
        self.matchers = [c._prototype.deep_copy() for _ in self.requested]
        self.states = [WyckoffState(c.rules, requested=r)
                       if c.table else None for r in self.requested]

    def mask(self, logits, rows: list[int], exact: bool = True) -> None:
        """Set to -inf, in place, the logits of tokens the constraint forbids; row ``k`` of ``logits`` is text
        ``rows[k]`` (``exact=False``: a superset, see ``TokenTable.allowed``)."""
        import torch

        width = logits.shape[1]
        words = (width + 31) // 32
        packed = np.zeros((len(rows), words), dtype=np.int32)
        for k, row in enumerate(rows):
            self.matchers[row].unsafe_compute_mask_ptr(packed[k].ctypes.data, packed[k].nbytes)
        allowed = np.unpackbits(packed.view(np.uint8), axis=1, bitorder="little")[:, :width].astype(bool)
        if self.constraint.table is not None:
            for k, row in enumerate(rows):
                state = self.states[row]
                if state is None:
                    continue
                keep = np.zeros(width, dtype=bool)
                keep[self.constraint.table.allowed(state, exact)] = True
                keep[self.constraint.eos] = state.can_end()
                both = allowed[k] & keep
                if both.any():
                    allowed[k] = both
                else:
                    self.dead_ends += 1
        for k in np.flatnonzero(~allowed.any(axis=1)):  # nothing at all (the grammar stopped): leave the row free
            allowed[k] = True
            self.dead_ends += 1
        logits.masked_fill_(~torch.from_numpy(allowed), float("-inf"))

    def accepts(self, rows: list[int], tokens: list[int]) -> list[bool]:
        """Whether each row's drawn token is one the mask would have kept (for the sampler's fast path: a draw
        from the unmasked distribution that the constraint allows is kept, the others are redrawn from the masked
        one; the result is exactly the masked distribution, at the cost of one check per token instead of a
        mask). The automaton's next state of an accepted token is kept for ``advance``.

        The grammar's part is read from llguidance's mask, not ``validate_tokens``: where the grammar forces a
        literal the mask keeps only its canonical tokens (``Spacegroup``, not ``S`` + ``pacegroup``) while
        ``validate_tokens`` accepts any spelling, and the two paths must agree token for token."""
        out = []
        words = np.zeros((self.constraint.vocab_size + 31) // 32, dtype=np.int32)
        for row, token in zip(rows, tokens):
            token, state, matcher = int(token), self.states[row], self.matchers[row]
            # cheap, and never narrower than the mask - except for EOS once the grammar is complete (a coords
            # text at max_atoms sites): llguidance then stops the matcher, whose mask keeps EOS alone while
            # validate_tokens refuses it, so EOS is read from the mask only
            ok = token == self.constraint.eos or matcher.validate_tokens([token]) == 1
            if ok:
                matcher.unsafe_compute_mask_ptr(words.ctypes.data, words.nbytes)
                ok = bool((int(words[token >> 5]) >> (token & 31)) & 1)
            if ok and state is not None:
                if token == self.constraint.eos:
                    ok = state.can_end()
                else:
                    following = state.feed(self.constraint.token_text(token))
                    ok = following is not None
                    if ok:
                        self._fed[row] = (token, following)
            out.append(ok)
        return out

    def advance(self, rows: list[int], tokens: list[int]) -> None:
        for row, token in zip(rows, tokens):
            token = int(token)
            self.matchers[row].consume_token(token)
            state = self.states[row]
            fed = self._fed.pop(row, None)
            if fed is not None and fed[0] == token:
                self.states[row] = fed[1]
            elif state is not None and token != self.constraint.eos:
                self.states[row] = state.feed(self.constraint.token_text(token))
