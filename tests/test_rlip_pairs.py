"""Pair construction on hand-labelled scored samples; expected pairs are derived by hand in each docstring."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from plaidpp.config import compose
from plaidpp.errors import UserError
from plaidpp.prompts import spacegroup_prompt, unconditional_prompt
from plaidpp.rlip.pairs import build_pairs, pairs_stage, read_pairs, tier_of
from plaidpp.settings import validate
from plaidpp.settings.rlip import PairsSettings

U = unconditional_prompt()
NAN = math.nan


def row(text, e_hull, *, sg=None, achieved=None, novel=False, parse_ok=True, valid=True, relax_ok=True):
    return {
        "text": text, "prompt": U if sg is None else spacegroup_prompt(sg), "e_hull": e_hull,
        "spacegroup_requested": sg, "spacegroup_achieved": achieved, "is_novel": novel,
        "parse_ok": parse_ok, "valid_structure": valid, "relax_ok": relax_ok,
    }


def table(rows):
    df = pd.DataFrame(rows)
    df.insert(0, "index", range(len(df)))
    df["spacegroup_requested"] = df["spacegroup_requested"].astype("Int64")
    df["spacegroup_achieved"] = df["spacegroup_achieved"].astype("Int64")
    return df


def settings(**values):
    """Pair settings as a preset would give them: the dataclass defaults (the flagship) and ``values``."""
    if "kinds" in values:
        values["kinds"] = list(values["kinds"])
    return validate(PairsSettings(**values))


def build(t, seed=0, **values):
    return build_pairs(t, settings(**values), seed)


def triples(result, kind=None):
    return [(p.chosen, p.rejected) for p in result.pairs if kind is None or p.kind == kind]


def test_tiers_follow_the_paper_thresholds_and_failures():
    cfg = settings()
    t = table([row("a", 0.0), row("b", 1e-9), row("c", 0.08), row("d", 0.0801), row("e", NAN),
               row("f", -0.3, parse_ok=False), row("g", -0.3, valid=False), row("h", -0.3, relax_ok=False)])
    assert [tier_of(r, cfg) for _, r in t.iterrows()] == [
        "stable", "metastable", "metastable", "unstable", "failed", "failed", "failed", "failed"]


def test_tiered_stability_pairs_exact_when_every_draw_is_forced():
    """S stable, M metastable, U1/U2 unstable, F failed (dropped with failed=drop).

    Per stable: one (S, M) and two (S, U) -> (S,M), (S,U1), (S,U2); per metastable two (M, U) -> (M,U1), (M,U2).
    """
    t = table([row("S", -0.05), row("M", 0.03), row("U1", 0.2), row("U2", 0.5), row("F", NAN, parse_ok=False)])
    result = build(t, kinds=("stability_tiered",), failed="drop")
    assert triples(result) == [("S", "M"), ("S", "U1"), ("S", "U2"), ("M", "U1"), ("M", "U2")]
    assert {p.prompt for p in result.pairs} == {U}
    assert result.counts == {"stability_tiered": 5}
    assert result.tiers["unconditional"] == {"stable": 1, "metastable": 1, "unstable": 2, "failed": 1}
    assert result.pairs[0].chosen_e_hull == -0.05 and result.pairs[0].rejected_e_hull == 0.03


def test_failed_samples_are_rejected_only_when_counted_as_unstable():
    """With failed=unstable the unparsed F and the invalid G (despite its low energy) join the reject pool
    {U, F, G}; S takes two of them and neither F nor G is ever chosen. With failed=drop only (S, U) is left."""
    t = table([row("S", -0.01), row("U", 0.3), row("F", NAN, parse_ok=False), row("G", -1.0, valid=False)])
    result = build(t, kinds=("stability_tiered",), metastable_per_stable=0)
    chosen = {p.chosen for p in result.pairs}
    rejected = {p.rejected for p in result.pairs}
    assert chosen == {"S"} and len(result.pairs) == 2 and rejected <= {"U", "F", "G"}
    dropped = build(t, kinds=("stability_tiered",), metastable_per_stable=0, failed="drop")
    assert triples(dropped) == [("S", "U")]
    assert dropped.dropped == {"short_stable_unstable": 1}


def test_draws_are_without_replacement_per_crystal_and_seeded():
    """Two stable, one metastable, five unstable: each accepted crystal gets exactly `ratio` distinct unstable."""
    rows = [row("S1", -0.1), row("S2", 0.0), row("M", 0.05)] + [row(f"U{k}", 0.1 + k) for k in range(5)]
    t = table(rows)
    for ratio in (1, 2, 4):
        result = build(t, kinds=("stability_tiered",), ratio=ratio, seed=3)
        for accepted in ("S1", "S2", "M"):
            partners = [r for c, r in triples(result) if c == accepted and r.startswith("U")]
            assert len(partners) == len(set(partners)) == ratio
        assert [r for c, r in triples(result) if r == "M"] == ["M", "M"]  # one (S, M) per stable
        again = build(t, kinds=("stability_tiered",), ratio=ratio, seed=3)
        assert triples(again) == triples(result)
    seeds = {tuple(triples(build(t, kinds=("stability_tiered",), seed=s))) for s in range(6)}
    assert len(seeds) > 1  # the seed matters


def test_non_tiered_pairs_accepted_against_unstable_only():
    """Non-tiered: S and M are both accepted, no (S, M) pair; each takes both of U1, U2."""
    t = table([row("S", -0.05), row("M", 0.03), row("U1", 0.2), row("U2", 0.5)])
    result = build(t, kinds=("stability",))
    assert triples(result) == [("S", "U1"), ("S", "U2"), ("M", "U1"), ("M", "U2")]
    assert result.counts == {"stability": 4}


def test_novelty_pairs_stable_novel_against_stable_known():
    """Stable & novel N vs stable & not novel K; the metastable novel X is not a novelty anchor."""
    t = table([row("N", -0.02, novel=True), row("K", -0.01, novel=False), row("X", 0.05, novel=True)])
    result = build(t, kinds=("novelty",))
    assert triples(result) == [("N", "K")]


def test_spacegroup_pairs_per_conditioned_group_at_the_ratio():
    """Group 15: R right (stable, achieved 15); W1, W2 wrong but acceptable; V unstable; group 1: A right, B wrong.

    ratio 2: (R, W1), (R, W2) spacegroup; each acceptable crystal vs unstable: only V exists -> (R,V), (W1,V),
    (W2,V) with a shortfall of 3. Group 1 has no unstable and one wrong: (A, B) only.
    """
    t = table([
        row("R", 0.0, sg=15, achieved=15), row("W1", 0.05, sg=15, achieved=2), row("W2", -0.01, sg=15, achieved=14),
        row("V", 0.4, sg=15, achieved=15), row("A", 0.01, sg=1, achieved=1), row("B", 0.02, sg=1, achieved=2),
    ])
    result = build(t, kinds=("spacegroup", "spacegroup_stability"), failed="drop")
    got = [(p.kind, p.group, p.chosen, p.rejected) for p in result.pairs]
    assert got == [
        ("spacegroup", "sg1", "A", "B"),
        ("spacegroup", "sg15", "R", "W1"), ("spacegroup", "sg15", "R", "W2"),
        ("spacegroup_stability", "sg15", "R", "V"), ("spacegroup_stability", "sg15", "W1", "V"),
        ("spacegroup_stability", "sg15", "W2", "V"),
    ]
    assert {p.prompt for p in result.pairs if p.group == "sg15"} == {spacegroup_prompt(15)}
    assert result.counts == {"spacegroup": 3, "spacegroup_stability": 3}
    # sg1: A wants 2 wrong (1 exists); A, B want 2 unstable each (0 exist). sg15: R, W1, W2 want 2 unstable (1 each)
    assert result.dropped == {"short_spacegroup": 1, "short_spacegroup_stability": 4 + 3}


def test_ratio_one_and_ten_change_the_count_of_rejects():
    rows = [row("R", 0.0, sg=15, achieved=15)] + [row(f"W{k}", 0.05, sg=15, achieved=2) for k in range(12)]
    t = table(rows)
    for ratio, n in ((1, 1), (2, 2), (10, 10)):
        result = build(t, kinds=("spacegroup",), ratio=ratio)
        assert result.counts["spacegroup"] == n


def test_flagship_merges_unconditional_and_conditional_and_deduplicates():
    """Two identical stable texts S make two identical (S, M) and (S, U) pairs: kept once, counted as duplicates.
    A pair whose chosen and rejected texts are equal (Z stable and Z unstable) is dropped."""
    t = table([
        row("S", -0.05, novel=True), row("S", -0.04, novel=True), row("M", 0.03), row("U", 0.3),
        row("Z", -0.2, sg=1, achieved=1), row("Z", 0.9, sg=1, achieved=1),
    ])
    result = build(t, ratio=1)
    got = [(p.kind, p.chosen, p.rejected) for p in result.pairs]
    assert got == [("stability_tiered", "S", "M"), ("stability_tiered", "S", "U"), ("stability_tiered", "M", "U")]
    # both S lack a stable-known partner; Z (right group) has no wrong-group partner
    assert result.dropped == {"duplicate": 2, "identical_text": 1, "short_novelty": 2, "short_spacegroup": 1}
    assert result.counts == {"stability_tiered": 3, "novelty": 0, "spacegroup": 0, "spacegroup_stability": 0}


def test_config_rejects_unknown_kinds_and_both_stability_modes():
    with pytest.raises(UserError, match="pairs.kinds: 'stabilty' is not one of"):
        compose("pairs", ["pairs.kinds=[stabilty]", "scored=[x]", "out=y"])
    with pytest.raises(UserError, match="not both"):
        compose("pairs", ["pairs.kinds=[stability,stability_tiered]", "scored=[x]", "out=y"])
    with pytest.raises(UserError, match=r"unknown setting pairs.ratioo \(did you mean pairs.ratio\?\)"):
        compose("pairs", ["pairs.ratioo=2", "scored=[x]", "out=y"])


def test_pairs_stage_reads_parquet_and_writes_jsonl(tmp_path):
    t = table([row("S", -0.05), row("M", 0.03), row("U1", 0.2), row("U2", 0.5)])
    scored = tmp_path / "structures.parquet"
    t.to_parquet(scored)
    out = tmp_path / "pairs.jsonl"
    cfg = compose("pairs", [f"scored=[{scored}]", f"out={out}", "tracking.uri=null", "pairs=tiered",
                            f"metrics_file={tmp_path / 'm.json'}"])
    summary = pairs_stage(cfg)
    lines = read_pairs(out)
    assert summary["pairs_by_kind"] == {"stability_tiered": 5} and len(lines) == 5
    assert set(lines[0]) >= {"prompt", "chosen", "rejected", "kind"}
    assert (lines[0]["chosen"], lines[0]["rejected"]) == ("S", "M")
