"""What the evaluation measures and with what (``conf/evaluate.yaml``, ``conf/mlip``, ``conf/hull``).

Measured choices are explained in docs/evaluation.md; the help text of each field says which.
"""

from __future__ import annotations

from dataclasses import dataclass

from plaidpp.settings.base import READS, SettingError, setting

MLIP_BACKENDS = ("chgnet", "sevennet", "fairchem")
# The mlip= presets (conf/mlip/<name>.yaml; tests/test_settings.py keeps the two lists equal).
MLIP_PRESETS = ("chgnet", "sevennet", "sevennet_l3i5", "sevennet_mf0", "fairchem")
TORCHSIM_BACKENDS = ("sevennet",)  # the potentials torch-sim 0.3.0 wraps among ours (relax.engine=torchsim)
HULL_SOURCES = ("auto", "matbench_discovery", "table")
PAPER_RELAX = {"steps": 500, "fmax": 0.02}  # the paper's relaxation (eSEN, 500 FIRE steps to 0.02 eV/Å)


@dataclass
class MLIPSettings:
    """One interatomic potential (``conf/mlip/<name>.yaml``)."""

    name: str = setting(help="backend", choices=MLIP_BACKENDS)
    model: str = setting("", help="backend model id: CHGNet version, SevenNet model, fairchem hub name")
    checkpoint: str | None = setting(None, help="local checkpoint file (overrides model)", path=READS)
    task_name: str | None = setting(None, help="fairchem UMA task (omat = PBE/PBE+U like MP); others ignore it")
    modal: str | None = setting(None, help="SevenNet multi-fidelity head (7net-mf-0: PBE = MPtrj's PBE/PBE+U, "
                                "the level of MP's hull; R2SCAN); single-fidelity models take none")
    device: str = setting("cpu", help="torch device", choices=("cpu", "cuda"))
    inference_settings: str = setting("traineval", help="fairchem preset: traineval = FP32 uncompiled; default = "
                                      "compiled (recompiles per composition: minutes each on a CPU)",
                                      choices=("traineval", "default"))
    apply_mp2020_correction: bool = setting(help="add MP2020 corrections to the predicted energy: true for "
                                            "potentials trained on raw GGA(+U) energies (measured per preset); "
                                            "applied after the (cached) relaxation", cache_key=False)
    trust_checkpoint: bool = setting(False, help="load a user checkpoint file (mlip.checkpoint, or a SevenNet "
                                     "model given as a path): these load with pickle (torch.load weights_only="
                                     "False in sevenn/chgnet/fairchem), which runs code from the file; only for a "
                                     "file you trust. The weights shipped in the wheels need no trust",
                                     cache_key=False)

    def check(self) -> None:
        if self.user_file() and not self.trust_checkpoint:
            raise SettingError("checkpoint", f"{self.user_file()} would be unpickled, which runs code from the "
                               "file; set mlip.trust_checkpoint=true if you trust it")

    def user_file(self) -> str | None:
        """A checkpoint file the user points to (as opposed to weights shipped in a wheel or a hub name)."""
        if self.checkpoint:
            return self.checkpoint
        if self.name == "sevennet" and ("/" in self.model or self.model.endswith((".pth", ".pt"))):
            return self.model
        return None

    def cache_tag(self) -> str:
        """Identifies the potential inside relaxation cache keys (a different model = different energies)."""
        ident = self.checkpoint or self.model
        tag = f"{self.name}:{ident}:{self.task_name or self.modal or ''}"
        return f"{tag}:{self.inference_settings}" if self.name == "fairchem" else tag  # precision differs


MERGED_HULL_WARNING = (
    "E_hull uses the OFFLINE hull: MP-20's DFT formation energies merged with the GGA/GGA+U entries of a later "
    "MP snapshot (95,640 materials, all on the MP 2023-02-07 elemental references), not the paper's MP "
    "2023-02-07 hull. Measured against MP's E_hull labels of MP-20 test crystals it is close (docs/evaluation.md), "
    "but phases MP added or removed since differ. Use hull=matbench_discovery with the 2023-02-07 MP entries "
    "for paper-comparable numbers."
)


@dataclass
class HullSettings:
    """The reference convex hull (``conf/hull/<name>.yaml``); docs/evaluation.md says what each costs. The
    defaults are the vendored offline hull, ``hull=mp_gga_merged``."""

    source: str = setting(help="matbench_discovery: the paper's MP 2023-02-07 entries; table: a vendored "
                          "formation-energy table; auto: matbench_discovery when its file exists, else table",
                          choices=HULL_SOURCES)
    entries_file: str = setting("${paths.root}/data/external/matbench-discovery/"
                                "2023-02-07-mp-computed-structure-entries.json.gz",
                                help="matbench-discovery's MP 2023-02-07 entries (JSON; not vendored)")
    ppd_file: str | None = setting(None, help="matbench-discovery's patched phase diagram (a pickle)")
    allow_pickle: bool = setting(False, help="read ppd_file: unpickling runs code from the file; only if you trust it")
    table: str = setting("${paths.raw}/hull/mp_gga_merged_formation_energies.csv.gz",
                         help="formation energies on the 2023-02-07 references (data/raw/hull/PROVENANCE.md)",
                         path=READS)
    table_name: str = setting("mp_gga_merged", help="what summaries call the table's hull (hull_source)")
    table_warning: str = setting(MERGED_HULL_WARNING, help="written to the log and summary.json (hull_warning) "
                                 "whenever the table's hull is used")
    elemental_refs: str = setting("${paths.raw}/hull/matbench_discovery_2023-02-07-mp-elemental-reference-entries"
                                  ".json.gz", help="MP 2023-02-07 elemental references of formation energies",
                                  path=READS)


@dataclass
class ValiditySettings:
    min_distance: float = setting(0.5, help="structural validity: every periodic interatomic distance above this "
                                  "(CDVAE)", unit="Å", gt=0)
    volume_per_atom: list[float] = setting(help="sane volume window (MP-20 spans 6.6-71)", unit="Å^3/atom",
                                           factory=lambda: [1.0, 500.0], gt=0)
    smact_time_limit_s: float = setting(5.0, help="per crystal; SMACT is exponential in the element count (a "
                                        "time-out is counted, invalid)", unit="s", gt=0)
    max_sites: int = setting(1000, help="a crystal with more sites is invalid_structure:too_large before any check "
                             "or relaxation (MP-20 has at most 20 per primitive cell, Alex-MP a few hundred; a "
                             "10,164-site cell took 34 s of checks and the whole relaxation time limit)", ge=1)

    def check(self) -> None:
        if len(self.volume_per_atom) != 2 or self.volume_per_atom[0] >= self.volume_per_atom[1]:
            raise SettingError("volume_per_atom", "needs [low, high] with low < high")


@dataclass
class InputSettings:
    """What ``plaidpp evaluate`` reads, bounded (docs/evaluation.md, "What evaluate trusts"). Defaults pass a
    whole MP-20 or Alex-MP-20 CSV (Alex-MP-20: 607,683 rows, ~1.3 GB of CIF text)."""

    max_text_kb: int = setting(256, help="one crystal's text (a CIF file, a CSV cell, a JSONL text); larger is "
                               "counted text_too_large, not read (a 1,000-site CIF is ~80 KB)", unit="KiB", ge=1)
    max_total_mb: int = setting(2048, help="the whole input as read (decompressed); beyond it the run stops with "
                                "one line before any relaxation", unit="MiB", ge=1)
    max_rows: int = setting(1_000_000, help="samples in one input (rows, files, frames); beyond it the run stops "
                            "with one line before any relaxation", ge=1)
    follow_symlinks: bool = setting(False, help="read a symlinked CIF in a folder (only when its target is inside "
                                    "that folder); false: counted input:symlink")
    recursive: bool = setting(False, help="read CIFs in sub-folders of a CIF folder (id = the relative path); "
                              "false: sub-folders are counted in summary input_skipped")
    keep_raw_text: bool = setting(False, help="keep the text of a structure input that did not parse in the "
                                  "results (at most max_text_kb); parsed ones are stored as pymatgen's CIF")


# ASE optimisers a relaxation can use (plaidpp.evaluation.relax.OPTIMIZERS maps them to classes).
RELAX_OPTIMIZERS = ("fire", "fire2", "bfgs", "lbfgs", "bfgs_linesearch", "lbfgs_linesearch", "mdmin")


@dataclass
class RelaxSettings:
    enabled: bool = setting(True, help="relax with the MLIP (false: no energies, no stability)", cache_key=False)
    # The paper's relaxation (500 FIRE steps to 0.02 eV/Å), because no cheaper one keeps the verdict on generated
    # crystals (benchmarks/fast_paths.py, docs/evaluation.md "Where scoring's time goes"): judged by SevenNet-0,
    # the former default 150 / 0.05 keeps 94.6 % of tiers of 313 PLaID++ crystals and 92.9 % of 379 of our SFT
    # model's (the rule is 99 %); the cheapest FIRE rule that keeps >= 99 % on both, 400 / 0.02, saves 1 and 8 %
    # of the force calls, not worth a deviation from the paper. The RL reward keeps 150 / 0.05 (rlip.reward).
    steps: int = setting(500, help="maximum FIRE steps (the paper's 500)", ge=0)
    fmax: float = setting(0.02, help="force convergence threshold (the paper's)", unit="eV/Å", gt=0)
    primitive: bool = setting(True, help="relax the primitive cell (same energy/atom, up to 4x fewer atoms)")
    cell_filter: str = setting("frechet", help="ASE cell filter", choices=("frechet", "exp"))
    optimizer: str = setting("fire", help="ASE optimiser (paper: FIRE); `steps` caps its iterations, a line-search "
                             "optimiser makes several force calls per iteration", choices=RELAX_OPTIMIZERS)
    engine: str = setting("ase", help="ase: one crystal per worker through an ASE optimiser; torchsim: FIRE with the "
                          "Frechet cell filter on batch_size crystals per worker that share each force call "
                          "(torch-sim 0.3.0, SevenNet only; no polish, tier exit or other optimiser; "
                          "evaluation/batched.py, docs/evaluation.md 'A batched engine')",
                          choices=("ase", "torchsim"))
    batch_size: int = setting(8, help="crystals in flight per worker with engine=torchsim (measured per force call "
                              "on this CPU: 0.80x the cost at 8, 0.84x at 32, 1.11x at 64)", ge=1, cache_key=False)
    polish: str = setting("none", help="a second optimiser that takes over once the first reaches polish_from_fmax "
                          "(or its step cap) and relaxes to fmax with a new cell filter: none, or one of "
                          "optimizer's choices (benchmarks/polish_paths.py measures it)",
                          choices=("none", *RELAX_OPTIMIZERS))
    polish_from_fmax: float = setting(0.1, help="where the polishing optimiser takes over", unit="eV/Å", gt=0)
    polish_steps: int = setting(100, help="maximum steps of the polishing optimiser", ge=0)
    energy_window: tuple[float, float] = setting((-30.0, 10.0), help="energies outside are an exploding potential "
                                                 "(energy_out_of_range)", unit="eV/atom")
    max_volume_per_atom: float = setting(500.0, help="beyond during relaxation = cell_exploded", unit="Å^3/atom",
                                         gt=0)
    time_limit_s: float = setting(300.0, help="per crystal; beyond = relax_timeout (never cached, so not in the "
                                  "cache key)", unit="s", gt=0, cache_key=False)
    tier_exit: bool = setting(False, help="stop a relaxation once the crystal's tier can no longer change: its E_hull "
                              "h and largest force f bound the relaxed E_hull to [h - tier_exit_slope * f - "
                              "tier_exit_floor, h] (evaluation/tiers.py); the E_hull kept is h, an overestimate "
                              "within that bound (relax_exit_reason: tier_decided)", cache_key=False)
    tier_exit_slope: float = setting(1.0, help="the bound's slope (benchmarks/fast_paths.py measures it: no slope "
                                     "tried, 0.25-2, kept the tier of 99 in 100 crystals; docs/evaluation.md)",
                                     unit="eV/atom per eV/Å", ge=0, cache_key=False)
    tier_exit_floor: float = setting(0.02, help="the bound's floor", unit="eV/atom", ge=0, cache_key=False)
    tier_exit_cuts: list[float] = setting(help="E_hull cuts the exit must not cross besides thresholds.stable and "
                                          "thresholds.metastable (the RLIP reward adds its pair tiers)",
                                          unit="eV/atom", factory=list, cache_key=False)
    share_duplicates: bool = setting(True, help="relax once the crystals of one batch that StructureMatcher puts in "
                                     "one class (as uniqueness does, before relaxing) and give the others that "
                                     "result (relax_shared_with); RLIP rollouts repeat themselves", cache_key=False)

    def check(self) -> None:
        if len(self.energy_window) != 2 or self.energy_window[0] >= self.energy_window[1]:
            raise SettingError("energy_window", "needs [low, high] with low < high")
        if self.engine == "torchsim":
            unsupported = {"optimizer": self.optimizer != "fire", "polish": self.polish != "none",
                           "tier_exit": self.tier_exit, "cell_filter": self.cell_filter != "frechet"}
            for name, bad in unsupported.items():
                if bad:
                    raise SettingError(name, "engine=torchsim runs FIRE with the Frechet cell filter only "
                                       "(no polish, no tier exit); use engine=ase")

    def cache_tag(self) -> str:
        tag = f"steps={self.steps}:fmax={self.fmax}:filter={self.cell_filter}:primitive={self.primitive}"
        if self.engine != "ase":  # another FIRE implementation in float32: another relaxation
            tag = f"{tag}:engine={self.engine}"
        if self.optimizer != "fire":
            tag = f"{tag}:optimizer={self.optimizer}"
        if self.polish != "none":
            tag = f"{tag}:polish={self.polish}<{self.polish_from_fmax}x{self.polish_steps}"
        return tag


@dataclass
class SymmetrySettings:
    tolerance: float = setting(0.01, help="pyxtal symmetry tolerance (paper appendix 7.2)", unit="Å", gt=0)
    time_limit_s: float = setting(20.0, help="per crystal; beyond = spacegroup_timeout (never cached, so not in the "
                                  "cache key)", unit="s", gt=0, cache_key=False)


@dataclass
class ThresholdSettings:
    """Energy-above-hull cuts of the evaluation (the RL reward tiers are ``pairs.stable_max/metastable_max``)."""

    stable: float = setting(0.0, help="S.U.N. and the stability rate: E_hull at most this", unit="eV/atom")
    metastable: float = setting(0.1, help="S.S.U.N. and the metastability rate (paper 5.2)", unit="eV/atom")

    def check(self) -> None:
        if self.stable > self.metastable:
            raise SettingError("stable", "must not exceed thresholds.metastable")


@dataclass
class NoveltySettings:
    enabled: bool = setting(True, help="judge novelty (false: novelty and S.U.N. are not computed)")
    reference: list[str] = setting(help="training crystals: mp20 = the MP-20 rows of `data` in `splits`; or files: "
                                   "a CSV with a cif column, a prepare JSONL, a folder of CIFs, an extxyz file",
                                   factory=lambda: ["mp20"], path=READS)
    splits: list[str] = setting(help="MP-20 splits of the reference (the splits the model trained on)",
                                choices=("train", "val", "test"))
    matcher_time_limit_s: float = setting(10.0, help="per StructureMatcher fit; a 500-atom generated cell can take "
                                          "minutes (a time-out counts as no match)", unit="s", gt=0)

    def check(self) -> None:
        if not self.reference:
            raise SettingError("reference", "needs at least one source (mp20, or a file)")


@dataclass
class CacheSettings:
    enabled: bool = setting(True, help="reuse relaxations across runs and RL iterations")
    file: str = setting("${paths.cache}/evaluation/relax-cache.sqlite", help="sqlite relaxation cache")


@dataclass
class ShardSettings:
    """One large samples file scored by many jobs through submitit (docs/paper-scale.md): job ``k`` of ``n``
    relaxes its contiguous slice of the rows into its own sqlite cache (one writer per file, safe on a shared
    file system); the caches then merge into ``cache.file`` and this process scores the whole file as usual,
    every relaxation a cache hit, so the table is the single-process one. A finished shard is kept: re-running
    the command after a dead job relaxes only what is missing."""

    n: int = setting(1, help="shards; 1 = score in this process only", ge=1)
    executor: str = setting("local", help="local: one process per shard on this machine; slurm: one SLURM array "
                            "task per shard", choices=("local", "slurm"))
    folder: str | None = setting(None, help="shard caches, markers and job logs; null = <out>/shards")
    max_parallel: int = setting(64, help="array tasks running at once (slurm)", ge=1)
    timeout_min: int = setting(240, help="per shard job", unit="min", ge=1)
    cpus_per_task: int = setting(8, help="cores per shard job (slurm); its relaxation workers use them all",
                                 ge=1)
    mem_gb: int = setting(32, help="memory per shard job (slurm)", unit="GiB", ge=1)
    gpus_per_task: int = setting(0, help="GPUs per shard job (slurm; with mlip.device=cuda)", ge=0)
    partition: str | None = setting(None, help="SLURM partition; null = the cluster's default")
    account: str | None = setting(None, help="SLURM account; null = none")
