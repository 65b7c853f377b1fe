"""Where one RLIP run keeps its files, what it is called, and the seed of every step.

    <rlip.data_dir>/<run>/iter_<i>/       samples.jsonl, reward/, pairs.jsonl, eval/, <step>.done.json
    <rlip.models_dir>/<run>/iter_<i>/     pi_i (iteration 0's model is rlip.init_model, the SFT model)

A finished step leaves ``<step>.done.json`` (its summary); a re-run skips it.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from plaidpp.io import write_json
from plaidpp.settings.stages import RlipConfig

# overrides that say where things are or which part to run, not what is run: left out of sweep run names
_NOT_IN_NAME = ("rlip.iteration", "rlip.step", "rlip.data_dir", "rlip.models_dir", "rlip.init_model",
                "rlip.metrics_file", "tracking.", "paths.", "workers", "hydra.")
_MAX_NAME = 120
# one salt per step, so every (run seed, iteration, step) draws from its own stream
_SALT = {"sample": 0, "pairs": 1, "update": 2, "evaluate": 3}


def run_name(cfg: RlipConfig) -> str:
    """``rlip.run``, else "default"; in a Hydra multirun, the job's overrides (so sweep jobs never collide)."""
    if cfg.rlip.run:
        return cfg.rlip.run
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hc = HydraConfig.get()
        if hc.mode == RunMode.MULTIRUN:
            overrides = [o for o in hc.overrides.task if not o.split("=")[0].lstrip("+~").startswith(_NOT_IN_NAME)]
            return _sweep_name(sorted(overrides)) or f"job{hc.job.num}"
    except ValueError:  # HydraConfig not set: called from tests or Python
        pass
    return "default"


def _sweep_name(overrides: list[str]) -> str:
    """A sweep job's run folder: its overrides; past ``_MAX_NAME`` characters (a file name holds 255 bytes, and
    a sweep carries every shared override too) its group choices (``schedule=flagship``) and a hash of all."""
    name = _file_safe(overrides)
    if len(name) <= _MAX_NAME:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:10]
    groups = _file_safe([o for o in overrides if "." not in o.split("=")[0]])
    return f"{groups[:_MAX_NAME - 11]}-{digest}"


def _file_safe(overrides: list[str]) -> str:
    """Overrides joined by commas, with anything a file name should not hold replaced by ``_``."""
    return re.sub(r"[^A-Za-z0-9_.=,-]+", "_", ",".join(overrides))


class Layout:
    """Where iteration ``i`` of one RLIP run keeps its files."""

    def __init__(self, cfg: RlipConfig) -> None:
        self.name = run_name(cfg)
        self.data = Path(cfg.rlip.data_dir) / self.name
        self.models = Path(cfg.rlip.models_dir) / self.name
        self.init_model = Path(cfg.rlip.init_model)
        self.seed_base = cfg.seed
        self.metrics_file = Path(cfg.rlip.metrics_file)

    def iter_dir(self, i: int) -> Path:
        return self.data / f"iter_{i}"

    def model(self, i: int) -> Path:
        return self.init_model if i == 0 else self.models / f"iter_{i}"

    def reference(self, i: int, mode: str) -> Path:
        """pi_ref for iteration i: pi_{i-1} (``previous``, the paper's) or pi_0 (``initial``, the ablation)."""
        return self.model(i - 1) if mode == "previous" else self.model(0)

    def marker(self, i: int, step: str) -> Path:
        return self.iter_dir(i) / f"{step}.done.json"

    def done(self, i: int, step: str) -> dict[str, Any] | None:
        marker = self.marker(i, step)
        return json.loads(marker.read_text()) if marker.is_file() else None

    def mark(self, i: int, step: str, summary: dict[str, Any]) -> dict[str, Any]:
        write_json(self.marker(i, step), summary)
        return summary

    def seed(self, i: int, step: str) -> int:
        """A distinct, reproducible seed per (run seed, iteration, step)."""
        return self.seed_base * 10_000 + i * 10 + _SALT[step]

    def summary_path(self) -> Path:
        """The run's whole record (``record.collect``: names, per-iteration figures, ``vs_sft`` with its tests);
        the DVC metrics file (``metrics_path``) keeps only its numbers."""
        return self.data / "summary.json"

    def plots_path(self) -> Path:
        """One row per iteration (``record.plot_rows``) for `dvc plots`: ``<metrics>/plots/rlip.json`` for the
        default run, ``<metrics>/plots/rlip_runs/<run>.json`` for the others."""
        folder = self.metrics_file.parent / "plots"
        return folder / "rlip.json" if self.name == "default" else folder / "rlip_runs" / f"{self.name}.json"

    def metrics_path(self) -> Path:
        """``rlip.metrics_file`` for the default run (the DVC metric); ``<its dir>/rlip_runs/<run>.json`` for a
        variant or sweep job, so an ablation never overwrites the pipeline's figures."""
        if self.name == "default":
            return self.metrics_file
        return self.metrics_file.parent / "rlip_runs" / f"{self.name}.json"
