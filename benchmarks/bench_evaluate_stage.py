"""Where does the evaluate stage's time go? A benchmark, not a test (issue 11, "Throughput").

Scores a generated samples file exactly as the evaluate stage does (``score_samples``, the configured potential,
relaxation settings and workers) with the relaxation cache off, then prints the wall time of each scoring step
beside the potential's own compute: the time inside its force calls, summed over the relaxations and spread over
the workers. ``wall / compute`` = 1.0 would mean the cores did nothing but evaluate the potential.

While it relaxes, a sampler reads every worker's threads from /proc (what ``top -H`` shows) and prints each busy
thread's share of a core, so an extra native thread beside the potential's shows up by name.

    python benchmarks/bench_evaluate_stage.py --samples data/samples/sft.jsonl
    python benchmarks/bench_evaluate_stage.py --samples data/samples/sft.jsonl --limit 150 mlip=chgnet
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from collections import defaultdict
from pathlib import Path

import psutil

from plaidpp.config import PROJECT_ROOT, compose
from plaidpp.evaluation.inputs import read_samples
from plaidpp.evaluation.score import score_samples


class ThreadSampler(threading.Thread):
    """CPU seconds per (worker, thread name) of this process's children, sampled every ``period`` s."""

    def __init__(self, period: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.period, self.stop = period, threading.Event()
        self.first: dict[tuple[int, int], float] = {}
        self.last: dict[tuple[int, int], float] = {}
        self.names: dict[tuple[int, int], str] = {}
        self.start_time = self.end_time = 0.0

    def run(self) -> None:
        self.start_time = time.monotonic()
        me = psutil.Process()
        while not self.stop.wait(self.period):
            for child in me.children(recursive=True):
                try:
                    for thread in child.threads():
                        key = (child.pid, thread.id)
                        busy = thread.user_time + thread.system_time
                        self.first.setdefault(key, busy)
                        self.last[key] = busy
                        if key not in self.names:
                            self.names[key] = Path(f"/proc/{child.pid}/task/{thread.id}/comm").read_text().strip()
                except (psutil.Error, OSError):
                    continue
        self.end_time = time.monotonic()

    def report(self) -> list[str]:
        span = max(1e-9, self.end_time - self.start_time)
        by_worker: dict[int, list[tuple[float, str, int]]] = defaultdict(list)
        for key, busy in self.last.items():
            share = (busy - self.first[key]) / span
            if share >= 0.02:
                by_worker[key[0]].append((share, self.names[key], key[1]))
        lines = []
        for pid, threads in sorted(by_worker.items()):
            threads.sort(reverse=True)
            main = [t for t in threads if t[2] == pid]
            others = [t for t in threads if t[2] != pid]
            lines.append(f"  worker {pid}: main thread {main[0][0]:.0%} of a core" if main else f"  worker {pid}:")
            lines += [f"      + thread {tid} '{name}' {share:.0%}" for share, name, tid in others]
        return lines or ["  (no worker thread above 2 % of a core)"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=Path, default=PROJECT_ROOT / "data/samples/sft.jsonl",
                        help="a plaidpp sample JSONL (or any --samples input); default: make run's SFT samples")
    parser.add_argument("--limit", type=int, default=None, help="only the first N samples")
    parser.add_argument("--no-thread-pinning", action="store_true",
                        help="start the workers without WORKER_THREAD_ENV (how the stage ran before issue 11)")
    parser.add_argument("overrides", nargs="*", help="evaluate overrides (mlip=chgnet relax.steps=500 workers=1 ...)")
    args = parser.parse_args()
    if args.no_thread_pinning:
        from plaidpp.evaluation import workers

        workers.WORKER_THREAD_ENV.clear()
    cfg = compose("evaluate", ["samples=-", "out=-", "tracking.uri=null", "cache.enabled=false", *args.overrides])
    rows = read_samples(args.samples, cfg.samples_format, cfg.csv_column, args.limit)
    load = os.getloadavg()[0]
    sampler = ThreadSampler()
    sampler.start()
    start = time.perf_counter()
    table, summary = score_samples(rows, cfg)
    wall = time.perf_counter() - start
    sampler.stop.set()
    sampler.join()
    t = summary["timings"]
    relaxed = table[table["relax_cached"] == False]  # noqa: E712
    capped = int((relaxed["relax_converged"] == False).sum())  # noqa: E712
    calls = max(1, t["force_calls"])
    print(f"\n{summary['n_requested']} samples, {t['n_relaxed_now']} relaxed with {summary['mlip']} "
          f"({summary['relax_settings']}), {t['workers']} workers, {os.cpu_count()} cores; load average {load:.1f} "
          f"at start, {os.getloadavg()[0]:.1f} at end")
    print("wall time per step (s): " + ", ".join(f"{k} {v:.1f}" for k, v in t["steps_s"].items())
          + f"; total {wall:.1f}")
    print(f"potential compute: {t['force_calls']} force calls, {t['potential_compute_s']:.1f} s "
          f"({1000 * t['potential_compute_s'] / calls:.1f} ms per call); worker time in relaxations "
          f"{t['relax_worker_s']:.1f} s; compute per worker {t['potential_compute_s'] / t['workers']:.1f} s")
    print(f"wall / compute: relaxation step {t['relaxation_wall_over_compute']}, whole scoring "
          f"{t['total_wall_over_compute']}")
    print(f"relaxations at the step cap ({cfg.relax.steps}): {capped} of {len(relaxed)}; "
          f"failure reasons {summary['failure_kinds']}")
    print("worker threads while scoring (share of one core):")
    print("\n".join(sampler.report()))


if __name__ == "__main__":
    main()
