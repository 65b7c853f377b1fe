"""Score generated crystal texts: ``score_samples(rows, cfg) -> (table, summary)``, the API the evaluate stage
and the RL loop call. It runs the steps of ``steps.py`` in order and summarises:

    parse_and_validity -> relaxation -> energy_and_hull -> symmetry -> uniqueness_and_novelty

One output row per requested sample; a sample that fails anywhere keeps its row, with ``fail_reason`` saying
where (first failure wins):

    input:<reason>                    the reader refused the file or row (inputs.INPUT_REASONS: symlink,
                                      symlink_outside, not_regular_file, text_too_large, not_utf8, unreadable)
    parse:<reason>                    text did not decode (DecodeError.reason; for CIFs inputs.CIF_REASONS:
                                      no_structure, cif_unreadable, unknown_element, disordered;
                                      decode_crash, unknown_repr)
    invalid_structure:<reason>        overlapping_atoms / volume_out_of_range / non_finite_lattice /
                                      degenerate_cell / invalid_cell_parameters / too_large
    noble_gas_only                    only He/Ne/Ar/Kr/Xe/Rn (see steps.py): counted, not scored
    element_not_in_mlip               the potential has no parameters for an element
    element_not_in_hull               no elemental reference energy, so no formation energy
    <relax reason>                    energy_nan, energy_out_of_range, cell_exploded, relax_timeout,
                                      mlip_error, worker_crashed, relaxed_cif_error
    correction_error                  MP2020 correction failed
    hull_error                        the phase diagram failed
    relax_disabled                    relax.enabled=false

Every reason is a fixed category; what it leaves out (which elements, the exception and its message) is in
``fail_detail``.

A step switched off by a setting (``relax.enabled=false``, ``novelty.enabled=false``) leaves the metrics that
need it ``None``, with the reason in ``summary["not_computed"]``.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd

from plaidpp.errors import UserError
from plaidpp.evaluation import metrics, steps
from plaidpp.evaluation.hull import ReferenceHull, load_hull
from plaidpp.evaluation.novelty import TrainingSet
from plaidpp.runtime import n_workers
from plaidpp.settings.stages import EvaluateConfig
from plaidpp.stats import bootstrap_ci

log = logging.getLogger(__name__)

_HULLS: dict[str, ReferenceHull] = {}
_TRAIN: dict[str, TrainingSet] = {}


def get_hull(cfg: EvaluateConfig) -> ReferenceHull:
    """The configured hull, built once per process (the RL loop scores many batches)."""
    key = repr(cfg.hull)
    if key not in _HULLS:
        _HULLS[key] = load_hull(cfg.hull, cfg.paths.cache)
    return _HULLS[key]


def reference_paths(cfg: EvaluateConfig) -> list[str]:
    """The files behind ``novelty.reference`` (``mp20`` = the configured MP-20 source's files)."""
    paths = []
    for source in cfg.novelty.reference:
        if source != "mp20":
            paths.append(source)
        elif cfg.data.source == "vendored":
            paths.append(cfg.data.file)
        else:
            paths += [f"{cfg.data.dir}/{split}.csv" for split in cfg.novelty.splits]
    return list(dict.fromkeys(paths))


def get_training_set(cfg: EvaluateConfig) -> TrainingSet | None:
    """The novelty reference, loaded once per process; None when novelty is switched off."""
    if not cfg.novelty.enabled:
        return None
    paths = reference_paths(cfg)
    key = f"{paths}:{cfg.novelty.splits}"
    if key not in _TRAIN:
        _TRAIN[key] = TrainingSet.load_all(paths, cfg.novelty.splits, cfg.paths.cache)
    return _TRAIN[key]


def select_rows(rows: list[dict] | pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
    """One row per requested sample. Attempt files (a ``final`` column) keep only ``final`` rows and report
    the attempt-level parse rate from all rows."""
    frame = pd.DataFrame(rows) if not isinstance(rows, pd.DataFrame) else rows.copy()
    info: dict[str, Any] = {"n_rows_in_file": len(frame)}
    if "text" not in frame.columns:
        raise UserError("samples have no 'text' field (one JSON object per line with text/repr/spacegroup)")
    if "final" in frame.columns:
        attempts = frame
        frame = frame[frame["final"].fillna(False).astype(bool)].copy()
        info["n_attempts"] = len(attempts)
        if "decoded" in attempts.columns:
            info["attempt_parse_rate"] = float(attempts["decoded"].fillna(False).astype(bool).mean())
        if frame.empty:
            raise UserError(f"the samples hold {len(attempts)} attempts but no final row (an unfinished sampling "
                            "run?); finish it with `plaidpp sample`, or pass a file with one row per sample")
    if frame.empty:
        raise UserError("no samples to evaluate")
    if "index" not in frame.columns:
        frame["index"] = np.arange(len(frame))
    return frame.reset_index(drop=True), info


def _requested_sg(value: Any) -> int | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise UserError(f"spacegroup {value!r} is not a space-group number 1..230") from None
    if not 1 <= number <= 230:
        raise UserError(f"spacegroup {value!r} is not a space-group number 1..230")
    return number


def _base_table(frame: pd.DataFrame, cfg: EvaluateConfig) -> pd.DataFrame:
    n = len(frame)
    out = pd.DataFrame({"index": frame["index"].to_numpy()})
    out["text"] = frame["text"].astype(str)
    out["repr"] = [r if isinstance(r, str) and r else cfg.default_repr for r in frame.get("repr", [None] * n)]
    out["spacegroup_requested"] = pd.array([_requested_sg(v) for v in frame.get("spacegroup", [None] * n)],
                                           dtype="Int64")
    for col in frame.columns:  # pass-through keys (prompt, temperature, seed, ...)
        if col not in out.columns and col != "spacegroup":
            out[col] = frame[col].to_numpy()
    return out


def _merge(table: pd.DataFrame, result: steps.StepResult) -> None:
    for name, values in result.columns.items():
        table[name] = values.to_numpy() if isinstance(values, pd.Series) else values


def score_samples(rows: list[dict] | pd.DataFrame, cfg: EvaluateConfig, *,
                  watcher_for: steps.WatcherFactory | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Score generated crystals; returns (per-sample table, summary dict). See the module docstring.

    ``watcher_for`` gives relaxations a watcher (``watchers.py``; benchmarks record trajectories with one)."""
    frame, info = select_rows(rows)
    hull = get_hull(cfg)  # before any work: a missing hull or reference file stops here
    train = get_training_set(cfg)
    computed = {"parse_and_validity", "symmetry", "uniqueness"}
    clock = _StepClock()
    table, crystals, composition_failures = _decode_and_relax(frame, cfg, hull, clock, watcher_for)
    failures = {"composition_check_failures": composition_failures}
    if cfg.relax.enabled:
        computed.add("relaxation")
    else:
        crystals.fail[:] = [r if r is not None else "relax_disabled" for r in crystals.fail]
        for name in ("relax_steps", "relax_converged", "relax_cached", "relax_force_calls", "relax_seconds",
                     "relax_potential_seconds", "relax_exit_reason", "relax_shared_with", "cif_relaxed"):
            table[name] = None
    with clock("energy_and_hull"):
        _merge(table, steps.energy_and_hull(table, crystals, cfg, hull))
    with clock("symmetry"):
        symmetry = steps.symmetry(table, crystals, cfg)
    _merge(table, symmetry)
    failures["spacegroup_failures"] = symmetry.failures
    with clock("uniqueness_and_novelty"):
        matched = steps.uniqueness_and_novelty(table, crystals, cfg, train)
    _merge(table, matched)
    failures["matcher_failures"] = matched.failures  # counted as "no match"
    if train is not None:
        computed.add("novelty")
        info.update(train.describe())
    else:
        info["novelty_reference"] = None
    table["fail_reason"] = crystals.fail
    table["fail_detail"] = crystals.detail
    table["is_sun"] = _first_per_class(table, table["is_stable"] & table["is_novel"])
    table["is_ssun"] = _first_per_class(table, table["spacegroup_match"] & table["is_metastable"] & table["is_novel"])
    summary = build_summary(table, {**info, **failures}, hull, cfg, computed)
    summary["timings"] = clock.report(table, cfg)
    return table, summary


def _decode_and_relax(frame: pd.DataFrame, cfg: EvaluateConfig, hull: ReferenceHull, clock: _StepClock,
                      watcher_for: steps.WatcherFactory | None = None
                      ) -> tuple[pd.DataFrame, steps.Crystals, dict[str, int]]:
    """The per-crystal steps up to the relaxation (when ``relax.enabled``): the scoring's first half, and all a
    shard of a sharded evaluation does. Returns the table, the crystals and the composition checks' failures."""
    table = _base_table(frame, cfg)
    with clock("parse_and_validity"):
        checked, crystals = steps.parse_and_validity(table, cfg)
    _merge(table, checked)
    if cfg.relax.enabled:
        with clock("relaxation"):
            _merge(table, steps.relaxation(table, crystals, cfg, hull, watcher_for))
    return table, crystals, checked.failures


def relax_rows(rows: list[dict] | pd.DataFrame, cfg: EvaluateConfig) -> dict[str, int]:
    """Only the relaxations of ``rows`` (into ``cfg.cache``), the steps before them included: what a shard of a
    sharded evaluation does (``shards.py``); ``score_samples`` then finds every one in the cache. Returns
    counts for the shard's marker."""
    frame, _ = select_rows(rows)
    table, crystals, _ = _decode_and_relax(frame, cfg, get_hull(cfg), _StepClock())
    return {"n_rows": len(table), "n_relaxed": len(crystals.relaxations),
            "n_relaxed_now": sum(r.get("cached") is False for r in crystals.relaxations.values())}


class _StepClock:
    """Wall seconds per scoring step, and beside them the potential's own compute, for ``summary["timings"]``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, step: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[step] = round(time.perf_counter() - start, 2)

    def report(self, table: pd.DataFrame, cfg: EvaluateConfig) -> dict[str, Any]:
        # relaxed in this run (None: not relaxed at all; a shared result cost nothing)
        fresh = (table["relax_cached"] == False) & table["relax_shared_with"].isna()  # noqa: E712

        def total(column: str) -> float:  # over the crystals relaxed in this run; a missing value counts 0
            return float(pd.to_numeric(table.loc[fresh, column], errors="coerce").sum())

        potential = total("relax_potential_seconds")
        workers = n_workers(cfg.workers)
        relax_wall = self.seconds.get("relaxation")
        return {
            "steps_s": self.seconds,
            "workers": workers,
            "n_relaxed_now": int(fresh.sum()),
            "n_shared_with_a_match": int(table["relax_shared_with"].notna().sum()),
            "force_calls": int(total("relax_force_calls")),
            "potential_compute_s": round(potential, 2),
            "relax_worker_s": round(total("relax_seconds"), 2),
            # wall time of the relaxation step against the potential's compute spread over the workers: 1.0 would
            # mean the cores did nothing but evaluate the potential (docs/evaluation.md, "Throughput")
            "relaxation_wall_over_compute": round(relax_wall / (potential / workers), 3)
            if relax_wall and potential > 0 else None,
            "total_wall_over_compute": round(sum(self.seconds.values()) / (potential / workers), 3)
            if potential > 0 else None,
        }


def _first_per_class(table: pd.DataFrame, pool: pd.Series) -> pd.Series:
    """True for the first row of each StructureMatcher class *within* ``pool`` (S.U.N. counts classes of
    stable novel crystals, so an unstable duplicate earlier in the file cannot hide a stable one)."""
    flags = pd.Series(False, index=table.index)
    seen: set[int] = set()
    for i in table.index[pool.fillna(False).astype(bool)]:
        cid = table.at[i, "match_class"]
        if pd.isna(cid) or int(cid) in seen:
            continue
        seen.add(int(cid))
        flags[i] = True
    return flags


def build_summary(out: pd.DataFrame, info: dict[str, Any], hull: ReferenceHull, cfg: EvaluateConfig,
                  computed: set[str]) -> dict[str, Any]:
    n = len(out)
    n_cond = int(out["spacegroup_requested"].notna().sum())
    reasons = Counter(r.split(":")[0] for r in out["fail_reason"].dropna())  # parse:syntax -> parse
    relaxed = "relaxation" in computed
    return {
        "n_requested": n,
        "n_parsed": int(out["parse_ok"].sum()),
        "n_conditional": n_cond,
        "n_valid": int(steps.valid_rows(out).sum()),
        "n_relaxed": int(out["relax_ok"].sum()) if relaxed else None,
        **metrics.headline(out, computed),
        "not_computed": metrics.not_computed(computed),
        "n_stable": int(out["is_stable"].sum()) if relaxed else None,
        "n_sun": int(out["is_sun"].sum()) if "novelty" in computed and relaxed else None,
        "n_ssun": int(out["is_ssun"].sum()) if "novelty" in computed and relaxed else None,
        "mean_e_hull": float(np.nanmean(out["e_hull"])) if out["relax_ok"].any() else None,
        "mean_e_hull_ci95": bootstrap_ci(out["e_hull"]) if out["relax_ok"].any() else None,
        "per_spacegroup": metrics.per_spacegroup(out, computed),
        "failure_reasons": dict(sorted(Counter(out["fail_reason"].dropna()).items())),
        "failure_kinds": dict(sorted(reasons.items())),
        "n_noble_gas_only": int(out["noble_gas_only"].sum()),
        # relaxed but stopped by the step cap; a failed relaxation (energy_out_of_range, ...) is not counted here
        "n_relax_unconverged": int((out["relax_ok"].astype(bool) & out["relax_converged"].eq(False)).sum()),
        "n_relax_cached": int((out["relax_cached"] == True).sum()),  # noqa: E712
        **info,
        **hull.summary(),
        "mlip": cfg.mlip.cache_tag(),
        "mlip_apply_mp2020_correction": cfg.mlip.apply_mp2020_correction,
        "relax_settings": cfg.relax.cache_tag(),
        "thresholds": {"stable": cfg.thresholds.stable, "metastable": cfg.thresholds.metastable},
        "intervals": "<rate>_ci95: 95 % Wilson score interval over the rate's own denominator; mean_e_hull_ci95: "
                     "BCa bootstrap over the relaxed crystals (plaidpp.stats)",
        "denominators": (
            "every rate divides by n_requested (all requested samples, including parse failures), except "
            "ssun_rate and spacegroup_accuracy(_generated), which divide by n_conditional (samples with a "
            "requested space group); per_spacegroup rates divide by the samples requested with that group"
        ),
        "unaries": (
            "single-element crystals pass compositional validity (CDVAE/MatterGen convention) and are evaluated "
            "like any other crystal, except noble-gas-only ones, which are counted (noble_gas_only) and not scored"
        ),
        "uniqueness_novelty_scope": "only valid crystals (decoded, structurally valid, not noble-gas-only) can be "
                                    "unique or novel",
        "sun_definition": f"S.U.N.: E_hull <= {cfg.thresholds.stable} eV/atom, novel, one per StructureMatcher class",
        "ssun_definition": (
            f"S.S.U.N.: pyxtal space group (tol {cfg.symmetry.tolerance} Å, relaxed crystal) == requested, E_hull <= "
            f"{cfg.thresholds.metastable} eV/atom, novel, one per StructureMatcher class"
        ),
        "metric_definitions": metrics.describe(cfg),
    }
