"""The judge's calibration against the paper's judge (issue 35): the reference recomputed from eSEN's energies, the
comparison rows of a judge, and the rate the paper's judge would have counted. Hand-made labelled rows on real
MP-20 crystals; the relaxations themselves are the benchmark's (benchmarks/judge_calibration.py)."""

from __future__ import annotations

import math
import sys

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Structure

from plaidpp.config import PROJECT_ROOT, compose
from plaidpp.evaluation.energy import mp_hubbards
from plaidpp.evaluation.score import get_hull
from plaidpp.evaluation.steps import energy_terms
from plaidpp.reporting.calibrated import expected_rate, load_confusion

sys.path.insert(0, str(PROJECT_ROOT / "benchmarks"))
from judge_calibration import esen_reference, judge_rows, markdown, reference_report  # noqa: E402 - the benchmark's own


@pytest.fixture(scope="module")
def esen_cfg():
    return compose("evaluate", ["samples=-", "out=-", "mlip=fairchem"])


def _pick(mp20_rows, wanted) -> Structure:
    """The first MP-20 crystal of at most 6 sites whose composition satisfies ``wanted``."""
    for cif in mp20_rows["cif"]:
        structure = Structure.from_str(cif, fmt="cif")
        if len(structure) <= 6 and wanted(structure):
            return structure
    raise AssertionError("no such crystal in MP-20")


def _labelled_at(structures_and_e_hull, cfg) -> pd.DataFrame:
    """Labelled rows whose eSEN energy puts each crystal at the wanted E_hull under the consistent correction
    (E_hull is linear in the total energy with slope 1 / atoms: MP2020's terms depend on composition only)."""
    hull = get_hull(cfg)
    rows = []
    for k, (structure, e_hull) in enumerate(structures_and_e_hull):
        at_zero = energy_terms(structure, 0.0, cfg, hull)[2]
        rows.append({"sample_id": f"s{k}", "file": "hand.csv", "relaxed_energy": (e_hull - at_zero) * len(structure),
                     "relaxed_cif": structure.to(fmt="cif"), "e_above_hull": e_hull})
    return pd.DataFrame(rows)


def test_esen_reference_recomputes_e_hull_and_the_authors_convention(mp20_rows, esen_cfg):
    symbols = lambda s: {el.symbol for el in s.composition.elements}  # noqa: E731
    plain_oxide = _pick(mp20_rows, lambda s: "O" in symbols(s) and "F" not in symbols(s)
                        and not mp_hubbards(s.composition))
    u_oxide = _pick(mp20_rows, lambda s: "O" in symbols(s) and bool(mp_hubbards(s.composition)))
    intermetallic = _pick(mp20_rows, lambda s: not symbols(s) & {"O", "F", "S", "Se", "Te", "N", "H", "Cl", "Br",
                                                                  "I", "P", "Sb", "Si"})
    labels = _labelled_at([(plain_oxide, 0.05), (u_oxide, -0.02), (intermetallic, 0.3)], esen_cfg)
    labels.loc[3] = {"sample_id": "broken", "file": "hand.csv", "relaxed_energy": -10.0,
                     "relaxed_cif": "data_x\n_cell_length_a 3\n", "e_above_hull": 0.0}
    ref = esen_reference(labels, esen_cfg)
    assert ref["esen_e_hull"][:3].tolist() == pytest.approx([0.05, -0.02, 0.3], abs=1e-6)
    assert ref["correction_kind"][:3].tolist() == ["gga_anion_lowered", "gga+u", "none"]
    # the authors drop a plain-GGA oxide's anion correction (negative): it comes out less stable, by that much
    correction = energy_terms(plain_oxide, 0.0, esen_cfg, get_hull(esen_cfg))[0]
    assert correction < 0
    assert ref.at[0, "esen_e_hull_authors"] == pytest.approx(0.05 - correction / len(plain_oxide))
    assert ref["esen_e_hull_authors"][1:3].tolist() == pytest.approx([-0.02, 0.3])
    assert ref.at[3, "reference_fail"].startswith("relaxed_cif:") and math.isnan(ref.at[3, "esen_e_hull"])
    report = reference_report(ref)
    assert report["n_ok"] == 3 and sum(report["fail_reasons"].values()) == 1
    assert report["metastable_consistent"] == 2 and report["metastable_authors_convention"] == 1 + (
        0.05 - correction / len(plain_oxide) <= 0.1)
    assert report["kind gga_anion_lowered"]["consistent_minus_authors_median_eV"] == pytest.approx(
        correction / len(plain_oxide), abs=1e-4)


def _trajectory(structure: Structure, energies, forces) -> dict:
    return {"energy_per_atom": list(energies), "fmax": list(forces),
            "cells": [structure.lattice.matrix.tolist()] * len(energies),
            "frac": [structure.frac_coords.tolist()] * len(energies),
            "symbols": [site.specie.symbol for site in structure]}


def test_judge_rows_compare_tiers_biases_and_structures_per_setting(mp20_rows):
    structures = [Structure.from_str(c, fmt="cif") for c in mp20_rows["cif"][:4]]
    # final E_hull per crystal (ours) and eSEN's; the trajectory's step 1 is where 150/0.05 stops (fmax < 0.05),
    # 0.06 eV/atom above the end
    ours, theirs = [-0.01, 0.05, 0.2, 0.03], [-0.02, 0.02, 0.15, 0.2]
    table = pd.DataFrame({
        "sample_id": [f"s{k}" for k in range(4)] + ["failed"],
        "trajectory": [_trajectory(s, [-5.0, -5.04, -5.1], [0.3, 0.04, 0.01]) for s in structures] + [None],
        "e_hull": ours + [math.nan], "relax_force_calls": [3, 3, 3, 3, math.nan],
        "relax_seconds": [2.0, 2.0, 2.0, 2.0, math.nan], "chunk_core_seconds": [3.0] * 5,
        "fail_reason": [None] * 4 + ["energy_out_of_range"], "judge": ["sevennet:7net-0:"] * 5})
    reference = pd.DataFrame({"sample_id": [f"s{k}" for k in range(4)] + ["failed"],
                              "esen_e_hull": theirs + [0.0],
                              "relaxed_cif": [s.to(fmt="cif") for s in structures] + [structures[0].to(fmt="cif")]})
    rows = {row["setting"]: row for row in judge_rows(table, reference, time_limit=30.0)}
    paper, short = rows["paper 500/0.02"], rows["default 150/0.05"]
    assert (paper["steps"], paper["fmax"], short["steps"], short["fmax"]) == (500, 0.02, 150, 0.05)
    assert paper["n_compared"] == 4 and paper["judge_failed"] == {"energy_out_of_range": 1}
    # tiers: ours stable, metastable, unstable, metastable; eSEN stable, metastable, unstable, unstable
    assert paper["confusion"] == [[1, 0, 0], [0, 1, 1], [0, 0, 1]]
    assert paper["tier_agreement_at_0.0"][:2] == [4, 4] and paper["tier_agreement_at_0.1"][:2] == [3, 4]
    assert paper["metastable"]["precision"] == pytest.approx(2 / 3, abs=1e-4) and paper["metastable"]["recall"] == 1.0
    assert paper["e_hull_median_bias_eV"] == pytest.approx(np.median(np.subtract(ours, theirs)), abs=1e-4)
    assert paper["three_tiers"]["tier_agreement"] == 0.75 and paper["three_tiers"]["kappa"] is not None
    assert paper["matches_esen_structure"] == [4, 4]  # the same crystals: every one matches
    # stopped at step 1, 0.06 eV/atom higher: the stable crystal is metastable there, and it costs 2 calls, not 3
    assert short["confusion"][1][0] == 1 and short["force_calls_per_crystal"] == pytest.approx(8 / 5)
    assert short["core_seconds_per_crystal"] < paper["core_seconds_per_crystal"] == pytest.approx(3.0)
    table = markdown({"judges": list(rows.values())}).splitlines()
    assert len(table) == 2 + sum(row["steps"] is not None for row in rows.values())  # tier exits stay out
    assert "| `sevennet:7net-0:` | 500 / 0.02 | 4 | 100.0 % [" in table[2] and "| 100.0 % |" in table[2]


def test_expected_rate_reads_the_confusion_matrix_and_carries_both_uncertainties():
    # a judge that agrees with the reference everywhere: the rate is its own
    same = expected_rate([10, 20, 30], 100, [[50, 0, 0], [0, 50, 0], [0, 0, 50]])
    assert same["estimate"] == pytest.approx(0.10) and same["q"] == [1.0, 0.0, 0.0]
    assert same["ci95"][0] < 0.10 < same["ci95"][1]
    # a lenient judge: half its "stable" crystals and a tenth of its "metastable" ones are stable to the reference
    lenient = expected_rate([10, 20, 30], 100, [[20, 20, 0], [5, 40, 5], [0, 0, 50]])
    assert lenient["estimate"] == pytest.approx((10 * 0.5 + 20 * 0.1) / 100)
    meta = expected_rate([10, 20, 30], 100, [[20, 20, 0], [5, 40, 5], [0, 0, 50]], target=1)
    assert meta["estimate"] == pytest.approx((10 * 1.0 + 20 * 0.9) / 100)
    # fewer calibration crystals: a wider interval around the same estimate
    small = expected_rate([10, 20, 30], 100, [[2, 2, 0], [1, 8, 1], [0, 0, 5]])
    assert small["estimate"] == pytest.approx(lenient["estimate"])
    assert small["ci95"][1] - small["ci95"][0] > lenient["ci95"][1] - lenient["ci95"][0]
    assert expected_rate([1, 0, 0], 10, [[0, 0, 0], [0, 1, 0], [0, 0, 1]])["estimate"] is None  # tier never seen
    with pytest.raises(ValueError, match="3 tier counts"):
        expected_rate([1, 2], 10, [[1, 0, 0], [0, 1, 0], [0, 0, 1]])


def test_load_confusion_finds_the_judge_and_relaxation_or_says_none(tmp_path):
    import json

    record = tmp_path / "record.json"
    paper = "steps=500:fmax=0.02:filter=frechet:primitive=True"
    assert load_confusion(record, "sevennet:7net-0:", paper) is None
    record.write_text(json.dumps({"files": ["1.csv.gz"], "cuts": [0.0, 0.1], "judges": [
        {"judge": "sevennet:7net-0:", "relax": paper, "confusion": [[1, 0, 0], [0, 1, 0], [0, 0, 1]]},
        {"judge": "sevennet:7net-0:", "relax": None, "confusion": []}]}))
    row = load_confusion(record, "sevennet:7net-0:", paper)
    assert row["confusion"][0] == [1, 0, 0] and row["files"] == ["1.csv.gz"]
    assert load_confusion(record, "chgnet:0.3.0:", paper) is None
    assert load_confusion(record, "sevennet:7net-0:", paper.replace("500", "150")) is None


def test_the_report_prints_the_rate_the_paper_judge_would_count_beside_the_judges_own(tmp_path):
    import json

    from plaidpp.reporting.report import paper_judge_section

    relax = "steps=500:fmax=0.02:filter=frechet:primitive=True"
    record = tmp_path / "record.json"
    # the judge's stable crystals are stable to eSEN half the time, its metastable ones a tenth of the time
    record.write_text(json.dumps({"files": ["1.csv.gz"], "cuts": [0.0, 0.1], "judges": [
        {"judge": "sevennet:7net-0:", "relax": relax, "confusion": [[20, 20, 0], [5, 40, 5], [0, 0, 50]],
         "n_compared": 140, "e_hull_median_bias_eV": -0.02, "stable": {"n_judge": 40, "n_esen": 25}}]}))
    # 10 samples: 8 relaxed (2 stable, 2 metastable, 4 unstable), 1 stable one a duplicate, 1 metastable not novel
    table = pd.DataFrame({"relax_ok": [True] * 8 + [False] * 2,
                          "e_hull": [-0.1, -0.01, 0.05, 0.08, 0.2, 0.3, 0.4, 0.5, math.nan, math.nan],
                          "is_novel": [True, True, True, False] + [True] * 6,
                          "is_unique": [True, False] + [True] * 8})
    summary = {"mlip": "sevennet:7net-0:", "relax_settings": relax, "n_requested": 10, "stability_rate": 0.2,
               "stability_rate_ci95": [0.06, 0.51], "sun_rate": 0.1, "sun_rate_ci95": [0.02, 0.4]}
    other = {**summary, "mlip": "chgnet:0.3.0:"}
    lines = paper_judge_section({"SFT baseline": (summary, table), "other": (other, table)}, record)
    page = "\n".join(lines)
    stable = expected_rate([2, 2, 4], 10, [[20, 20, 0], [5, 40, 5], [0, 0, 50]])  # (2 * 0.5 + 2 * 0.1) / 10
    sun = expected_rate([1, 1, 4], 10, [[20, 20, 0], [5, 40, 5], [0, 0, 50]])  # novel and first of their class
    assert stable["estimate"] == pytest.approx(0.12) and sun["estimate"] == pytest.approx(0.06)
    row = next(line for line in lines if line.startswith("| SFT baseline"))
    assert "20.0 % [6.0, 51.0]" in row and f"{100 * stable['estimate']:.1f} % [{100 * stable['ci95'][0]:.1f}," in row
    assert f"{100 * sun['estimate']:.1f} % [" in row and "140, -20 meV/atom, 40 / 25" in row
    assert "no calibration of this judge" in next(line for line in lines if line.startswith("| other"))
    assert paper_judge_section({"SFT baseline": (None, None)}, record) == [] and "eSEN" in page
