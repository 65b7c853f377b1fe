"""Judged crystals per core-minute: the former scoring path against the default, same crystals, same run (issue 30).

Scores one samples file twice through ``score_samples`` with the cache off and the same judge: first as scoring ran
before issue 30 (150 FIRE steps to 0.05 eV/Å, every crystal relaxed on its own, to convergence or the cap), then
with the current defaults (since 2026-12-07 the paper's 500 / 0.02, because the former path keeps only 92-95 % of
tiers: docs/evaluation.md; matched duplicates relaxed once). It prints both rates per core-minute (wall time x
workers), their ratio (below 1 now: trust costs force calls), and how often the two agree on the tier and the
S.U.N. flag (the agreement rule itself is ``benchmarks/fast_paths.py``'s). With a SevenNet judge it also runs the
default relaxation through the batched engine (``relax.engine=torchsim``) and judges it against the ASE engine's.

    python benchmarks/bench_scoring.py                                  # data/samples/sft.jsonl (after make run)
    python benchmarks/bench_scoring.py --samples FILE --limit 200 mlip=sevennet
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from plaidpp.config import PROJECT_ROOT, compose
from plaidpp.evaluation.inputs import read_samples
from plaidpp.evaluation.score import get_hull, get_training_set, score_samples
from plaidpp.evaluation.tiers import tier
from plaidpp.evaluation.workers import pool_for
from plaidpp.runtime import n_workers
from plaidpp.settings.evaluation import TORCHSIM_BACKENDS
from plaidpp.stats import agreement

TODAY = ("relax.steps=150", "relax.fmax=0.05", "relax.share_duplicates=false", "relax.tier_exit=false")
SAMPLES = PROJECT_ROOT / "data/samples/sft.jsonl"


def run(rows: list[dict], overrides: list[str]) -> tuple[dict, object, float]:
    cfg = compose("evaluate", ["samples=-", "out=-", "tracking.uri=null", "cache.enabled=false", "progress=false",
                               *overrides])
    get_hull(cfg), get_training_set(cfg)  # loaded before the clock: both paths share them
    pool_for(cfg.mlip, n_workers(cfg.workers), cfg.relax.engine)  # potential loaded off the clock, as in RLIP
    start = time.perf_counter()
    table, summary = score_samples(rows, cfg)
    wall = time.perf_counter() - start
    core_min = wall * n_workers(cfg.workers) / 60
    return {"wall_s": round(wall, 1), "core_minutes": round(core_min, 2), "n_requested": len(table),
            "n_relaxed": int(table["relax_ok"].sum()),
            "judged_per_core_minute": round(len(table) / core_min, 2),
            "relaxed_per_core_minute": round(int(table["relax_ok"].sum()) / core_min, 2),
            "force_calls": summary["timings"]["force_calls"], "relax": cfg.relax.cache_tag(),
            "tier_exit": cfg.relax.tier_exit, "share_duplicates": cfg.relax.share_duplicates,
            "n_tier_exits": int((table["relax_exit_reason"] == "tier_decided").sum()),
            "n_shared": int(table["relax_shared_with"].notna().sum())}, table, cfg


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=Path, default=SAMPLES)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    parser.add_argument("overrides", nargs="*", help="evaluate overrides for both paths (the judge: mlip=...)")
    args = parser.parse_args()
    if not args.samples.exists():
        raise SystemExit(f"bench_scoring: no samples at {args.samples} (run `make run` first, or pass --samples)")
    rows = read_samples(args.samples)[: args.limit]
    print(f"{len(rows)} samples from {args.samples}, load {os.getloadavg()[0]:.2f}")
    # warm-up off the clock: the novelty reference parses a formula's training crystals on first use, which would
    # otherwise be charged to whichever path runs first
    score_samples(rows, compose("evaluate", ["samples=-", "out=-", "tracking.uri=null", "progress=false",
                                             "relax.enabled=false", *args.overrides]))
    # and a few relaxations, so each worker's first force calls (torch's lazy set-up) are not charged either
    run(rows[:4], [*args.overrides, *TODAY])
    today, t_table, cfg = run(rows, [*args.overrides, *TODAY])
    new, n_table, _ = run(rows, list(args.overrides))
    cuts = (cfg.thresholds.stable, cfg.thresholds.metastable)
    report = {"judge": cfg.mlip.cache_tag(), "samples": str(args.samples), "today": today, "new_default": new,
              "ratio": round(new["judged_per_core_minute"] / today["judged_per_core_minute"], 2),
              **agreement(t_table, n_table, cuts)}
    if cfg.mlip.name in TORCHSIM_BACKENDS:  # the batched engine on the default relaxation, judged against it
        batched, b_table, _ = run(rows, [*args.overrides, "relax.engine=torchsim"])
        report["torchsim"] = {**batched, "ratio_to_today": round(
            batched["judged_per_core_minute"] / today["judged_per_core_minute"], 2), "ratio_to_new_default": round(
            batched["judged_per_core_minute"] / new["judged_per_core_minute"], 2), **agreement(b_table, n_table, cuts)}
    report["load_after"] = os.getloadavg()[0]
    print(json.dumps(report, indent=1))
    print(f"judged crystals per core-minute: today {today['judged_per_core_minute']}, new default "
          f"{new['judged_per_core_minute']} -> {report['ratio']}x ({cfg.mlip.cache_tag()}, {len(rows)} samples)")
    if "torchsim" in report:
        print(f"relax.engine=torchsim on the new default: {report['torchsim']['judged_per_core_minute']} per "
              f"core-minute ({report['torchsim']['ratio_to_new_default']}x the ASE engine), tiers agree on "
              f"{report['torchsim']['tier_agreement'][0]} of {report['torchsim']['tier_agreement'][1]}")
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))


def agreement(path: pd.DataFrame, reference: pd.DataFrame, cuts: tuple[float, float]) -> dict:
    """How often ``path`` gives the reference relaxation's tier (crystals both relaxed) and S.U.N. flag (every
    sample), with Wilson intervals, and the E_hull MAE."""
    both = path["relax_ok"] & reference["relax_ok"]
    tiers = agreement([tier(x, *cuts) for x in path.loc[both, "e_hull"]],
                      [tier(x, *cuts) for x in reference.loc[both, "e_hull"]])
    return {"tier_agreement": list(tiers), "sun_agreement": list(agreement(path["is_sun"], reference["is_sun"])),
            "e_hull_mae": float(np.nanmean(np.abs(path.loc[both, "e_hull"] - reference.loc[both, "e_hull"])))}

if __name__ == "__main__":
    main()
