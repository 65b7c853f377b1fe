"""Batched relaxation through torch-sim (``relax.engine=torchsim``): the crystals in flight share each force call.

torch-sim 0.3.0, the last release for Python 3.11, runs FIRE (its ASE flavour) with the Frechet cell filter on a
batch of systems: one call of the potential per step for every crystal in flight. A crystal leaves the batch as
soon as it converges (largest atomic and cell force below ``relax.fmax``), reaches ``relax.steps`` or fails, and
the next waiting crystal takes its place, so a few slow relaxations do not run alone at the end of a batch.

Every crystal gets what ``relax.relax_structure`` would give it: a ``RelaxResult`` with the same failure reasons
(NaN, energy window, exploded cell, time-out), its own step count and force calls; ``potential_seconds`` is its
share of each batched call (the call's time divided among the crystals in it). Measured on this 2-core CPU
(docs/evaluation.md, "A batched engine"): one SevenNet-0 force call per crystal costs 0.80x at 8 in flight
(``benchmarks/torchsim_batch.py``); what whole relaxations gain is ``benchmarks/bench_scoring.py``'s figure.

Only SevenNet here: torch-sim 0.3.0 wraps SevenNet, MACE and fairchem, not CHGNet (``TORCHSIM_BACKENDS``).
"""

from __future__ import annotations

import math
import time

from pymatgen.core import Structure

from plaidpp.errors import UserError
from plaidpp.evaluation.relax import RelaxResult, primitive_cell
from plaidpp.settings.evaluation import TORCHSIM_BACKENDS, MLIPSettings, RelaxSettings


def load_model(spec: MLIPSettings):
    """torch-sim's wrapper of the SevenNet model ``spec`` names, on one torch thread (one worker, one core).

    torch-sim 0.3.0's wrapper imports ``sevenn.calculator.torch_script_type``, a name sevenn 0.13 removed; it only
    serves an ``isinstance`` test of a TorchScript model, which a checkpoint's ``AtomGraphSequential`` is not, so
    the name is supplied before the import."""
    from plaidpp.runtime import set_torch_threads

    if spec.name not in TORCHSIM_BACKENDS:  # EvaluateConfig.check says so first, before any worker starts
        raise UserError(f"relax.engine=torchsim relaxes with {'/'.join(TORCHSIM_BACKENDS)} only, not {spec.name!r}")
    set_torch_threads(1)
    import sevenn.calculator
    import torch

    if not hasattr(sevenn.calculator, "torch_script_type"):
        sevenn.calculator.torch_script_type = torch.jit.ScriptModule
    from sevenn.util import load_checkpoint
    from torch_sim.models.sevennet import SevenNetModel

    checkpoint = load_checkpoint(spec.checkpoint or spec.model)
    return SevenNetModel(model=checkpoint.build_model(), modal=spec.modal, device=spec.device)


class _Flight:
    """One crystal in the batch: its result so far, atom count and the time it joined."""

    def __init__(self, index: int, n_atoms: int) -> None:
        self.index, self.n_atoms, self.start = index, n_atoms, time.monotonic()
        self.result = RelaxResult()


def relax_batch(structures: list[Structure], model, settings: RelaxSettings) -> list[RelaxResult]:
    """Relax ``structures`` with ``relax.batch_size`` of them in flight; results in the input order. Never raises
    for a bad crystal: an error inside the batched potential fails the crystals in flight with
    ``mlip_error:<type>`` and the rest go on in a fresh batch."""
    import torch_sim as ts

    cells = [primitive_cell(s) if settings.primitive else s for s in structures]
    results: list[RelaxResult] = [RelaxResult() for _ in cells]  # each replaced as its crystal leaves
    waiting = list(range(len(cells)))[::-1]  # popped from the end: input order
    init_fn, update_fn = ts.frechet_cell_fire(model=model)
    device, dtype = model.device, model.dtype
    state, flights = None, []
    while waiting or flights:
        joining = []
        while waiting and len(flights) + len(joining) < settings.batch_size:
            joining.append(waiting.pop())
        # the newcomers' starting point (one call of the potential for them alone), else one FIRE step of every
        # crystal in flight (one call for all of them)
        served = [_Flight(i, len(cells[i])) for i in joining] if joining else flights
        try:
            t0 = time.perf_counter()
            if joining:
                fresh = init_fn(ts.initialize_state([cells[i] for i in joining], device=device, dtype=dtype))
                state = fresh if state is None else ts.concatenate_states([state, fresh])
            else:
                state = update_fn(state)
            seconds = time.perf_counter() - t0
        except Exception as exc:  # noqa: BLE001 - the crystals of that call fail with a counted reason
            for flight in served:
                flight.result.fail_reason = f"mlip_error:{type(exc).__name__}"
                flight.result.fail_detail = str(exc)[:200]
                results[flight.index] = flight.result
            if not joining:  # the batch's state is lost with the step: the waiting crystals start a fresh one
                state, flights = None, []
            continue
        _charge(served, seconds)
        if joining:
            flights = flights + served
        else:
            for flight in flights:
                flight.result.n_steps += 1
        done = _finished(state, flights, settings)
        if done:
            # pop() cannot leave an empty batch behind: the last crystals out split it instead
            leaving = state.split() if len(done) == len(flights) else state.pop(done)
            for position, single in zip(done, leaving, strict=True):
                flight = flights[position]
                _close(flight, single)
                results[flight.index] = flight.result
            flights = [f for k, f in enumerate(flights) if k not in done]
            if not flights:
                state = None
    return results


def _charge(served: list[_Flight], seconds: float) -> None:
    """One batched call: each crystal it served is charged one force call and its share of the time."""
    for flight in served:
        flight.result.force_calls += 1
        flight.result.potential_seconds += seconds / len(served)


def _finished(state, flights: list[_Flight], settings: RelaxSettings) -> list[int]:
    """Positions in the batch of the crystals that leave it now, their reason or convergence set."""
    import torch
    from torch_sim.quantities import systemwise_max_force

    # one transfer per quantity, not one per crystal (a device tensor indexed per element syncs every time)
    energy = state.energy.detach().tolist()
    atom_fmax = systemwise_max_force(state).detach().tolist()
    cell_fmax = state.cell_forces.detach().norm(dim=2).max(dim=1).values.tolist()
    nan_systems = set(state.system_idx[~torch.isfinite(state.forces).all(dim=1)].tolist())
    volume = torch.linalg.det(state.cell).abs().detach().tolist()
    low, high = settings.energy_window
    done = []
    for k, flight in enumerate(flights):
        e_atom = energy[k] / flight.n_atoms
        r = flight.result
        if not math.isfinite(energy[k]) or k in nan_systems:
            r.fail_reason, r.fail_detail = "energy_nan", f"energy={energy[k]}"
        elif not low <= e_atom <= high:
            r.fail_reason, r.fail_detail = "energy_out_of_range", f"{e_atom:.3g} eV/atom"
        elif volume[k] / flight.n_atoms > settings.max_volume_per_atom:
            r.fail_reason, r.fail_detail = "cell_exploded", f"{volume[k] / flight.n_atoms:.1f} A^3/atom"
        elif time.monotonic() - flight.start > settings.time_limit_s * settings.batch_size:
            # in flight with up to batch_size others: the per-crystal limit scaled by the crystals sharing its calls
            r.fail_reason, r.fail_detail = "relax_timeout", f"> {settings.time_limit_s * settings.batch_size:.0f} s"
        r.converged = max(atom_fmax[k], cell_fmax[k]) < settings.fmax
        if r.fail_reason or r.converged or r.n_steps >= settings.steps:
            done.append(k)
    return done


def _close(flight: _Flight, single) -> None:
    """The crystal leaves the batch: its energy and relaxed cell, unless it failed."""
    from torch_sim.io import state_to_structures

    r = flight.result
    r.seconds = time.monotonic() - flight.start
    if r.fail_reason:
        r.converged = False
        return
    r.energy_total = float(single.energy.detach()[0])
    r.energy_per_atom = r.energy_total / flight.n_atoms
    r.cif_relaxed = state_to_structures(single)[0].to(fmt="cif")
