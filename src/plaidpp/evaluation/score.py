"""Score generated crystal texts: parse -> validity -> relax -> E_hull -> symmetry -> uniqueness/novelty.

``score_samples(rows, cfg)`` is the Python API the RL loop calls; ``evaluate(cfg)`` (evaluate.py) wraps it
with file I/O and MLflow. One output row per requested sample; a sample that fails anywhere keeps its row,
with ``fail_reason`` saying where (first failure wins):

    parse:<DecodeError.reason>        text did not decode
    invalid_structure:<reason>        overlapping_atoms / volume_out_of_range / non_finite_lattice
    element_not_in_mlip:<El>          the potential has no parameters for an element
    element_not_in_hull:<El>          no elemental reference energy, so no formation energy
    <relax reason>                    energy_nan, energy_out_of_range, cell_exploded, relax_timeout,
                                      mlip_error:<Type>, worker_crashed, relaxed_cif_error:<Type>
    correction_error:<Type>           MP2020 correction failed
    hull_error:<Type>                 the phase diagram failed
    relax_disabled                    relax.enabled=false
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd
from pymatgen.core import Structure

from plaidpp.evaluation import metrics
from plaidpp.evaluation.cache import RelaxCache
from plaidpp.evaluation.energy import mp2020_correction
from plaidpp.evaluation.hull import ReferenceHull, load_hull
from plaidpp.evaluation.mlip import supported_elements
from plaidpp.evaluation.novelty import TrainingSet, novelty, uniqueness
from plaidpp.evaluation.symmetry import SymmetryTimeout, spacegroup_number, time_budget
from plaidpp.evaluation.validity import composition_validity, structural_validity
from plaidpp.evaluation.workers import relax_many
from plaidpp.representation import DecodeError, get
from plaidpp.settings.stages import EvaluateConfig

log = logging.getLogger(__name__)

_HULLS: dict[str, ReferenceHull] = {}
_TRAIN: dict[str, TrainingSet] = {}


def get_hull(cfg: EvaluateConfig) -> ReferenceHull:
    """The configured hull, built once per process (the RL loop scores many batches)."""
    key = repr(cfg.hull)
    if key not in _HULLS:
        _HULLS[key] = load_hull(cfg.hull, cfg.paths.cache)
    return _HULLS[key]


def get_training_set(cfg: EvaluateConfig) -> TrainingSet:
    paths = [str(p) for p in cfg.novelty.reference_file]
    key = f"{paths}:{cfg.novelty.split}"
    if key not in _TRAIN:
        _TRAIN[key] = TrainingSet.load_all(paths, cfg.novelty.split)
    return _TRAIN[key]


def select_rows(rows: list[dict] | pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
    """One row per requested sample. Attempt files (a ``final`` column) keep only ``final`` rows and report
    the attempt-level parse rate from all rows."""
    frame = pd.DataFrame(rows) if not isinstance(rows, pd.DataFrame) else rows.copy()
    info: dict[str, Any] = {"n_rows_in_file": len(frame)}
    if "text" not in frame.columns:
        from plaidpp.errors import UserError

        raise UserError("samples have no 'text' field (one JSON object per line with text/repr/spacegroup)")
    if "final" in frame.columns:
        attempts = frame
        frame = frame[frame["final"].fillna(False).astype(bool)].copy()
        info["n_attempts"] = len(attempts)
        if "decoded" in attempts.columns:
            info["attempt_parse_rate"] = float(attempts["decoded"].fillna(False).astype(bool).mean())
    if "index" not in frame.columns:
        frame["index"] = np.arange(len(frame))
    return frame.reset_index(drop=True), info


def _requested_sg(value: Any) -> int | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if 1 <= number <= 230 else None


def score_samples(rows: list[dict] | pd.DataFrame, cfg: EvaluateConfig) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Score generated crystals; returns (per-sample table, summary dict). See the module docstring."""
    frame, info = select_rows(rows)
    progress = cfg.progress
    default_repr = cfg.default_repr
    min_dist = cfg.validity.min_distance
    vpa = tuple(cfg.validity.volume_per_atom)
    spec = cfg.mlip
    settings = cfg.relax
    hull = get_hull(cfg)

    n = len(frame)
    out = pd.DataFrame({"index": frame["index"].to_numpy()})
    out["text"] = frame["text"].astype(str)
    out["repr"] = [r if isinstance(r, str) and r else default_repr for r in frame.get("repr", [None] * n)]
    out["spacegroup_requested"] = pd.array(
        [_requested_sg(v) for v in frame.get("spacegroup", [None] * n)], dtype="Int64"
    )
    for col in frame.columns:  # pass-through keys (prompt, temperature, seed, ...)
        if col not in out.columns and col not in ("spacegroup",):
            out[col] = frame[col].to_numpy()

    structures: list[Structure | None] = [None] * n
    parse_ok, parse_reason, fail = [False] * n, [None] * n, [None] * n
    valid_s, valid_c, min_d = [False] * n, [False] * n, [math.nan] * n
    smact_problems: Counter[str] = Counter()
    for i, (text, rep) in enumerate(zip(out["text"], out["repr"], strict=True)):
        try:
            structures[i] = get(rep).decode(text)
            parse_ok[i] = True
        except DecodeError as exc:
            parse_reason[i] = exc.reason
        except KeyError:
            parse_reason[i] = "unknown_repr"
        except Exception as exc:  # noqa: BLE001 - decode promises DecodeError only; count a broken promise
            parse_reason[i] = f"decode_crash:{type(exc).__name__}"
        if not parse_ok[i]:
            fail[i] = f"parse:{parse_reason[i]}"
            continue
        s = structures[i]
        check = structural_validity(s, min_dist, vpa)
        valid_s[i], min_d[i] = check.valid, check.min_distance
        try:
            # SMACT enumerates oxidation-state combinations: exponential in the number of elements
            with time_budget(cfg.validity.smact_time_limit_s):
                valid_c[i] = composition_validity(s.composition)
        except SymmetryTimeout:
            valid_c[i] = False
            smact_problems["smact_timeout"] += 1
        except Exception as exc:  # noqa: BLE001 - SMACT has no data for some elements: invalid, counted
            valid_c[i] = False
            smact_problems[f"smact_error:{type(exc).__name__}"] += 1
        if not check.valid:
            fail[i] = f"invalid_structure:{check.reason}"
    info["composition_check_failures"] = dict(smact_problems)
    out["parse_ok"], out["parse_reason"] = parse_ok, parse_reason
    out["valid_structure"], out["valid_composition"] = valid_s, valid_c
    out["min_distance"] = min_d
    out["formula"] = [s.composition.reduced_formula if s is not None else None for s in structures]
    out["n_atoms"] = pd.array([len(s) if s is not None else None for s in structures], dtype="Int64")

    # ---- relaxation candidates: structurally valid crystals whose elements the MLIP and hull cover
    mlip_elements = supported_elements(spec)
    todo: dict[int, Structure] = {}
    for i, s in enumerate(structures):
        if fail[i] is not None or s is None:
            continue
        symbols = sorted(el.symbol for el in s.composition.elements)
        if mlip_elements is not None and (bad := [e for e in symbols if e not in mlip_elements]):
            fail[i] = f"element_not_in_mlip:{','.join(bad)}"
        elif bad := hull.missing_elements(s.composition):
            fail[i] = f"element_not_in_hull:{','.join(bad)}"
        elif not settings.enabled:
            fail[i] = "relax_disabled"
        else:
            todo[i] = s
    cache_file = cfg.cache.file if cfg.cache.enabled else None
    sg_tolerance = cfg.symmetry.tolerance  # the paper's pyxtal tolerance, for both checks
    sg_time_limit_s = cfg.symmetry.time_limit_s
    cache = RelaxCache(cache_file)
    try:
        relaxed = relax_many(
            todo, spec, settings, cache,
            sg_tolerance=sg_tolerance,
            sg_time_limit_s=sg_time_limit_s,
            workers=cfg.workers,
            progress=progress,
        )
    finally:
        cache.close()

    energy_pa, e_corr_pa, e_form, e_hull = ([math.nan] * n for _ in range(4))
    n_steps = pd.array([None] * n, dtype="Int64")
    converged, cached = [None] * n, [None] * n
    sg_achieved, sg_reason, cif_relaxed = [None] * n, [None] * n, [None] * n
    final_structs: list[Structure | None] = list(structures)  # relaxed where available
    for i, res in relaxed.items():
        n_steps[i], converged[i], cached[i] = res["n_steps"], res["converged"], res.get("cached")
        if res["fail_reason"] is not None:
            fail[i] = res["fail_reason"]
            continue
        try:
            relaxed_s = Structure.from_str(res["cif_relaxed"], fmt="cif")
        except Exception as exc:  # noqa: BLE001 - a cache row from an older writer, say: counted
            fail[i] = f"relaxed_cif_error:{type(exc).__name__}"
            continue
        final_structs[i] = relaxed_s
        cif_relaxed[i] = res["cif_relaxed"]
        sg_achieved[i], sg_reason[i] = res["spacegroup_achieved"], res["spacegroup_fail_reason"]
        energy = float(res["energy_total"])
        energy_pa[i] = energy / len(relaxed_s)
        try:
            correction = mp2020_correction(relaxed_s, energy) if spec.apply_mp2020_correction else 0.0
        except Exception as exc:  # noqa: BLE001 - CompatibilityError and friends: counted
            fail[i] = f"correction_error:{type(exc).__name__}"
            continue
        e_corr_pa[i] = correction / len(relaxed_s)
        try:
            e_form[i] = hull.refs.formation_energy_per_atom(relaxed_s.composition, energy + correction)
            e_hull[i] = hull.e_above_hull(relaxed_s.composition, e_form[i])
        except Exception as exc:  # noqa: BLE001 - counted
            fail[i] = f"hull_error:{type(exc).__name__}"
            e_hull[i] = math.nan
    out["relax_ok"] = [math.isfinite(x) for x in e_hull]
    out["fail_reason"] = fail
    out["relax_steps"], out["relax_converged"], out["relax_cached"] = n_steps, converged, cached
    out["energy_per_atom"], out["correction_per_atom"] = energy_pa, e_corr_pa
    out["e_form_per_atom"], out["e_hull"] = e_form, e_hull
    out["spacegroup_achieved"] = pd.array(sg_achieved, dtype="Int64")
    out["spacegroup_fail_reason"] = sg_reason

    eh = out["e_hull"].to_numpy(dtype=float)
    with np.errstate(invalid="ignore"):
        out["is_stable"] = eh <= cfg.thresholds.stable
        out["is_metastable"] = eh <= cfg.thresholds.metastable
    out["spacegroup_match"] = (
        (out["spacegroup_achieved"] == out["spacegroup_requested"]).fillna(False).astype(bool)
    )
    # The same check on the crystal as generated (before relaxation) tells "the model ignored the prompt"
    # apart from "relaxation broke the symmetry the model wrote". Conditioned samples only.
    sg_generated = [None] * n
    for i, s in enumerate(structures):
        if s is not None and not pd.isna(out["spacegroup_requested"].iloc[i]):
            sg_generated[i], _ = spacegroup_number(s, sg_tolerance, sg_time_limit_s)
    out["spacegroup_generated"] = pd.array(sg_generated, dtype="Int64")
    out["spacegroup_generated_match"] = (
        (out["spacegroup_generated"] == out["spacegroup_requested"]).fillna(False).astype(bool)
    )

    # ---- uniqueness / novelty on the relaxed crystal where there is one, else the decoded one
    from plaidpp.evaluation import novelty as novelty_module

    novelty_module.MATCH_FAILURES.clear()
    match_limit = cfg.novelty.matcher_time_limit_s
    uniq, class_id = uniqueness(final_structs, match_limit)
    out["is_unique"] = [bool(u) for u in uniq]
    out["match_class"] = pd.array(class_id, dtype="Int64")
    if cfg.novelty.enabled:
        train = get_training_set(cfg)
        out["is_novel"] = [bool(v) for v in novelty(final_structs, train, match_limit)]
        info.update(train.describe())
    else:
        out["is_novel"] = False
        info["novelty_reference"] = None
    info["matcher_failures"] = dict(novelty_module.MATCH_FAILURES)  # counted as "no match"
    out["is_sun"] = _first_per_class(out, out["is_stable"] & out["is_novel"])
    ssun_pool = out["spacegroup_match"] & out["is_metastable"] & out["is_novel"]
    out["is_ssun"] = _first_per_class(out, ssun_pool)
    out["cif_relaxed"] = cif_relaxed

    summary = build_summary(out, info, hull, cfg)
    return out, summary


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


def build_summary(out: pd.DataFrame, info: dict[str, Any], hull: ReferenceHull, cfg: EvaluateConfig) -> dict[str, Any]:
    n = len(out)
    n_cond = int(out["spacegroup_requested"].notna().sum())
    reasons = Counter(r.split(":")[0] for r in out["fail_reason"].dropna())  # parse:syntax -> parse
    summary: dict[str, Any] = {
        "n_requested": n,
        "n_parsed": int(out["parse_ok"].sum()),
        "n_conditional": n_cond,
        "n_relaxed": int(out["relax_ok"].sum()),
        **metrics.headline(out),
        "n_stable": int(out["is_stable"].sum()),
        "n_sun": int(out["is_sun"].sum()),
        "n_ssun": int(out["is_ssun"].sum()),
        "mean_e_hull": float(np.nanmean(out["e_hull"])) if out["relax_ok"].any() else None,
        "per_spacegroup": metrics.per_spacegroup(out),
        "failure_reasons": dict(sorted(Counter(out["fail_reason"].dropna()).items())),
        "failure_kinds": dict(sorted(reasons.items())),
        "spacegroup_failures": dict(Counter(out["spacegroup_fail_reason"].dropna())),
        "n_relax_unconverged": int((out["relax_converged"] == False).sum()),  # noqa: E712
        "n_relax_cached": int((out["relax_cached"] == True).sum()),  # noqa: E712
        **info,
        **hull.summary(),
        "mlip": cfg.mlip.cache_tag(),
        "mlip_apply_mp2020_correction": cfg.mlip.apply_mp2020_correction,
        "relax_settings": cfg.relax.cache_tag(),
        "thresholds": {"stable": cfg.thresholds.stable, "metastable": cfg.thresholds.metastable},
        "denominators": (
            "every rate divides by n_requested (all requested samples, including parse failures), except "
            "ssun_rate and spacegroup_accuracy, which divide by n_conditional (samples with a requested space "
            "group); per_spacegroup rates divide by the samples requested with that group"
        ),
        "unaries": (
            "single-element crystals pass compositional validity (CDVAE/MatterGen convention) and are "
            "evaluated like any other crystal; their E_hull is against the elemental polymorphs in the hull"
        ),
        "sun_definition": f"S.U.N.: E_hull <= {cfg.thresholds.stable} eV/atom, novel, one per StructureMatcher class",
        "ssun_definition": (
            f"S.S.U.N.: pyxtal space group (tol {cfg.symmetry.tolerance} Å, relaxed crystal) == requested, E_hull <= "
            f"{cfg.thresholds.metastable} eV/atom, novel, one per StructureMatcher class"
        ),
        "metric_definitions": metrics.describe(cfg),
    }
    return summary
