"""Per-element atomic volumes fitted to MP-20, the unit of the constraint's volume rule (``sampler.volume_fraction``).

A cell's volume is predicted as the sum of its atoms' volumes, one number per element, fitted by non-negative
least squares of the relative error over the Wyckoff texts of MP-20 train + val (the generator's training rows;
the cell is the text's conventional cell, the counts its formula line). Measured with
``benchmarks/calibrate_constraint_floors.py`` (10,757 crystals): real cells are 0.649-1.23 times the prediction
(minimum, 95th percentile; median 1.006, 0.1 % percentile 0.738), where the covalent spheres of the distance rule
give 0.669-3.44 (median 1.44): the fit predicts a cell 4x more tightly, so a floor can refuse too-small cells
without refusing real ones. Fitted on train alone, val's crystals keep 0.665-1.008 (minimum, median).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

VOLUMES_FILE = Path(__file__).with_name("atomic_volumes.json")


def fit_atomic_volumes(formulas: list[dict[str, int]], volumes: list[float], elements: list[str]) -> dict[str, float]:
    """Å^3 per atom of each element, so that sum(count x volume) predicts each cell's volume (relative error)."""
    from scipy.optimize import nnls

    index = {e: i for i, e in enumerate(elements)}
    counts = np.zeros((len(formulas), len(elements)))
    for row, formula in enumerate(formulas):
        for element, n in formula.items():
            counts[row, index[element]] = n
    target = np.asarray(volumes, dtype=float)
    fitted, _ = nnls(counts / target[:, None], np.ones(len(target)))
    return {e: round(float(fitted[index[e]]), 3) for e in elements}


@lru_cache(maxsize=1)
def atomic_volumes() -> dict[str, float]:
    return json.loads(VOLUMES_FILE.read_text())["volumes"]


def predicted_volume(formula: dict[str, int]) -> float:
    """Å^3: the cell these atoms fill in a typical MP-20 crystal."""
    table = atomic_volumes()
    return sum(n * table[e] for e, n in formula.items())
