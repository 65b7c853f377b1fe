"""One config class per command: what ``plaidpp <stage>`` receives, composed from ``conf/<stage>.yaml``.

Fields that are files or folders say whether the stage reads or writes them (``path=``): the DVC graph
(``plaidpp pipeline``) takes a stage's dependencies and outputs from there, so they cannot drift from the code.
"""

from __future__ import annotations

from dataclasses import dataclass

from plaidpp.settings.base import METRICS, READS, WRITES, SettingError, nested, setting
from plaidpp.settings.common import StageSettings
from plaidpp.settings.data import REPRESENTATIONS, SPLITS, DataSettings, repr_setting
from plaidpp.settings.evaluation import (
    CacheSettings,
    HullSettings,
    InputSettings,
    MLIPSettings,
    NoveltySettings,
    RelaxSettings,
    ShardSettings,
    SymmetrySettings,
    TORCHSIM_BACKENDS,
    ThresholdSettings,
    ValiditySettings,
)
from plaidpp.settings.model import DPOSettings, ModelSettings, TrainSettings
from plaidpp.settings.rlip import (
    EvaluationSettings,
    IterativeSFTSettings,
    LoopSettings,
    PairsSettings,
    RewardSettings,
    ScheduleSettings,
)
from plaidpp.settings.sampling import PromptSet, SamplerSettings, temperature_setting

FORMATS = ("auto", "jsonl", "cif_dir", "csv", "extxyz")  # plaidpp.evaluation.inputs


@dataclass
class FetchConfig(StageSettings):
    data: DataSettings = setting(help="which MP-20 to download (data=full)")


@dataclass
class PrepareConfig(StageSettings):
    data: DataSettings = setting(help="which MP-20 rows")
    splits: list[str] = setting(help="MP-20 splits encoded (params.yaml data.train_splits: what the pipeline reads; "
                                "the test split would add 125 s to the stage's 317 s)", choices=SPLITS)
    representations: list[str] = setting(help="text forms written", choices=REPRESENTATIONS,
                                         factory=lambda: list(REPRESENTATIONS))
    out_dir: str = setting("${paths.processed}", help="<out_dir>/<repr>/<split>.jsonl and failures.csv", path=WRITES)
    metrics_file: str = setting("${paths.metrics}/prepare.json", help="round-trip rates, failures, tokens",
                                path=METRICS)
    tokenizer_dir: str = setting("${paths.raw}/tokenizers/qwen2.5", help="real Qwen2.5 BPE, for token statistics",
                                 path=READS)


@dataclass
class SftConfig(StageSettings):
    data: DataSettings = setting(help="MP-20 rows (read directly only when `prepare` has not run)")
    repr: str = repr_setting()
    model: ModelSettings = setting(help="the generator (conf/model)")
    train: TrainSettings = setting(help="optimisation (conf/train: follows the model)")
    rows_dir: str = setting("${paths.processed}", help="the prepare stage's <repr>/<split>.jsonl", path=READS)
    out_dir: str = setting("${paths.models}/sft", help="final model (or LoRA adapter) + tokenizer, HF format",
                           path=WRITES)
    checkpoint_dir: str = setting("${paths.cache}/checkpoints/sft", help="resumable state; removed after a finished run")
    keep_checkpoints: bool = setting(False, help="keep checkpoint_dir after a finished run")
    metrics_file: str = setting("${paths.metrics}/sft.json", help="loss, steps, throughput", path=METRICS)
    log_model_artifacts: bool = setting(True, help="copy the final model into the MLflow run")


@dataclass
class SampleConfig(StageSettings):
    repr: str = repr_setting("crystal text the model writes (must be what it was trained on)")
    model: ModelSettings = setting(help="how to load model_dir (quantization of a LoRA adapter's base)")
    sampler: SamplerSettings = nested(SamplerSettings, "the sampler")
    prompts: PromptSet = nested(PromptSet, "how many crystals for which prompts")
    temperature: float = temperature_setting("sampling temperature (tiny model: 79 % of first attempts parse at "
                                             "0.7, 38 % at 1.0; docs/generator.md)")
    model_dir: str = setting("${paths.models}/sft", help="the generator to sample", path=READS)
    out_file: str = setting("${paths.root}/data/samples/sft.jsonl", help="one JSONL row per attempt (resumable)",
                            path=WRITES)
    metrics_file: str = setting("${paths.metrics}/sample.json", help="parse rates, throughput", path=METRICS)


@dataclass
class EvaluateConfig(StageSettings):
    data: DataSettings = setting(help="where MP-20 is (the novelty reference mp20 reads its rows)")
    mlip: MLIPSettings = setting(help="the potential that relaxes and scores (conf/mlip)")
    hull: HullSettings = setting(help="the reference hull (conf/hull)")
    samples: str = setting(help="the crystals: `plaidpp sample`'s JSONL, a folder of CIFs, a CSV with a cif column, "
                           "or an extxyz file (docs/evaluation.md)", path=READS)
    samples_format: str = setting("auto", help="auto: from the path (a folder = CIFs, .jsonl, .csv(.gz), .extxyz)",
                                  choices=FORMATS)
    csv_column: str = setting("cif", help="the CSV column holding each sample's CIF")
    out: str = setting(help="folder for structures.parquet and summary.json", path=WRITES)
    metrics_file: str | None = setting(None, help="also write the summary's numbers here (DVC metrics)", path=METRICS)
    max_samples: int | None = setting(None, help="evaluate only the first N rows (quick looks)", ge=1)
    default_repr: str = repr_setting("representation of rows without a repr field", "wyckoff")
    progress: bool = setting(True, help="progress bars")
    inputs: InputSettings = nested(InputSettings, "what evaluate reads, bounded")
    validity: ValiditySettings = nested(ValiditySettings, "proxy validity checks")
    relax: RelaxSettings = nested(RelaxSettings, "MLIP relaxation")
    symmetry: SymmetrySettings = nested(SymmetrySettings, "space-group detection")
    thresholds: ThresholdSettings = nested(ThresholdSettings, "E_hull cuts")
    novelty: NoveltySettings = nested(NoveltySettings, "novelty reference")
    cache: CacheSettings = nested(CacheSettings, "relaxation cache")
    shards: ShardSettings = nested(ShardSettings, "score one large file with many jobs (submitit)")

    def check(self) -> None:
        if self.shards.n > 1 and not self.cache.enabled:
            raise SettingError("shards.n", "sharded scoring hands relaxations over through the cache: needs "
                               "cache.enabled=true")
        if self.relax.engine == "torchsim" and self.mlip.name not in TORCHSIM_BACKENDS:
            raise SettingError("relax.engine", f"torchsim relaxes with {'/'.join(TORCHSIM_BACKENDS)} only (torch-sim "
                               f"0.3.0 wraps no {self.mlip.name}); use relax.engine=ase")


@dataclass
class PairsStageConfig(StageSettings):
    pairs: PairsSettings = setting(help="which pairs (conf/pairs)")
    scored: list[str] = setting(help="structures.parquet files of the evaluate stage", path=READS)
    out: str = setting(help="pairs JSONL: prompt, chosen, rejected, kind, group, ids, E_hull of both", path=WRITES)
    metrics_file: str | None = setting(None, help="counts per kind", path=METRICS)


@dataclass
class DpoStageConfig(StageSettings):
    model: ModelSettings = setting(help="the generator (conf/model)")
    dpo: DPOSettings = setting(help="DPO settings (conf/dpo: follows the model)")
    policy: str = setting(help="model dir (full model or LoRA adapter) to start from: pi_{i-1}", path=READS)
    ref: str | None = setting(None, help="reference model dir; null = the policy (pi_ref = pi_{i-1}, the paper's)",
                              path=READS)
    pairs_file: str = setting(help="pairs JSONL from `plaidpp pairs`", path=READS)
    out: str = setting(help="output model dir (written whole, then renamed)", path=WRITES)
    metrics_file: str | None = setting(None, help="loss and reward-margin figures", path=METRICS)


@dataclass
class RlipConfig(StageSettings):
    repr: str = repr_setting()
    model: ModelSettings = setting(help="the generator (conf/model)")
    dpo: DPOSettings = setting(help="DPO settings (conf/dpo: follows the model)")
    pairs: PairsSettings = setting(help="which pairs (conf/pairs)")
    schedule: ScheduleSettings = setting(help="temperature per iteration (conf/schedule)")
    sampler: SamplerSettings = nested(SamplerSettings, "the sampler (rollouts and evaluation samples)")
    rollout: PromptSet = nested(PromptSet, "what each iteration samples from pi_{i-1} (paper: 10,000 + 1,000 x 7)")
    reward: RewardSettings = nested(RewardSettings, "the reward potential")
    evaluation: EvaluationSettings = nested(EvaluationSettings, "the evaluation of each iteration's model")
    iterative_sft: IterativeSFTSettings = nested(IterativeSFTSettings, "rlip.algorithm=sft baseline")
    rlip: LoopSettings = nested(LoopSettings, "the loop")


@dataclass
class ReportSettings:
    out_dir: str = setting("${paths.root}/reports", help="report.md, report.html (self-contained) and their figures",
                           path=WRITES)
    structures: str = setting("${paths.root}/data/scored/sft/structures.parquet",
                              help="the SFT evaluation's per-structure table (its summary.json beside it)",
                              path=READS)
    rlip_summary: str = setting("${paths.root}/data/rlip/default/summary.json",
                                help="the default RLIP run's whole record (metrics/rlip.json keeps its numbers)",
                                path=READS)
    training_rows: str = setting("${paths.root}/data/processed", help="the prepared training crystals (their "
                                 "space groups, for the distribution figure)", path=READS)
    judge_calibration: str = setting("${paths.root}/benchmarks/results/judge_calibration/record.json",
                                     help="benchmarks/judge_calibration.py's record: each judge's confusion with "
                                     "the paper's (eSEN) on generated crystals, for the rates eSEN would count",
                                     path=READS)
    top_crystals: int = setting(8, help="S.U.N. crystals pictured per model, lowest E_hull first", ge=0)


@dataclass
class ReportConfig(StageSettings):
    report: ReportSettings = nested(ReportSettings, "the report")


STAGE_CONFIGS: dict[str, type] = {
    "fetch": FetchConfig, "prepare": PrepareConfig, "sft": SftConfig, "sample": SampleConfig,
    "evaluate": EvaluateConfig, "pairs": PairsStageConfig, "dpo": DpoStageConfig, "rlip": RlipConfig,
    "report": ReportConfig,
}
