"""Cheaper scoring (issue 30) on real crystals and a real potential: matched duplicates relaxed once, trajectories
that replay FIRE's own stopping rule exactly, and the tier exit with the bound it relies on."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from pymatgen.core import Structure

from plaidpp.config import PROJECT_ROOT, compose
from plaidpp.evaluation.cache import RelaxCache
from plaidpp.evaluation.mlip import load_calculator
from plaidpp.evaluation.novelty import Matching
from plaidpp.evaluation.relax import relax_structure
from plaidpp.evaluation.tiers import TierExit, TierExitRule, exit_index, tier
from plaidpp.evaluation.watchers import TrajectoryRecorder
from plaidpp.evaluation.workers import relax_many
from plaidpp.settings.evaluation import RelaxSettings, SymmetrySettings

from .conftest import few_site_rows

sys.path.insert(0, str(PROJECT_ROOT / "benchmarks"))
from fast_paths import stop_at, structure_at  # noqa: E402 - the benchmark's replay of FIRE's stopping rule

SYM = SymmetrySettings()
REFERENCE = RelaxSettings(steps=500, fmax=0.02)


@pytest.fixture(scope="module")
def chgnet_spec():
    return compose("evaluate", ["mlip=chgnet", "samples=-", "out=-"]).mlip


@pytest.fixture(scope="module")
def chgnet(chgnet_spec):
    return load_calculator(chgnet_spec)


@pytest.fixture(scope="module")
def strained(mp20_rows):
    """Three MP-20 test crystals of <= 4 sites, stretched by 8 % and rattled, so that relaxing them takes tens of
    FIRE steps (as a generated crystal's does), not two."""
    pool = mp20_rows[mp20_rows["split"] == "test"].sample(60, random_state=11)
    out = []
    for k, cif in enumerate(few_site_rows(pool, 3)["cif"]):
        s = Structure.from_str(cif, fmt="cif")
        s.scale_lattice(s.volume * 1.08 ** 3)
        s.perturb(0.15, min_distance=0.05, seed=k)
        out.append(s)
    return out


def test_matched_duplicates_are_relaxed_once_and_the_cache_keeps_only_exact_relaxations(tmp_path, strained,
                                                                                        chgnet_spec):
    fast = RelaxSettings(steps=40, fmax=0.1)
    twin = strained[0].copy()
    twin.translate_sites(list(range(len(twin))), [0.003, -0.002, 0.001])  # another hash, the same crystal
    batch = {0: strained[0], 1: twin, 2: strained[1]}
    cache = RelaxCache(tmp_path / "relax.sqlite")
    shared = relax_many(batch, chgnet_spec, fast, SYM, cache, workers=1, progress=False, share_matches=Matching(10))
    assert shared[1]["shared_with"] == 0 and shared[1]["force_calls"] == 0
    assert shared[1]["energy_total"] == shared[0]["energy_total"] and "shared_with" not in shared[2]
    assert len(cache) == 2  # the twin's own key holds nothing: a hit is always that exact structure's relaxation
    alone = relax_many({1: twin}, chgnet_spec, fast, SYM, cache, workers=1, progress=False,
                       share_matches=Matching(10))
    assert alone[1]["cached"] is False and alone[1]["force_calls"] > 0 and "shared_with" not in alone[1]
    # a batch whose first member is a cache hit still shares with it (a sharded evaluation's final pass)
    third = twin.copy()
    third.translate_sites(list(range(len(third))), [-0.002, 0.003, 0.0])
    again = relax_many({0: strained[0], 5: third}, chgnet_spec, fast, SYM, cache, workers=1, progress=False,
                       share_matches=Matching(10))
    assert again[0]["cached"] is True and again[5]["shared_with"] == 0 and again[5]["cached"] is False


def test_a_recorded_trajectory_replays_a_cheaper_stopping_rule_exactly(chgnet, strained):
    """FIRE's path does not depend on when it stops: the benchmark's replay premise, on a real relaxation."""
    for structure in strained[:2]:
        recorder = TrajectoryRecorder()
        full = relax_structure(structure, chgnet, REFERENCE, observer=recorder.observe)
        energies, forces = np.array(recorder.energy), np.array(recorder.fmax)
        assert len(energies) == full.force_calls  # one force call per FIRE step, and one at the start
        cheap = relax_structure(structure, chgnet, RelaxSettings(steps=150, fmax=0.05))
        index = stop_at(150, 0.05)(energies, forces, 0.0)
        assert cheap.n_steps == index and cheap.force_calls == index + 1
        assert cheap.energy_per_atom == pytest.approx(energies[index], abs=1e-6)


def test_a_polished_relaxation_is_fire_to_the_handover_then_the_polish_the_benchmark_runs(chgnet, strained):
    """relax.polish: FIRE's own path down to polish_from_fmax, then BFGS from that crystal; what
    benchmarks/polish_paths.py runs from the recorded trajectory, call for call (its first call is free here: the
    calculator still holds the hand-over crystal's result)."""
    for structure in strained[:2]:
        recorder = TrajectoryRecorder()
        relax_structure(structure, chgnet, REFERENCE, observer=recorder.observe)
        handover = stop_at(150, 0.1)(np.array(recorder.energy), np.array(recorder.fmax), 0.0)
        polished = relax_structure(structure, chgnet, RelaxSettings(steps=150, fmax=0.02, polish="bfgs",
                                                                    polish_from_fmax=0.1, polish_steps=150))
        alone = relax_structure(structure_at(recorder.extra()["trajectory"], handover), chgnet,
                                RelaxSettings(optimizer="bfgs", steps=150, fmax=0.02, primitive=False))
        assert alone.force_calls > 1 and polished.converged
        assert polished.force_calls == handover + 1 + alone.force_calls - 1
        assert polished.n_steps == handover + alone.n_steps
        assert polished.energy_per_atom == pytest.approx(alone.energy_per_atom, abs=1e-5)


def test_a_relaxation_never_ends_above_an_energy_it_passed_and_the_exit_keeps_the_tier(chgnet, strained):
    """The upper end of the tier exit's bound (evaluation/tiers.py), on every step of real relaxations: the
    relaxed energy is the lowest of the path (0 of 313 authors' crystals broke it by 1 meV/atom; fast_paths.py).
    An exit decided by that end alone (a slope and floor so large that the lower end never decides) stops at the
    first step below a cut and keeps the full relaxation's tier; the force calls it pays are the replay's."""
    for structure in strained:
        recorder = TrajectoryRecorder()
        full = relax_structure(structure, chgnet, REFERENCE, observer=recorder.observe)
        energies, forces = np.array(recorder.energy), np.array(recorder.fmax)
        final = full.energy_per_atom
        assert final <= energies.min() + 1e-4
        cut = float(np.quantile(energies, 0.5))  # E_hull = energy (offset 0): the path crosses it half way
        rule = TierExitRule((cut,), slope=100.0, floor=100.0)
        early = relax_structure(structure, chgnet, REFERENCE, observer=TierExit(rule, offset=0.0).observe)
        index = exit_index(energies, forces, rule)
        assert index is not None and early.force_calls == index + 1 < full.force_calls
        assert early.exit_reason == "tier_decided" and early.energy_per_atom <= cut
        assert tier(early.energy_per_atom, cut, cut + 10) == tier(final, cut, cut + 10) == 0


def test_the_exit_waits_while_a_cut_lies_within_the_bound():
    rule = TierExitRule((0.0, 0.1), slope=1.0, floor=0.02)
    assert rule.decided(-0.01, 0.5)  # at or below the stable cut: stable whatever follows
    assert rule.decided(0.05, 0.01)  # 0.05 - 0.01 - 0.02 = 0.02 > 0: metastable whatever follows
    assert not rule.decided(0.05, 0.04)  # 0.05 - 0.04 - 0.02 < 0: could still become stable
    assert rule.decided(0.5, 0.1)  # 0.5 - 0.1 - 0.02 = 0.38 > 0.1: unstable whatever follows
    assert not rule.decided(0.2, 0.1)  # 0.2 - 0.12 = 0.08 <= 0.1: could become metastable
    assert tier(float("nan"), 0.0, 0.1) == 2


AGREEMENT = PROJECT_ROOT / "benchmarks/results/scoring/fast_paths.json"


def test_the_committed_agreement_table_is_consistent_and_no_failing_fast_path_is_a_default():
    """benchmarks/results/scoring/fast_paths.json (docs/evaluation.md): every row's eligibility follows from its
    counts and intervals, and an early exit that misses the rule in any measured file is not switched on."""
    import json

    from plaidpp.stats import wilson

    rows = json.loads(AGREEMENT.read_text())
    # every path of a file is judged on the same crystals, >= 300 of them (the floor)
    per_file = {row["file"]: row["n"] for row in rows}
    assert all(row["n"] == per_file[row["file"]] >= 300 for row in rows)
    assert {"authors_mix.parquet", "sft_all.parquet", "rlip.parquet"} <= set(per_file)  # both models + the authors
    for row in rows:
        assert row["eligible"] == (row["tier_agreement"] >= 0.99 and row["sun_agreement"] >= 0.99)
        lo, hi = wilson(round(row["tier_agreement"] * row["n"]), row["n"])
        assert row["tier_agreement_ci95"] == pytest.approx([lo, hi])
    tier_exit_rows = [row for row in rows if "tier-exit" in row["rule"]]
    relax = compose("evaluate", ["samples=-", "out=-"]).relax
    if not all(row["eligible"] for row in tier_exit_rows):
        assert relax.tier_exit is False
    if not all(row["eligible"] for row in rows if row["rule"].startswith("fire 150/0.1 + bfgs")):
        assert relax.polish == "none"
    # the default relaxation is a stopping rule that keeps the verdict in every measured file
    default = f"{relax.steps}/{relax.fmax}"
    judged = [row for row in rows if row["rule"] in (default, f"paper {default}")]
    assert len(judged) == len(per_file) and all(row["eligible"] for row in judged)


def test_agreement_counts_places_and_refuses_unequal_lengths():
    from plaidpp.stats import agreement, wilson

    assert agreement([0, 1, 2, 2], [0, 2, 2, 2]) == (3, 4, wilson(3, 4))
    assert agreement([True, False], [True, False])[:2] == (2, 2)
    with pytest.raises(ValueError, match="agreement"):
        agreement([0, 1], [0])
