"""What makes two SFT runs of the same commit differ (a benchmark, not a test): CPU kernels, thread count, load.

Runs the real ``plaidpp sft`` (the tiny preset, the vendored rows, ``train.max_steps`` steps) in fresh processes
under different conditions and prints, per condition, the last logged loss and a sha256 of the trained
weights. Two runs with the same hash are bit-identical.

Conditions:
- ``base``: this machine's defaults (torch picks its widest CPU kernels, e.g. AVX-512; one thread per core);
- ``repeat``: the same again (is a run deterministic at all?);
- ``one-thread``: ``workers=1`` (intra-op reductions split differently);
- ``avx2``: kernels capped at AVX2 (``ATEN_CPU_CAPABILITY=avx2``, ``MKL_ENABLE_INSTRUCTIONS=AVX2``,
  ``ONEDNN_MAX_CPU_ISA=AVX2``), what a CPU without AVX-512 would run;
- ``loaded``: base settings while another process keeps every core busy.

    python benchmarks/sft_reproducibility.py --steps 60
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from plaidpp.config import PROJECT_ROOT

AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def _spin(stop: float) -> None:
    while time.time() < stop:
        pass


def run(name: str, steps: int, env: dict[str, str], overrides: list[str], load: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "plaidpp.cli", "sft", f"paths.root={tmp}", f"paths.raw={PROJECT_ROOT}/data/raw",
               f"paths.processed={PROJECT_ROOT}/data/processed", "tracking.uri=null", f"train.max_steps={steps}",
               "train.logging_steps=10", "log_model_artifacts=false", *overrides]
        spinners = []
        if load:  # one busy process per core, for the whole run
            stop = time.time() + 3600
            spinners = [multiprocessing.Process(target=_spin, args=(stop,), daemon=True) for _ in range(os.cpu_count())]
            for p in spinners:
                p.start()
        started = time.perf_counter()
        proc = subprocess.run(cmd, cwd=PROJECT_ROOT, env={**os.environ, **env}, capture_output=True, text=True)
        wall = time.perf_counter() - started
        for p in spinners:
            p.terminate()
        if proc.returncode:
            raise SystemExit(f"{name}: sft failed:\n{proc.stderr[-2000:]}")
        metrics = json.loads((Path(tmp) / "metrics" / "sft.json").read_text())
        weights = (Path(tmp) / "models" / "sft" / "model.safetensors").read_bytes()
    return {"condition": name, "final_loss": metrics["final_loss"], "train_loss": metrics["train_loss"],
            "torch_threads": metrics["torch_threads"], "weights_sha256": hashlib.sha256(weights).hexdigest()[:16],
            "wall_s": round(wall, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--only", nargs="*", default=None, help="conditions to run")
    args = parser.parse_args()
    conditions = {
        "base": ({}, [], False),
        "repeat": ({}, [], False),
        "one-thread": ({}, ["workers=1"], False),
        "avx2": (AVX2, [], False),
        "loaded": ({}, [], True),
    }
    print(f"machine: {os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f} at start")
    for name, (env, overrides, load) in conditions.items():
        if args.only and name not in args.only:
            continue
        print(json.dumps(run(name, args.steps, env, overrides, load)), flush=True)
    print(f"load average {os.getloadavg()[0]:.1f} at end")


if __name__ == "__main__":
    main()
