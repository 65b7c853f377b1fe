"""Which cheaper relaxations keep the verdict? The agreement rule of issue 30, by replaying trajectories.

FIRE's path does not depend on its stopping rule: the crystal a relaxation of 150 steps to 0.05 eV/Å returns is
the one the reference relaxation (500 steps to 0.02, recorded step by step by ``scoring_profile.py``) passed
through at the first step with fmax below 0.05, or at step 150. So every stopping rule, the tier exits included,
is judged on the same crystals without running it again: its exit step gives the force calls it would have
paid, the energy there gives E_hull (the hull and MP2020 terms of a composition are a constant per atom,
``offset`` = reference E_hull - reference energy per atom; the MP2020 anion type is taken from the relaxed
crystal), and the crystal rebuilt there gives uniqueness, novelty and so the S.U.N. flag.

Against the reference it prints, per rule: tier agreement (stable <= 0, metastable <= 0.1, unstable) and S.U.N.
flag agreement with their 95 % Wilson intervals and denominators, the flips, the E_hull MAE, and the force calls
against the reference and against today's default (150 / 0.05). A rule is eligible as a default when both
agreements are >= 99 %.

    python benchmarks/fast_paths.py benchmarks/results/scoring/sft.parquet [more.parquet ...]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from pymatgen.core import Lattice, Structure

from plaidpp.config import compose
from plaidpp.evaluation.inputs import parse_cif
from plaidpp.evaluation.novelty import Matching, novelty, uniqueness
from plaidpp.evaluation.score import get_training_set
from plaidpp.evaluation.tiers import TIER_NAMES, TierExitRule, exit_index, tier
from plaidpp.representation import get
from plaidpp.stats import agreement

STABLE, METASTABLE = 0.0, 0.1  # the evaluation's cuts (conf/evaluate.yaml thresholds)
RULE = 0.99  # the agreement a fast path needs to become a default


def stop_at(steps: int, fmax: float) -> Callable[[np.ndarray, np.ndarray, float], int]:
    """FIRE's own stopping rule: the first index with fmax below the threshold, else the step cap."""
    def index(energy: np.ndarray, forces: np.ndarray, offset: float) -> int:  # noqa: ARG001
        below = np.flatnonzero(forces[: steps + 1] < fmax)
        return int(below[0]) if below.size else min(steps, len(forces) - 1)
    return index


def with_tier_exit(base: Callable, rule: TierExitRule) -> Callable:
    def index(energy: np.ndarray, forces: np.ndarray, offset: float) -> int:
        stop = base(energy, forces, offset)
        early = exit_index(energy[: stop + 1] + offset, forces[: stop + 1], rule)
        return stop if early is None else early
    return index


def rules() -> dict[str, tuple[Callable, bool]]:
    """name -> (exit index of a trajectory, whether matched duplicates share one relaxation)."""
    paper, default = stop_at(500, 0.02), stop_at(150, 0.05)
    out = {"paper 500/0.02": (paper, False), "default 150/0.05": (default, False),
           "100/0.05": (stop_at(100, 0.05), False), "150/0.1": (stop_at(150, 0.1), False),
           "75/0.1": (stop_at(75, 0.1), False), "500/0.05": (stop_at(500, 0.05), False),
           "300/0.02": (stop_at(300, 0.02), False), "400/0.02": (stop_at(400, 0.02), False),
           "default + shared duplicates": (default, True)}
    for name, rule in TierExitRule.candidates((STABLE, METASTABLE)).items():
        out[f"default + tier-exit {name}"] = (with_tier_exit(default, rule), False)
        out[f"default + shared + tier-exit {name}"] = (with_tier_exit(default, rule), True)
    return out


def crystals(frame: pd.DataFrame) -> pd.DataFrame:
    """The relaxed crystals with a trajectory and a finite reference E_hull."""
    keep = frame["trajectory"].notna() & np.isfinite(frame["e_hull"].astype(float))
    out = frame[keep].copy()
    out["energies"] = out["trajectory"].map(lambda t: np.asarray(t["energy_per_atom"], dtype=float))
    out["forces"] = out["trajectory"].map(lambda t: np.asarray(t["fmax"], dtype=float))
    out["offset"] = out["e_hull"].astype(float) - out["energies"].map(lambda e: e[-1])
    return out


def structure_at(trajectory: dict, index: int) -> Structure:
    # parquet gives nested lists back as object arrays of arrays
    return Structure(Lattice(np.stack(trajectory["cells"][index]).astype(float)), list(trajectory["symbols"]),
                     np.stack(trajectory["frac"][index]).astype(float))


def sun_flags(frame: pd.DataFrame, structures: list[Structure], e_hull: np.ndarray, train, time_limit: float,
              valid_others: list[Structure | None]) -> np.ndarray:
    """S.U.N. per crystal: stable, novel, first of its StructureMatcher class among the stable novel ones; the
    classes are formed with the other valid crystals of the file (unrelaxed ones as generated) placed by row."""
    matching = Matching(time_limit)
    judged = list(valid_others)
    for row, s in zip(frame["row"], structures, strict=True):
        judged[row] = s
    _, classes = uniqueness(judged, matching)
    novel = novelty(structures, train, matching)
    flags, seen = np.zeros(len(structures), dtype=bool), set()
    stable = e_hull <= STABLE
    for k, row in sorted(enumerate(frame["row"]), key=lambda item: item[1]):
        if stable[k] and novel[k] and classes[row] not in seen:
            seen.add(classes[row])
            flags[k] = True
    return flags


def outcomes(frame: pd.DataFrame, share: np.ndarray, polish: pd.DataFrame | None):
    """(path name, E_hull, relaxed crystal, force calls paid) per crystal, for every rule and polish variant."""
    for name, (index, shared) in rules().items():
        stops = np.array([index(e, f, o) for e, f, o in zip(frame["energies"], frame["forces"], frame["offset"],
                                                            strict=True)])
        e_hull = np.array([e[t] + o for e, o, t in zip(frame["energies"], frame["offset"], stops, strict=True)])
        structures = [structure_at(traj, t) for traj, t in zip(frame["trajectory"], stops, strict=True)]
        paid = stops + 1
        if shared:  # a duplicate takes its match's relaxation (and costs nothing)
            e_hull, structures = e_hull[share], [structures[k] for k in share]
            paid = np.where(share == np.arange(len(share)), paid, 0)
        yield name, e_hull, structures, paid
    for name, rows in ([] if polish is None else polish.groupby("variant", sort=False)):
        rows = rows.set_index("row").loc[frame["row"]]
        ok = rows["fail_reason"].isna().to_numpy()
        # a polish that failed (an exploding potential) keeps the FIRE hand-over crystal: counted, never dropped
        e_hull = np.where(ok, rows["energy_per_atom"].astype(float).to_numpy() + frame["offset"].to_numpy(),
                          [e[i] + o for e, i, o in zip(frame["energies"], rows["handover_index"], frame["offset"],
                                                       strict=True)])
        structures = [Structure.from_str(c, fmt="cif") if good else structure_at(t, i) for c, good, t, i
                      in zip(rows["cif_relaxed"], ok, frame["trajectory"], rows["handover_index"], strict=True)]
        # the polish's first call is the hand-over crystal's, which the FIRE phase already paid (the calculator
        # keeps its result: tests/test_evaluation_fast_paths.py)
        polish_calls = (rows["polish_calls"].fillna(1) - 1).clip(lower=0)
        yield name, e_hull, structures, (rows["fire_calls"] + polish_calls).to_numpy()


def judge(path: Path, cfg) -> list[dict]:
    table = pd.read_parquet(path)
    table["row"] = np.arange(len(table))
    polish_file = path.with_suffix(".polish.parquet")  # polish_paths.py's relaxations of the same crystals
    polish = pd.read_parquet(polish_file) if polish_file.exists() else None
    frame = crystals(table)
    train = get_training_set(cfg)
    # the other valid crystals (not relaxed: as generated) take part in the uniqueness classes, as in scoring
    valid = table["parse_ok"] & table["valid_structure"] & ~table["noble_gas_only"]
    others: list[Structure | None] = [None] * len(table)
    for row in np.flatnonzero(valid.to_numpy()):
        relaxed = table.at[row, "cif_relaxed"]
        others[row] = Structure.from_str(relaxed, fmt="cif") if isinstance(relaxed, str) else decode(table, row)
    generated = [decode(table, row) for row in frame["row"]]
    _, classes = uniqueness(generated, Matching(cfg.novelty.matcher_time_limit_s))
    first_of: dict[int, int] = {}
    share = np.array([first_of.setdefault(cid, k) for k, cid in enumerate(classes)])  # frame index of its match
    results, reference = [], None
    default_calls = None
    for name, e_hull, structures, paid in outcomes(frame, share, polish):
        tiers = np.array([tier(x, STABLE, METASTABLE) for x in e_hull])
        sun = sun_flags(frame, structures, e_hull, train, cfg.novelty.matcher_time_limit_s, others)
        calls = int(paid.sum())
        if reference is None:
            reference = {"tiers": tiers, "sun": sun, "e_hull": e_hull, "calls": calls}
        if name.startswith("default 150"):
            default_calls = calls
        (tier_agree, n, tier_ci), (sun_agree, _, sun_ci) = agreement(tiers, reference["tiers"]), agreement(
            sun, reference["sun"])
        flips = pd.crosstab(pd.Series(reference["tiers"], name="reference"), pd.Series(tiers, name="path"))
        results.append({
            "file": path.name, "rule": name, "n": n,
            "tier_agreement": tier_agree / n, "tier_agreement_ci95": tier_ci,
            "sun_agreement": sun_agree / n, "sun_agreement_ci95": sun_ci,
            "n_sun": int(sun.sum()), "n_sun_reference": int(reference["sun"].sum()),
            "tier_counts": {TIER_NAMES[k]: int((tiers == k).sum()) for k in range(3)},
            "flips": {f"{TIER_NAMES[a]}->{TIER_NAMES[b]}": int(flips.at[a, b]) for a in flips.index
                      for b in flips.columns if a != b and flips.at[a, b]},
            "e_hull_mae": float(np.mean(np.abs(e_hull - reference["e_hull"]))),
            "force_calls": calls, "calls_vs_reference": calls / reference["calls"],
            "calls_vs_default": calls / default_calls if default_calls else None,
            "eligible": tier_agree / n >= RULE and sun_agree / n >= RULE,
        })
    return results


def decode(table: pd.DataFrame, row: int) -> Structure:
    text, rep = table.at[row, "text"], table.at[row, "repr"]
    return parse_cif(text) if rep == "cif" else get(rep).decode(text)


def bound_report(paths: list[Path]) -> dict:
    """How the two ends of the tier exit's bound hold over every step of every trajectory."""
    frames = [crystals(pd.read_parquet(p)) for p in paths]
    frame = pd.concat(frames)
    above = [float(e[-1] - e.min()) for e in frame["energies"]]
    steps = [(e - e[-1], f) for e, f in zip(frame["energies"], frame["forces"], strict=True)]
    drop = np.concatenate([d for d, _ in steps])
    force = np.concatenate([f for _, f in steps])
    out = {"n_crystals": len(frame), "n_steps": int(drop.size),
           "end_above_lowest_passed_by_1meV": int(sum(a > 1e-3 for a in above)),
           "end_above_lowest_passed_max_meV": round(1000 * max(above), 2),
           "drop_over_fmax_quantiles": {q: round(float(np.quantile(drop / np.maximum(force, 1e-6), q)), 3)
                                        for q in (0.5, 0.9, 0.99, 0.999, 1.0)}}
    for name, rule in TierExitRule.candidates((STABLE, METASTABLE)).items():
        out[f"violations {name}"] = int((drop > rule.slope * force + rule.floor + 1e-9).sum())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tables", nargs="+", type=Path, help="scoring_profile.py parquet files")
    parser.add_argument("--out", type=Path, default=None, help="write the rows as JSON here (replacing only the "
                        "rows of the files judged now)")
    parser.add_argument("overrides", nargs="*", default=[], help="evaluate overrides (the novelty reference)")
    args = parser.parse_args()
    cfg = compose("evaluate", ["samples=-", "out=-", "tracking.uri=null", *args.overrides])
    print(json.dumps(bound_report(args.tables), indent=1))
    rows = [row for path in args.tables for row in judge(path, cfg)]
    for row in rows:
        lo, hi = row["tier_agreement_ci95"]
        slo, shi = row["sun_agreement_ci95"]
        print(f"{row['file']:>16} {row['rule']:<48} n={row['n']:>3}  tier {row['tier_agreement']:6.1%} "
              f"[{lo:.1%}, {hi:.1%}]  S.U.N. {row['sun_agreement']:6.1%} [{slo:.1%}, {shi:.1%}] "
              f"({row['n_sun']}/{row['n_sun_reference']})  MAE {row['e_hull_mae']*1000:5.1f} meV  calls "
              f"{row['calls_vs_reference']:.2f}x ref, {row['calls_vs_default'] or float('nan'):.2f}x default"
              f"{'  ELIGIBLE' if row['eligible'] else ''}  {row['flips'] or ''}")
    if args.out:  # rows of files judged before and not now are kept: one table grows file by file
        judged = {row["file"] for row in rows}
        kept = [row for row in json.loads(args.out.read_text()) if row["file"] not in judged] if args.out.is_file() \
            else []
        args.out.write_text(json.dumps(kept + rows, indent=1))


if __name__ == "__main__":
    main()
