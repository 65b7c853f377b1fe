"""Where does scoring's time go? A benchmark, not a test (issue 30, target 1).

Scores a samples file through the evaluate stage's own ``score_samples`` at the reference relaxation (the paper's
500 FIRE steps to 0.02 eV/Å unless overridden), with the relaxation cache off, and records every relaxation's
trajectory (``watchers.TrajectoryRecorder``: energy, fmax, cell and coordinates per step). It writes

- ``<out>/<label>.parquet``  the scored table, one row per sample, with the trajectories (what
  ``benchmarks/fast_paths.py`` replays to judge a cheaper relaxation without running it);
- ``<out>/<label>.json``     the profile it prints: force calls per relaxation (distribution), milliseconds per
  force call by cell size, the share of relaxations that hit the step cap, wall time per scoring step beside the
  potential's compute, and the cost of starting the workers and loading the potential.

Run it alone: two cores are all there is, and a second job changes every figure.

    python benchmarks/scoring_profile.py --samples data/samples/sft.jsonl --label sft mlip=sevennet
    python benchmarks/scoring_profile.py --samples ../shared/data/plaid_authors_outputs/{1,38,119,143}_esen_*.csv.gz \
        --per-file 80 --label authors_mix mlip=sevennet relax.share_duplicates=false
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
from plaidpp.evaluation import workers
from plaidpp.evaluation.inputs import read_samples
from plaidpp.evaluation.score import score_samples
from plaidpp.evaluation.watchers import TrajectoryRecorder
from plaidpp.runtime import n_workers

OUT = PROJECT_ROOT / "benchmarks/results/scoring"
REFERENCE = ("relax.steps=500", "relax.fmax=0.02")  # the paper's relaxation: every fast path is judged against it
CELL_BINS = (0, 4, 8, 12, 16, 24, 1000)  # atoms in the relaxed (primitive) cell


def config(overrides: list[str]):
    return compose("evaluate", ["samples=-", "out=-", "tracking.uri=null", "cache.enabled=false", "progress=true",
                                *REFERENCE, *overrides])


def startup_cost(cfg) -> dict[str, float]:
    """Seconds to start the worker pool and load the potential in every worker (the pool's first call)."""
    workers._close_pools()
    start = time.perf_counter()
    pool = workers.pool_for(cfg.mlip, n_workers(cfg.workers), cfg.relax.engine)
    list(pool.run(_noop, {k: () for k in range(n_workers(cfg.workers))}))  # returns once every worker is up
    return {"pool_start_and_model_load_s": round(time.perf_counter() - start, 2)}


def _noop() -> int:
    return os.getpid()


def profile(table: pd.DataFrame, summary: dict) -> dict:
    relaxed = table[table["relax_force_calls"].notna() & (table["relax_cached"] == False)]  # noqa: E712
    calls = relaxed["relax_force_calls"].astype(int)
    finished = relaxed["relax_ok"].astype(bool)
    capped = finished & (relaxed["relax_converged"] == False)  # noqa: E712
    per_call_ms = 1000 * relaxed["relax_potential_seconds"] / calls.clip(lower=1)
    atoms = relaxed["trajectory"].map(lambda t: len(t["symbols"]) if t and len(t["symbols"]) else np.nan)
    bins = pd.cut(atoms, CELL_BINS)
    by_size = {str(interval): {"n": int(len(group)), "median_ms_per_call": round(float(group.median()), 1),
                               "mean_force_calls": round(float(calls[group.index].mean()), 1)}
               for interval, group in per_call_ms.groupby(bins, observed=True)}
    timings = summary["timings"]
    potential = timings["potential_compute_s"]
    relax_overhead = float((relaxed["relax_seconds"] - relaxed["relax_potential_seconds"]).sum())
    outside = {step: s for step, s in timings["steps_s"].items() if step != "relaxation"}
    return {
        "n_samples": len(table), "n_relaxed": len(relaxed),
        "force_calls": {"total": int(calls.sum()), "mean": round(float(calls.mean()), 1),
                        "quantiles": {q: int(calls.quantile(q)) for q in (0.1, 0.25, 0.5, 0.75, 0.9, 0.99)},
                        "max": int(calls.max())},
        # a failed relaxation (an energy outside the window, mostly at the first step) is not "converged" either:
        # the cap is counted over the relaxations that finished
        "hit_step_cap": {"n": int(capped.sum()), "of": int(finished.sum()),
                         "share_of_force_calls": round(float(calls[capped].sum() / calls.sum()), 3)},
        "failed": {reason: {"n": int(len(group)), "force_calls": int(calls[group.index].sum())}
                   for reason, group in relaxed[~finished].groupby("fail_reason")},
        "ms_per_force_call_by_atoms": by_size,
        "seconds": {"scoring_wall": round(sum(timings["steps_s"].values()), 1), "steps": timings["steps_s"],
                    "potential_compute": potential,
                    "inside_relaxation_outside_potential": round(relax_overhead, 1),
                    "outside_relaxation": round(sum(outside.values()), 1),
                    "relaxation_wall_over_compute": timings["relaxation_wall_over_compute"]},
        "workers": timings["workers"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=Path, nargs="+", help="one file, or several with --per-file (required "
                        "unless --report-only)")
    parser.add_argument("--per-file", type=int, default=None, help="a random N rows of each file (pandas' sample, "
                        "random_state --seed), concatenated in the order given")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--label", required=True, help="names the output files")
    parser.add_argument("--limit", type=int, default=None, help="only the first N samples")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--report-only", action="store_true", help="rewrite <label>.json from the saved table and "
                        "summary (no relaxation; the start-up figure is kept from the previous report)")
    parser.add_argument("overrides", nargs="*", help="evaluate overrides (mlip=sevennet, relax.steps=...)")
    args = parser.parse_args()
    if args.report_only:
        old = json.loads((args.out / f"{args.label}.json").read_text())
        table = pd.read_parquet(args.out / f"{args.label}.parquet")
        summary = json.loads((args.out / f"{args.label}.summary.json").read_text())
        keep = ("pool_start_and_model_load_s", "judge", "relax", "samples", "per_file", "load_after")
        (args.out / f"{args.label}.json").write_text(json.dumps({**profile(table, summary),
                                                                 **{k: old.get(k) for k in keep}}, indent=1))
        return
    if not args.samples:
        parser.error("--samples is required unless --report-only")
    cfg = config(args.overrides)
    if args.per_file:
        rows = pd.concat([pd.DataFrame(read_samples(path)).sample(n=args.per_file, random_state=args.seed)
                          for path in args.samples]).to_dict("records")
    else:
        rows = read_samples(args.samples[0])
    rows = rows[: args.limit]
    print(f"{len(rows)} samples from {[str(p) for p in args.samples]}; judge {cfg.mlip.cache_tag()}, {cfg.relax.cache_tag()}, "
          f"{n_workers(cfg.workers)} workers, load {os.getloadavg()[0]:.2f}")
    startup = startup_cost(cfg)
    table, summary = score_samples(rows, cfg, watcher_for=lambda i, s: TrajectoryRecorder())
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_parquet(args.out / f"{args.label}.parquet")  # first: the hour of relaxations is never lost
    (args.out / f"{args.label}.summary.json").write_text(json.dumps(summary, indent=1, default=str))
    report = {**profile(table, summary), **startup, "judge": cfg.mlip.cache_tag(),
              "relax": cfg.relax.cache_tag(), "samples": [str(p) for p in args.samples], "per_file": args.per_file,
              "load_after": os.getloadavg()[0]}
    (args.out / f"{args.label}.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
