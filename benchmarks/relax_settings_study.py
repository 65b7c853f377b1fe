"""How much do the relaxation settings change the evaluation's calls? A benchmark, not a test (issue 11).

On the first N generated crystals that can be relaxed (decoded, valid, elements the potential and hull know), it
first screens ASE optimisers on a subset at the paper's settings (500 iterations, fmax 0.02 eV/Å) by the force
calls they need, then scores all N crystals, through the evaluate stage's own ``score_samples``, with:

- ``cheap``  150 FIRE steps to 0.05 eV/Å (plaidpp's setting before this study);
- ``paper``  500 FIRE steps to 0.02 eV/Å (the paper's);
- ``best``   500 iterations to 0.02 eV/Å with the optimiser that needed the fewest force calls in the screen.

Against ``paper`` it prints how many stable (E_hull <= 0) and metastable (<= 0.1 eV/atom) calls each other setting
flips, with the denominator, the E_hull differences, the force calls, the time, and the relaxations that hit their
step cap. Relaxations are cached in ``.cache/benchmarks/relax-study.sqlite`` (keyed by every setting), so a killed
run resumes where it stopped.

``--setting NAME=OVERRIDE,...`` replaces the three settings by your own (any evaluate overrides, the potential
too), compared against ``--reference`` (default: the first). Issue 13 sized the RLIP reward's relaxation this way
(CHGNet, cheaper settings against the reward's default) and compared two judges (``mlip=`` in the setting);
``--cache`` points at an existing relaxation cache (the evaluate stage's) so relaxations already done are reused.

    python benchmarks/relax_settings_study.py --samples data/samples/big.jsonl --n 300 --screen 40
    python benchmarks/relax_settings_study.py --samples data/samples/sft.jsonl --n 200 --screen 0 \
        --setting default=relax.steps=150,relax.fmax=0.05 --setting s60=relax.steps=60,relax.fmax=0.1 mlip=chgnet
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from plaidpp.config import PROJECT_ROOT, compose
from plaidpp.evaluation.inputs import read_samples
from plaidpp.evaluation.score import score_samples, select_rows
from plaidpp.settings.evaluation import RELAX_OPTIMIZERS
from plaidpp.stats import wilson

CACHE = PROJECT_ROOT / ".cache/benchmarks/relax-study.sqlite"


def config(*overrides: str):
    return compose("evaluate", ["samples=-", "out=-", "tracking.uri=null", f"cache.file={CACHE}", "progress=true",
                                *overrides])


def relaxable(rows: list[dict], n: int, overrides: list[str]) -> pd.DataFrame:
    """The first ``n`` final samples that reach the relaxation (scored once with relaxation off)."""
    frame, _ = select_rows(rows)
    table, _ = score_samples(frame, config("relax.enabled=false", "novelty.enabled=false", *overrides))
    reaches = table["fail_reason"] == "relax_disabled"
    picked = frame[reaches.to_numpy()].head(n)
    if len(picked) < n:
        print(f"note: only {len(picked)} of the {len(frame)} samples can be relaxed (asked for {n})")
    return picked.reset_index(drop=True)


def screen(frame: pd.DataFrame, optimizers: list[str], overrides: list[str]) -> dict[str, dict[str, float]]:
    out = {}
    for name in optimizers:
        table, summary = score_samples(frame, config("relax.steps=500", "relax.fmax=0.02", f"relax.optimizer={name}",
                                                     "novelty.enabled=false", *overrides))
        ok = table["relax_ok"].to_numpy(bool)
        out[name] = {"force_calls_mean": float(pd.to_numeric(table["relax_force_calls"]).mean()),
                     "converged": float(table["relax_converged"].fillna(False).astype(bool).mean()),
                     "relaxed": int(ok.sum()), "potential_s": summary["timings"]["potential_compute_s"]}
        print(f"screen {name:18s} mean {out[name]['force_calls_mean']:6.1f} force calls, converged "
              f"{out[name]['converged']:.0%}, relaxed {out[name]['relaxed']}/{len(frame)}", flush=True)
    return out


def compare(a: pd.DataFrame, paper: pd.DataFrame, threshold: float, column: str) -> str:
    """How many of the crystals both settings relaxed change their ``column`` call, with its Wilson interval, and
    which ones (id, E_hull under each setting in eV/atom)."""
    both = a["relax_ok"].to_numpy(bool) & paper["relax_ok"].to_numpy(bool)
    flipped = both & (a[column].to_numpy(bool) != paper[column].to_numpy(bool))
    k, n = int(flipped.sum()), int(both.sum())
    low, high = wilson(k, n)
    which = ", ".join(f"#{a.at[i, 'index']} {a.at[i, 'formula']} ({a.at[i, 'e_hull']:+.3f} vs "
                      f"{paper.at[i, 'e_hull']:+.3f})" for i in np.flatnonzero(flipped))
    return (f"{column} (E_hull <= {threshold}) flips {k}/{n} ({k / max(1, n):.1%}, 95 % [{low:.1%}, {high:.1%}])"
            + (f": {which}" if which else ""))


def main() -> None:
    global CACHE
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=Path, required=True)
    parser.add_argument("--n", type=int, default=300, help="relaxable generated crystals")
    parser.add_argument("--screen", type=int, default=40, help="crystals in the optimiser screen (0: FIRE only)")
    parser.add_argument("--optimizers", nargs="*", default=[o for o in RELAX_OPTIMIZERS if o != "mdmin"])
    parser.add_argument("--setting", action="append", default=[], metavar="NAME=OVERRIDE,...",
                        help="a setting to compare (repeatable); replaces cheap / paper / best")
    parser.add_argument("--reference", default=None, help="the setting the others are compared with (default: "
                        "paper, or the first --setting)")
    parser.add_argument("--cache", type=Path, default=CACHE, help="relaxation cache (sqlite) to read and fill")
    parser.add_argument("overrides", nargs="*", help="evaluate overrides (mlip=..., workers=...)")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f} at start", flush=True)
    CACHE = args.cache  # every score below reads and fills this cache
    frame = relaxable(read_samples(args.samples, "jsonl"), args.n, args.overrides)
    if args.setting:
        settings = {name: knobs.split(",") for name, knobs in (s.split("=", 1) for s in args.setting)}
        run(frame, settings, args.reference or next(iter(settings)), args.overrides)
        return
    best = "fire"
    if args.screen:
        screened = screen(frame.head(args.screen), args.optimizers, args.overrides)
        # fewest force calls among the optimisers that converge at least as often as FIRE
        floor = screened["fire"]["converged"] if "fire" in screened else 0.0
        best = min((o for o in screened if screened[o]["converged"] >= floor),
                   key=lambda o: screened[o]["force_calls_mean"])
        print(f"fewest force calls (converging at least as often as FIRE): {best}", flush=True)
    settings = {"cheap": ["relax.steps=150", "relax.fmax=0.05", "relax.optimizer=fire"],
                "paper": ["relax.steps=500", "relax.fmax=0.02", "relax.optimizer=fire"],
                "best": ["relax.steps=500", "relax.fmax=0.02", f"relax.optimizer={best}"]}
    if best == "fire":
        settings.pop("best")
    run(frame, settings, args.reference or "paper", args.overrides)


def run(frame: pd.DataFrame, settings: dict[str, list[str]], reference: str, overrides: list[str]) -> None:
    """Scores ``frame`` under each setting and compares every other setting's calls with ``reference``'s."""
    tables, stats = {}, {}
    for name, knobs in settings.items():
        start = time.perf_counter()
        table, summary = score_samples(frame, config(*overrides, *knobs, "novelty.enabled=false"))
        tables[name] = table
        stats[name] = (time.perf_counter() - start, summary)
    paper = tables[reference]
    cfg = config(*overrides)
    print(f"\n{len(frame)} generated crystals, {cfg.mlip.cache_tag()}; load average {os.getloadavg()[0]:.1f} at end")
    for name, table in tables.items():
        seconds, summary = stats[name]
        capped = summary["n_relax_unconverged"]  # relaxed but stopped by the step cap (failures are not counted)
        calls = pd.to_numeric(table["relax_force_calls"])
        print(f"{name:6s} {summary['relax_settings']}: relaxed {int(table['relax_ok'].sum())}/{len(table)}, "
              f"{capped} hit the step cap, force calls mean {calls.mean():.0f} / total {int(calls.sum())}, "
              f"potential {summary['timings']['potential_compute_s']:.0f} s "
              f"({'cached' if summary['timings']['n_relaxed_now'] == 0 else f'{seconds:.0f} s wall'}), "
              f"stable {int(table['is_stable'].sum())}, metastable {int(table['is_metastable'].sum())}; not relaxed: "
              f"{dict(table.loc[~table['relax_ok'].astype(bool), 'fail_reason'].value_counts())}")
        if name == reference:
            continue
        both = table["relax_ok"].to_numpy(bool) & paper["relax_ok"].to_numpy(bool)
        d = table.loc[both, "e_hull"].to_numpy(float) - paper.loc[both, "e_hull"].to_numpy(float)
        print(f"    vs {reference}: {compare(table, paper, cfg.thresholds.stable, 'is_stable')}\n"
              f"    vs {reference}: {compare(table, paper, cfg.thresholds.metastable, 'is_metastable')}")
        print(f"    E_hull({name}) - E_hull({reference}) over {int(both.sum())}: mean {1000 * d.mean():+.1f}, median "
              f"{1000 * np.median(d):+.1f}, |d| p90 {1000 * np.quantile(np.abs(d), 0.9):.1f}, max |d| "
              f"{1000 * np.abs(d).max():.0f} meV/atom; |d| > 0.05 eV/atom for {int((np.abs(d) > 0.05).sum())}")


if __name__ == "__main__":
    main()
