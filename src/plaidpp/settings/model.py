"""The generator and how it is trained: ``conf/model``, ``conf/train`` and ``conf/dpo`` presets.

Defaults are the paper's (appendix 7.2: Qwen2.5-7B QLoRA, SFT lr 1e-5 batch 16 for 10 epochs, DPO lr 1e-6
beta 0.1 batch 16 one epoch); ``conf/*/tiny.yaml`` lists what the embedded CPU model does differently and why.
"""

from __future__ import annotations

from dataclasses import dataclass

from plaidpp.settings.base import SettingError, nested, setting
from plaidpp.settings.data import SPLITS

DTYPES = ("float32", "bfloat16", "float16", "auto")


def _lr_schedulers() -> list[str]:
    from transformers.trainer_utils import SchedulerType

    return [s.value for s in SchedulerType]


def _optimizers() -> list[str]:
    from transformers.training_args import OptimizerNames

    return [o.value for o in OptimizerNames]


def _dpo_losses() -> list[str]:
    import re

    from trl import DPOConfig

    return re.findall(r"`'(\w+)'`", DPOConfig.__dataclass_fields__["loss_type"].metadata["help"])


@dataclass
class ArchitectureSettings:
    """``transformers.Qwen2Config`` fields of a model built from scratch (``source: scratch``; the defaults are
    the embedded tiny model's, ~3.7 M parameters with the 2,048-token crystal BPE)."""

    hidden_size: int = setting(256, help="width of the residual stream", ge=8)
    intermediate_size: int = setting(768, help="width of the MLP", ge=8)
    num_hidden_layers: int = setting(4, help="transformer blocks", ge=1)
    num_attention_heads: int = setting(4, help="query heads", ge=1)
    num_key_value_heads: int = setting(2, help="key/value heads (grouped-query attention)", ge=1)
    max_position_embeddings: int = setting(1024, help="longest sequence, tokens", ge=16)
    rope_theta: float = setting(10000.0, help="RoPE base", gt=0)

    def check(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise SettingError("hidden_size", f"{self.hidden_size} is not divisible by num_attention_heads")
        if self.num_attention_heads % self.num_key_value_heads:
            raise SettingError("num_key_value_heads", "must divide num_attention_heads")


@dataclass
class QuantizationSettings:
    """``transformers.BitsAndBytesConfig`` fields ("fp-4 mixed precision" in the paper = 4-bit NF4)."""

    load_in_4bit: bool = setting(False, help="load the base model in 4 bits (bitsandbytes); false = full precision")
    bnb_4bit_quant_type: str = setting("nf4", help="4-bit data type", choices=("nf4", "fp4"))
    bnb_4bit_use_double_quant: bool = setting(True, help="quantise the quantisation constants too")
    bnb_4bit_compute_dtype: str = setting("bfloat16", help="dtype of the matmuls", choices=DTYPES[:3])


@dataclass
class LoraSettings:
    enabled: bool = setting(False, help="train a LoRA adapter; false = train every weight")
    r: int = setting(8, help="LoRA rank (paper: 8)", ge=1)
    alpha: int = setting(32, help="LoRA scaling numerator (paper: 32)", ge=1)
    dropout: float = setting(0.05, help="dropout on the LoRA path", ge=0, lt=1)
    target_modules: list[str] = setting(help="modules given adapters (paper: every projection)",
                                        factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                         "up_proj", "down_proj"])


@dataclass
class ModelSettings:
    name: str = setting(help="preset name (recorded with every run)")
    source: str = setting(help="scratch: build from `architecture`; pretrained: load `pretrained`",
                          choices=("scratch", "pretrained"))
    pretrained: str | None = setting(None, help="hub name or local directory of the base model (source=pretrained)")
    tokenizer: str = setting("crystal_bpe", help="crystal_bpe: trained on the training rows; qwen2.5: the vendored "
                             "files; or a directory (fallback when the model dir has none)")
    tokenizer_vocab_size: int = setting(2048, help="crystal BPE vocabulary (docs/generator.md)", ge=258)
    init_seed: int = setting(0, help="seed of the random initialisation (source=scratch)", ge=0)
    dtype: str = setting("float32", help="weights dtype", choices=DTYPES)
    attn_implementation: str | None = setting(None, help="e.g. flash_attention_2 when installed; null = library default")
    architecture: ArchitectureSettings = nested(ArchitectureSettings, "Qwen2Config of a model built from scratch")
    quantization: QuantizationSettings = nested(QuantizationSettings, "4-bit loading of a pretrained base")
    lora: LoraSettings = nested(LoraSettings, "LoRA adapter")
    gradient_checkpointing: bool = setting(False, help="trade compute for memory (GPU only)")

    def check(self) -> None:
        if self.source == "pretrained" and not self.pretrained:
            raise SettingError("pretrained", "source=pretrained needs a hub name or directory")


@dataclass
class TaskMixSettings:
    """The SFT task mix of appendix 7.2: infill one third of the time, otherwise generation."""

    infill: float = setting(1 / 3, help="share of infill examples (paper: one third)", ge=0, le=1)
    unconditional: float = setting(0.5, help="share of generation examples with no condition (the paper does not "
                                   "say; half)", ge=0, le=1)


@dataclass
class TrainSettings:
    """SFT optimisation (``transformers.TrainingArguments``)."""

    splits: list[str] = setting(help="MP-20 splits trained on (params.yaml data.train_splits)", choices=SPLITS)
    epochs: float = setting(10.0, help="passes over the rows, each with freshly drawn tasks; fractional allowed", gt=0)
    batch_size: int = setting(4, help="examples per device per step (x grad_accum x devices = paper's 16)", ge=1)
    grad_accum: int = setting(4, help="gradient accumulation steps", ge=1)
    lr: float = setting(1.0e-5, help="peak learning rate (paper: 1e-5)", gt=0)
    lr_scheduler: str = setting("constant", help="transformers scheduler name", choices=_lr_schedulers)
    warmup_steps: float = setting(0.0, help="warm-up steps, or the fraction of all steps when < 1", ge=0)
    weight_decay: float = setting(0.0, help="AdamW weight decay", ge=0)
    max_grad_norm: float = setting(1.0, help="gradient clipping", gt=0)
    max_length: int = setting(1024, help="tokens per example (prompt + crystal); longer ones are cut", ge=16)
    sampling_strategy: str = setting("random", help="batches: random | group_by_length (similar lengths, less "
                                     "padding: 1.55x the real tokens/s on 2 CPU cores, no downstream gain; "
                                     "docs/generator.md)", choices=("random", "group_by_length"))
    optim: str = setting("adamw_torch", help="transformers optimizer name", choices=_optimizers)
    bf16: bool = setting(True, help="bf16 mixed precision (applied only on a GPU that supports it)")
    logging_steps: int = setting(10, help="optimizer steps between loss logs", ge=1)
    save_steps: int = setting(500, help="optimizer steps between resumable checkpoints", ge=1)
    save_total_limit: int = setting(2, help="checkpoints kept", ge=1)
    max_steps: int = setting(-1, help="> 0 stops early (tests); -1 = train all epochs", ge=-1)
    task_mix: TaskMixSettings = setting(help="which prompts the examples get", factory=TaskMixSettings)

    def check(self) -> None:
        if self.max_steps == 0:
            raise SettingError("max_steps", "0 would train nothing; -1 = all epochs")


@dataclass
class DPOSettings:
    """One DPO round (``trl.DPOConfig``)."""

    beta: float = setting(0.1, help="KL strength of the DPO loss (paper: 0.1)", gt=0)
    loss_type: str = setting("sigmoid", help="TRL loss (sigmoid = Rafailov et al., eq. 1 of the paper)",
                             choices=_dpo_losses)
    lr: float = setting(1.0e-6, help="learning rate (paper: 1e-6)", gt=0)
    lr_scheduler: str = setting("constant", help="transformers scheduler name", choices=_lr_schedulers)
    warmup_steps: int = setting(0, help="warm-up steps", ge=0)
    epochs: float = setting(1.0, help="passes over the pairs (paper: one; TRL's default is three)", gt=0)
    max_steps: int = setting(-1, help="> 0 stops early; -1 = all epochs", ge=-1)
    batch_size: int = setting(4, help="pairs per device per step (x grad_accum = paper's 16)", ge=1)
    grad_accum: int = setting(4, help="gradient accumulation steps", ge=1)
    max_length: int = setting(1024, help="tokens, prompt + crystal", ge=16)
    optim: str = setting("adamw_torch", help="transformers optimizer name", choices=_optimizers)
    weight_decay: float = setting(0.0, help="AdamW weight decay", ge=0)
    max_grad_norm: float = setting(1.0, help="gradient clipping", gt=0)
    bf16: bool = setting(True, help="bf16 (applied only on a GPU that supports it; TRL defaults to it everywhere)")
    logging_steps: int = setting(10, help="steps between logs (capped at the steps of the round)", ge=1)
    eval_after: bool = setting(False, help="one extra pass over the pairs: the trained policy vs the reference")
    save_steps: int = setting(200, help="steps between resumable checkpoints", ge=1)

    def check(self) -> None:
        if self.max_steps == 0:
            raise SettingError("max_steps", "0 would train nothing; -1 = all epochs")
