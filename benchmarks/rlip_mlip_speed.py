"""Which MLIP rewards and which evaluates: relaxation time per crystal of CHGNet and SevenNet-0 on this CPU.

Crystals: N MP-20 training crystals (the processed Wyckoff rows), rattled like a model's imperfect output
(lattice scaled by 1.04, sites moved 0.05 Å at random), scored through the evaluation package exactly as the
RLIP loop scores them (relaxation cache off, novelty off). Prints seconds per crystal for each potential.

    python benchmarks/rlip_mlip_speed.py --n 12 --workers 2
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from pymatgen.core import Structure

from plaidpp.config import compose
from plaidpp.evaluation.score import score_samples
from plaidpp.representation import get


def rattled_rows(n: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    wyckoff = get("wyckoff")
    rows = []
    with open("data/processed/wyckoff/train.jsonl") as handle:
        for line in handle:
            row = json.loads(line)
            if len(rows) >= n:
                break
            s = Structure.from_str(row["cif"], fmt="cif")
            s.scale_lattice(s.volume * 1.04**3)
            s.perturb(0.05)
            try:
                rows.append({"text": wyckoff.encode(s), "repr": "wyckoff", "spacegroup": None})
            except ValueError:
                continue
    rng.shuffle(rows)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=12)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--mlips", default="chgnet,sevennet")
    args = parser.parse_args()
    rows = rattled_rows(args.n, 0)
    for mlip in args.mlips.split(","):
        cfg = compose("evaluate", [f"mlip={mlip}", "cache.enabled=false", "novelty.enabled=false", "samples=-",
                                   "out=-", f"workers={args.workers}", "tracking.uri=null", "progress=false"])
        start = time.perf_counter()
        table, summary = score_samples(rows, cfg)
        wall = time.perf_counter() - start
        print(json.dumps({"mlip": mlip, "n": len(rows), "workers": args.workers, "wall_s": round(wall, 1),
                          "s_per_crystal": round(wall / len(rows), 2), "n_relaxed": summary["n_relaxed"],
                          "mean_relax_steps": float(table["relax_steps"].dropna().astype(float).mean()),
                          "metastability_rate": summary.get("metastability_rate")}))


if __name__ == "__main__":
    main()
