"""One large samples file scored by many jobs: ``plaidpp evaluate ... shards.n=16 shards.executor=slurm``.

Relaxation is nearly all of an evaluation's cost (2.4 s per generated crystal with SevenNet-0 on a CPU core,
against milliseconds for parsing and a fraction of a second for symmetry and novelty), and it is the one step
that needs no other crystal. So a shard does only that: job ``k`` of ``n`` decodes its contiguous slice of the
final rows and relaxes what is valid into its own sqlite cache (``<folder>/shard-k.sqlite``: one writer per
file, which sqlite tolerates on a shared file system where concurrent writers are not safe). When every shard
has finished, their caches merge into ``cache.file`` and the ordinary single-process scoring runs over the
whole file: every relaxation is a cache hit, and uniqueness, novelty, S.U.N. and the summary are computed once
over all rows, so the table is the one a single process writes (tests/test_evaluation_shards.py).

The jobs go through submitit (``executor.map_array``: a SLURM job array, or local processes), the engine the
Hydra sweeps already use (conf/hydra/launcher/slurm.yaml); Ray was the alternative (docs/paper-scale.md says
why not). A shard writes ``shard-k.done.json`` when it finishes; a re-run submits only the shards without
one, and a shard that died part-way finds the relaxations it finished in its cache.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from plaidpp.errors import UserError
from plaidpp.evaluation.cache import RelaxCache
from plaidpp.evaluation.inputs import read_input
from plaidpp.evaluation.score import relax_rows, select_rows
from plaidpp.io import write_json
from plaidpp.settings.stages import EvaluateConfig


def shard_bounds(n_rows: int, n_shards: int) -> list[tuple[int, int]]:
    """``n_shards`` contiguous [start, stop) slices covering ``n_rows``, sizes differing by at most one."""
    size, extra = divmod(n_rows, n_shards)
    bounds, start = [], 0
    for k in range(n_shards):
        stop = start + size + (k < extra)
        bounds.append((start, stop))
        start = stop
    return bounds


def shard_folder(cfg: EvaluateConfig) -> Path:
    return Path(cfg.shards.folder) if cfg.shards.folder else Path(cfg.out) / "shards"


def _cache_file(folder: Path, k: int) -> Path:
    return folder / f"shard-{k:04d}.sqlite"


def _marker(folder: Path, k: int) -> Path:
    return folder / f"shard-{k:04d}.done.json"


def relax_shard(cfg: EvaluateConfig, k: int) -> dict[str, Any]:
    """Job ``k``: relax its slice of the final rows into its own cache, then write its marker (what a job array
    task runs; also callable in-process)."""
    folder = shard_folder(cfg)
    marker = _marker(folder, k)
    if marker.is_file():
        return json.loads(marker.read_text())
    samples = read_input(cfg.samples, cfg.samples_format, cfg.csv_column, cfg.inputs, cfg.max_samples)
    frame, _ = select_rows(samples.rows)
    start, stop = shard_bounds(len(frame), cfg.shards.n)[k]
    shard_cfg = replace(cfg, cache=replace(cfg.cache, file=str(_cache_file(folder, k))))
    counts = relax_rows(frame.iloc[start:stop], shard_cfg) if stop > start else {"n_rows": 0}
    record = {"shard": k, "of": cfg.shards.n, "rows": [start, stop], **counts}
    write_json(marker, record)
    return record


def _executor(cfg: EvaluateConfig, folder: Path):
    import submitit

    s = cfg.shards
    executor = submitit.AutoExecutor(folder=folder / "jobs" / "%j", cluster=s.executor)
    executor.update_parameters(timeout_min=s.timeout_min, name="plaidpp-evaluate-shard")
    if s.executor == "slurm":
        extra = {"slurm_partition": s.partition, "slurm_account": s.account}
        executor.update_parameters(cpus_per_task=s.cpus_per_task, mem_gb=s.mem_gb, gpus_per_node=s.gpus_per_task,
                                   slurm_array_parallelism=s.max_parallel,
                                   **{k: v for k, v in extra.items() if v is not None})
    return executor


def run_shards(cfg: EvaluateConfig) -> dict[str, Any]:
    """Relax every shard that has no marker (submitted as one job array, waited for), then merge the shards'
    caches into ``cache.file``. A failed shard stops here, in one line naming it and its log."""
    folder = shard_folder(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    todo = [k for k in range(cfg.shards.n) if not _marker(folder, k).is_file()]
    if todo:
        executor = _executor(cfg, folder)
        jobs = executor.map_array(relax_shard, [cfg] * len(todo), todo)
        print(f"evaluate: {len(todo)} of {cfg.shards.n} shards submitted ({cfg.shards.executor}, job "
              f"{jobs[0].job_id.split('_')[0]}); logs under {folder / 'jobs'}")
        failed = []
        for k, job in zip(todo, jobs, strict=True):
            try:
                job.result()
            except Exception as exc:  # noqa: BLE001 - submitit re-raises the job's error (or its death)
                failed.append((k, job, exc))
        if failed:
            k, job, exc = failed[0]
            raise UserError(f"{len(failed)} of {len(todo)} shards failed (shard {k}: {type(exc).__name__}; log "
                            f"{job.paths.stderr}); re-run the same command: finished shards and relaxations are kept")
    cache = RelaxCache(cfg.cache.file)
    try:
        merged = sum(cache.absorb(_cache_file(folder, k)) for k in range(cfg.shards.n)
                     if _cache_file(folder, k).is_file())
    finally:
        cache.close()
    records = [json.loads(_marker(folder, k).read_text()) for k in range(cfg.shards.n)]
    return {"n": cfg.shards.n, "executor": cfg.shards.executor, "submitted_now": len(todo),
            "relaxations_merged": merged, "relaxed_in_shards": sum(r.get("n_relaxed", 0) for r in records)}
