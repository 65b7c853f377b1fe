"""RLIP: preference pairs, temperature schedules and the iteration loop (``conf/rlip.yaml``, ``conf/pairs``,
``conf/schedule``). PLaID++ section 4.2 and appendix 7.2."""

from __future__ import annotations

from dataclasses import dataclass, replace

from plaidpp.settings.base import METRICS, READS, SettingError, nested, setting
from plaidpp.settings.evaluation import MLIP_PRESETS
from plaidpp.settings.sampling import PromptSet

PAIR_KINDS = ("stability_tiered", "stability", "novelty", "spacegroup", "spacegroup_stability")
RLIP_STEPS = ("sample", "score", "pairs", "update", "evaluate", "audit")
INITIAL_STEPS = ("evaluate", "audit")  # iteration 0 judges pi_0 only; also the steps evaluation.enabled switches


@dataclass
class PairsSettings:
    """How preference pairs are built from the reward MLIP's scores (docs/rlip.md). Defaults: the flagship."""

    kinds: list[str] = setting(help="pair kinds merged into one DPO set", choices=PAIR_KINDS,
                               factory=lambda: ["stability_tiered", "novelty", "spacegroup", "spacegroup_stability"])
    stable_max: float = setting(0.0, help="reward tier: E_hull at most this is stable", unit="eV/atom")
    metastable_max: float = setting(0.08, help="reward tier: metastable up to this (paper's reward threshold; its "
                                    "evaluation uses 0.1)", unit="eV/atom")
    ratio: int = setting(2, help="rejected partners per accepted crystal (paper 1:2; 1:1 and 1:10 reported worse)",
                         ge=1)
    metastable_per_stable: int = setting(1, help="(stable, metastable) pairs per stable crystal", ge=0)
    novelty_per_accept: int = setting(1, help="(stable & novel, stable & not novel) pairs per stable & novel crystal",
                                      ge=0)
    failed: str = setting("unstable", help="unparsed / invalid / unrelaxed samples: unstable (rejected only) or drop",
                          choices=("unstable", "drop"))

    def check(self) -> None:
        if "stability" in self.kinds and "stability_tiered" in self.kinds:
            raise SettingError("kinds", "choose one of 'stability' (non-tiered) and 'stability_tiered', not both")
        if self.stable_max > self.metastable_max:
            raise SettingError("stable_max", "must not exceed pairs.metastable_max")


@dataclass
class ScheduleSettings:
    """Sampling temperature per iteration: T_i = min(start + step * floor((i - 1) / every), max), or ``values``."""

    name: str = setting(help="preset name (recorded with every run)")
    start: float = setting(0.7, help="temperature of iteration 1 (paper: 0.7)", gt=0)
    step: float = setting(0.2, help="added every `every` iterations (paper: 0.2)", ge=0)
    every: int = setting(2, help="iterations between steps (paper: 2)", ge=1)
    max: float | None = setting(None, help="cap; null = none", gt=0)
    values: list[float] | None = setting(None, help="explicit temperatures (the last repeats); overrides the ramp",
                                         gt=0)

    def check(self) -> None:
        if self.values is not None and not self.values:
            raise SettingError("values", "an explicit schedule needs at least one temperature")

    def temperature(self, iteration: int) -> float:
        """Temperature of RLIP iteration ``iteration`` (1-based: iteration 1 samples from the SFT model)."""
        if iteration < 1:
            raise ValueError(f"RLIP iterations are 1-based, got {iteration}")
        if self.values is not None:
            return float(self.values[min(iteration, len(self.values)) - 1])
        t = self.start + self.step * ((iteration - 1) // self.every)
        if self.max is not None:
            t = min(t, self.max)
        return round(t, 6)  # 0.7 + 0.2 + 0.2 is 1.0999999999999999 in floats

    def temperatures(self, iterations: int) -> list[float]:
        return [self.temperature(i) for i in range(1, iterations + 1)]


@dataclass
class LoopSettings:
    run: str | None = setting(None, help="name of this run's folders; null = default (a sweep job: its overrides)")
    iterations: int = setting(help="R, DPO iterations (the paper's figures run 7)", ge=0)
    iteration: int | None = setting(None, help="run only this iteration (0 = evaluate pi_0 only); null = all", ge=0)
    step: str | None = setting(None, help="run only this step of `iteration` (what dvc.yaml calls); collect = only "
                               "gather finished iterations into the metrics file",
                               choices=(*RLIP_STEPS, "collect"))
    init_model: str = setting("${paths.models}/sft", help="pi_0, the SFT model (`plaidpp sft`)", path=READS)
    allow_same_mlip: bool = setting(False, help="allow a reward MLIP identical to the evaluation MLIP")
    reference: str = setting("previous", help="pi_ref: previous = pi_{i-1} (paper) | initial = fixed pi_0 (ablation)",
                             choices=("previous", "initial"))
    algorithm: str = setting("dpo", help="dpo | sft (iterative-SFT baseline: fine-tune on the accepted samples)",
                             choices=("dpo", "sft"))
    data_dir: str = setting("${paths.root}/data/rlip", help="runs' samples, scores, pairs (one folder per run)")
    models_dir: str = setting("${paths.models}/rlip", help="runs' models (one folder per run)")
    metrics_file: str = setting("${paths.metrics}/rlip.json", help="the default run's table; a named run writes "
                                "<its dir>/rlip_runs/<run>.json", path=METRICS)

    def check(self) -> None:
        if self.step is not None and self.step != "collect" and self.iteration is None:
            raise SettingError("step", "a single step needs rlip.iteration")
        if self.iteration is not None and self.iteration > self.iterations:
            raise SettingError("iteration", f"must be in 0..{self.iterations} (rlip.iterations)")


@dataclass
class RewardSettings:
    """The potential that scores rollouts for the pairs: the evaluate stage's config with this MLIP."""

    mlip: str = setting(help="reward potential (paper: eqV2, cheaper than the judge)", choices=MLIP_PRESETS)
    # 150 FIRE steps to 0.05 eV/Å, cheaper than the judge's (the paper's 500 / 0.02): the reward is a training
    # signal scored on every rollout. What it costs in trust, measured with SevenNet-0 (docs/evaluation.md): 92-95 %
    # of tiers as the full relaxation. Cheaper still is worse: on 200 generated crystals relaxed by CHGNet
    # (benchmarks/relax_settings_study.py, docs/rlip.md) 75 steps change 5 of 198 reward tiers against 150 steps,
    # 50 steps to 0.1 eV/Å change 9. Null = the evaluate stage's relaxation (the paper's preset relaxes both alike).
    relax_steps: int | None = setting(150, help="FIRE steps of the reward's relaxations (rollouts and the audit); "
                                      "null = the evaluate stage's relax.steps", ge=1)
    relax_fmax: float | None = setting(0.05, help="force threshold of the reward's relaxations; null = the "
                                       "evaluate stage's relax.fmax", unit="eV/Å", gt=0)
    overrides: list[str] = setting(help='more evaluate overrides, e.g. ["mlip.checkpoint=/ckpt/uma-s.pt"]',
                                   factory=list)

    def relax_overrides(self) -> list[str]:
        """The evaluate overrides of the reward's own relaxation settings (before ``overrides``, which win)."""
        return [f"relax.{k}={v}" for k, v in (("steps", self.relax_steps), ("fmax", self.relax_fmax)) if v is not None]


@dataclass
class EvaluationSettings:
    """A fresh sample from each pi_i scored with a *different* potential than the reward."""

    enabled: bool = setting(True, help="evaluate every iteration's model")
    initial: bool = setting(True, help="also evaluate pi_0 (iteration 0) as the baseline")
    mlip: str = setting(help="evaluation potential (paper: eSEN)", choices=MLIP_PRESETS)
    overrides: list[str] = setting(help="more evaluate overrides", factory=list)
    prompts: PromptSet = nested(PromptSet, "evaluation samples per model (every model draws the same prompts "
                                "with the same seed, so any two iterations compare slot by slot)")
    endpoint_unconditional: int | None = setting(help="unconditional evaluation samples of pi_0 and of the "
                                                 "last iteration, the paired comparison the run is judged by; "
                                                 "null = prompts.n_unconditional", ge=0)
    endpoint_per_spacegroup: int | None = setting(help="the same per target space group; null = "
                                                  "prompts.n_per_spacegroup", ge=0)
    temperature: float | None = setting(help="fixed so iterations compare; null = each iteration's schedule "
                                        "temperature", gt=0)
    audit: bool = setting(True, help="score each evaluation sample again with the reward potential: how often the "
                          "two agree on the tier, and the rank correlation of their E_hull (is the reward hacked?)")
    audit_samples: int | None = setting(help="audit at most this many of an iteration's evaluation samples, "
                                        "evenly spaced over its prompts (one reward relaxation each); null = all",
                                        ge=1)

    def prompts_for(self, i: int, last: int) -> PromptSet:
        """Iteration ``i``'s evaluation prompts: the larger endpoint set for pi_0 and pi_last, where the run's
        verdict (``vs_sft``) needs its power; ``prompts`` for the iterations between."""
        if i not in (0, last):
            return self.prompts
        n_unconditional, n_per_group = self.endpoint_unconditional, self.endpoint_per_spacegroup
        return replace(self.prompts,
                       n_unconditional=self.prompts.n_unconditional if n_unconditional is None else n_unconditional,
                       n_per_spacegroup=self.prompts.n_per_spacegroup if n_per_group is None else n_per_group)


@dataclass
class IterativeSFTSettings:
    """rlip.algorithm=sft: the rejection-sampling baseline (appendix 7.2: DPO's lr, iterations and samples);
    it keeps the samples in the reward tiers stable and metastable (``pairs.metastable_max``)."""

    lr: float = setting("${dpo.lr}", help="learning rate (paper: the same as DPO)", gt=0)
    epochs: float = setting(1.0, help="passes over the accepted samples", gt=0)
    batch_size: int = setting("${dpo.batch_size}", help="examples per step", ge=1)
    max_length: int = setting("${dpo.max_length}", help="tokens per example", ge=16)


__all__ = ["EvaluationSettings", "IterativeSFTSettings", "LoopSettings", "PAIR_KINDS", "PairsSettings",
           "INITIAL_STEPS", "RLIP_STEPS", "RewardSettings", "ScheduleSettings"]
