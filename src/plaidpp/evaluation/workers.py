"""Relaxation jobs, cached and spread over worker processes that cannot outlive the run or take it down.

- **Isolation.** Every relaxation runs in a worker process, ``workers=1`` included, one job at a time. A worker
  that dies (a segfault in a native library, the out-of-memory killer) costs only the crystal it held, which is
  counted ``worker_crashed``; a fresh worker takes its place and the rest of the run goes on.
- **No orphans.** A worker asks the kernel to kill it when its parent dies (``PR_SET_PDEATHSIG``), so a SIGKILL of
  ``plaidpp evaluate`` leaves no worker (~630 MB each with a potential loaded) behind, and multiprocessing's
  resource tracker, whose pipe they held, exits with them.
- **Cache.** The parent owns the sqlite cache and the progress bar; each result is written the moment it
  arrives, so a killed run loses at most the crystals in flight. A result is cached under the structure and
  every setting that changes it (``cache_fingerprint``): a new setting joins the key unless its field says it
  cannot change a cached relaxation (``cache_key=False``). Failures that depend on the machine's load or a dead
  worker (time-outs, crashes) are never cached.
- **Reuse.** The pool (with its loaded potential) stays up for the next call of the same process with the same
  potential and size, so RLIP iterations and repeated evaluations load the potential once per worker.
"""

from __future__ import annotations

import atexit
import ctypes
import dataclasses
import hashlib
import json
import logging
import multiprocessing
import os
import signal
from collections.abc import Callable, Iterator
from functools import lru_cache
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any
from unittest.mock import patch

from pymatgen.core import Structure
from tqdm import tqdm

from plaidpp.evaluation import batched
from plaidpp.evaluation.cache import RelaxCache
from plaidpp.evaluation.mlip import load_calculator
from plaidpp.evaluation.novelty import Matching, uniqueness
from plaidpp.evaluation.relax import RelaxResult, relax_structure
from plaidpp.evaluation.symmetry import spacegroup_number
from plaidpp.evaluation.watchers import Watcher
from plaidpp.runtime import n_workers
from plaidpp.settings.evaluation import MLIPSettings, RelaxSettings, SymmetrySettings

log = logging.getLogger(__name__)

# Failures that depend on the machine's load or a crashed worker, not on the crystal: never cached.
NOT_CACHED = ("relax_timeout", "worker_crashed")
NOT_CACHED_SPACEGROUP = ("spacegroup_timeout",)
_PR_SET_PDEATHSIG = 1
# One thread per native thread pool in a worker (a worker is one core's job). numpy's bundled OpenBLAS otherwise
# starts a thread per core that busy-waits between calls (FIRE's vector maths, the Frechet filter's logm); with
# two workers on two cores those threads took ~40 % of a core each and made the relaxations 3x slower
# (docs/evaluation.md, "Throughput"). OpenBLAS reads its variable when it loads, before the worker's first
# import of numpy, so the variables are in the environment the worker starts with.
WORKER_THREAD_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

_STATE: dict[str, Any] = {}


# ------------------------------------------------------------------------------------------- cache keys
@lru_cache(maxsize=32)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:  # noqa: ARG001 - size and mtime key the cache
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fields(settings: Any) -> dict[str, Any]:
    values = {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings) if f.metadata.get("cache_key", True)}
    if isinstance(settings, MLIPSettings) and settings.checkpoint:
        path = Path(settings.checkpoint)
        stat = path.stat()
        values["checkpoint"] = "sha256:" + _file_digest(str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    return values


def cache_fingerprint(mlip: MLIPSettings, relax: RelaxSettings, symmetry: SymmetrySettings) -> str:
    """Everything that changes a cached relaxation: every field of the three settings (a checkpoint by its
    content) except those marked ``cache_key=False``."""
    payload = {type(s).__name__: _fields(s) for s in (mlip, relax, symmetry)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _cacheable(result: dict[str, Any]) -> bool:
    return result["fail_reason"] not in NOT_CACHED and result["spacegroup_fail_reason"] not in NOT_CACHED_SPACEGROUP


# ------------------------------------------------------------------------------------------- the pool
def _die_with_parent(parent: int) -> None:
    """Linux: SIGKILL this process when the parent dies; if it already died, exit now."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:  # not glibc / not Linux: the parent's atexit still stops its workers
        pass
    if os.getppid() != parent:
        os._exit(1)


def _serve(conn, parent: int, initializer: Callable[..., None], initargs: tuple) -> None:
    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    initializer(*initargs)
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message is None:
            return
        key, fn, args = message
        try:
            outcome = ("ok", fn(*args))
        except Exception as exc:  # noqa: BLE001 - one job's Python error is that job's result
            outcome = ("error", f"{type(exc).__name__}: {exc}"[:300])
        conn.send((key, outcome))


class IsolatedPool:
    """``n`` spawned worker processes, each running one job at a time (see the module docstring)."""

    def __init__(self, n: int, initializer: Callable[..., None], initargs: tuple = ()) -> None:
        # spawn, not fork: forking a process that already ran torch/OpenMP can deadlock the children
        self._ctx = multiprocessing.get_context("spawn")
        self._initializer, self._initargs = initializer, initargs
        self._workers = [self._start() for _ in range(n)]

    def _start(self) -> dict[str, Any]:
        parent_end, child_end = self._ctx.Pipe()
        process = self._ctx.Process(target=_serve, args=(child_end, os.getpid(), self._initializer, self._initargs),
                                    daemon=True)
        with patch.dict(os.environ, WORKER_THREAD_ENV):  # the spawned interpreter inherits it at start()
            process.start()
        child_end.close()
        return {"process": process, "conn": parent_end, "job": None}

    def run(self, fn: Callable[..., Any], jobs: dict[Any, tuple]) -> Iterator[tuple[Any, str, Any]]:
        """Yield ``(key, status, value)`` per job as it finishes: status ``ok`` (value = the result), ``error``
        (value = the exception's text) or ``crashed`` (value = the worker's exit code)."""
        queue = list(jobs.items())
        while queue or any(w["job"] is not None for w in self._workers):
            for worker in self._workers:
                if worker["job"] is None and queue:
                    key, args = queue.pop(0)
                    worker["job"] = key
                    worker["conn"].send((key, fn, args))
            busy = [w for w in self._workers if w["job"] is not None]
            ready = wait([w["conn"] for w in busy] + [w["process"].sentinel for w in busy])
            for index, worker in enumerate(self._workers):
                if worker["job"] is None:
                    continue
                if worker["conn"] in ready:
                    try:
                        key, (status, value) = worker["conn"].recv()
                    except (EOFError, OSError):  # died while sending
                        key, status, value = worker["job"], "crashed", worker["process"].exitcode
                    worker["job"] = None
                    yield key, status, value
                    if status == "crashed":
                        self._replace(index)
                elif worker["process"].sentinel in ready:
                    key = worker["job"]
                    worker["process"].join()
                    yield key, "crashed", worker["process"].exitcode
                    self._replace(index)

    def _replace(self, index: int) -> None:
        old = self._workers[index]
        old["conn"].close()
        old["process"].join(timeout=1)
        self._workers[index] = self._start()

    def close(self) -> None:
        for worker in self._workers:
            try:
                worker["conn"].send(None)
            except (BrokenPipeError, OSError):
                pass
        for worker in self._workers:
            worker["process"].join(timeout=5)
            if worker["process"].is_alive():
                worker["process"].kill()
            worker["conn"].close()
        self._workers = []


_POOLS: dict[tuple, IsolatedPool] = {}


def pool_for(spec: MLIPSettings, n: int, engine: str) -> IsolatedPool:
    """The process's pool for a potential, size and engine (``relax.engine``), started once and reused."""
    key = (json.dumps(dataclasses.asdict(spec), sort_keys=True), n, engine)
    if key not in _POOLS:
        for old in list(_POOLS):  # one pool at a time: another potential's workers would hold its memory
            _POOLS.pop(old).close()
        _POOLS[key] = IsolatedPool(n, _init, (spec, engine))
    return _POOLS[key]


@atexit.register
def _close_pools() -> None:
    for pool in _POOLS.values():
        pool.close()
    _POOLS.clear()


# ------------------------------------------------------------------------------------------- the job
def _init(spec: MLIPSettings, engine: str) -> None:
    import warnings

    warnings.filterwarnings("ignore")  # pymatgen/torch chatter from every worker drowns the progress bar
    _STATE["spec"] = spec
    _STATE["calc"] = load_calculator(spec) if engine == "ase" else batched.load_model(spec)


def _job(structure: Structure, settings: RelaxSettings, symmetry: SymmetrySettings,
         watcher: Watcher | None = None) -> dict[str, Any]:
    observer = watcher.observe if watcher is not None else None
    result = relax_structure(structure, _STATE["calc"], settings, observer=observer).as_dict()
    if watcher is not None:
        result.update(watcher.extra())
    return _with_spacegroup(result, symmetry)


def _batch_job(structures: list[Structure], settings: RelaxSettings, symmetry: SymmetrySettings) -> list[dict]:
    """``relax.engine=torchsim``: a chunk of crystals, ``relax.batch_size`` of them in flight at a time."""
    return [_with_spacegroup(r.as_dict(), symmetry)
            for r in batched.relax_batch(structures, _STATE["calc"], settings)]


def _with_spacegroup(result: dict[str, Any], symmetry: SymmetrySettings) -> dict[str, Any]:
    """The relaxed crystal's space group (pyxtal at ``symmetry.tolerance``), or why there is none."""
    result["spacegroup_achieved"] = None
    result["spacegroup_fail_reason"] = None
    if result["fail_reason"] is None and result["cif_relaxed"]:
        try:
            relaxed = Structure.from_str(result["cif_relaxed"], fmt="cif")
        except Exception as exc:  # noqa: BLE001 - counted by the caller as a relaxation failure
            result["fail_reason"] = f"relaxed_cif_error:{type(exc).__name__}"
            return result
        number, reason = spacegroup_number(relaxed, symmetry.tolerance, symmetry.time_limit_s)
        result["spacegroup_achieved"], result["spacegroup_fail_reason"] = number, reason
    return result


def relax_many(
    structures: dict[int, Structure],
    spec: MLIPSettings,
    settings: RelaxSettings,
    symmetry: SymmetrySettings,
    cache: RelaxCache,
    *,
    workers: int,
    progress: bool,
    watchers: dict[int, Watcher] | None = None,
    share_matches: Matching | None = None,
) -> dict[int, dict[str, Any]]:
    """Relax every structure (row id -> Structure) not already cached; return row id -> result dict.

    ``watchers`` (row id -> ``watchers.Watcher``) go with their rows' jobs; a watcher's ``cache_tag`` joins the
    row's cache key, so rows with different early-exit rules never share a cached relaxation.

    ``share_matches``: crystals that StructureMatcher (through this ``Matching``) puts in one class with an
    earlier crystal of the batch are not relaxed; they get the first one's result, marked ``shared_with`` (its
    row) and with no cost of their own. Only the relaxed crystal's result is cached, under its own key, so a
    cache hit is always the relaxation of exactly that structure."""
    watchers = watchers or {}
    fingerprint = cache_fingerprint(spec, settings, symmetry)
    keys = {i: RelaxCache.key(s, fingerprint, *_watcher_tags(watchers.get(i))) for i, s in structures.items()}
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
    shared = _matched_duplicates(keys, todo, structures, share_matches) if share_matches is not None else {}
    for key in shared:
        todo.pop(key)
    log.info("relaxing %d structures (%d cached, %d shared with a match) with %s", len(todo), len(results),
             len(shared), spec.cache_tag())
    bar = tqdm(total=len(todo), desc=f"relax ({spec.name})", disable=not progress, unit="crystal")
    n = n_workers(workers)
    pool = pool_for(spec, n, settings.engine)
    # Largest cells first (a force call costs ~ atoms x neighbours): the long relaxations start early instead of
    # one of them running alone at the end while the other workers idle.
    order = sorted(todo, key=lambda key: -len(structures[todo[key][0]]))
    for keys, outcome in _run_jobs(pool, n, order, todo, structures, settings, symmetry, watchers):
        for key, result in zip(keys, outcome, strict=True):
            if _cacheable(result):
                cache.put(key, result)
            for i in todo[key]:
                results[i] = {**result, "cached": False}
            bar.update()
    bar.close()
    for rows, first in shared.values():
        for i in rows:
            results[i] = {**results[first], "cached": False, "shared_with": first, **_NO_COST}
    return results


# A worker's chunk with engine=torchsim: batch_size crystals in flight, refilled from the chunk as they finish, so
# the last slow relaxations of a chunk share their calls with the ones still waiting; results reach the cache per chunk.
# Never more than an even share per worker: 32-crystal chunks of 38 crystals left one of two workers idle for most of
# a run (benchmarks/bench_scoring.py, 2026-12-07).
CHUNK_BATCHES = 4


def _run_jobs(pool: IsolatedPool, n: int, order: list[str], todo: dict[str, list[int]],
              structures: dict[int, Structure], settings: RelaxSettings, symmetry: SymmetrySettings,
              watchers: dict[int, Watcher]) -> Iterator[tuple[list[str], list[dict[str, Any]]]]:
    """(cache keys, their results) as the ``n`` workers of ``pool`` finish them: one key per job with engine=ase,
    a chunk with torchsim."""
    first = {key: todo[key][0] for key in order}
    if settings.engine == "ase":
        jobs = {key: (structures[first[key]], settings, symmetry, watchers.get(first[key])) for key in order}
        for key, status, value in pool.run(_job, jobs):
            yield [key], [value if status == "ok" else _job_failure(status, value)]
        return
    if watchers:
        raise ValueError("relax.engine=torchsim takes no per-step watchers (trajectory recording, tier exit)")
    size = min(settings.batch_size * CHUNK_BATCHES, -(-len(order) // n))
    n_chunks = -(-len(order) // size)
    # dealt round-robin from the largest cell down, so every chunk gets its share of the slow relaxations
    dealt = [tuple(order[k::n_chunks]) for k in range(n_chunks)]
    chunks = {keys: ([structures[first[key]] for key in keys], settings, symmetry) for keys in dealt}
    for keys, status, value in pool.run(_batch_job, chunks):
        yield list(keys), value if status == "ok" else [_job_failure(status, value)] * len(keys)


def _job_failure(status: str, value: Any) -> dict[str, Any]:
    if status == "error":  # a pickling or worker-side error
        return _failure("mlip_error:WorkerError", str(value))
    return _failure("worker_crashed", f"worker exit code {value}")


_NO_COST = {"force_calls": 0, "seconds": 0.0, "potential_seconds": 0.0}


def _matched_duplicates(keys: dict[int, str], todo: dict[str, list[int]], structures: dict[int, Structure],
                        matching: Matching) -> dict[str, tuple[list[int], int]]:
    """The keys of ``todo`` whose crystal matches an earlier row's of the batch, cached or not: key -> (its rows,
    that row). Classes span the cached rows too, so a sharded evaluation's final pass (every representative a
    cache hit) shares as a single process would."""
    first_row: dict[str, int] = {}
    for i in sorted(keys):
        first_row.setdefault(keys[i], i)
    first_rows = sorted(first_row.items(), key=lambda item: item[1])
    _, classes = uniqueness([structures[row] for _, row in first_rows], matching)
    first_of: dict[int, int] = {}
    shared: dict[str, tuple[list[int], int]] = {}
    for (key, row), cid in zip(first_rows, classes, strict=True):
        if cid not in first_of:
            first_of[cid] = row
        elif key in todo:
            shared[key] = (todo[key], first_of[cid])
    return shared


def _watcher_tags(watcher: Watcher | None) -> tuple[str, ...]:
    tag = watcher.cache_tag() if watcher is not None else None
    return (tag,) if tag else ()


def _failure(reason: str, detail: str) -> dict[str, Any]:
    return {**RelaxResult(fail_reason=reason, fail_detail=detail[:200]).as_dict(),
            "spacegroup_achieved": None, "spacegroup_fail_reason": None}
