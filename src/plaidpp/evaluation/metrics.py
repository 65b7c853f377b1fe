"""The headline rates: one small typed class per metric, every denominator stated, every need declared.

Each metric names the per-structure boolean column it counts, the denominator it divides by and the scoring
steps it needs (``score.STEPS``). Unless a metric says otherwise the denominator is ``n_requested``: every
requested sample, including those that failed to parse, failed validity or failed to relax (they count as "not
stable", "not unique", ...). Rates over survivors would flatter a model that fails often. A metric whose
needed step did not run (``novelty.enabled=false``, ``relax.enabled=false``) is ``None``, with the reason in
``summary["not_computed"]``, never 0. Descriptions are templates filled from the configured thresholds, so
what ``summary.json`` says is what was computed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from plaidpp.settings.stages import EvaluateConfig
from plaidpp.stats import wilson

# the scoring steps a metric can need, and what switches each off
OPTIONAL_STEPS = {"relaxation": "relax.enabled=false", "novelty": "novelty.enabled=false"}


@dataclass(frozen=True)
class RateMetric:
    name: str
    column: str
    description: str
    denominator: str = "n_requested"  # or "n_conditional": rows with a requested space group
    needs: tuple[str, ...] = ()

    def rows(self, table: pd.DataFrame) -> pd.DataFrame:
        return table if self.denominator == "n_requested" else table[table["spacegroup_requested"].notna()]

    def counts(self, table: pd.DataFrame) -> tuple[int, int]:
        """(samples counted, denominator)."""
        rows = self.rows(table)
        return int(rows[self.column].fillna(False).astype(bool).sum()), len(rows)

    def value(self, table: pd.DataFrame, computed: set[str]) -> float | None:
        k, n = self.counts(table)
        if n == 0 or self.missing(computed):
            return None
        return k / n

    def interval(self, table: pd.DataFrame, computed: set[str]) -> list[float] | None:
        """The 95 % Wilson interval over the metric's own denominator (None where the value is None)."""
        k, n = self.counts(table)
        return None if n == 0 or self.missing(computed) else wilson(k, n)

    def missing(self, computed: set[str]) -> list[str]:
        return [step for step in self.needs if step not in computed]


METRICS: tuple[RateMetric, ...] = (
    RateMetric("parse_rate", "parse_ok", "text decoded into a crystal"),
    RateMetric("validity_structural", "valid_structure",
               "all periodic interatomic distances > {min_distance} Å and volume/atom in {volume_per_atom} Å^3"),
    RateMetric("validity_composition", "valid_composition",
               "SMACT charge neutrality + Pauling test (smact14 oxidation states); unaries and all-metal "
               "compositions pass (CDVAE/MatterGen convention), noble-gas-only ones do not; unparsed samples count "
               "as invalid"),
    RateMetric("relax_rate", "relax_ok", "relaxed with the MLIP and placed on the hull (finite E_hull)",
               needs=("relaxation",)),
    RateMetric("stability_rate", "is_stable", "E_hull <= {stable} eV/atom (thresholds.stable)",
               needs=("relaxation",)),
    RateMetric("metastability_rate", "is_metastable", "E_hull <= {metastable} eV/atom (thresholds.metastable)",
               needs=("relaxation",)),
    RateMetric("uniqueness_rate", "is_unique",
               "a valid crystal, first of its StructureMatcher class among the valid samples"),
    RateMetric("novelty_rate", "is_novel", "a valid crystal matching no training crystal (StructureMatcher defaults)",
               needs=("novelty",)),
    RateMetric("sun_rate", "is_sun",
               "stable (E_hull <= {stable} eV/atom) + novel + unique: one per StructureMatcher class among stable "
               "novel samples", needs=("relaxation", "novelty")),
    RateMetric("ssun_rate", "is_ssun",
               "space group by pyxtal (tol {tolerance} Å) == requested + metastable (E_hull <= {metastable} eV/atom) "
               "+ novel + unique", denominator="n_conditional", needs=("relaxation", "novelty")),
    RateMetric("spacegroup_accuracy", "spacegroup_match",
               "pyxtal space group (tol {tolerance} Å) of the relaxed crystal == requested",
               denominator="n_conditional", needs=("relaxation",)),
    RateMetric("spacegroup_accuracy_generated", "spacegroup_generated_match",
               "pyxtal space group (tol {tolerance} Å) of the crystal as generated (before relaxation) == requested",
               denominator="n_conditional"),
)


def headline(table: pd.DataFrame, computed: set[str]) -> dict[str, Any]:
    """Every rate and its 95 % interval: ``<rate>`` and ``<rate>_ci95`` ([low, high], Wilson)."""
    out: dict[str, Any] = {}
    for m in METRICS:
        out[m.name] = m.value(table, computed)
        out[f"{m.name}_ci95"] = m.interval(table, computed)
    return out


def not_computed(computed: set[str]) -> dict[str, str]:
    """Metric name -> why it is ``None`` (the setting that switched its step off)."""
    return {m.name: ", ".join(OPTIONAL_STEPS[s] for s in missing) for m in METRICS if (missing := m.missing(computed))}


def per_spacegroup(table: pd.DataFrame, computed: set[str]) -> dict[str, dict[str, Any]]:
    """Figures per requested space group, with intervals (denominator: samples requested with that group)."""
    out: dict[str, dict[str, Any]] = {}
    conditional = table[table["spacegroup_requested"].notna()]
    for number, rows in conditional.groupby("spacegroup_requested"):
        figures: dict[str, Any] = {"n_requested": len(rows)}
        for m in METRICS:
            figures[m.name] = m.value(rows, computed)
            figures[f"{m.name}_ci95"] = m.interval(rows, computed)
        out[str(int(number))] = figures
    return out


def describe(cfg: EvaluateConfig) -> dict[str, str]:
    """Metric name -> description (with the configured thresholds) and denominator, written into summary.json."""
    values = {"stable": cfg.thresholds.stable, "metastable": cfg.thresholds.metastable,
              "min_distance": cfg.validity.min_distance, "volume_per_atom": cfg.validity.volume_per_atom,
              "tolerance": cfg.symmetry.tolerance}
    return {m.name: f"{m.description.format(**values)} / {m.denominator}" for m in METRICS}


def names() -> list[str]:
    """Every headline rate, in registry order (what RLIP and the report tabulate)."""
    return [m.name for m in METRICS]
