"""The report's figures (matplotlib, Agg: no screen needed), each written as a PNG and returned as its path, or
None when there is nothing to draw. Rates are drawn as % of the samples requested with their 95 % Wilson
interval as a band or an error bar, the way every rate is published here."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

CRYSTAL_SYSTEMS = (("triclinic", 1, 2), ("monoclinic", 3, 15), ("orthorhombic", 16, 74), ("tetragonal", 75, 142),
                   ("trigonal", 143, 167), ("hexagonal", 168, 194), ("cubic", 195, 230))
DPI = 110


def _pyplot():  # noqa: ANN202 - the pyplot module
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:  # noqa: ANN001 - a matplotlib figure
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    _pyplot().close(fig)
    return path


def iteration_bands(runs: Mapping[str, Mapping[str, Mapping[str, float]]], keys: Mapping[str, str],
                    path: Path) -> Path | None:
    """One panel per rate (``keys``: metric key -> title), one line per RLIP run over its iterations, with the
    rate's interval (``<key>_ci95_low/_high``) as a band where the run recorded it."""
    drawn = {key: title for key, title in keys.items()
             if any(key in row for iterations in runs.values() for row in iterations.values())}
    if not drawn:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(drawn), figsize=(4.2 * len(drawn), 3.6), squeeze=False)
    for ax, (key, title) in zip(axes[0], drawn.items()):
        for name, iterations in sorted(runs.items()):
            xs = sorted((int(i) for i, row in iterations.items() if key in row))
            if not xs:
                continue
            ys = np.array([100 * iterations[str(i)][key] for i in xs])
            line, = ax.plot(xs, ys, marker="o", label=name)
            low = [iterations[str(i)].get(f"{key}_ci95_low") for i in xs]
            high = [iterations[str(i)].get(f"{key}_ci95_high") for i in xs]
            if all(v is not None for v in (*low, *high)):
                ax.fill_between(xs, 100 * np.array(low), 100 * np.array(high), color=line.get_color(), alpha=0.15)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("RLIP iteration (0 = SFT)")
        ax.set_ylabel("% of samples requested")
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    axes[0][0].legend(fontsize=7)
    return _save(fig, path)


def ehull_distributions(tables: Mapping[str, pd.DataFrame], path: Path) -> Path | None:
    """E_hull of every relaxed crystal, one step histogram per model, with the stable and metastable cuts."""
    values = {name: t["e_hull"].dropna().to_numpy(dtype=float) for name, t in tables.items() if "e_hull" in t}
    values = {name: v[np.isfinite(v)] for name, v in values.items() if np.isfinite(v).any()}
    if not values:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.8))
    bins = np.linspace(-0.5, 1.5, 41)
    for name, v in values.items():
        ax.hist(np.clip(v, -0.5, 1.5), bins=bins, histtype="step", linewidth=1.5, density=True,
                label=f"{name} ({len(v)} relaxed, median {np.median(v):.3f})")
    for cut, label in ((0.0, "stable"), (0.1, "metastable")):
        ax.axvline(cut, color="k", ls="--", lw=0.8)
        ax.text(cut, ax.get_ylim()[1] * 0.92, f" {label}", fontsize=7)
    ax.set_xlabel("E_hull, eV/atom (clipped to [-0.5, 1.5])")
    ax.set_ylabel("density")
    ax.legend(fontsize=7)
    return _save(fig, path)


def per_group(summaries: Mapping[str, Mapping[str, Any]], path: Path) -> Path | None:
    """Per target space group, for each model: S.S.U.N. and space-group accuracy after relaxation, with error
    bars from their intervals (``per_spacegroup`` of an evaluation summary)."""
    groups = sorted({int(g) for s in summaries.values() for g in s.get("per_spacegroup", {})})
    if not groups:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    width = 0.8 / max(len(summaries), 1)
    x = np.arange(len(groups))
    for ax, key, title in ((axes[0], "ssun_rate", "S.S.U.N."), (axes[1], "spacegroup_accuracy",
                                                                "space group after relaxation = requested")):
        for k, (name, summary) in enumerate(summaries.items()):
            rows = [summary.get("per_spacegroup", {}).get(str(g), {}) for g in groups]
            ys = np.array([100 * (r.get(key) or 0.0) for r in rows])
            ci = [r.get(f"{key}_ci95") or [r.get(key) or 0.0] * 2 for r in rows]
            err = np.array([[y - 100 * c[0] for y, c in zip(ys, ci)], [100 * c[1] - y for y, c in zip(ys, ci)]])
            ax.bar(x + (k - (len(summaries) - 1) / 2) * width, ys, width, yerr=np.clip(err, 0, None), capsize=2,
                   label=name)
        ax.set_xticks(x, [str(g) for g in groups])
        ax.set_xlabel("requested space group")
        ax.set_ylabel("% of the group's prompts")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3, axis="y")
    axes[0].legend(fontsize=7)
    return _save(fig, path)


def crystal_system(number: int) -> str:
    return next(name for name, low, high in CRYSTAL_SYSTEMS if low <= number <= high)


def spacegroup_distribution(groups: Mapping[str, pd.Series], path: Path, top: int = 20) -> Path | None:
    """Share of crystals per crystal system and per space group (the ``top`` most common in the first
    series, usually the training set) for each set of crystals."""
    groups = {name: pd.Series(s).dropna().astype(int) for name, s in groups.items()}
    groups = {name: s for name, s in groups.items() if len(s)}
    if not groups:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8), gridspec_kw={"width_ratios": [1, 2.2]})
    width = 0.8 / len(groups)
    systems = [name for name, _, _ in CRYSTAL_SYSTEMS]
    reference = next(iter(groups.values()))
    common = reference.value_counts().index[:top].tolist()
    for k, (name, s) in enumerate(groups.items()):
        offset = (k - (len(groups) - 1) / 2) * width
        shares = s.map(crystal_system).value_counts(normalize=True)
        axes[0].bar(np.arange(len(systems)) + offset, [100 * shares.get(c, 0.0) for c in systems], width,
                    label=f"{name} ({len(s)})")
        counts = s.value_counts(normalize=True)
        axes[1].bar(np.arange(len(common)) + offset, [100 * counts.get(g, 0.0) for g in common], width)
    axes[0].set_xticks(np.arange(len(systems)), systems, rotation=45, ha="right", fontsize=8)
    axes[0].set_ylabel("% of crystals")
    axes[0].legend(fontsize=7)
    axes[1].set_xticks(np.arange(len(common)), [str(g) for g in common], fontsize=8)
    axes[1].set_xlabel(f"space group (the {len(common)} most common in {next(iter(groups))})")
    for ax in axes:
        ax.grid(alpha=0.3, axis="y")
    return _save(fig, path)


def crystal_picture(cif: str, title: str, path: Path) -> Path:
    """A picture of one crystal's conventional cell (ASE's renderer, atoms at half their covalent radii, Jmol
    colours with a legend), titled."""
    from ase.data import atomic_numbers
    from ase.data.colors import jmol_colors
    from ase.visualize.plot import plot_atoms
    from matplotlib.patches import Patch
    from pymatgen.core import Structure
    from pymatgen.io.ase import AseAtomsAdaptor
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    structure = Structure.from_str(cif, fmt="cif")
    try:  # the conventional cell shows the symmetry a reader knows (a primitive fcc cell is a skewed rhombohedron)
        structure = SpacegroupAnalyzer(structure, symprec=0.01).get_conventional_standard_structure()
    except Exception:  # noqa: BLE001 - spglib gives up on some cells: draw the cell as relaxed
        pass
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(3.4, 3.4))
    plot_atoms(AseAtomsAdaptor.get_atoms(structure), ax, radii=0.5, rotation="10x,-20y,0z", show_unit_cell=2)
    ax.set_axis_off()
    ax.set_title(title, fontsize=8)
    elements = [e.symbol for e in structure.composition.elements]
    ax.legend(handles=[Patch(facecolor=jmol_colors[atomic_numbers[e]], edgecolor="k", label=e) for e in elements],
              fontsize=7, loc="lower right", frameon=False)
    return _save(fig, path)
