"""Evaluation throughput (a benchmark, not a test): relaxations per minute per MLIP backend, and the time to
compute uniqueness + novelty for 10,000 structures.

Relaxations: N vendored MP-20 test crystals go through the evaluation's own path (Wyckoff text -> decode ->
primitive cell -> FIRE + FrechetCellFilter) in one process with one torch thread, no cache. MP-20 crystals
are DFT-relaxed, so they need few FIRE steps; generated crystals need more - the mean step count is printed
so the figure can be scaled.

Uniqueness + novelty: 10,000 "generated" structures = 8,000 real MP-20 val/test crystals + 2,000 copies of
some of them under 1 % random strain (duplicates that uniqueness must catch), against the 3,420 vendored
train crystals (or data/processed/wyckoff/train.jsonl when it exists).

    python benchmarks/bench_evaluation.py --relax-n 10 --backends chgnet sevennet --n-structures 10000
    python benchmarks/bench_evaluation.py --relax-n 10 relax.steps=500 relax.fmax=0.02     # other settings
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pandas as pd
from pymatgen.core import Structure

from plaidpp.config import PROJECT_ROOT, compose
from plaidpp.evaluation.mlip import load_calculator
from plaidpp.evaluation.novelty import Matching, TrainingSet, novelty, uniqueness
from plaidpp.evaluation.relax import relax_structure
from plaidpp.representation import get
from plaidpp.settings.evaluation import PAPER_RELAX, RelaxSettings

CSV = PROJECT_ROOT / "data/raw/mp20/mp20_partial_merged.csv.gz"


def evaluate_config(*overrides: str):
    """The evaluate stage's real settings (conf/ + params.yaml) with a benchmark's overrides."""
    return compose("evaluate", ["samples=-", "out=-", "tracking.uri=null", *overrides])


def bench_relax(rows: pd.DataFrame, backend: str, settings: RelaxSettings) -> None:
    enc = get("wyckoff")
    structures = [enc.decode(enc.encode(Structure.from_str(c, fmt="cif"))) for c in rows["cif"]]
    t0 = time.monotonic()
    calc = load_calculator(evaluate_config(f"mlip={backend}").mlip)
    load_s = time.monotonic() - t0
    steps, atoms, failed = [], [], 0
    t0 = time.monotonic()
    for s in structures:
        r = relax_structure(s, calc, settings)
        steps.append(r.n_steps)
        atoms.append(len(s))
        failed += r.fail_reason is not None
    elapsed = time.monotonic() - t0
    print(f"relax {backend:9s} {settings.cache_tag()}: {len(structures)} crystals in {elapsed:.1f} s -> "
          f"{60 * len(structures) / elapsed:.1f} relaxations/min/process ({elapsed / max(1, sum(steps)):.3f} s/step, "
          f"mean {np.mean(steps):.1f} steps, mean {np.mean(atoms):.1f} atoms/conventional cell, "
          f"{failed} failed; model load {load_s:.1f} s)")


def compare_settings(rows: pd.DataFrame, backend: str, seed: int, default: RelaxSettings) -> None:
    """The configured relaxation vs the paper's (500 steps, fmax 0.02) on MP-20 crystals *rattled* like a
    generated crystal (0.1 Å Gaussian displacements, up to 3 % strain): energy difference and cost."""
    import dataclasses

    rng = np.random.default_rng(seed)
    cfg = evaluate_config(f"mlip={backend}")
    calc = load_calculator(cfg.mlip)
    paper = dataclasses.replace(default, **PAPER_RELAX)
    d_e, steps_d, steps_p, t_d, t_p, unconv = [], [], [], 0.0, 0.0, 0
    for cif in rows["cif"]:
        s = Structure.from_str(cif, fmt="cif")
        s.apply_strain(rng.uniform(-0.03, 0.03, 3))
        s.perturb(0.1)
        a, b = relax_structure(s, calc, default), relax_structure(s, calc, paper)
        if a.fail_reason or b.fail_reason:
            continue
        d_e.append(a.energy_per_atom - b.energy_per_atom)
        steps_d.append(a.n_steps)
        steps_p.append(b.n_steps)
        unconv += not a.converged
        t_d += a.seconds
        t_p += b.seconds
    d_e = np.asarray(d_e)
    print(f"settings on {len(d_e)} rattled crystals ({backend}): configured {default.cache_tag()} mean "
          f"{np.mean(steps_d):.0f} steps, {t_d:.0f} s ({unconv} hit the cap); paper {paper.cache_tag()} mean "
          f"{np.mean(steps_p):.0f} steps, {t_p:.0f} s; "
          f"E(default) - E(paper): mean {d_e.mean() * 1000:+.1f}, max {d_e.max() * 1000:.1f} meV/atom")


def bench_uniqueness_novelty(rows: pd.DataFrame, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    pool = rows[rows["split"].isin(["val", "test"])].sample(frac=1.0, random_state=seed)
    n_real = int(n * 0.8)
    t0 = time.monotonic()
    real = [Structure.from_str(c, fmt="cif") for c in pool["cif"].iloc[:n_real]]
    copies = []
    for idx in rng.integers(0, n_real, n - n_real):
        s = real[idx].copy()
        s.apply_strain(rng.uniform(-0.01, 0.01, 3))
        copies.append(s)
    structures = real + copies
    rng.shuffle(structures)
    parse_s = time.monotonic() - t0
    train = TrainingSet.load(CSV, ["train"])
    limit = Matching(evaluate_config().novelty.matcher_time_limit_s)
    t0 = time.monotonic()
    flags, _ = uniqueness(structures, limit)
    uniq_s = time.monotonic() - t0
    t0 = time.monotonic()
    novel = novelty(structures, train, limit)
    nov_s = time.monotonic() - t0
    print(f"uniqueness+novelty on {len(structures)} structures: uniqueness {uniq_s:.1f} s "
          f"({np.mean(flags):.3f} unique), novelty vs {train.size} train crystals {nov_s:.1f} s "
          f"({np.mean(novel):.3f} novel); total {uniq_s + nov_s:.1f} s (+{parse_s:.1f} s building the structures)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--relax-n", type=int, default=10)
    parser.add_argument("--backends", nargs="*", default=["chgnet", "sevennet"])
    parser.add_argument("--n-structures", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compare-settings", type=int, default=0, metavar="N",
                        help="also relax N rattled crystals with the configured and the paper's settings (chgnet)")
    parser.add_argument("overrides", nargs="*", help="evaluate-config overrides, e.g. relax.steps=500 relax.fmax=0.02")
    args = parser.parse_args()
    relax = evaluate_config(*args.overrides).relax
    rows = pd.read_csv(CSV, keep_default_na=False)
    print(f"machine: {os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f} at start")
    test = rows[rows["split"] == "test"].sample(args.relax_n, random_state=args.seed)
    for backend in args.backends:
        bench_relax(test, backend, relax)
    if args.compare_settings:
        compare_settings(test.head(args.compare_settings) if args.compare_settings <= len(test) else
                         rows[rows["split"] == "test"].sample(args.compare_settings, random_state=args.seed),
                         "chgnet", args.seed, relax)
    if args.n_structures:
        bench_uniqueness_novelty(rows, args.n_structures, args.seed)
    print(f"load average {os.getloadavg()[0]:.1f} at end")


if __name__ == "__main__":
    main()
