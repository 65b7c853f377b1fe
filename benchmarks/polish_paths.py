"""FIRE first, a quasi-Newton optimiser to finish: does the hand-over keep the verdict for fewer force calls?

Issue 30, target 3. ``fast_paths.py`` replays stopping rules of FIRE on recorded trajectories; a path that
changes optimiser part-way cannot be replayed, so this benchmark runs the part that differs. FIRE's path up to
the hand-over is the reference trajectory's own (``scoring_profile.py`` recorded it: the crystal at the first
step with fmax below ``from_fmax``, or at the FIRE cap), so only the polish is relaxed here, from that crystal,
exactly as ``relax.polish`` runs it (a new cell filter at the cell as it stands, down to the reference's
0.02 eV/Å). It writes one row per crystal and variant beside the table (``<label>.polish.parquet``); ``fast_paths.py``
judges them (it reads that file beside its table) with the same table as every other path (tier and S.U.N.
agreement, MAE, force calls).

    python benchmarks/polish_paths.py --variants 0 -- benchmarks/results/scoring/authors_mix.parquet mlip=sevennet
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from fast_paths import crystals, stop_at, structure_at
from plaidpp.config import compose
from plaidpp.evaluation import workers
from plaidpp.runtime import n_workers

# (FIRE cap, hand-over fmax eV/Å, polishing optimiser, its cap). Measured 2026-12-07 on the authors' 313 crystals
# (docs/evaluation.md): the first keeps 96.2 % of tiers for 0.85x the reference's calls, so the second was not run.
VARIANTS = [(150, 0.1, "bfgs", 150), (150, 0.05, "bfgs", 150)]
POLISH_FMAX = 0.02  # the reference's


def variant_name(fire_steps: int, from_fmax: float, optimizer: str, steps: int) -> str:
    return f"fire {fire_steps}/{from_fmax} + {optimizer} {steps}/{POLISH_FMAX}"


def run(path: Path, cfg, variants: list[tuple]) -> pd.DataFrame:
    frame = crystals(pd.read_parquet(path).assign(row=lambda t: np.arange(len(t))))
    pool = workers.pool_for(cfg.mlip, n_workers(cfg.workers), cfg.relax.engine)
    out = []
    for fire_steps, from_fmax, optimizer, steps in variants:
        settings = dataclasses.replace(cfg.relax, optimizer=optimizer, fmax=POLISH_FMAX, steps=steps,
                                       primitive=False, polish="none")
        handover = {k: stop_at(fire_steps, from_fmax)(e, f, o) for k, (e, f, o)
                    in enumerate(zip(frame["energies"], frame["forces"], frame["offset"], strict=True))}
        jobs = {k: (structure_at(frame["trajectory"].iloc[k], i), settings, cfg.symmetry) for k, i in handover.items()}
        name = variant_name(fire_steps, from_fmax, optimizer, steps)
        start = time.perf_counter()
        for k, status, value in tqdm(pool.run(workers._job, jobs), total=len(jobs), desc=name):
            result = value if status == "ok" else {"fail_reason": f"{status}:{value}"}
            out.append({"variant": name, "row": int(frame["row"].iloc[k]), "handover_index": handover[k],
                        "fire_calls": handover[k] + 1, "polish_calls": result.get("force_calls"),
                        "energy_per_atom": result.get("energy_per_atom"), "converged": result.get("converged"),
                        "cif_relaxed": result.get("cif_relaxed"), "fail_reason": result.get("fail_reason")})
        print(f"{name}: {time.perf_counter() - start:.0f} s, load {os.getloadavg()[0]:.2f}")
    return pd.DataFrame(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table", type=Path, help="a scoring_profile.py parquet (the reference trajectories)")
    parser.add_argument("--variants", type=int, nargs="+", default=None, help="indices into VARIANTS (default all)")
    parser.add_argument("overrides", nargs="*", default=[], help="evaluate overrides (mlip=sevennet: the same judge)")
    args = parser.parse_args()
    cfg = compose("evaluate", ["samples=-", "out=-", "tracking.uri=null", *args.overrides])
    variants = VARIANTS if args.variants is None else [VARIANTS[k] for k in args.variants]
    target = args.table.with_suffix(".polish.parquet")
    table = run(args.table, cfg, variants)
    if target.exists():  # variants run before, in another call, are kept
        table = pd.concat([pd.read_parquet(target).query("variant not in @table.variant.unique()"), table])
    table.to_parquet(target)
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
