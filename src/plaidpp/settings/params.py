"""The pipeline's knobs: the schema of ``params.yaml``.

``params.yaml`` is the only home of these values. Every ``plaidpp`` stage run in this project reads it (a key
it does not know stops the command), and fills each knob into the settings it feeds - unless ``conf/``, an
``+experiment=`` or the command line set that setting, in that order of precedence above it. ``conf/`` never
sets a knob itself (a test checks), so a value cannot live in two places. DVC tracks, per stage, exactly the
knobs that feed it (``plaidpp pipeline`` writes those ``params:`` lists into ``dvc.yaml``), so
``dvc exp run -S sample.temperature=1.0`` re-runs what that value reaches and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

from plaidpp.settings.base import nested, setting
from plaidpp.settings.data import REPRESENTATIONS
from plaidpp.settings.evaluation import MLIP_PRESETS
from plaidpp.settings.sampling import CONSTRAINTS


def _value(key: str) -> tuple[str, bool]:
    return key, False


def _group(name: str) -> tuple[str, bool]:
    return name, True


@dataclass
class DataParams:
    source: str = setting(help="vendored (18,106 rows shipped here) | full (`plaidpp fetch data=full` first)",
                          choices=("vendored", "full"),
                          feeds={"prepare": _group("data"), "sft": _group("data"), "evaluate": _group("data")})
    train_splits: list[str] = setting(help="MP-20 splits the generator trains on; novelty is judged against the "
                                      "same rows (the vendored subset has 3,420 train rows: the tiny model trains "
                                      "on train + val; the paper on train)", choices=("train", "val", "test"),
                                      feeds={"sft": _value("train.splits"), "evaluate": _value("novelty.splits"),
                                             "prepare": _value("splits")})
    max_rows_per_split: int | None = setting(help="first N rows of each split, for a quick pipeline; null = all",
                                             ge=1, feeds={"prepare": _value("data.max_rows_per_split"),
                                                          "sft": _value("data.max_rows_per_split"),
                                                          "fetch": _value("data.max_rows_per_split"),
                                                          "evaluate": _value("data.max_rows_per_split")})


@dataclass
class GeneratorParams:
    repr: str = setting(help="crystal text: wyckoff (the paper's) | coords (its representation ablation)",
                        choices=REPRESENTATIONS,
                        feeds={"sft": _value("repr"), "sample": _value("repr"), "rlip": _value("repr")})
    model: str = setting(help="conf/model preset: tiny (CPU, from scratch) | qwen2.5-7b (the paper's, GPU)",
                         feeds={"sft": _group("model"), "sample": _group("model"), "rlip": _group("model"),
                                "dpo": _group("model")})


@dataclass
class SampleParams:
    """The SFT baseline's samples and every evaluation sample's temperature."""

    n_unconditional: int = setting(help="unconditional samples (paper: 10,000)", ge=0,
                                   feeds={"sample": _value("prompts.n_unconditional")})
    n_per_spacegroup: int = setting(help="samples per target space group (paper: 1,000)", ge=0,
                                    feeds={"sample": _value("prompts.n_per_spacegroup")})
    temperature: float = setting(help="sampling temperature of evaluation samples (SFT baseline and RLIP "
                                 "evaluation, so they compare)", gt=0,
                                 feeds={"sample": _value("temperature"), "rlip": _value("evaluation.temperature")})
    constraint: str = setting(help="constrained decoding of every sampler call (SFT baseline, RLIP rollouts and "
                              "evaluation samples): none | grammar | grammar+spacegroup", choices=CONSTRAINTS,
                              feeds={"sample": _value("sampler.constraint"), "rlip": _value("sampler.constraint")})


@dataclass
class EvaluateParams:
    mlip: str = setting(help="the judge of the SFT baseline (the `evaluate` stage)", choices=MLIP_PRESETS,
                        feeds={"evaluate": _group("mlip")})


@dataclass
class RlipParams:
    iterations: int = setting(help="DPO iterations R (paper figures: 7)", ge=0,
                              feeds={"rlip": _value("rlip.iterations")})
    schedule: str = setting(help="conf/schedule preset: temperature per iteration", feeds={"rlip": _group("schedule")})
    pairs: str = setting(help="conf/pairs preset: which preference pairs",
                         feeds={"rlip": _group("pairs"), "pairs": _group("pairs")})
    reward_mlip: str = setting(help="the reward potential (must differ from rlip.eval_mlip)", choices=MLIP_PRESETS,
                               feeds={"rlip": _value("reward.mlip")})
    eval_mlip: str = setting(help="the judge of every RLIP iteration, pi_0 included (one judge per run, so its "
                             "iterations compare)", choices=MLIP_PRESETS, feeds={"rlip": _value("evaluation.mlip")})
    rollout_unconditional: int = setting(help="unconditional rollouts per iteration (paper: 10,000)", ge=0,
                                         feeds={"rlip": _value("rollout.n_unconditional")})
    rollout_per_spacegroup: int = setting(help="rollouts per target space group per iteration (paper: 1,000)", ge=0,
                                          feeds={"rlip": _value("rollout.n_per_spacegroup")})
    eval_unconditional: int = setting(help="unconditional evaluation samples per model", ge=0,
                                      feeds={"rlip": _value("evaluation.prompts.n_unconditional")})
    eval_per_spacegroup: int = setting(help="evaluation samples per target space group per model", ge=0,
                                       feeds={"rlip": _value("evaluation.prompts.n_per_spacegroup")})
    eval_endpoint_unconditional: int = setting(help="unconditional evaluation samples of pi_0 and the last "
                                               "iteration (the paired comparison the run is judged by)", ge=0,
                                               feeds={"rlip": _value("evaluation.endpoint_unconditional")})
    eval_endpoint_per_spacegroup: int = setting(help="the same per target space group", ge=0,
                                                feeds={"rlip": _value("evaluation.endpoint_per_spacegroup")})
    audit_samples: int = setting(help="evaluation samples of each iteration the reward potential judges again "
                                 "(the reward-hacking audit), evenly spaced over its prompts", ge=1,
                                 feeds={"rlip": _value("evaluation.audit_samples")})


@dataclass
class PipelineParams:
    data: DataParams = nested(DataParams, "MP-20")
    generator: GeneratorParams = nested(GeneratorParams, "the generator")
    sample: SampleParams = nested(SampleParams, "the SFT baseline's samples")
    evaluate: EvaluateParams = nested(EvaluateParams, "the evaluation")
    rlip: RlipParams = nested(RlipParams, "RLIP")
