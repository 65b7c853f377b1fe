"""Two evaluations side by side: every headline rate of each with its interval, and their difference with a 95 %
interval and a test (``plaidpp.stats.difference``).

    plaidpp compare data/rlip/default/iter_0/eval data/rlip/default/iter_2/eval     # two scored folders
    plaidpp compare A B --json diff.json

**Paired** when the two tables hold the same slots with the same prompts (and, where recorded, the same sampling
seed): slot i of A and slot i of B answer one prompt under one seed, so their difference is resampled per slot.
Otherwise the two are independent samples. The RLIP record calls ``compare_tables`` for its ``vs_sft`` figures
(the last iteration against pi_0) and the report prints them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from plaidpp.errors import UserError
from plaidpp.evaluation.metrics import METRICS
from plaidpp.stats import difference, wilson


def read_scored(path: str | Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """A scored folder (or its structures.parquet): the per-sample table and the summary beside it."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    table_file = folder / "structures.parquet"
    if not table_file.is_file():
        raise UserError(f"no scored table at {table_file}; run `plaidpp evaluate --samples ... --out {folder}` first")
    summary_file = folder / "summary.json"
    summary = json.loads(summary_file.read_text()) if summary_file.is_file() else {}
    return pd.read_parquet(table_file), summary


def is_paired(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    """Same slots, same prompts and (where both record them) the same sampler seed.

    The seed compared is the sampling run's (``run_seed``): a slot that one model needed a second attempt for
    was redrawn from a batch seed the other never used, yet both answered the slot's prompt from the same start.
    Files written before ``run_seed`` existed compare their per-attempt ``seed``.
    """
    if len(a) != len(b) or "index" not in a or "index" not in b or list(a["index"]) != list(b["index"]):
        return False
    seed = "run_seed" if "run_seed" in a and "run_seed" in b else "seed"
    for column in ("prompt", seed):
        if column in a and column in b and list(a[column]) != list(b[column]):
            return False
    return "prompt" in a and "prompt" in b


def compare_tables(a: pd.DataFrame, b: pd.DataFrame, paired: bool | None = None) -> dict[str, Any]:
    """Per headline rate: A and B with their Wilson intervals, and the difference A - B with its interval."""
    paired = is_paired(a, b) if paired is None else paired
    out: dict[str, Any] = {"paired": paired, "rates": {}}
    for metric in METRICS:
        if metric.column not in a or metric.column not in b:
            continue
        rows_a, rows_b = metric.rows(a), metric.rows(b)
        if len(rows_a) == 0 or len(rows_b) == 0:
            continue
        x = rows_a[metric.column].fillna(False).astype(bool).astype(int).to_numpy()
        y = rows_b[metric.column].fillna(False).astype(bool).astype(int).to_numpy()
        out["rates"][metric.name] = {"a": float(x.mean()), "a_ci95": wilson(int(x.sum()), len(x)),
                                     "b": float(y.mean()), "b_ci95": wilson(int(y.sum()), len(y)),
                                     **difference(x, y, paired=paired and len(x) == len(y))}
    return out


def compare_by_task(a: pd.DataFrame, b: pd.DataFrame) -> dict[str, Any]:
    """``compare_tables`` on the unconditional slots and on the space-group-conditioned slots apart: the paper
    states RLIP's S.U.N. gain per task (~115 % unconditional, ~50 % conditioned), and a pooled figure mixes
    the two. Uniqueness keeps the flags of the whole sample (one per StructureMatcher class across it)."""
    out: dict[str, Any] = {}
    for task, conditioned in (("unconditional", False), ("conditional", True)):
        rows_a = a[a["spacegroup_requested"].notna() == conditioned].reset_index(drop=True)
        rows_b = b[b["spacegroup_requested"].notna() == conditioned].reset_index(drop=True)
        if len(rows_a) and len(rows_b):
            out[task] = compare_tables(rows_a, rows_b)
    return out


TIERS = ("stable", "metastable", "unstable")


def tiers(e_hull: Any, stable: float, metastable: float) -> np.ndarray:
    """0 = stable (E_hull <= stable), 1 = metastable (<= metastable), 2 = unstable, per crystal (eV/atom)."""
    e = np.asarray(e_hull, dtype=float)
    return np.where(e <= stable, 0, np.where(e <= metastable, 1, 2))


def agreement(judge: pd.DataFrame, other: pd.DataFrame, stable: float, metastable: float) -> dict[str, Any]:
    """Two potentials' verdicts on the same crystals (rows matched by ``index``; crystals both placed on the
    hull): how often they give the same tier, with its Wilson interval, Cohen's kappa (agreement beyond what
    the two tier shares give by chance), the Spearman rank correlation of their E_hull and the confusion counts
    (``judge_tier->other_tier``)."""
    from scipy.stats import spearmanr

    columns = ["index", "e_hull", "relax_ok"]
    both = judge[columns].merge(other[columns], on="index", suffixes=("_judge", "_other"))
    both = both[both["relax_ok_judge"].fillna(False).astype(bool) & both["relax_ok_other"].fillna(False).astype(bool)]
    both = both[np.isfinite(both["e_hull_judge"].astype(float)) & np.isfinite(both["e_hull_other"].astype(float))]
    n = len(both)
    out: dict[str, Any] = {"n": n, "tiers": {"stable": f"E_hull <= {stable}", "metastable": f"E_hull <= {metastable}"}}
    if n == 0:
        return out
    a, b = tiers(both["e_hull_judge"], stable, metastable), tiers(both["e_hull_other"], stable, metastable)
    same = int((a == b).sum())
    chance = sum(float(np.mean(a == t) * np.mean(b == t)) for t in range(3))
    out.update({"tier_agreement": same / n, "tier_agreement_ci95": wilson(same, n),
                "kappa": None if chance == 1 else round((same / n - chance) / (1 - chance), 6),
                "confusion": {f"{TIERS[i]}->{TIERS[j]}": int(((a == i) & (b == j)).sum())
                              for i in range(3) for j in range(3)}})
    if n >= 3:
        rho, p = spearmanr(both["e_hull_judge"], both["e_hull_other"])
        out.update({"spearman_e_hull": None if np.isnan(rho) else round(float(rho), 6),
                    "spearman_p": None if np.isnan(p) else float(p)})
    return out


def _pct(value: float) -> str:
    return f"{100 * value:6.2f} %"


def format_comparison(result: dict[str, Any], name_a: str, name_b: str) -> str:
    lines = [f"A = {name_a}", f"B = {name_b}",
             f"{'paired' if result['paired'] else 'independent'} comparison (95 % intervals)", "",
             f"{'rate':30s} {'A':>9s} {'B':>9s} {'A - B':>9s}  {'95 % interval':>21s}  {'p':>7s}  beyond noise"]
    for name, r in result["rates"].items():
        lo, hi = r["difference_ci95"] if "difference_ci95" in r else r["ci95"]  # records written before 50ecb51
        lines.append(f"{name:30s} {_pct(r['a'])} {_pct(r['b'])} {_pct(r['difference'])}  "
                     f"[{_pct(lo)}, {_pct(hi)}]  {r['p_value']:7.4f}  {'yes' if r['larger_than_noise'] else 'no'}")
    return "\n".join(lines)


def compare_main(path_a: str, path_b: str, json_out: str | None = None) -> dict[str, Any]:
    a, _ = read_scored(path_a)
    b, _ = read_scored(path_b)
    result = compare_tables(a, b)
    print(format_comparison(result, path_a, path_b))
    if json_out:
        from plaidpp.io import write_json

        write_json(json_out, {"a": str(path_a), "b": str(path_b), **result})
    return result
