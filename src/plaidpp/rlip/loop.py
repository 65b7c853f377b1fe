"""``plaidpp rlip``: the RLIP iteration loop (PLaID++ Algorithm 1, section 4.2, appendix 7.2).

For i = 1..R, starting from pi_0 = the SFT model:

1. ``sample``   K unconditional + M per target space group from pi_{i-1} at temperature T_i (``schedule``);
2. ``score``    every kept sample with the *reward* MLIP through the evaluation package (``score_samples``);
3. ``pairs``    preference pairs (``plaidpp.rlip.pairs``);
4. ``update``   DPO with pi_ref = pi_{i-1} (or the fixed pi_0 ablation) -> pi_i; or, for the iterative-SFT
   baseline, fine-tuning pi_{i-1} on the metastable samples (rejection sampling);
5. ``evaluate`` a fresh sample set from pi_i scored with the *evaluation* MLIP (and pi_0 once, as iteration 0).

Files: ``<rlip.data_dir>/iter_<i>/`` (samples, scored tables, pairs, summaries) and
``<rlip.models_dir>/iter_<i>/`` (the model). Each finished step leaves ``iter_<i>/<step>.done.json``; a re-run
skips finished steps, and the steps themselves resume mid-way (the sampler appends, scoring reuses the
relaxation cache, DPO resumes from its checkpoint). ``rlip.iteration=<i> rlip.step=<step>`` runs a single step
(what the DVC stages call). MLflow: a parent run per RLIP run, a nested child per iteration, and the
per-iteration figures also on the parent with step=i so runs compare side by side.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from plaidpp.errors import UserError
from plaidpp.io import write_json
from plaidpp.prompts import spacegroup_prompt, unconditional_prompt
from plaidpp import tracking
from plaidpp.rlip.pairs import PairsConfig, build_pairs, write_pairs
from plaidpp.rlip.schedules import Schedule

STEPS = ("sample", "score", "pairs", "update", "evaluate")


# ----------------------------------------------------------------------------------------------- layout
# overrides that say where things are or which part to run, not what is run: left out of sweep run names
_NOT_IN_NAME = ("rlip.iteration", "rlip.step", "rlip.data_dir", "rlip.models_dir", "rlip.init_model",
                "rlip.metrics_file", "tracking.", "paths.", "workers", "hydra.")

def run_name(cfg: DictConfig) -> str:
    """``rlip.run``, else "default"; in a Hydra multirun, the job's overrides (so sweep jobs never collide)."""
    if cfg.rlip.get("run"):
        return str(cfg.rlip.run)
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hc = HydraConfig.get()
        if hc.mode == RunMode.MULTIRUN:
            overrides = [o for o in hc.overrides.task if not o.split("=")[0].lstrip("+~").startswith(_NOT_IN_NAME)]
            name = re.sub(r"[^A-Za-z0-9_.=,-]+", "_", ",".join(sorted(overrides)))
            return name or f"job{hc.job.num}"
    except ValueError:  # HydraConfig not set: called from tests or Python
        pass
    return "default"


class Layout:
    """Where iteration ``i`` of one RLIP run keeps its files."""

    def __init__(self, cfg: DictConfig) -> None:
        self.name = run_name(cfg)
        self.data = Path(cfg.rlip.data_dir) / self.name
        self.models = Path(cfg.rlip.models_dir) / self.name
        self.init_model = Path(cfg.rlip.init_model)

    def iter_dir(self, i: int) -> Path:
        return self.data / f"iter_{i}"

    def model(self, i: int) -> Path:
        return self.init_model if i == 0 else self.models / f"iter_{i}"

    def reference(self, i: int, mode: str) -> Path:
        """pi_ref for iteration i: pi_{i-1} (``previous``, the paper's) or pi_0 (``initial``, the ablation)."""
        if mode == "previous":
            return self.model(i - 1)
        if mode == "initial":
            return self.model(0)
        raise UserError(f"rlip.reference must be 'previous' or 'initial', got {mode!r}")

    def marker(self, i: int, step: str) -> Path:
        return self.iter_dir(i) / f"{step}.done.json"


def metrics_path(cfg: DictConfig, layout: Layout) -> Path:
    """``rlip.metrics_file`` for the default run (the DVC metric); ``<its dir>/rlip_runs/<run>.json`` for a
    variant or sweep job, so an ablation never overwrites the pipeline's figures."""
    path = Path(cfg.rlip.metrics_file)
    return path if layout.name == "default" else path.parent / "rlip_runs" / f"{layout.name}.json"


def _done(layout: Layout, i: int, step: str) -> dict[str, Any] | None:
    marker = layout.marker(i, step)
    return json.loads(marker.read_text()) if marker.is_file() else None


def _mark(layout: Layout, i: int, step: str, summary: dict[str, Any]) -> dict[str, Any]:
    _write_json(layout.marker(i, step), summary)
    return summary


def _write_json(path: Path, data: Any) -> None:
    write_json(path, data, default=_json_default)


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)


# ----------------------------------------------------------------------------------------------- steps
def _prompts(rollout: Any, n_unconditional: int, n_per_group: int) -> tuple[list[str], list[int]]:
    prompts, counts = [], []
    if n_unconditional > 0:
        prompts.append(unconditional_prompt())
        counts.append(int(n_unconditional))
    if n_per_group > 0:
        for group in rollout.groups:
            prompts.append(spacegroup_prompt(int(group)))
            counts.append(int(n_per_group))
    if not prompts:
        raise UserError("nothing to sample: set rollout.n_unconditional or rollout.n_per_group above 0")
    return prompts, counts


def sample_from(model_dir: Path, out: Path, cfg: DictConfig, temperature: float, n_unconditional: int,
                n_per_group: int, seed: int) -> dict[str, Any]:
    """K unconditional + M per group from the model in ``model_dir`` into ``out`` (B's resumable sampler)."""
    from plaidpp.sampling.generate import final_rows, generate
    from plaidpp.training.models import load_model_and_tokenizer

    if not model_dir.exists():
        raise UserError(f"no model at {model_dir}; run `plaidpp sft` first (or set rlip.init_model)")
    model, tokenizer = load_model_and_tokenizer(str(model_dir), cfg.model, for_training=False)
    prompts, counts = _prompts(cfg.rollout, n_unconditional, n_per_group)
    stats = generate(model, tokenizer, prompts, counts, temperature=temperature, top_p=float(cfg.rollout.top_p),
                     batch_size=int(cfg.rollout.batch_size), repr=cfg.repr.name,
                     max_attempts=int(cfg.rollout.max_attempts), out_path=out, seed=seed,
                     max_new_tokens=int(cfg.rollout.max_new_tokens))
    finals = final_rows(out)
    return {"temperature": temperature, "seed": seed, "n_slots": len(finals),
            "final_parse_rate": sum(r["decoded"] for r in finals) / max(len(finals), 1), **stats.as_dict()}


def evaluate_config(cfg: DictConfig, role: str) -> DictConfig:
    """The ``evaluate`` stage's config with the ``reward`` or ``evaluation`` MLIP (and that role's overrides)."""
    import hydra
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from plaidpp.config import conf_dir

    node = cfg[role]
    overrides = [f"mlip={node.mlip}", f"paths.root={cfg.paths.root}", f"seed={cfg.seed}",
                 f"workers={cfg.workers}", "tracking.uri=null", "progress=false", *list(node.overrides)]
    if GlobalHydra.instance().is_initialized():  # inside `plaidpp rlip` (hydra.main) or a test's compose
        return hydra.compose(config_name="evaluate", overrides=overrides)
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3", job_name="evaluate"):
        return hydra.compose(config_name="evaluate", overrides=overrides)


def score_file(samples: Path, out_dir: Path, eval_cfg: DictConfig, model_dir: Path) -> dict[str, Any]:
    """Score the kept rows of a samples file; writes ``structures.parquet`` and ``summary.json`` in out_dir."""
    from plaidpp.evaluation import score_samples
    from plaidpp.sampling.generate import final_rows

    rows = final_rows(samples)
    table, summary = score_samples(rows, eval_cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / "structures.parquet.tmp"
    table.to_parquet(tmp)
    os.replace(tmp, out_dir / "structures.parquet")
    _write_json(out_dir / "summary.json", summary)
    return summary


def step_sample(cfg: DictConfig, layout: Layout, i: int) -> dict[str, Any]:
    t = Schedule.from_mapping(cfg.schedule).temperature(i)
    return sample_from(layout.model(i - 1), layout.iter_dir(i) / "samples.jsonl", cfg, t,
                       int(cfg.rollout.n_unconditional), int(cfg.rollout.n_per_group), _seed(cfg, i, 0))


def step_score(cfg: DictConfig, layout: Layout, i: int) -> dict[str, Any]:
    return score_file(layout.iter_dir(i) / "samples.jsonl", layout.iter_dir(i) / "reward",
                      evaluate_config(cfg, "reward"), layout.model(i - 1))


def step_pairs(cfg: DictConfig, layout: Layout, i: int) -> dict[str, Any]:
    import pandas as pd

    table = pd.read_parquet(layout.iter_dir(i) / "reward" / "structures.parquet")
    pcfg = PairsConfig.from_mapping({**OmegaConf.to_container(cfg.pairs, resolve=True), "seed": _seed(cfg, i, 1)})
    result = build_pairs(table, pcfg)
    write_pairs(result, layout.iter_dir(i) / "pairs.jsonl")
    return result.summary()


def step_update(cfg: DictConfig, layout: Layout, i: int) -> dict[str, Any]:
    mode = cfg.rlip.algorithm
    if mode == "dpo":
        from plaidpp.training.dpo import train_dpo

        summary = train_dpo(layout.model(i - 1), layout.reference(i, cfg.rlip.reference),
                            layout.iter_dir(i) / "pairs.jsonl", layout.model(i), _with_seed(cfg, _seed(cfg, i, 2)))
        summary.pop("log_history", None)  # kept in the model dir's dpo_summary.json
        return summary
    if mode == "sft":
        from plaidpp.rlip.iterative_sft import train_on_accepted

        return train_on_accepted(layout.model(i - 1), layout.iter_dir(i) / "reward" / "structures.parquet",
                                 layout.model(i), cfg, _seed(cfg, i, 2))
    raise UserError(f"rlip.algorithm must be 'dpo' or 'sft', got {mode!r}")


def step_evaluate(cfg: DictConfig, layout: Layout, i: int) -> dict[str, Any]:
    ev = cfg.evaluation
    out = layout.iter_dir(i) / "eval"
    temperature = float(ev.temperature) if ev.temperature is not None else Schedule.from_mapping(
        cfg.schedule).temperature(max(i, 1))
    sampled = sample_from(layout.model(i), out / "samples.jsonl", cfg, temperature, int(ev.n_unconditional),
                          int(ev.n_per_group), _seed(cfg, i, 3))
    summary = score_file(out / "samples.jsonl", out, evaluate_config(cfg, "evaluation"), layout.model(i))
    return {"sampling": sampled, **summary}


STEP_FUNCTIONS = {"sample": step_sample, "score": step_score, "pairs": step_pairs, "update": step_update,
                  "evaluate": step_evaluate}


def _seed(cfg: DictConfig, i: int, salt: int) -> int:
    """A distinct, reproducible seed per (run seed, iteration, step)."""
    return int(cfg.seed) * 10_000 + i * 10 + salt


def _with_seed(cfg: DictConfig, seed: int) -> DictConfig:
    copy = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    copy.seed = seed
    return copy


# ----------------------------------------------------------------------------------------------- metrics
_RATE_KEYS = ("n_requested", "n_parsed", "parse_rate", "validity_structural", "validity_composition", "relax_rate",
              "stability_rate", "metastability_rate", "metastability_rate_reward", "uniqueness_rate", "novelty_rate",
              "sun_rate", "ssun_rate", "spacegroup_accuracy", "spacegroup_accuracy_generated", "mean_e_hull")


def iteration_metrics(i: int, results: dict[str, dict[str, Any]], temperature: float | None) -> dict[str, float]:
    """The flat per-iteration figures logged to MLflow and written to ``metrics/rlip.json``."""
    out: dict[str, float] = {}
    if temperature is not None:
        out["temperature"] = temperature
    if "sample" in results:
        out["rollout/final_parse_rate"] = results["sample"].get("final_parse_rate")
        out["rollout/attempt_parse_rate"] = results["sample"].get("attempt_parse_rate")
    for role, key in (("reward", "score"), ("eval", "evaluate")):
        for name in _RATE_KEYS:
            if key in results and name in results[key]:
                out[f"{role}/{name}"] = results[key][name]
    if "pairs" in results:
        out["pairs/n"] = results["pairs"]["n_pairs"]
        for kind, n in results["pairs"]["pairs_by_kind"].items():
            out[f"pairs/{kind}"] = n
    if "update" in results:
        out.update({k: v for k, v in results["update"].items() if k.startswith(("dpo/", "sft/"))})
    return {k: float(v) for k, v in out.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _params(cfg: DictConfig, layout: Layout) -> dict[str, Any]:
    return {"run": layout.name, "rlip": OmegaConf.to_container(cfg.rlip, resolve=True),
            "rollout": OmegaConf.to_container(cfg.rollout, resolve=True),
            "pairs": OmegaConf.to_container(cfg.pairs, resolve=True),
            "schedule": OmegaConf.to_container(cfg.schedule, resolve=True),
            "dpo": OmegaConf.to_container(cfg.dpo, resolve=True), "model": cfg.model.name, "repr": cfg.repr.name,
            "reward_mlip": cfg.reward.mlip, "eval_mlip": cfg.evaluation.mlip, "seed": cfg.seed}


def _tags(cfg: DictConfig, layout: Layout) -> dict[str, str]:
    return {"stage": "rlip", "rlip.run": layout.name, "repr": cfg.repr.name, "model": cfg.model.name,
            "reward_mlip": str(cfg.reward.mlip), "eval_mlip": str(cfg.evaluation.mlip),
            "schedule": str(cfg.schedule.name), "pairs.ratio": str(cfg.pairs.ratio),
            "pairs.kinds": ",".join(cfg.pairs.kinds), "reference": cfg.rlip.reference, "algorithm": cfg.rlip.algorithm}


def _stored_id(path: Path) -> str | None:
    return path.read_text().strip() if path.is_file() else None


# ----------------------------------------------------------------------------------------------- driver
def run_iteration(cfg: DictConfig, layout: Layout, i: int, only: str | None = None) -> dict[str, dict[str, Any]]:
    """Run (or skip, when done) the steps of iteration i; iteration 0 only evaluates pi_0."""
    steps = ("evaluate",) if i == 0 else STEPS
    if only is not None and only not in steps:
        raise UserError(f"rlip.step={only} is not a step of iteration {i}; steps: {', '.join(steps)}")
    if not cfg.evaluation.enabled:
        steps = tuple(s for s in steps if s != "evaluate")
    results: dict[str, dict[str, Any]] = {}
    for step in steps:
        if only is not None and step != only:
            done = _done(layout, i, step)
            if done is not None:
                results[step] = done
            continue
        done = _done(layout, i, step)
        if done is not None:
            print(f"rlip {layout.name} iter {i}: {step} done, skipped")
            results[step] = done
            continue
        print(f"rlip {layout.name} iter {i}: {step} ...", flush=True)
        started = time.perf_counter()
        summary = STEP_FUNCTIONS[step](cfg, layout, i)
        summary = {**summary, "step_wall_s": round(time.perf_counter() - started, 2)}
        results[step] = _mark(layout, i, step, summary)
        print(f"rlip {layout.name} iter {i}: {step} finished in {summary['step_wall_s']} s", flush=True)
    return results


def check_distinct_mlips(cfg: DictConfig) -> None:
    """The reward and the evaluation MLIP must differ (the paper: eqV2 reward, eSEN evaluation), otherwise the
    evaluation measures how well the policy games its own reward. ``rlip.allow_same_mlip=true`` opts out."""
    if not cfg.evaluation.enabled or cfg.rlip.get("allow_same_mlip", False):
        return
    def identity(role: Any) -> tuple[str, list[str]]:  # the potential and its checkpoint/model overrides
        return str(role.mlip), sorted(str(o) for o in role.overrides if str(o).startswith("mlip."))

    reward, judge = identity(cfg.reward), identity(cfg.evaluation)
    if reward == judge:
        raise UserError(f"reward and evaluation use the same MLIP ({reward[0]} {' '.join(reward[1])}); "
                        "choose another evaluation.mlip or checkpoint, or set rlip.allow_same_mlip=true")


def rlip(cfg: DictConfig) -> dict[str, Any]:
    """Run RLIP iterations 1..R (or the single iteration / step asked for); returns per-iteration metrics."""
    check_distinct_mlips(cfg)
    layout = Layout(cfg)
    schedule = Schedule.from_mapping(cfg.schedule)
    n_iter = int(cfg.rlip.iterations)
    if cfg.rlip.get("iteration") is not None:
        iterations = [int(cfg.rlip.iteration)]
        if not 0 <= iterations[0] <= n_iter:
            raise UserError(f"rlip.iteration must be in 0..{n_iter}")
    else:
        iterations = ([0] if cfg.evaluation.enabled and cfg.evaluation.initial else []) + list(range(1, n_iter + 1))
    only = cfg.rlip.get("step")
    if only is not None and only not in STEPS:
        raise UserError(f"rlip.step must be one of {', '.join(STEPS)}")
    layout.data.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, layout.data / "config.yaml", resolve=True)
    _set_threads(int(cfg.workers))

    per_iteration: dict[str, dict[str, float]] = {}
    parent_file = layout.data / "mlflow_parent_run_id.txt"
    with tracking.run(cfg, f"rlip-{layout.name}", run_id=_stored_id(parent_file), tags=_tags(cfg, layout)) as parent:
        if parent is not None:
            parent_file.write_text(parent.info.run_id)
            tracking.log_params(_params(cfg, layout))
        for i in iterations:
            temperature = schedule.temperature(i) if i > 0 else None
            child_file = layout.iter_dir(i) / "mlflow_run_id.txt"
            layout.iter_dir(i).mkdir(parents=True, exist_ok=True)
            with tracking.run(cfg, f"iter_{i}", run_id=_stored_id(child_file), nested=True,
                              tags={**_tags(cfg, layout), "iteration": str(i)}) as child:
                if child is not None:
                    child_file.write_text(child.info.run_id)
                results = run_iteration(cfg, layout, i, only)
                metrics = iteration_metrics(i, results, temperature)
                if child is not None:
                    tracking.log_params({"iteration": i, "temperature": temperature,
                                         "policy": str(layout.model(max(i - 1, 0))),
                                         "reference": str(layout.reference(i, cfg.rlip.reference)) if i else ""})
                    tracking.log_metrics(metrics)
                    for artifact in (layout.iter_dir(i) / "pairs.jsonl", layout.iter_dir(i) / "reward" / "summary.json",
                                     layout.iter_dir(i) / "eval" / "summary.json"):
                        if artifact.is_file() and artifact.stat().st_size < 50_000_000:
                            import mlflow

                            mlflow.log_artifact(str(artifact), artifact_path=f"iter_{i}")
            if parent is not None:
                tracking.log_metrics(metrics, step=i)
            per_iteration[str(i)] = metrics
    summary = {"run": layout.name, "iterations": per_iteration}
    # the whole-run table, rebuilt from every iteration's markers (a single-step call sees all finished ones)
    table = _collect(cfg, layout, schedule, n_iter)
    _write_json(layout.data / "metrics.json", table)
    if cfg.rlip.get("metrics_file") and only is None and cfg.rlip.get("iteration") is None:
        _write_json(metrics_path(cfg, layout), table)
    print(json.dumps(summary, indent=1))
    return summary


def _collect(cfg: DictConfig, layout: Layout, schedule: Schedule, n_iter: int) -> dict[str, Any]:
    table = {}
    for i in range(0, n_iter + 1):
        results = {s: d for s in STEPS if (d := _done(layout, i, s)) is not None}
        if results:
            table[str(i)] = iteration_metrics(i, results, schedule.temperature(i) if i else None)
    return {"run": layout.name, "reward_mlip": cfg.reward.mlip, "eval_mlip": cfg.evaluation.mlip,
            "iterations": table}


def _set_threads(workers: int) -> None:
    import torch

    if workers > 0:
        torch.set_num_threads(workers)


def clean_run(cfg: DictConfig) -> None:
    """Delete one run's files (data and models); used by tests and by hand to start a run over."""
    layout = Layout(cfg)
    shutil.rmtree(layout.data, ignore_errors=True)
    shutil.rmtree(layout.models, ignore_errors=True)
