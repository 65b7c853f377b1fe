"""The five scoring steps of ``score_samples``, in order. Each takes the per-sample table and the crystals,
and returns its columns and its counted failures (``StepResult``); ``score.py`` runs them and merges.

1. ``parse_and_validity``  text -> crystal; structural validity; compositional validity (SMACT, budgeted);
2. ``relaxation``          the valid crystals the potential and hull cover, relaxed (cached, in workers);
3. ``energy_and_hull``     MP2020 correction, formation energy, E_hull, the stable / metastable calls;
4. ``symmetry``            the space group after relaxation (from the workers) and as generated, vs requested;
5. ``uniqueness_and_novelty``  StructureMatcher classes among the valid crystals, novelty against training.

A sample keeps its row whatever fails; ``fail_reason`` records the first failure (see ``score.py``).

**Only valid crystals are unique or novel.** A crystal with overlapping atoms or an absurd cell is not a crystal
a generator has discovered, so it is neither (it used to count, inflating both rates). **Noble-gas-only
crystals** (He, Ne, Ar, Kr, Xe, Rn and nothing else) are counted, not scored: they are van der Waals solids whose
formation energy is ~0 against their own elemental reference by construction, so any close packing of them
"is stable" (solid fcc Ne came out stable, unique and novel); they fail compositional validity and are not
relaxed (``fail_reason: noble_gas_only``), so they are never stable, unique, novel or S.U.N. Compounds with a
noble gas (XeF4, HeSiO2, both in MP-20) are scored like any other crystal.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pymatgen.core import Structure

from plaidpp.evaluation.cache import RelaxCache
from plaidpp.evaluation.energy import mp2020_correction
from plaidpp.evaluation.hull import ReferenceHull
from plaidpp.evaluation.inputs import CIF_REASONS, parse_cif
from plaidpp.evaluation.mlip import supported_elements
from plaidpp.evaluation.novelty import Matching, TrainingSet, novelty, uniqueness
from plaidpp.evaluation.symmetry import SymmetryTimeout, spacegroup_number, time_budget
from plaidpp.evaluation.tiers import TierExit, TierExitRule
from plaidpp.evaluation.validity import StructuralCheck, cif_cell_problem, composition_validity, structural_validity
from plaidpp.evaluation.watchers import Watcher
from plaidpp.evaluation.workers import relax_many
from plaidpp.representation import DecodeError, get
from plaidpp.settings.stages import EvaluateConfig


WatcherFactory = Callable[[int, Structure], Watcher | None]

# Reasons produced with data after a colon (an exception type, an element list: relaxation results, the cache's
# older rows, energy terms). ``failure_reasons`` keys are fixed categories: the data goes to ``fail_detail``.
DETAILED_REASONS = ("mlip_error", "relaxed_cif_error", "correction_error", "hull_error", "spacegroup_error",
                    "element_not_in_mlip", "element_not_in_hull")


def split_reason(reason: str | None, detail: str | None = None) -> tuple[str | None, str | None]:
    """``"mlip_error:RuntimeError"`` -> ``("mlip_error", "RuntimeError")``; a fixed reason passes unchanged."""
    if reason is None:
        return None, detail
    kind, sep, data = reason.partition(":")
    if sep and kind in DETAILED_REASONS:
        return kind, "; ".join(x for x in (data, detail) if x) or None
    return reason, detail


@dataclass
class StepResult:
    columns: dict[str, Any] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)  # counted problems of this step, for summary.json


@dataclass
class Crystals:
    """What the steps pass along besides the table: the structures (parquet holds CIF text, not objects) and
    each row's first failure (a Python list: a string column of the table would turn None into NaN)."""

    decoded: list[Structure | None]
    fail: list[str | None]
    detail: list[str | None]  # what a failure's fixed reason leaves out (an element list, a library's message)
    relaxations: dict[int, dict[str, Any]] = field(default_factory=dict)  # row -> the worker's result
    relaxed: dict[int, Structure] = field(default_factory=dict)  # row -> relaxed crystal (relaxation succeeded)


def noble_gas_only(structure: Structure) -> bool:
    return all(el.is_noble_gas for el in structure.composition.elements)


def _parse(text: str, rep: str) -> tuple[Structure | None, str | None, str | None]:
    """(crystal, None, None) or (None, reason, detail): the reason a fixed category, the message its detail."""
    try:
        return (parse_cif(text) if rep == "cif" else get(rep).decode(text)), None, None
    except DecodeError as exc:
        return None, exc.reason, None
    except KeyError:
        return None, "unknown_repr", rep
    except ValueError as exc:
        if rep == "cif" and exc.args and exc.args[0] in CIF_REASONS:  # parse_cif's own: (reason, detail)
            return None, exc.args[0], (exc.args[1] or None) if len(exc.args) > 1 else None
        return None, "decode_crash", f"{type(exc).__name__}: {exc}"[:200]
    except Exception as exc:  # noqa: BLE001 - decode promises DecodeError only; count a broken promise
        return None, "decode_crash", f"{type(exc).__name__}: {exc}"[:200]


def _stored_text(text: str, rep: str, structure: Structure | None, cfg: EvaluateConfig) -> str | None:
    """What the results keep of a sample's text: a generator's crystal text as written; a structure input as
    pymatgen writes the crystal it parsed to (never the bytes of whatever file was read), or nothing."""
    if rep != "cif":
        return text
    if structure is not None:
        return structure.to(fmt="cif")
    return text[:cfg.inputs.max_text_kb * 1024] if cfg.inputs.keep_raw_text and text else None


def parse_and_validity(table: pd.DataFrame, cfg: EvaluateConfig) -> tuple[StepResult, Crystals]:
    n = len(table)
    decoded: list[Structure | None] = [None] * n
    parse_ok, parse_reason, fail, detail = [False] * n, [None] * n, [None] * n, [None] * n
    valid_s, valid_c, noble, min_d = [False] * n, [False] * n, [False] * n, [math.nan] * n
    stored: list[str | None] = [None] * n
    problems: Counter[str] = Counter()
    refused = table["input_reason"] if "input_reason" in table.columns else [None] * n
    for i, (text, rep, input_reason) in enumerate(zip(table["text"], table["repr"], refused, strict=True)):
        if isinstance(input_reason, str):  # the reader refused the file or row (inputs.py): nothing to parse
            parse_reason[i], fail[i] = input_reason, f"input:{input_reason}"
            continue
        decoded[i], parse_reason[i], detail[i] = _parse(text, rep)
        stored[i] = _stored_text(text, rep, decoded[i], cfg)
        if decoded[i] is None:
            fail[i] = f"parse:{parse_reason[i]}"
            continue
        parse_ok[i] = True
        s = decoded[i]
        if len(s) > cfg.validity.max_sites:  # before any check: a neighbour list of 10,000 sites takes seconds
            fail[i], detail[i] = "invalid_structure:too_large", f"{len(s)} sites > validity.max_sites"
            continue
        cell_problem = cif_cell_problem(text) if rep == "cif" else None
        check = structural_validity(s, cfg.validity.min_distance, tuple(cfg.validity.volume_per_atom))
        if cell_problem:
            check = StructuralCheck(False, "invalid_cell_parameters", check.min_distance)
            detail[i] = cell_problem
        valid_s[i], min_d[i] = check.valid, check.min_distance
        noble[i] = noble_gas_only(s)
        if noble[i]:
            valid_c[i] = False
        else:
            try:
                # SMACT enumerates oxidation-state combinations: exponential in the number of elements
                with time_budget(cfg.validity.smact_time_limit_s):
                    valid_c[i] = composition_validity(s.composition)
            except SymmetryTimeout:
                problems["smact_timeout"] += 1
            except Exception:  # noqa: BLE001 - SMACT has no data for some elements: invalid, counted
                problems["smact_error"] += 1
        if not check.valid:
            fail[i] = f"invalid_structure:{check.reason}"
        elif noble[i]:
            fail[i] = "noble_gas_only"
    columns = {"text": stored, "parse_ok": parse_ok, "parse_reason": parse_reason, "valid_structure": valid_s,
               "valid_composition": valid_c, "noble_gas_only": noble, "min_distance": min_d,
               "formula": [s.composition.reduced_formula if s is not None else None for s in decoded],
               "n_atoms": pd.array([len(s) if s is not None else None for s in decoded], dtype="Int64")}
    return StepResult(columns, dict(problems)), Crystals(decoded, fail, detail)


def relaxation(table: pd.DataFrame, crystals: Crystals, cfg: EvaluateConfig, hull: ReferenceHull,
               watcher_for: WatcherFactory | None = None) -> StepResult:
    """Relax every crystal that passed so far and whose elements the potential and the hull know.

    ``watcher_for(row, structure)`` gives a row's relaxation a watcher (``watchers.py``), or None."""
    fail = crystals.fail
    covered = supported_elements(cfg.mlip)
    todo: dict[int, Structure] = {}
    for i, s in enumerate(crystals.decoded):
        if fail[i] is not None or s is None:
            continue
        symbols = sorted(el.symbol for el in s.composition.elements)
        if covered is not None and (bad := [e for e in symbols if e not in covered]):
            fail[i], crystals.detail[i] = "element_not_in_mlip", ",".join(bad)
        elif bad := hull.missing_elements(s.composition):
            fail[i], crystals.detail[i] = "element_not_in_hull", ",".join(bad)
        else:
            todo[i] = s
    if watcher_for is None and cfg.relax.tier_exit:
        watcher_for = tier_exit_watchers(cfg, hull)
    cache = RelaxCache(cfg.cache.file if cfg.cache.enabled else None)
    try:
        watchers = {i: w for i, s in todo.items() if (w := watcher_for(i, s)) is not None} if watcher_for else {}
        share = Matching(cfg.novelty.matcher_time_limit_s) if cfg.relax.share_duplicates else None
        crystals.relaxations = relax_many(todo, cfg.mlip, cfg.relax, cfg.symmetry, cache, workers=cfg.workers,
                                          progress=cfg.progress, watchers=watchers, share_matches=share)
    finally:
        cache.close()
    n = len(table)
    steps, calls = pd.array([None] * n, dtype="Int64"), pd.array([None] * n, dtype="Int64")
    converged, cached, cif = [None] * n, [None] * n, [None] * n
    seconds, potential_s, exits = [math.nan] * n, [math.nan] * n, [None] * n
    shared_with = pd.array([None] * n, dtype="Int64")
    # what watchers added to their results (a recorder's trajectory): one column per key
    extra = {key: [None] * n for w in watchers.values() for key in w.extra()}
    for i, result in crystals.relaxations.items():
        steps[i], converged[i], cached[i] = result["n_steps"], result["converged"], result.get("cached")
        exits[i], shared_with[i] = result.get("exit_reason"), result.get("shared_with")
        for key, column in extra.items():
            column[i] = result.get(key)
        # timings of the run that relaxed it (an older cache row has none)
        calls[i], seconds[i] = result.get("force_calls"), result.get("seconds", math.nan)
        potential_s[i] = result.get("potential_seconds", math.nan)
        if result["fail_reason"] is not None:
            fail[i], crystals.detail[i] = split_reason(result["fail_reason"], result.get("fail_detail"))
            continue
        try:
            crystals.relaxed[i] = Structure.from_str(result["cif_relaxed"], fmt="cif")
            cif[i] = result["cif_relaxed"]
        except Exception as exc:  # noqa: BLE001 - a cache row from an older writer, say: counted
            fail[i], crystals.detail[i] = "relaxed_cif_error", type(exc).__name__
    return StepResult({"relax_steps": steps, "relax_converged": converged, "relax_cached": cached,
                       "relax_force_calls": calls, "relax_seconds": seconds, "relax_potential_seconds": potential_s,
                       "relax_exit_reason": exits, "relax_shared_with": shared_with, "cif_relaxed": cif, **extra})


def tier_exit_watchers(cfg: EvaluateConfig, hull: ReferenceHull) -> WatcherFactory:
    """``relax.tier_exit``: each crystal's ``TierExit``, with its E_hull at zero energy (the hull and MP2020 terms
    of its composition, from the crystal as generated). A crystal whose offset cannot be computed relaxes fully
    (its correction or hull error is counted after the relaxation, as without the exit)."""
    rule = TierExitRule(tuple(sorted({cfg.thresholds.stable, cfg.thresholds.metastable, *cfg.relax.tier_exit_cuts})),
                        cfg.relax.tier_exit_slope, cfg.relax.tier_exit_floor)

    def watcher(row: int, structure: Structure) -> TierExit | None:  # noqa: ARG001 - the factory's signature
        try:
            offset = energy_terms(structure, 0.0, cfg, hull)[2]
        except EnergyTermError:  # no offset, no exit
            return None
        return TierExit(rule, offset) if math.isfinite(offset) else None

    return watcher


class EnergyTermError(Exception):
    """A counted failure of ``energy_terms``: ``correction_error:<Type>`` or ``hull_error:<Type>``."""


def energy_terms(structure: Structure, energy_total: float, cfg: EvaluateConfig,
                 hull: ReferenceHull) -> tuple[float, float, float]:
    """(MP2020 correction in eV per cell, formation energy and E_hull in eV/atom) of ``structure`` at the
    potential's total energy ``energy_total`` (eV per cell). Raises ``EnergyTermError`` naming the failed term."""
    try:
        correction = mp2020_correction(structure, energy_total) if cfg.mlip.apply_mp2020_correction else 0.0
    except Exception as exc:  # noqa: BLE001 - CompatibilityError and friends: counted
        raise EnergyTermError(f"correction_error:{type(exc).__name__}") from exc
    try:
        e_form = hull.refs.formation_energy_per_atom(structure.composition, energy_total + correction)
        return correction, e_form, hull.e_above_hull(structure.composition, e_form)
    except Exception as exc:  # noqa: BLE001 - counted
        raise EnergyTermError(f"hull_error:{type(exc).__name__}") from exc


def energy_and_hull(table: pd.DataFrame, crystals: Crystals, cfg: EvaluateConfig, hull: ReferenceHull) -> StepResult:
    n = len(table)
    fail = crystals.fail
    energy_pa, correction_pa, e_form, e_hull = ([math.nan] * n for _ in range(4))
    for i, relaxed in crystals.relaxed.items():
        energy = float(crystals.relaxations[i]["energy_total"])
        energy_pa[i] = energy / len(relaxed)
        try:
            correction, e_form[i], e_hull[i] = energy_terms(relaxed, energy, cfg, hull)
        except EnergyTermError as exc:
            fail[i], crystals.detail[i] = split_reason(str(exc))
            continue
        correction_pa[i] = correction / len(relaxed)
    eh = np.asarray(e_hull, dtype=float)
    with np.errstate(invalid="ignore"):
        stable, metastable = eh <= cfg.thresholds.stable, eh <= cfg.thresholds.metastable
    return StepResult({"relax_ok": [math.isfinite(x) for x in e_hull],
                       "energy_per_atom": energy_pa, "correction_per_atom": correction_pa,
                       "e_form_per_atom": e_form, "e_hull": e_hull, "is_stable": stable, "is_metastable": metastable})


def symmetry(table: pd.DataFrame, crystals: Crystals, cfg: EvaluateConfig) -> StepResult:
    """The relaxed crystal's space group (computed beside the relaxation, in the workers) and, for conditioned
    samples, the space group as generated: "the model ignored the prompt" vs "relaxation broke the symmetry"."""
    n = len(table)
    achieved, reasons = [None] * n, [None] * n
    for i in crystals.relaxed:
        achieved[i] = crystals.relaxations[i]["spacegroup_achieved"]
        reasons[i] = split_reason(crystals.relaxations[i]["spacegroup_fail_reason"])[0]
    generated = [None] * n
    requested = table["spacegroup_requested"]
    for i, s in enumerate(crystals.decoded):
        if s is not None and not pd.isna(requested.iloc[i]):
            generated[i], _ = spacegroup_number(s, cfg.symmetry.tolerance, cfg.symmetry.time_limit_s)
    achieved_col = pd.array(achieved, dtype="Int64")
    generated_col = pd.array(generated, dtype="Int64")
    return StepResult(
        {"spacegroup_achieved": achieved_col, "spacegroup_fail_reason": reasons,
         "spacegroup_match": (pd.Series(achieved_col) == requested.reset_index(drop=True)).fillna(False).astype(bool),
         "spacegroup_generated": generated_col,
         "spacegroup_generated_match": (pd.Series(generated_col) == requested.reset_index(drop=True)
                                        ).fillna(False).astype(bool)},
        dict(Counter(r for r in reasons if r is not None)))


def valid_rows(table: pd.DataFrame) -> pd.Series:
    """The crystals uniqueness and novelty judge: decoded, structurally valid, not noble-gas-only."""
    return table["parse_ok"] & table["valid_structure"] & ~table["noble_gas_only"]


def uniqueness_and_novelty(table: pd.DataFrame, crystals: Crystals, cfg: EvaluateConfig,
                           train: TrainingSet | None) -> StepResult:
    """On the relaxed crystal where there is one, else the decoded one; valid crystals only."""
    valid = valid_rows(table)
    judged = [crystals.relaxed.get(i, s) if valid.iloc[i] else None for i, s in enumerate(crystals.decoded)]
    matching = Matching(cfg.novelty.matcher_time_limit_s)
    unique, classes = uniqueness(judged, matching)
    columns: dict[str, Any] = {"is_unique": [bool(u) for u in unique], "match_class": pd.array(classes, dtype="Int64")}
    columns["is_novel"] = [bool(v) for v in novelty(judged, train, matching)] if train is not None else [False] * len(judged)
    return StepResult(columns, dict(matching.failures))
