"""Relaxation jobs, cached and spread over processes.

The parent owns the cache (sqlite) and the progress bar; each worker process loads the potential once
(``_init``), uses one torch thread, and returns plain dicts. Results are written to the cache the moment they
arrive, so killing the run loses at most the structures in flight.
"""

from __future__ import annotations

import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from pymatgen.core import Structure
from tqdm import tqdm

from plaidpp.evaluation.cache import RelaxCache
from plaidpp.evaluation.mlip import load_calculator
from plaidpp.evaluation.relax import relax_structure
from plaidpp.evaluation.symmetry import spacegroup_number
from plaidpp.runtime import n_workers
from plaidpp.settings.evaluation import MLIPSettings, RelaxSettings

log = logging.getLogger(__name__)

# Failures that depend on the machine's load or a crashed worker, not on the crystal: never cached.
NOT_CACHED = ("relax_timeout", "worker_crashed")

_STATE: dict[str, Any] = {}


def _init(spec: MLIPSettings) -> None:
    import warnings

    warnings.filterwarnings("ignore")  # pymatgen/torch chatter from every worker drowns the progress bar
    _STATE["spec"] = spec
    _STATE["calc"] = load_calculator(spec)


def _job(structure: Structure, settings: RelaxSettings, sg_tol: float, sg_time: float) -> dict[str, Any]:
    result = relax_structure(structure, _STATE["calc"], settings).as_dict()
    result["spacegroup_achieved"] = None
    result["spacegroup_fail_reason"] = None
    if result["fail_reason"] is None and result["cif_relaxed"]:
        try:
            relaxed = Structure.from_str(result["cif_relaxed"], fmt="cif")
        except Exception as exc:  # noqa: BLE001 - counted by the caller as a relaxation failure
            result["fail_reason"] = f"relaxed_cif_error:{type(exc).__name__}"
            return result
        number, reason = spacegroup_number(relaxed, sg_tol, sg_time)
        result["spacegroup_achieved"], result["spacegroup_fail_reason"] = number, reason
    return result


def relax_many(
    structures: dict[int, Structure],
    spec: MLIPSettings,
    settings: RelaxSettings,
    cache: RelaxCache,
    *,
    sg_tolerance: float,
    sg_time_limit_s: float,
    workers: int,
    progress: bool,
) -> dict[int, dict[str, Any]]:
    """Relax every structure (row id -> Structure) not already cached; return row id -> result dict."""
    tags = (spec.cache_tag(), settings.cache_tag(), f"sgtol={sg_tolerance}")
    keys = {i: RelaxCache.key(s, *tags) for i, s in structures.items()}
    results: dict[int, dict[str, Any]] = {}
    todo: dict[str, list[int]] = {}  # key -> rows (identical crystals relax once)
    for i, key in keys.items():
        hit = cache.get(key)
        if hit is not None:
            results[i] = {**hit, "cached": True}
        else:
            todo.setdefault(key, []).append(i)
    if not todo:
        return results
    log.info("relaxing %d structures (%d cached) with %s", len(todo), len(results), spec.cache_tag())

    def store(key: str, result: dict[str, Any]) -> None:
        if result["fail_reason"] not in NOT_CACHED:
            cache.put(key, result)
        for i in todo[key]:
            results[i] = {**result, "cached": False}

    bar = tqdm(total=len(todo), desc=f"relax ({spec.name})", disable=not progress, unit="crystal")
    n = min(n_workers(workers), len(todo))
    args = (settings, sg_tolerance, sg_time_limit_s)
    if n == 1:
        if _STATE.get("spec") != spec:
            _init(spec)
        for key, rows in todo.items():
            store(key, _job(structures[rows[0]], *args))
            bar.update()
    else:
        # spawn, not fork: forking a process that already ran torch/OpenMP can deadlock the children
        ctx = multiprocessing.get_context("spawn")
        try:
            with ProcessPoolExecutor(n, mp_context=ctx, initializer=_init, initargs=(spec,)) as pool:
                futures = {pool.submit(_job, structures[rows[0]], *args): key for key, rows in todo.items()}
                for future in as_completed(futures):
                    key = futures[future]
                    try:
                        store(key, future.result())
                    except BrokenProcessPool:
                        raise
                    except Exception as exc:  # noqa: BLE001 - a pickling/worker error for one crystal
                        store(key, _failure(f"mlip_error:{type(exc).__name__}", str(exc)))
                    bar.update()
        except BrokenProcessPool as exc:
            # A worker died (segfault, out of memory): everything unfinished is counted, none cached.
            for key in todo:
                if todo[key][0] not in results:
                    store(key, _failure("worker_crashed", str(exc)))
    bar.close()
    return results


def _failure(reason: str, detail: str) -> dict[str, Any]:
    return {
        "energy_total": float("nan"), "energy_per_atom": float("nan"), "n_steps": 0, "converged": False,
        "cif_relaxed": None, "fail_reason": reason, "fail_detail": detail[:200], "seconds": 0.0,
        "spacegroup_achieved": None, "spacegroup_fail_reason": None,
    }
