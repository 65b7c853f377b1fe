"""Does batching SevenNet's force calls pay on this machine? A probe for issue 30's target 4 (a batched engine).

Times one energy + forces + stress evaluation per crystal on N vendored MP-20 crystals: SevenNet's own ASE
calculator one crystal at a time (what the evaluation's workers do), against torch-sim's batched SevenNet model
at batch sizes 1, 8, 32 and 64, in one process with one torch thread (a worker is one core's job), loaded as
``relax.engine=torchsim`` loads it (``evaluation/batched.py``). What a whole relaxation gains through the engine is
``benchmarks/bench_scoring.py``'s figure.

    python benchmarks/torchsim_batch.py --n 64
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import pandas as pd
import torch
from pymatgen.core import Structure
from pymatgen.io.ase import AseAtomsAdaptor

from plaidpp.config import PROJECT_ROOT, compose

CSV = PROJECT_ROOT / "data/raw/mp20/mp20_partial_merged.csv.gz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--model", default="7net-0")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    rows = pd.read_csv(CSV, nrows=args.n)
    structures = [Structure.from_str(cif, fmt="cif") for cif in rows["cif"]]
    print(f"{len(structures)} MP-20 crystals, mean {sum(map(len, structures)) / len(structures):.1f} atoms, "
          f"load {os.getloadavg()[0]:.2f}")

    import torch_sim as ts

    from plaidpp.evaluation.batched import load_model
    from plaidpp.evaluation.mlip import load_calculator

    spec = compose("evaluate", ["mlip=sevennet", f"mlip.model={args.model}", "samples=-", "out=-"]).mlip
    calc = load_calculator(spec)
    atoms = [AseAtomsAdaptor.get_atoms(s) for s in structures]
    calc.calculate(atoms[0], properties=["energy", "forces", "stress"])  # warm-up
    start = time.perf_counter()
    for a in atoms:
        calc.calculate(a, properties=["energy", "forces", "stress"])
    one_by_one = (time.perf_counter() - start) / len(atoms)
    print(f"ASE calculator, one at a time: {1000 * one_by_one:.1f} ms per crystal")

    model = load_model(spec)
    for batch in (1, 8, 32, 64):
        if batch > len(structures):
            break
        model(ts.initialize_state(structures[:batch], device=torch.device("cpu"), dtype=torch.float32))
        start = time.perf_counter()
        chunks = [structures[k:k + batch] for k in range(0, len(structures) - batch + 1, batch)]
        for chunk in chunks:
            model(ts.initialize_state(chunk, device=torch.device("cpu"), dtype=torch.float32))
        per = (time.perf_counter() - start) / (len(chunks) * batch)
        print(f"torch-sim batch {batch:>2}: {1000 * per:.1f} ms per crystal ({one_by_one / per:.2f}x one by one)")
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
