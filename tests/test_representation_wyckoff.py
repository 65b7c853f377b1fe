"""The Wyckoff text: the paper's own examples decode, and each kind of mistake has its reason."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Composition, Lattice, Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from plaidpp.representation import DecodeError, EncodeError, get
from plaidpp.representation.wyckoff import spacegroup_number

# Appendix Table 3 of the paper, verbatim model outputs.
TABLE3 = {
    "Ho4Al4Ni4": """Ho4Al4Ni4
Spacegroup: Pnma
abc: 6.91 4.32 7.44
angles: 90.00 90.00 90.00
Sites (12)
Ho 0.005 0.250 0.195 4c
Al 0.190 0.250 0.590 4c
Ni 0.789 0.250 0.591 4c""",
    "Mn8O12F4": """Mn8O12F4
Spacegroup: C2/c
abc: 9.55 4.98 6.95
angles: 90.00 96.49 90.00
Sites (24)
Mn 0.826 0.495 0.074 8f
O 0.832 0.906 0.599 8f
O 0.000 0.489 0.250 4e
F 0.000 0.000 0.000 4a""",
    "Ti4Ni4Sn4": """Ti4Ni4Sn4
Spacegroup: F-43m
abc: 5.89 5.89 5.89
angles: 90.00 90.00 90.00
Sites (12)
Ti 0.500 0.500 0.500 4b
Ni 0.750 0.750 0.750 4d
Sn 0.000 0.000 0.000 4a""",
}
TABLE3_GROUPS = {"Ho4Al4Ni4": 62, "Mn8O12F4": 15, "Ti4Ni4Sn4": 216}


@pytest.mark.parametrize("formula", sorted(TABLE3))
def test_paper_table3_outputs_decode_to_the_stated_crystal(formula):
    structure = get("wyckoff").decode(TABLE3[formula])
    assert structure.composition == Composition(formula)
    assert structure.properties["decode_warnings"] == []
    assert SpacegroupAnalyzer(structure, symprec=0.01).get_space_group_number() == TABLE3_GROUPS[formula]


@pytest.mark.parametrize("formula", sorted(TABLE3))
def test_table3_as_printed_on_one_line_decodes_the_same(formula):
    rep = get("wyckoff")
    flat = " ".join(TABLE3[formula].split())
    assert rep.decode(flat).composition == rep.decode(TABLE3[formula]).composition


def test_encoding_a_decoded_table3_crystal_reproduces_its_text():
    rep = get("wyckoff")
    text = TABLE3["Ti4Ni4Sn4"]
    assert rep.encode(rep.decode(text)).splitlines()[1:5] == text.splitlines()[1:5]


def test_half_heusler_orbits_have_the_stated_multiplicity():
    structure = get("wyckoff").decode(TABLE3["Ti4Ni4Sn4"])
    assert len(structure) == 12
    ti = np.array([s.frac_coords for s in structure if s.specie.symbol == "Ti"])
    expected = {(0.5, 0.5, 0.5), (0.5, 0.0, 0.0), (0.0, 0.5, 0.0), (0.0, 0.0, 0.5)}
    assert {tuple(np.round(x, 6) % 1.0) for x in ti} == expected


def test_a_point_off_its_special_position_is_projected_onto_it():
    text = TABLE3["Ti4Ni4Sn4"].replace("Sn 0.000 0.000 0.000 4a", "Sn 0.120 0.340 0.560 4a")
    structure = get("wyckoff").decode(text)
    sn = sorted(tuple(np.round(s.frac_coords, 6)) for s in structure if s.specie.symbol == "Sn")
    assert sn == sorted({(0.0, 0.0, 0.0), (0.0, 0.5, 0.5), (0.5, 0.0, 0.5), (0.5, 0.5, 0.0)})


def test_inconsistent_headers_are_recorded_by_default_and_rejected_when_strict():
    text = TABLE3["Ho4Al4Ni4"].replace("Ho4Al4Ni4", "Ho2Al4Ni4").replace("Sites (12)", "Sites (10)")
    lenient = get("wyckoff").decode(text)
    assert lenient.composition == Composition("Ho4Al4Ni4")  # the site lines are the crystal
    assert len(lenient.properties["decode_warnings"]) == 2
    with pytest.raises(DecodeError) as err:
        get("wyckoff", strict=True).decode(text)
    assert err.value.reason == "inconsistent_header"


@pytest.mark.parametrize(
    ("old", "new", "reason"),
    [
        ("Ni 0.750 0.750 0.750 4d", "Ni 0.750 0.750 0.750 8d", "multiplicity_mismatch"),
        ("Ni 0.750 0.750 0.750 4d", "Ni 0.750 0.750 0.750 4z", "bad_wyckoff_label"),
        ("Ni 0.750 0.750 0.750 4d", "Ni 0.750 0.750 0.750 d4", "bad_wyckoff_label"),
        ("Ni 0.750 0.750 0.750 4d", "Xq 0.750 0.750 0.750 4d", "unknown_element"),
        ("Ni 0.750 0.750 0.750 4d", "Ni 0.750 nan 0.750 4d", "syntax"),
        ("Ni 0.750 0.750 0.750 4d", "Ni 0.750 0.750 4d", "syntax"),
        ("Spacegroup: F-43m", "Spacegroup: F-44m", "unknown_spacegroup"),
        ("angles: 90.00 90.00 90.00", "angles: 90.00 90.00 190.00", "bad_lattice"),
        ("angles: 90.00 90.00 90.00", "angles: 10.00 10.00 170.00", "bad_lattice"),
        ("abc: 5.89 5.89 5.89", "abc: 5.89 -5.89 5.89", "bad_lattice"),
        ("abc: 5.89 5.89 5.89", "abc: 5.89 5.89", "syntax"),
        ("Sites (12)", "Sites 12", "syntax"),
    ],
)
def test_each_kind_of_mistake_has_its_reason(old, new, reason):
    text = TABLE3["Ti4Ni4Sn4"]
    assert old in text
    with pytest.raises(DecodeError) as err:
        get("wyckoff").decode(text.replace(old, new))
    assert err.value.reason == reason


def test_an_orbit_explosion_is_refused_as_too_large():
    line = "O 0.1 0.2 0.3 192l\n"
    text = "O\nSpacegroup: Fm-3m\nabc: 9 9 9\nangles: 90 90 90\nSites (999)\n" + line * 3
    with pytest.raises(DecodeError) as err:
        get("wyckoff").decode(text)
    assert err.value.reason == "too_large"


def test_space_group_symbols_are_accepted_in_common_spellings():
    assert spacegroup_number("P6_3/mmc") == spacegroup_number("P63/mmc") == spacegroup_number("P 63/m m c") == 194
    assert spacegroup_number("216") == 216


def test_disordered_structures_are_refused_not_silently_ordered():
    disordered = Structure(Lattice.cubic(4.0), [{"Fe": 0.5, "Ni": 0.5}], [[0, 0, 0]])
    for name in ("wyckoff", "coords"):
        with pytest.raises(EncodeError) as err:
            get(name).encode(disordered)
        assert err.value.reason == "disordered"


def test_oxidation_states_are_dropped_on_encoding():
    nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    nacl.add_oxidation_state_by_element({"Na": 1, "Cl": -1})
    text = get("wyckoff").encode(nacl)
    assert text.splitlines()[0] == "Na4Cl4" and "+" not in text
