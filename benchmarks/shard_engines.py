"""What a sharding engine costs before any relaxation: submitit job arrays against Ray tasks, on this machine.

    python benchmarks/shard_engines.py --engine submitit --tasks 2
    python benchmarks/shard_engines.py --engine ray --tasks 2     # needs `pip install ray` (not a dependency)

Each engine runs ``--tasks`` tasks that each sleep 1 s (a stand-in for a shard, so the figure is overhead
plus the 1 s, not the work), twice in one process, after starting the engine (``start_s``: Ray's head, object store and workers;
submitit's executor); the first round includes the workers' first start, the second is the cost once warm. Prints
seconds per round, the Python import time of the engine, and the resident memory of this process and its
children after the rounds (MB). Run it alone: the figures are wall-clock.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time


def _shard(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def _rss_mb() -> float:
    import psutil

    me = psutil.Process()
    return round(sum(p.memory_info().rss for p in [me, *me.children(recursive=True)]) / 2**20, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=("submitit", "ray"), required=True)
    parser.add_argument("--tasks", type=int, default=2)
    parser.add_argument("--sleep", type=float, default=1.0)
    args = parser.parse_args()
    started = time.perf_counter()
    if args.engine == "ray":
        import ray

        imported = time.perf_counter() - started
        ray.init(num_cpus=args.tasks, include_dashboard=False, log_to_driver=False)
        start = time.perf_counter() - started - imported
        remote = ray.remote(num_cpus=1)(_shard)

        def run() -> list[float]:
            return ray.get([remote.remote(args.sleep) for _ in range(args.tasks)])
    else:
        import submitit

        imported = time.perf_counter() - started
        folder = tempfile.mkdtemp(prefix="shard-engines-")
        executor = submitit.AutoExecutor(folder=folder, cluster="local")
        executor.update_parameters(timeout_min=5)
        start = time.perf_counter() - started - imported

        def run() -> list[float]:
            jobs = executor.map_array(_shard, [args.sleep] * args.tasks)
            return [job.result() for job in jobs]

    rounds = []
    for _ in range(2):
        t0 = time.perf_counter()
        assert run() == [args.sleep] * args.tasks
        rounds.append(round(time.perf_counter() - t0, 2))
    figures = {"engine": args.engine, "tasks": args.tasks, "sleep_s": args.sleep, "import_s": round(imported, 2),
               "start_s": round(start, 2),
               "first_round_s": rounds[0], "second_round_s": rounds[1], "rss_mb_after": _rss_mb()}
    if args.engine == "ray":
        ray.shutdown()
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
