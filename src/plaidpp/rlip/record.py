"""What an RLIP run reports: the flat per-iteration figures (MLflow, ``metrics/rlip.json``) and their table."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from plaidpp.errors import UserError
from plaidpp.evaluation.metrics import names as rate_names
from plaidpp.rlip.layout import Layout
from plaidpp.settings.rlip import INITIAL_STEPS, RLIP_STEPS
from plaidpp.settings.stages import RlipConfig

COUNT_KEYS = ("n_requested", "n_parsed", "mean_e_hull")
# What ``collect`` (the pipeline's last RLIP stage) reads besides the step markers.
COLLECT_READS = ("rlip.iterations", "reward.mlip", "evaluation.mlip", "evaluation.enabled", "evaluation.initial",
                 "schedule")


def iteration_steps(cfg: RlipConfig, i: int) -> tuple[str, ...]:
    """The steps of iteration i: iteration 0 only evaluates (and audits) pi_0; evaluation can be switched off."""
    steps = INITIAL_STEPS if i == 0 else RLIP_STEPS
    return tuple(s for s in steps if s not in INITIAL_STEPS or cfg.evaluation.enabled)


def iteration_metrics(results: dict[str, dict[str, Any]], temperature: float | None) -> dict[str, float]:
    """The flat per-iteration figures of the steps' summaries."""
    out: dict[str, Any] = {}
    if temperature is not None:
        out["temperature"] = temperature
    if "sample" in results:
        out["rollout/final_parse_rate"] = results["sample"].get("final_parse_rate")
        out["rollout/attempt_parse_rate"] = results["sample"].get("attempt_parse_rate")
    for role, step in (("reward", "score"), ("eval", "evaluate")):
        for name in (*COUNT_KEYS, *rate_names()):
            if step in results and name in results[step]:
                out[f"{role}/{name}"] = results[step][name]
                if interval := results[step].get(f"{name}_ci95"):  # flat, so MLflow can draw it as a band
                    out[f"{role}/{name}_ci95_low"], out[f"{role}/{name}_ci95_high"] = interval
    if "pairs" in results:
        out["pairs/n"] = results["pairs"]["n_pairs"]
        for kind, n in results["pairs"]["pairs_by_kind"].items():
            out[f"pairs/{kind}"] = n
        if "score" in results:
            # the reward tiers the pairs were built on (E_hull <= pairs.metastable_max), over all rollouts
            accepted = sum(t["stable"] + t["metastable"] for t in results["pairs"]["tiers"].values())
            out["reward/metastability_rate_reward"] = accepted / results["score"]["n_requested"]
    if (audit := results.get("audit")) and audit.get("n"):
        out["audit/n"] = audit["n"]
        out["audit/tier_agreement"] = audit["tier_agreement"]
        out["audit/tier_agreement_ci95_low"], out["audit/tier_agreement_ci95_high"] = audit["tier_agreement_ci95"]
        out["audit/spearman_e_hull"] = audit["spearman_e_hull"]
        out["audit/reward_metastability_rate"] = audit["reward"]["metastability_rate"]
    if "update" in results:
        out.update({k: v for k, v in results["update"].items() if k.startswith(("dpo/", "sft/"))})
    return {k: float(v) for k, v in out.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


# the series `dvc plots show` draws (dvc.yaml's top-level plots): id -> (title, keys of plot_rows)
PLOTS = {"rlip_rates": ("Evaluation rates per RLIP iteration", ("eval_sun_rate", "eval_ssun_rate",
                                                                 "eval_stability_rate", "eval_metastability_rate")),
         "rlip_diversity": ("Uniqueness and novelty per RLIP iteration (the collapse test)",
                            ("eval_uniqueness_rate", "eval_novelty_rate", "eval_validity_structural")),
         "rlip_reward": ("Reward potential's rates on the rollouts", ("reward_metastability_rate",
                                                                      "reward_stability_rate", "rollout_final_parse_rate")),
         "rlip_audit": ("Reward against evaluation potential on the evaluation samples (reward hacking?)",
                        ("audit_tier_agreement", "audit_spearman_e_hull", "audit_reward_metastability_rate",
                         "eval_metastability_rate"))}


def plot_rows(table: dict[str, Any]) -> list[dict[str, float | None]]:
    """The run's per-iteration figures as rows for `dvc plots` (its templates want flat names without '/').

    Every row carries every column, null where an iteration has no such figure (iteration 0 has no rollouts):
    DVC 3.67 renders none of a file's plots, with "argument of type 'NoneType' is not iterable", when a column
    is missing from some rows (tried on the make run's file), and none at all when a plotted column is missing
    from every row (a run without novelty has no S.U.N.), so the plotted columns are always there."""
    rows = [{"iteration": int(i), **{k.replace("/", "_"): v for k, v in row.items()}}
            for i, row in sorted(table["iterations"].items(), key=lambda kv: int(kv[0]))]
    plotted = [key for _, keys in PLOTS.values() for key in keys]  # drawn even where a run does not measure it
    columns = list(dict.fromkeys(["iteration", *plotted, *(key for row in rows for key in row)]))
    return [{key: row.get(key) for key in columns} for row in rows]


def temperature_of(cfg: RlipConfig, i: int) -> float | None:
    return cfg.schedule.temperature(i) if i > 0 else None


def collect(cfg: RlipConfig, layout: Layout, *, complete: bool = False) -> dict[str, Any]:
    """The whole-run table from every finished step's marker. ``complete``: every step of iterations
    0..rlip.iterations must have finished (the pipeline's last RLIP stage), else one line says what is missing."""
    table = {}
    first = 0 if cfg.evaluation.enabled and cfg.evaluation.initial else 1
    for i in range(0, cfg.rlip.iterations + 1):
        results = {s: d for s in RLIP_STEPS if (d := layout.done(i, s)) is not None}
        missing = [s for s in iteration_steps(cfg, i) if s not in results] if i >= first else []
        if complete and missing:
            raise UserError(f"RLIP run {layout.name!r}: iteration {i} has not finished {', '.join(missing)} (of "
                            f"{cfg.rlip.iterations} iterations). After changing rlip.iterations in params.yaml, "
                            "run `plaidpp pipeline` so dvc.yaml has a stage for every step")
        if results:
            table[str(i)] = iteration_metrics(results, temperature_of(cfg, i))
    return {"run": layout.name, "reward_mlip": cfg.reward.mlip, "eval_mlip": cfg.evaluation.mlip,
            "iterations": table, "vs_sft": vs_sft(layout, [int(i) for i in table])}


def vs_sft(layout: Layout, iterations: list[int]) -> dict[str, Any] | None:
    """The last evaluated iteration against iteration 0 (pi_0, the SFT model): every rate of both with its
    interval and the difference with its 95 % interval and test (``plaidpp compare``'s ``compare_tables``), over
    all slots and per task (``by_task``: unconditional, conditional)."""
    from plaidpp.evaluation.compare import compare_by_task, compare_tables, read_scored

    evaluated = [i for i in iterations if (layout.iter_dir(i) / "eval" / "structures.parquet").is_file()]
    if 0 not in evaluated or max(evaluated) == 0:
        return None
    last = max(evaluated)
    a, _ = read_scored(layout.iter_dir(last) / "eval")
    b, _ = read_scored(layout.iter_dir(0) / "eval")
    return {"iteration": last, **compare_tables(a, b), "by_task": compare_by_task(a, b)}


def run_params(cfg: RlipConfig, layout: Layout) -> dict[str, Any]:
    """The MLflow params of a run."""
    return {"run": layout.name, "rlip": asdict(cfg.rlip), "rollout": asdict(cfg.rollout), "pairs": asdict(cfg.pairs),
            "schedule": asdict(cfg.schedule), "dpo": asdict(cfg.dpo), "sampler": asdict(cfg.sampler),
            "model": cfg.model.name, "repr": cfg.repr, "reward_mlip": cfg.reward.mlip,
            "eval_mlip": cfg.evaluation.mlip, "seed": cfg.seed}


def run_tags(cfg: RlipConfig, layout: Layout) -> dict[str, str]:
    """The MLflow tags a run is filtered by."""
    return {"stage": "rlip", "rlip.run": layout.name, "repr": cfg.repr, "model": cfg.model.name,
            "reward_mlip": cfg.reward.mlip, "eval_mlip": cfg.evaluation.mlip, "schedule": cfg.schedule.name,
            "pairs.ratio": str(cfg.pairs.ratio), "pairs.kinds": ",".join(cfg.pairs.kinds),
            "reference": cfg.rlip.reference, "algorithm": cfg.rlip.algorithm}
