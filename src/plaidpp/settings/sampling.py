"""How crystals are drawn from a generator: the sampler, and which prompts how often.

One ``SamplerSettings`` serves every sampler call (the ``sample`` stage, RLIP rollouts, RLIP evaluation
samples); what differs between them - how many crystals for which prompts, at which temperature - is a
``PromptSet`` and a temperature of their own.
"""

from __future__ import annotations

from dataclasses import dataclass

from plaidpp.settings.base import SettingError, nested, setting

# The paper's seven target groups (after MatterGen), one per crystal system:
# P1, C2/c, Amm2, I-4m2, P3, P6_3/mmc, F-43m.
PAPER_SPACEGROUPS = (1, 15, 38, 119, 143, 194, 216)
ENGINES = ("compact", "hf", "vllm")  # vllm: the optional extra (pip install -e .[vllm]; docs/paper-scale.md)
VLLM_LORA = ("merge", "request")
# none: the paper's sampler (resample what does not decode); grammar: every text decodes (plaidpp.constraint);
# grammar+spacegroup: and a space-group prompt fixes the text's group.
CONSTRAINTS = ("none", "grammar", "grammar+spacegroup")


def temperature_setting(help: str):  # noqa: A002
    # 0 would be greedy decoding: every retry of a slot would repeat the same failed text.
    return setting(help=help, gt=0)


@dataclass
class VllmSettings:
    """How ``sampler.engine=vllm`` builds its engine (``plaidpp.sampling.vllm_engine``)."""

    lora: str = setting("merge", help="a LoRA adapter directory is sampled merged into its base (merge: one "
                        "dense model, saved once per adapter under merged_dir) or served as a LoRA "
                        "request on the base (request: no copy, extra LoRA kernels per step); "
                        "docs/paper-scale.md has the measurement", choices=VLLM_LORA)
    merged_dir: str = setting("${paths.cache}/vllm-merged", help="merged adapters, one folder per adapter "
                              "fingerprint (safe to delete)")
    gpu_memory_utilization: float = setting(0.85, help="share of the GPU's memory vLLM takes (weights + KV "
                                            "cache); on a CPU the KV cache is cpu_kv_cache_gb instead", gt=0, le=1)
    cpu_kv_cache_gb: int = setting(1, unit="GiB", help="KV cache of the CPU build (VLLM_CPU_KVCACHE_SPACE); the tiny "
                                   "model's fp32 cache takes 4 KiB per token, so 1 GiB holds 262,144 tokens", ge=1)
    max_model_len: int = setting(1024, help="prompt + new tokens per sequence the engine reserves (prompts are "
                                 "< 64 tokens; MP-20 crystals < 250)", ge=64)
    enforce_eager: bool = setting(False, help="skip CUDA graphs / torch.compile (faster start, slower steps); "
                                  "always on for the CPU build, whose compilation takes minutes")


@dataclass
class SamplerSettings:
    constraint: str = setting(help="constrained decoding: none (the paper's sampler, the reference) | grammar (every "
                              "text decodes: layout, ranges, lattice of the stated group, Wyckoff positions and "
                              "their coordinate forms, counts that add up) | grammar+spacegroup (and a "
                              "space-group prompt fixes the group); docs/generator.md", choices=CONSTRAINTS)
    top_p: float = setting(1.0, help="nucleus sampling mass (1 = off)", gt=0, le=1)
    batch_size: int = setting(128, help="sequences generated together; 128 measured fastest on 2 cores "
                              "(45 crystals/s, docs/generator.md)", ge=1)
    max_attempts: int = setting(5, help="tries per slot: text that does not decode is resampled (paper: resample "
                                "until it parses); the last failure is kept and counted", ge=1)
    max_new_tokens: int = setting(384, help="tokens per crystal; MP-20 needs < 250 of the crystal BPE", ge=1)
    max_atoms: int = setting(20, help="atoms per primitive cell the constraint allows (MP-20: 20)", ge=1)
    min_distance: float = setting(0.5, help="Å: the constraint keeps every two atoms at least this far apart where "
                                  "the cell leaves room (the evaluation's validity rule, 0.5 Å; 0: only no two "
                                  "atoms at one point)", ge=0)
    covalent_fraction: float = setting(0.6, help="and, where the cell leaves room, more than this fraction of the "
                                       "sum of the two atoms' covalent radii (every MP-20 train/val crystal keeps "
                                       "> 0.624; 0.6 raised the valid crystals that relax sanely from 57 to 85 %, "
                                       "docs/generator.md); where it does not, min_distance alone; 0: off",
                                       ge=0, lt=1)
    volume_fraction: float = setting(0.7, help="the cell (written before the sites) at least this fraction of the "
                                     "volume its formula predicts from per-element atomic volumes fitted to MP-20 "
                                     "(constraint/volumes.py), so the distance rules find room: 3 of 10,757 MP-20 "
                                     "train/val cells are smaller; 0.7 raised the valid crystals with every pair "
                                     "> 1.5 Å from 141 to 170 of 340 (docs/generator.md); 0: off", ge=0)
    engine: str = setting("compact", help="compact: KV-cache loop that drops finished rows; hf: model.generate; "
                          "vllm: vLLM's offline engine (the .[vllm] extra; give it large batch_size, e.g. 10000)",
                          choices=ENGINES)
    vllm: VllmSettings = nested(VllmSettings, "the vllm engine's own settings (ignored by the others)")


@dataclass
class PromptSet:
    """How many crystals for which prompts: the unconditional prompt, then each space group in turn."""

    n_unconditional: int = setting(help="samples of the unconditional prompt (paper: 10,000)", ge=0)
    n_per_spacegroup: int = setting(help="samples per space-group prompt (paper: 1,000)", ge=0)
    spacegroups: list[int] = setting(help="space groups prompted for (the paper's seven, one per crystal system)",
                                     factory=lambda: list(PAPER_SPACEGROUPS), ge=1, le=230)

    def check(self) -> None:
        if self.n_unconditional + self.n_per_spacegroup * len(self.spacegroups) == 0:
            raise SettingError("", "nothing to sample: every count is 0")

    @property
    def total(self) -> int:
        return self.n_unconditional + self.n_per_spacegroup * len(self.spacegroups)
