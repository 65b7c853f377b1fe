"""relax.engine=torchsim: SevenNet-0 relaxations batched through torch-sim 0.3.0, on real MP-20 crystals, against
the ASE path they replace."""

from __future__ import annotations

import math

import pytest
from pymatgen.core import Structure

from plaidpp.config import compose
from plaidpp.errors import UserError
from plaidpp.evaluation import batched
from plaidpp.evaluation.cache import RelaxCache
from plaidpp.evaluation.mlip import load_calculator
from plaidpp.evaluation.relax import relax_structure
from plaidpp.evaluation.workers import relax_many
from plaidpp.settings.base import SettingError
from plaidpp.settings.evaluation import RelaxSettings, SymmetrySettings

from .conftest import few_site_rows

SETTINGS = dict(steps=150, fmax=0.05)


def sevennet():
    return compose("evaluate", ["mlip=sevennet", "samples=-", "out=-"]).mlip


@pytest.fixture(scope="module")
def crystals(mp20_rows):
    """Five MP-20 test crystals with <= 6 sites, each strained and rattled so relaxing them takes real steps."""
    test = mp20_rows[mp20_rows["split"] == "test"]
    rows = few_site_rows(test.sample(80, random_state=11), 6).head(5)
    out = []
    for k, cif in enumerate(rows["cif"]):
        s = Structure.from_str(cif, fmt="cif")
        s.apply_strain(0.04)
        if k % 2:  # half of them with one atom moved too
            s.translate_sites([0], [0.1, -0.05, 0.07], frac_coords=False)
        out.append(s)
    return out


def test_batched_relaxations_match_the_ase_path_crystal_by_crystal(crystals):
    """Batch of 2 in flight over 5 crystals: crystals join as others leave, results come back in input order,
    and each ends where ASE's FIRE ends it (float32 against float64, another FIRE implementation: within
    5 meV/atom), with its own steps and force calls."""
    settings = RelaxSettings(**SETTINGS, engine="torchsim", batch_size=2)
    results = batched.relax_batch(crystals, batched.load_model(sevennet()), settings)
    reference = [relax_structure(s, load_calculator(sevennet()), RelaxSettings(**SETTINGS)) for s in crystals]
    for structure, got, ref in zip(crystals, results, reference, strict=True):
        assert got.fail_reason is None and got.converged, got
        relaxed = Structure.from_str(got.cif_relaxed, fmt="cif")
        assert relaxed.composition.reduced_formula == structure.composition.reduced_formula
        assert abs(got.energy_per_atom - ref.energy_per_atom) < 0.005
        assert got.force_calls == got.n_steps + 1 and 0 < got.n_steps <= settings.steps
        assert got.potential_seconds > 0
    # the batched run takes about as many steps as ASE: the same FIRE, not a different optimiser
    assert abs(sum(r.n_steps for r in results) - sum(r.n_steps for r in reference)) < 0.5 * sum(
        r.n_steps for r in reference)


def test_a_bad_crystal_in_the_batch_is_counted_and_the_others_finish(crystals):
    """Two atoms 0.3 Å apart: an exploding energy is a counted reason; the crystals beside it still relax."""
    crowded = crystals[0].copy()
    crowded.append(crowded.species[0], crowded.cart_coords[0] + [0.3, 0, 0], coords_are_cartesian=True)
    settings = RelaxSettings(**SETTINGS, engine="torchsim", batch_size=3, energy_window=(-30.0, 1.0))
    results = batched.relax_batch([crystals[1], crowded, crystals[2]], batched.load_model(sevennet()), settings)
    assert results[1].fail_reason in ("energy_out_of_range", "energy_nan") and math.isnan(results[1].energy_total)
    assert results[0].converged and results[2].converged
    capped = batched.relax_batch([crystals[3]], batched.load_model(sevennet()),
                                 RelaxSettings(steps=2, fmax=1e-4, engine="torchsim"))[0]
    assert not capped.converged and capped.fail_reason is None and capped.n_steps == 2  # the step cap holds


def test_relax_many_runs_the_engine_in_the_workers_and_caches_apart_from_ase(tmp_path, crystals):
    settings = RelaxSettings(**SETTINGS, engine="torchsim", batch_size=2)
    structures = dict(enumerate(crystals[:3]))
    cache = RelaxCache(tmp_path / "relax.sqlite")
    first = relax_many(structures, sevennet(), settings, SymmetrySettings(), cache, workers=1, progress=False)
    assert all(r["fail_reason"] is None and r["spacegroup_achieved"] for r in first.values())
    again = relax_many(structures, sevennet(), settings, SymmetrySettings(), cache, workers=1, progress=False)
    assert all(r["cached"] for r in again.values())
    assert RelaxSettings(**SETTINGS).cache_tag() != settings.cache_tag()  # an ASE run never reads these


def test_the_engine_refuses_what_it_cannot_do():
    with pytest.raises(SettingError, match="relax.engine"):
        compose("evaluate", ["mlip=chgnet", "relax.engine=torchsim", "samples=-", "out=-"])
    with pytest.raises(SettingError, match="polish"):
        compose("evaluate", ["mlip=sevennet", "relax.engine=torchsim", "relax.polish=bfgs", "samples=-", "out=-"])
    with pytest.raises(UserError):
        batched.load_model(compose("evaluate", ["mlip=chgnet", "samples=-", "out=-"]).mlip)
