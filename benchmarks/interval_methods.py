"""Which interval for a rate? Coverage of the Wald, Wilson and Clopper-Pearson 95 % intervals by simulation, and
the repeatability of the bootstrap interval plaidpp uses for a mean. A benchmark, not a test (issue 11).

For each true rate p and sample size n (the project's: 46 RLIP samples per model, 340 SFT samples, 1,000), it
draws ``--trials`` binomial counts and reports how often each interval holds p (nominal 0.95) and its mean
width. Then it repeats ``plaidpp.stats.bootstrap_ci`` with different seeds on one E_hull-like sample (n = 500)
to show how far its ends move.

    python benchmarks/interval_methods.py --trials 20000
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy import stats as st

from plaidpp import stats


def wald(k: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    p = k / n
    half = 1.959964 * np.sqrt(p * (1 - p) / n)
    return np.clip(p - half, 0, 1), np.clip(p + half, 0, 1)


def wilson(k: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    # the closed form of what plaidpp.stats.wilson takes from scipy (checked equal below)
    z = 1.959964
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def clopper_pearson(k: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    low = np.where(k == 0, 0.0, st.beta.ppf(0.025, k, n - k + 1))
    high = np.where(k == n, 1.0, st.beta.ppf(0.975, k + 1, n - k))
    return low, high


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    for k, n in ((1, 46), (17, 340), (0, 46)):
        ours, closed = stats.wilson(k, n), wilson(np.array([k]), n)
        assert np.allclose(ours, [closed[0][0], closed[1][0]], atol=2e-6), (ours, closed)
    print(f"coverage of a nominal 95 % interval ({args.trials} binomial draws per cell) and mean width")
    print(f"{'p':>5s} {'n':>5s} | {'Wald':>14s} | {'Wilson':>14s} | {'Clopper-Pearson':>15s}")
    for p in (0.02, 0.05, 0.10, 0.30):
        for n in (46, 340, 1000):
            k = rng.binomial(n, p, args.trials)
            cells = []
            for method in (wald, wilson, clopper_pearson):
                low, high = method(k, n)
                cells.append(f"{np.mean((low <= p) & (p <= high)):.3f} w{np.mean(high - low):.3f}")
            print(f"{p:5.2f} {n:5d} | {cells[0]:>14s} | {cells[1]:>14s} | {cells[2]:>15s}")
    sample = np.abs(rng.normal(0.15, 0.2, 500))  # E_hull-like: eV/atom, skewed, n = 500
    ends = []
    for seed in range(10):
        stats.BOOTSTRAP_SEED = seed
        ends.append(stats.bootstrap_ci(sample))
    ends = np.array(ends)
    print(f"\nbootstrap_ci (BCa, {stats.BOOTSTRAP_RESAMPLES} resamples) of a mean, n = 500, 10 seeds: low "
          f"{ends[:, 0].min():.4f}..{ends[:, 0].max():.4f}, high {ends[:, 1].min():.4f}..{ends[:, 1].max():.4f} "
          f"(spread {np.ptp(ends[:, 0]):.4f} / {np.ptp(ends[:, 1]):.4f})")


if __name__ == "__main__":
    main()
