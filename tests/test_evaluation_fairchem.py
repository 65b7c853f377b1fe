"""The fairchem backend (optional extra) loads a checkpoint the test builds itself and relaxes a real crystal.

fairchem-core is ~1 GB, so it is not in the test environment `make test` builds; these tests skip there and
run with `make test-fairchem` (which adds the extra to .venv). Without the extra, a clear error is tested
instead (test_evaluation_relax.py).
"""

from __future__ import annotations

import math
import warnings

import pytest
from pymatgen.core import Structure

fairchem_core = pytest.importorskip("fairchem.core", reason="fairchem-core (optional extra, ~1 GB) is not installed")

import torch  # noqa: E402

from plaidpp.errors import UserError  # noqa: E402
from plaidpp.evaluation.mlip import load_calculator  # noqa: E402
from plaidpp.evaluation.relax import relax_structure
from plaidpp.settings.evaluation import MLIPSettings, RelaxSettings  # noqa: E402

TASK = "omat"  # the UMA task that predicts PBE/PBE+U energies, as in MP


def build_tiny_checkpoint(path, seed: int = 0):
    """A random-weight eSCN-MD (UMA architecture) model, 1 layer of 8 channels, saved the way fairchem saves
    inference checkpoints: model config + weights + EMA weights + one energy/forces/stress task per property.
    Classes are named by import path, as in released checkpoints, so a fresh worker process can build them."""
    import hydra
    from fairchem.core.units.mlip_unit.api.inference import MLIPInferenceCheckpoint

    torch.manual_seed(seed)
    model_config = {
        "_target_": "fairchem.core.models.base.HydraModel",
        "pass_through_head_outputs": True,
        "otf_graph": True,
        "backbone": {
            "model": "fairchem.core.models.uma.escn_md.eSCNMDBackbone", "max_num_elements": 100, "num_layers": 1, "lmax": 1, "mmax": 1,
            "sphere_channels": 8, "hidden_channels": 8, "edge_channels": 8, "num_distance_basis": 8,
            "cutoff": 5.0, "max_neighbors": 30, "otf_graph": True, "regress_forces": True,
            "regress_stress": True, "direct_forces": False, "direct_stress": False,
            "chg_spin_emb_type": "rand_emb", "dataset_mapping": {TASK: TASK}, "use_dataset_embedding": True,
        },
        "heads": {"efs": {"module": "fairchem.core.models.uma.escn_md.MLP_EFS_Head", "wrap_property": True}},
    }
    shapes = {"energy": ("system", [1]), "forces": ("atom", [3]), "stress": ("system", [3, 3])}
    tasks_config = [
        {
            "_target_": "fairchem.core.units.mlip_unit.mlip_unit.Task",
            "name": name, "property": name, "level": level, "datasets": [TASK],
            "out_spec": {"_target_": "fairchem.core.units.mlip_unit.mlip_unit.OutputSpec", "dim": dim,
                         "dtype": "float32"},
            "normalizer": {"_target_": "fairchem.core.modules.normalization.normalizer.Normalizer",
                           "mean": 0.0, "rmsd": 1.0},
        }
        for name, (level, dim) in shapes.items()
    ]
    model = hydra.utils.instantiate(model_config)
    ema = torch.optim.swa_utils.AveragedModel(model)  # inference loads the EMA weights
    torch.save(MLIPInferenceCheckpoint(model_config=model_config, model_state_dict=model.state_dict(),
                                       ema_state_dict=ema.state_dict(), tasks_config=tasks_config), path)
    return path


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    return build_tiny_checkpoint(tmp_path_factory.mktemp("fairchem") / "tiny_escnmd.pt")


@pytest.fixture(scope="module")
def small_binaries(mp20_rows):
    """Real two-element MP-20 test crystals with at most 4 sites (cheap relaxations)."""
    found = []
    for cif in mp20_rows[mp20_rows["split"] == "test"]["cif"]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            structure = Structure.from_str(cif, fmt="cif")
        if len(structure) <= 4 and len(structure.composition) == 2:
            found.append(structure)
        if len(found) == 2:
            return found
    raise AssertionError("too few small binary crystals in the vendored rows")


@pytest.fixture(scope="module")
def small_binary(small_binaries):
    return small_binaries[0]


def test_a_self_built_checkpoint_loads_and_predicts_finite_energies(tiny_checkpoint, small_binary):
    from pymatgen.io.ase import AseAtomsAdaptor

    calc = load_calculator(MLIPSettings(name="fairchem", apply_mp2020_correction=True, checkpoint=str(tiny_checkpoint), task_name=TASK))
    atoms = AseAtomsAdaptor.get_atoms(small_binary)
    atoms.calc = calc
    energy = atoms.get_potential_energy()
    assert math.isfinite(energy)
    assert atoms.get_forces().shape == (len(small_binary), 3)
    assert atoms.get_stress().shape == (6,)


def test_the_relaxation_path_runs_on_the_fairchem_calculator(tiny_checkpoint, small_binary):
    calc = load_calculator(MLIPSettings(name="fairchem", apply_mp2020_correction=True, checkpoint=str(tiny_checkpoint), task_name=TASK))
    result = relax_structure(small_binary, calc, RelaxSettings(steps=5, fmax=0.05))
    # random weights: the numbers mean nothing, but the same FIRE + cell-filter path as CHGNet/SevenNet ran
    assert result.fail_reason is None or result.fail_reason.startswith(("energy_", "cell_")), result.fail_reason
    if result.fail_reason is None:
        assert result.n_steps <= 5 and math.isfinite(result.energy_per_atom)


def test_a_missing_checkpoint_and_an_unknown_hub_name_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_calculator(MLIPSettings(name="fairchem", apply_mp2020_correction=True, checkpoint=str(tmp_path / "absent.pt")))
    with pytest.raises(UserError, match="fairchem"):
        load_calculator(MLIPSettings(name="fairchem", apply_mp2020_correction=True, model="no-such-model"))


def test_a_fairchem_v1_checkpoint_is_refused_with_a_clear_error(tmp_path):
    """eqV2 / eSEN-30M-OAM (the paper's potentials) are fairchem v1 checkpoints, which fairchem-core 2 cannot
    load: say so in one line instead of a KeyError deep inside fairchem."""
    v1 = tmp_path / "eqV2_v1_layout.pt"
    torch.save({"config": {"model": {"name": "equiformer_v2"}}, "state_dict": {}}, v1)
    with pytest.raises(UserError, match="fairchem-core 1"):
        load_calculator(MLIPSettings(name="fairchem", apply_mp2020_correction=True, checkpoint=str(v1)))


def test_evaluate_scores_crystals_with_the_fairchem_backend_in_worker_processes(tiny_checkpoint, small_binaries,
                                                                               tmp_path):
    """The whole evaluation path with mlip=fairchem: spawned workers load the checkpoint, relax, cache."""
    from plaidpp.config import PROJECT_ROOT, compose
    from plaidpp.evaluation.score import score_samples
    from plaidpp.representation import get

    rows = [{"text": get("wyckoff").encode(s), "spacegroup": None} for s in small_binaries]
    rows.append({"text": "not a crystal", "spacegroup": None})
    cfg = compose("evaluate", [
        "mlip=fairchem", f"mlip.checkpoint={tiny_checkpoint}", f"paths.cache={tmp_path / 'cache'}",
        f"novelty.reference=[{PROJECT_ROOT / 'data/raw/mp20/mp20_partial_merged.csv.gz'}]", "workers=2",
        "progress=false", "relax.steps=5", "tracking.uri=null", "hull=mp20_fallback", "samples=-", "out=-",
    ])
    table, summary = score_samples(rows, cfg)
    assert summary["n_requested"] == 3 and summary["n_parsed"] == 2
    assert summary["mlip"].startswith("fairchem:") and summary["mlip"].endswith(":traineval")
    for _, relaxed in table.iloc[:2].iterrows():
        assert bool(relaxed["relax_ok"]), relaxed["fail_reason"]
        assert math.isfinite(relaxed["energy_per_atom"]) and math.isfinite(relaxed["e_hull"])
    assert table.iloc[2]["parse_reason"] == "syntax"
