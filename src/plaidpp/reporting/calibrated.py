"""The rate the paper's judge would have counted, from this project's judge and a measured confusion matrix.

A judge here (SevenNet-0, say) and the paper's (eSEN-30M-OAM) disagree on some generated crystals;
``benchmarks/judge_calibration.py`` measures how, on the PLaID++ authors' own crystals, as a confusion matrix
``counts[ours][theirs]`` over the tiers stable (<= 0 eV/atom), metastable (<= 0.1) and unstable. Read per row it
is ``q[t]``: the share of the crystals this judge puts in tier ``t`` that eSEN calls stable (or metastable). A
run's expected rate under eSEN is then ``sum_t m_t q[t] / n``: ``m_t`` its eligible crystals in our tier ``t``
(relaxed, and unique and novel for S.U.N.), ``n`` the samples requested. It assumes ``q`` transfers from the
authors' 7B crystals to this model's: the same judge and relaxation, another generator (said beside every use).

The 95 % interval carries both uncertainties: each ``q[t]`` drawn from its Jeffreys posterior
(Beta(k + 1/2, n - k + 1/2) of its row's counts) and the run's counts multinomially resampled; the percentile
interval of 9,999 draws (``stats.BOOTSTRAP_RESAMPLES``, seeded).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from plaidpp.evaluation.compare import tiers
from plaidpp.stats import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, CONFIDENCE

N_TIERS = 3  # stable, metastable, unstable (evaluation/tiers.py)


def expected_rate(tier_counts: list[int], n: int, confusion: list[list[int]], target: int = 0) -> dict[str, Any]:
    """The rate the reference judge would give: ``tier_counts[t]`` eligible crystals of ``n`` samples in our
    tier ``t``; ``confusion[t][u]`` calibration crystals in our tier ``t`` and the reference's ``u``; ``target``
    0 for "stable", 1 for "metastable or better". Returns the estimate, its interval and the ``q`` used."""
    counts = np.asarray(confusion, dtype=float)
    m = np.asarray(tier_counts, dtype=float)
    if counts.shape != (N_TIERS, N_TIERS) or m.shape != (N_TIERS,) or n <= 0 or m.sum() > n:
        raise ValueError(f"expected_rate needs 3 tier counts within n={n} and a 3x3 confusion matrix")
    hits, totals = counts[:, : target + 1].sum(axis=1), counts.sum(axis=1)
    if np.any(totals[m > 0] == 0):  # a tier this run has and the calibration never saw: no estimate
        return {"estimate": None, "ci95": None, "q": None}
    q = hits / np.maximum(totals, 1)
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    q_draws = rng.beta(hits + 0.5, totals - hits + 0.5, size=(BOOTSTRAP_RESAMPLES, N_TIERS))
    shares = np.append(m, n - m.sum()) / n  # the last cell: samples not eligible (count 0 under any judge)
    m_draws = rng.multinomial(n, shares, size=BOOTSTRAP_RESAMPLES)[:, :N_TIERS]
    draws = (m_draws * q_draws).sum(axis=1) / n
    tail = (1 - CONFIDENCE) / 2
    return {"estimate": round(float((m * q).sum() / n), 6),
            "ci95": [round(float(np.quantile(draws, tail)), 6), round(float(np.quantile(draws, 1 - tail)), 6)],
            "q": [round(float(x), 4) for x in q]}


def load_confusion(path: str | Path, judge: str, relax: str) -> dict[str, Any] | None:
    """The calibration row of ``judge`` relaxing as ``relax`` (the mlip and relaxation cache tags, as
    ``summary.json`` names them: ``mlip``, ``relax_settings``) from a ``judge_calibration.py`` record; None when
    the record or the row is missing (the caller says so: it does not guess)."""
    path = Path(path)
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    for row in record.get("judges", []):
        if row["judge"] == judge and row.get("relax") == relax:
            return {**row, "files": record["files"], "cuts": record["cuts"]}
    return None


def tier_counts(e_hull: Any, cuts: list[float]) -> list[int]:
    """Crystals per tier (stable, metastable, unstable) of finite E_hull values (eV/atom) at ``cuts``."""
    values = np.asarray(e_hull, dtype=float)
    return np.bincount(tiers(values[np.isfinite(values)], *cuts), minlength=N_TIERS).tolist()
