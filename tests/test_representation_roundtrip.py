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


def test_wyckoff_text_takes_fewer_qwen_tokens_than_coordinates(structures):
    """The paper's claim (section 4.3): Wyckoff text is the more compact one for the Qwen2.5 tokenizer."""
    from plaidpp.data.tokenizer import load_qwen_tokenizer

    tokenizer = load_qwen_tokenizer()
    sample = structures(60, seed=2)
    counts = {
        name: sum(len(tokenizer(get(name).encode(s), add_special_tokens=False)["input_ids"]) for s in sample)
        for name in ("wyckoff", "coords")
    }
    assert counts["wyckoff"] < 0.95 * counts["coords"], counts


def test_decoded_wyckoff_keeps_the_space_group(structures):
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    rep = get("wyckoff")
    for structure in structures(25, seed=3):
        text = rep.encode(structure)
        symbol = text.splitlines()[1].split(": ")[1]
        decoded = rep.decode(text)
        found = SpacegroupAnalyzer(decoded, symprec=0.01).get_space_group_number()
        assert found == decoded.properties["spacegroup_number"], (symbol, found)
