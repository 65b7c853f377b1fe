"""Intervals and differences for every rate plaidpp publishes (scipy.stats, already a dependency).

- ``wilson(k, n)``: the 95 % Wilson score interval of a proportion (``scipy.stats.binomtest(...)
  .proportion_ci(method="wilson")``). Chosen over the Wald interval, which undercovers badly at the small
  rates and sample sizes of this project (a 2 % S.U.N. on 46 samples), and over Clopper-Pearson, which is
  conservative; ``benchmarks/interval_methods.py`` measures all three.
- ``agreement(a, b)``: how often two label sequences agree, with the Wilson interval of that share.
- ``bootstrap_ci(values)``: a percentile-BCa bootstrap interval of a mean (``scipy.stats.bootstrap``), for a
  figure that is not a count over a fixed denominator (the mean E_hull of the relaxed crystals).
- ``difference(a, b, paired)``: ``mean(a) - mean(b)`` of two per-sample 0/1 vectors with a 95 % interval: a
  paired bootstrap over the shared slots when both evaluations used the same prompts and seeds (each slot is
  one pair), with the exact McNemar test on the discordant pairs; an independent two-sample bootstrap
  otherwise, with Fisher's exact test.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 9999  # scipy's default; the interval ends move < 0.001 between repeats at n = 500
BOOTSTRAP_SEED = 0  # intervals are reproducible


def wilson(k: int, n: int) -> list[float] | None:
    """[low, high] of the 95 % Wilson interval of k successes in n trials; None for n = 0."""
    if n <= 0:
        return None
    from scipy.stats import binomtest

    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=CONFIDENCE, method="wilson")
    return [round(float(ci.low), 6), round(float(ci.high), 6)]


def agreement(a: Any, b: Any) -> tuple[int, int, list[float] | None]:
    """How many places two equally long label sequences agree (tiers, S.U.N. flags), of how many, and the 95 %
    Wilson interval of that share: the agreement rule of the fast relaxation paths (docs/evaluation.md)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"agreement of {a.shape} labels with {b.shape}")
    k = int((a == b).sum())
    return k, int(a.size), wilson(k, int(a.size))


def bootstrap_ci(values: Any) -> list[float] | None:
    """[low, high] of a BCa bootstrap 95 % interval of the mean of ``values`` (NaN dropped); None if < 2."""
    data = np.asarray(values, dtype=float)
    data = data[np.isfinite(data)]
    if len(data) < 2 or np.all(data == data[0]):
        return None if len(data) < 2 else [float(data[0]), float(data[0])]
    from scipy.stats import bootstrap

    result = bootstrap((data,), np.mean, confidence_level=CONFIDENCE, n_resamples=BOOTSTRAP_RESAMPLES,
                       method="BCa", random_state=np.random.default_rng(BOOTSTRAP_SEED))
    return [round(float(result.confidence_interval.low), 6), round(float(result.confidence_interval.high), 6)]


def _mean_diff(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(a, axis=axis) - np.mean(b, axis=axis)


def difference(a: Any, b: Any, paired: bool) -> dict[str, Any]:
    """The difference of two rates (a - b) from their per-sample 0/1 outcomes, with a 95 % interval and a test.

    ``paired``: ``a[i]`` and ``b[i]`` come from the same slot (same prompt and seed): the interval resamples
    slots, and the exact McNemar test asks whether the discordant slots lean one way. Otherwise the two
    samples are resampled independently and Fisher's exact test compares the two counts.
    """
    from scipy.stats import binomtest, bootstrap, fisher_exact

    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if paired and len(x) != len(y):
        raise ValueError(f"a paired difference needs one outcome per slot on both sides ({len(x)} vs {len(y)})")
    out: dict[str, Any] = {"difference": round(float(x.mean() - y.mean()), 6), "n_a": len(x), "n_b": len(y),
                           "paired": paired}
    if paired:
        b_only, a_only = int(np.sum((x == 0) & (y == 1))), int(np.sum((x == 1) & (y == 0)))
        discordant = a_only + b_only
        out["test"] = "exact McNemar on the discordant slots"
        out["discordant"] = {"a_only": a_only, "b_only": b_only}
        out["p_value"] = 1.0 if discordant == 0 else round(float(binomtest(a_only, discordant).pvalue), 6)
        degenerate = discordant == 0
    else:
        table = [[int(x.sum()), len(x) - int(x.sum())], [int(y.sum()), len(y) - int(y.sum())]]
        out["test"] = "Fisher's exact test on the two counts"
        out["p_value"] = round(float(fisher_exact(table).pvalue), 6)
        degenerate = np.all(x == x[0]) and np.all(y == y[0]) if len(x) and len(y) else True
    if degenerate:  # no variation to resample: the interval is the point
        out["difference_ci95"] = [out["difference"], out["difference"]]
    else:
        result = bootstrap((x, y), _mean_diff, paired=paired, vectorized=True, confidence_level=CONFIDENCE,
                           n_resamples=BOOTSTRAP_RESAMPLES, method="percentile",
                           random_state=np.random.default_rng(BOOTSTRAP_SEED))
        out["difference_ci95"] = [round(float(result.confidence_interval.low), 6),
                                  round(float(result.confidence_interval.high), 6)]
    out["interval"] = "paired bootstrap over slots" if paired else "independent two-sample bootstrap"
    low, high = out["difference_ci95"]
    out["larger_than_noise"] = bool(low > 0 or high < 0)
    return out


def is_finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
