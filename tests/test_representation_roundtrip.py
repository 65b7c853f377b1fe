"""Encode -> decode must give back the same crystal for real MP-20 rows (StructureMatcher defaults)."""

from __future__ import annotations

import warnings
from collections import Counter

import pytest
from pymatgen.analysis.structure_matcher import StructureMatcher

from plaidpp.representation import DecodeError, EncodeError, get

N_ROWS = 400  # ~15 s per representation on one core; the full 18,106 are checked by `plaidpp prepare`


@pytest.mark.parametrize("name", ["wyckoff", "coords"])
def test_round_trip_matches_at_least_99_5_percent_of_real_mp20(name, structures):
    matcher = StructureMatcher()
    rep = get(name)
    failures: Counter = Counter()
    for structure in structures(N_ROWS, seed=1):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                decoded = rep.decode(rep.encode(structure))
            except (EncodeError, DecodeError) as exc:
                failures[getattr(exc, "reason", "error")] += 1
                continue
            if not matcher.fit(structure, decoded):
                failures["mismatch"] += 1
    rate = 1 - sum(failures.values()) / N_ROWS
    assert rate >= 0.995, f"{name}: round-trip rate {rate:.4f}, failures {dict(failures)}"


def test_wyckoff_text_is_compact_relative_to_coordinates(structures):
    """The Wyckoff text has fewer lines than coordinates whenever symmetry merges atoms into orbits."""
    wyckoff, coords = get("wyckoff"), get("coords")
    shorter = sum(len(wyckoff.encode(s)) < len(coords.encode(s)) for s in structures(60, seed=2))
    assert shorter >= 40


def test_decoded_wyckoff_keeps_the_space_group(structures):
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    rep = get("wyckoff")
    for structure in structures(25, seed=3):
        text = rep.encode(structure)
        symbol = text.splitlines()[1].split(": ")[1]
        decoded = rep.decode(text)
        found = SpacegroupAnalyzer(decoded, symprec=0.01).get_space_group_number()
        assert found == decoded.properties["spacegroup_number"], (symbol, found)
