"""``plaidpp rlip``: the RLIP iteration loop (PLaID++ Algorithm 1, section 4.2, appendix 7.2).

For i = 1..R, starting from pi_0 = the SFT model: ``sample`` from pi_{i-1} at T_i, ``score`` with the reward
potential, build ``pairs``, ``update`` pi_{i-1} -> pi_i by DPO, ``evaluate`` a fresh sample of pi_i with a
different potential (iteration 0 evaluates pi_0 once, the baseline). The steps live in ``rlip/steps/``, the
folders in ``rlip/layout.py``, the figures in ``rlip/record.py``.

A finished step leaves a marker and is skipped on a re-run; a killed step resumes mid-way.
``rlip.iteration=<i> rlip.step=<step>`` runs one step (what each DVC stage calls); ``rlip.step=collect``
only gathers the finished iterations into the metrics file (the pipeline's last RLIP stage). MLflow: a parent
run per RLIP run, a nested child per iteration, and every iteration's figures also on the parent with
step = iteration, so the UI draws them as curves.
"""

from __future__ import annotations

import json
import time
from typing import Any

from omegaconf import OmegaConf

from plaidpp import tracking
from plaidpp.errors import UserError
from plaidpp.io import write_json, write_metrics, write_text
from plaidpp.rlip import record
from plaidpp.rlip.layout import Layout
from plaidpp.rlip.roles import check_distinct_mlips
from plaidpp.rlip.steps import step_module
from plaidpp.runtime import set_torch_threads
from plaidpp.settings.stages import RlipConfig


def run_iteration(cfg: RlipConfig, layout: Layout, i: int, only: str | None = None) -> dict[str, dict[str, Any]]:
    """Run (or skip, when done) the steps of iteration i; ``only`` runs one step and reads the others' markers."""
    results: dict[str, dict[str, Any]] = {}
    for step in record.iteration_steps(cfg, i):
        done = layout.done(i, step)
        if done is not None or (only is not None and step != only):
            if done is not None:
                results[step] = done
            continue
        print(f"rlip {layout.name} iter {i}: {step} ...", flush=True)
        started = time.perf_counter()
        summary = step_module(step).run(cfg, layout, i)
        summary["step_wall_s"] = round(time.perf_counter() - started, 2)
        results[step] = layout.mark(i, step, summary)
        print(f"rlip {layout.name} iter {i}: {step} finished in {summary['step_wall_s']} s", flush=True)
    return results


def _iterations(cfg: RlipConfig) -> list[int]:
    if cfg.rlip.iteration is not None:
        return [cfg.rlip.iteration]
    first = [0] if cfg.evaluation.enabled and cfg.evaluation.initial else []
    return first + list(range(1, cfg.rlip.iterations + 1))


def _stored_id(path) -> str | None:  # noqa: ANN001
    return path.read_text().strip() if path.is_file() else None


def rlip(cfg: RlipConfig) -> dict[str, Any]:
    """Run RLIP iterations 1..R (or the one iteration / step asked for); returns per-iteration metrics."""
    check_distinct_mlips(cfg)
    layout = Layout(cfg)
    if cfg.rlip.step == "collect":
        table = record.collect(cfg, layout, complete=True)
        _write_record(layout, table)
        print(f"rlip {layout.name}: {len(table['iterations'])} iterations -> {layout.metrics_path()}")
        return table
    if cfg.rlip.step is not None and cfg.rlip.step not in record.iteration_steps(cfg, cfg.rlip.iteration):
        raise UserError(f"rlip.step={cfg.rlip.step} is not a step of iteration {cfg.rlip.iteration}")
    layout.data.mkdir(parents=True, exist_ok=True)
    write_text(layout.data / "config.yaml", OmegaConf.to_yaml(OmegaConf.structured(cfg)))
    set_torch_threads(cfg.workers)

    per_iteration: dict[str, dict[str, float]] = {}
    parent_file = layout.data / "mlflow_parent_run_id.txt"
    tags = record.run_tags(cfg, layout)
    with tracking.run(cfg, f"rlip-{layout.name}", run_id=_stored_id(parent_file), tags=tags) as parent:
        if parent is not None:
            parent_file.write_text(parent.info.run_id)
            tracking.log_params(record.run_params(cfg, layout))
        for i in _iterations(cfg):
            child_file = layout.iter_dir(i) / "mlflow_run_id.txt"
            layout.iter_dir(i).mkdir(parents=True, exist_ok=True)
            with tracking.run(cfg, f"iter_{i}", run_id=_stored_id(child_file), nested=True,
                              tags={**tags, "iteration": str(i)}) as child:
                if child is not None:
                    child_file.write_text(child.info.run_id)  # a killed iteration resumes the same child run
                results = run_iteration(cfg, layout, i, cfg.rlip.step)
                metrics = record.iteration_metrics(results, record.temperature_of(cfg, i))
                if child is not None:
                    _log_iteration(cfg, layout, i, metrics)
            if parent is not None:
                tracking.log_metrics(metrics, step=i)
            per_iteration[str(i)] = metrics
    if cfg.rlip.step is None and cfg.rlip.iteration is None:  # a whole run; DVC's steps leave this to `collect`
        _write_record(layout, record.collect(cfg, layout))
    summary = {"run": layout.name, "iterations": per_iteration}
    print(json.dumps(summary, indent=1))
    return summary


def _write_record(layout: Layout, table: dict[str, Any]) -> None:
    """The run's record (strings and tests), its numbers (DVC metrics) and its per-iteration rows (DVC plots)."""
    write_json(layout.summary_path(), table)
    write_metrics(layout.metrics_path(), table)
    write_json(layout.plots_path(), record.plot_rows(table))


def _log_iteration(cfg: RlipConfig, layout: Layout, i: int, metrics: dict[str, float]) -> None:
    import mlflow

    tracking.log_params({"iteration": i, "temperature": record.temperature_of(cfg, i),
                         "policy": str(layout.model(max(i - 1, 0))),
                         "reference": str(layout.reference(i, cfg.rlip.reference)) if i else ""})
    tracking.log_metrics(metrics)
    for artifact in (layout.iter_dir(i) / "pairs.jsonl", layout.iter_dir(i) / "reward" / "summary.json",
                     layout.iter_dir(i) / "eval" / "summary.json"):
        if artifact.is_file() and artifact.stat().st_size < 50_000_000:
            mlflow.log_artifact(str(artifact), artifact_path=f"iter_{i}")


def clean_run(cfg: RlipConfig) -> None:
    """Delete one run's files (data and models); used by tests and by hand to start a run over."""
    import shutil

    layout = Layout(cfg)
    shutil.rmtree(layout.data, ignore_errors=True)
    shutil.rmtree(layout.models, ignore_errors=True)
