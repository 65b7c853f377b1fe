"""How close real crystals come to the constraint's geometric floors, so a floor can be set that refuses none.

For every Wyckoff text of the training splits (``data/processed/wyckoff/{train,val}.jsonl``, what ``plaidpp
prepare`` writes), the ratios the constraint bounds from below:

- pair (``sampler.covalent_fraction``): the smallest interatomic distance over the sum of the two atoms'
  covalent radii (pymatgen's, Cordero);
- volume (``sampler.volume_fraction``): the cell's volume (the text's own lattice lines) over the volume its
  formula predicts from per-element atomic volumes (``plaidpp.constraint.volumes``), and, for comparison, over
  its atoms as covalent spheres.

Prints the minimum and low percentiles of each, and how many real crystals a floor would refuse. ``--write``
fits the atomic volumes on these splits first and writes ``src/plaidpp/constraint/atomic_volumes.json``.

    python benchmarks/calibrate_constraint_floors.py [--splits train val] [--floors 0.6 0.7 0.8] [--write]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

from plaidpp.constraint.automaton import COVALENT_RADII, _parse_formula
from plaidpp.constraint.grammar import ELEMENTS
from plaidpp.constraint.volumes import VOLUMES_FILE, atomic_volumes, fit_atomic_volumes, predicted_volume
from plaidpp.representation import get
from plaidpp.representation.base import build_lattice


def measure(text: str, representation) -> tuple[dict[str, int], float, float]:
    """The formula, the cell's volume (Å^3) and the smallest pair distance over the two covalent radii."""
    lines = text.split("\n")
    lattice = build_lattice([float(v) for v in lines[2].split()[1:]], [float(v) for v in lines[3].split()[1:]])
    structure = representation.decode(text)
    radii = np.array([COVALENT_RADII[site.specie.symbol] for site in structure])
    distances = structure.distance_matrix + np.diag(np.full(len(structure), np.inf))
    pair = float((distances / (radii[:, None] + radii[None, :])).min()) if len(structure) > 1 else math.inf
    return _parse_formula(lines[0]), lattice.volume, pair


def report(name: str, values: np.ndarray, rows: list[dict], floors: list[float]) -> None:
    low = np.percentile(values, [0.1, 1, 5, 50, 95])
    at = int(np.argmin(values))
    print(f"{name}: min {values.min():.3f} ({rows[at]['material_id']}, {rows[at]['formula']}); 0.1 % {low[0]:.3f}, "
          f"1 % {low[1]:.3f}, 5 % {low[2]:.3f}, median {low[3]:.3f}, 95 % {low[4]:.3f}")
    print("  " + ", ".join(f"floor {f}: refuses {(values <= f).sum()}" for f in floors) + f" (of {len(values)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--processed", default="data/processed/wyckoff")
    parser.add_argument("--splits", nargs="+", default=["train", "val"])
    parser.add_argument("--floors", nargs="+", type=float, default=[0.6, 0.65, 0.7, 0.75, 0.8, 1.0])
    parser.add_argument("--write", action="store_true", help="fit the atomic volumes here and write them")
    args = parser.parse_args()
    representation = get("wyckoff")
    started = time.perf_counter()
    rows = [json.loads(line) for split in args.splits for line in open(Path(args.processed) / f"{split}.jsonl")]
    formulas, volumes, pairs = zip(*(measure(r["text"], representation) for r in rows))
    volumes, pairs = np.array(volumes), np.array(pairs)
    print(f"{len(rows)} crystals of {'+'.join(args.splits)} in {time.perf_counter() - started:.0f} s")
    if args.write:
        fitted = fit_atomic_volumes(list(formulas), list(volumes), list(ELEMENTS))
        VOLUMES_FILE.write_text(json.dumps({
            "about": "Å^3 per atom by element: non-negative least squares of the relative error of the cell "
                     "volume predicted as sum(count x volume), over the Wyckoff texts (conventional cells) of "
                     f"MP-20 {'+'.join(args.splits)} ({len(rows)} crystals); benchmarks/calibrate_constraint_floors.py "
                     "--write", "volumes": fitted}, indent=1) + "\n")
        atomic_volumes.cache_clear()
        print(f"wrote {VOLUMES_FILE}")
    finite = np.isfinite(pairs)
    report("pair distance / (r_i + r_j)", pairs[finite], [r for r, f in zip(rows, finite) if f], args.floors)
    report("cell volume / predicted (atomic volumes)", volumes / np.array([predicted_volume(f) for f in formulas]),
           rows, args.floors)
    spheres = np.array([sum(n * 4 / 3 * math.pi * COVALENT_RADII[e] ** 3 for e, n in f.items()) for f in formulas])
    report("cell volume / covalent spheres", volumes / spheres, rows, args.floors)


if __name__ == "__main__":
    main()
