"""How many processes and threads a stage uses: one rule for every stage (``workers``, 0 = all cores)."""

from __future__ import annotations

import os


def n_workers(requested: int) -> int:
    """``requested`` worker processes, or for 0 every core this process may run on: under SLURM (or taskset)
    that is the job's allocation (``cpus_per_task``), not the node's cores, which ``os.cpu_count`` counts."""
    if requested > 0:
        return requested
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return cores or 1


def set_torch_threads(workers: int) -> int:
    """torch intra-op threads = ``workers`` (0 = one per core). Returns the count in use.

    Set explicitly even for 0: torch's own default depends on what else runs at import time, and the thread
    count changes float reduction order, so an unset count makes a training run's loss depend on the machine's
    load (docs/design.md, "Reproducibility").
    """
    import torch

    torch.set_num_threads(n_workers(workers))
    return torch.get_num_threads()
