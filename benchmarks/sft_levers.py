"""Levers on the embedded SFT model (issue 12, item 2), each measured the same way (a benchmark, not a test).

A lever is a set of overrides of ``plaidpp sft``. Each trains the tiny model from scratch in a temporary root
on the project's processed rows (the same budget: the overrides change what a step is, not how many epochs),
then samples the same prompts with the same seed twice, unconstrained (what the model itself learned) and
under ``grammar+spacegroup`` (what the default pipeline gets), and scores them without relaxation. Printed per
lever: final training loss, SFT wall time, parse rate of unconstrained attempts, structural validity and
space group as generated (Wilson 95 % intervals, of the requested), the constrained validity and throughput.

    python benchmarks/sft_levers.py --levers base,vocab4096 --n-unconditional 200 --n-per-group 20
    python benchmarks/sft_levers.py --levers vocab4096 --base-model models/sft    # reuse a trained baseline

Run it alone: SFT time is a figure here, and two cores are all there are.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from plaidpp.config import PROJECT_ROOT

LEVERS = {
    "base": [],
    # batches of similar length (less padding), with the epochs that fill the same ~15-minute budget
    "grouped": ["train.sampling_strategy=group_by_length", "train.epochs=2.7"],
    # fewer tokens per crystal: more crystals per step at nearly the same cost per token
    "vocab4096": ["model.tokenizer_vocab_size=4096"],
    # a higher peak learning rate (the default 2e-3 was sized on an earlier model)
    "lr3e-3": ["train.lr=3.0e-3"],
    # more space-group-conditioned examples (the paper's rare target groups are what the model ignores)
    "conditioned": ["train.task_mix.unconditional=0.25"],
    # wider and shallower at about the same cost per step
    "wide3": ["model.architecture.hidden_size=320", "model.architecture.intermediate_size=960",
              "model.architecture.num_hidden_layers=3"],
}
RATES = ("validity_structural", "spacegroup_accuracy_generated")


def _plaidpp(*args: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "plaidpp.cli", *args], cwd=PROJECT_ROOT, capture_output=True,
                          text=True)
    if proc.returncode:
        raise SystemExit(f"plaidpp {args[0]} failed:\n{proc.stderr[-3000:]}")


def _rate(summary: dict, name: str) -> str:
    low, high = summary.get(name + "_ci95") or (None, None)
    value = summary.get(name)
    if value is None:
        return "-"
    interval = f" [{100 * low:.1f}, {100 * high:.1f}]" if low is not None else ""
    return f"{100 * value:.1f}{interval}"


def measure(name: str, overrides: list[str], base_model: str | None, args) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        model_dir, metrics = base_model, {}
        started = time.perf_counter()
        if model_dir is None:
            _plaidpp("sft", f"paths.root={tmp}", f"paths.raw={PROJECT_ROOT}/data/raw",
                     f"paths.processed={PROJECT_ROOT}/data/processed", "tracking.uri=null",
                     f"checkpoint_dir={tmp}/checkpoints", "log_model_artifacts=false", *overrides)
            model_dir = f"{tmp}/models/sft"
            metrics = json.loads((Path(tmp) / "metrics" / "sft.json").read_text())
        sft_wall = time.perf_counter() - started
        row = {"lever": name, "overrides": overrides, "final_loss": metrics.get("final_loss"),
               "sft_wall_s": round(sft_wall, 1) if metrics else None}
        for mode in ("none", "grammar+spacegroup"):
            samples = Path(tmp) / f"samples_{mode}.jsonl"
            started = time.perf_counter()
            _plaidpp("sample", f"model_dir={model_dir}", f"out_file={samples}", f"sampler.constraint={mode}",
                     f"prompts.n_unconditional={args.n_unconditional}", f"prompts.n_per_spacegroup={args.n_per_group}",
                     f"seed={args.seed}", "tracking.uri=null", "metrics_file=null")
            sample_wall = time.perf_counter() - started
            _plaidpp("evaluate", f"samples={samples}", f"out={tmp}/eval_{mode}", "relax.enabled=false",
                     "progress=false", "tracking.uri=null", "metrics_file=null")
            summary = json.loads((Path(tmp) / f"eval_{mode}" / "summary.json").read_text())
            rows = [json.loads(line) for line in samples.read_text().splitlines()]
            row[mode] = {"attempts": len(rows), "parse_attempts": sum(bool(r.get("decoded")) for r in rows) / len(rows),
                         "sample_wall_s": round(sample_wall, 1),
                         **{k: summary.get(k) for k in summary if k.startswith(RATES)}}
            row[mode]["text"] = "  ".join(f"{k} {_rate(summary, k)}" for k in RATES)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levers", default="base," + ",".join(k for k in LEVERS if k != "base"),
                        help=f"comma-separated, of {', '.join(LEVERS)}")
    parser.add_argument("--base-model", default=None, help="a trained baseline to reuse for 'base' (no SFT)")
    parser.add_argument("--n-unconditional", type=int, default=200)
    parser.add_argument("--n-per-group", type=int, default=20, help="per paper target group")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default=".cache/benchmarks/sft_levers.json")
    args = parser.parse_args()
    unknown = set(args.levers.split(",")) - set(LEVERS)
    if unknown:
        raise SystemExit(f"unknown lever(s) {sorted(unknown)}; choose from {', '.join(LEVERS)}")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start", flush=True)
    results = []
    for name in args.levers.split(","):
        row = measure(name, LEVERS[name], args.base_model if name == "base" else None, args)
        results.append(row)
        none, constrained = row["none"], row["grammar+spacegroup"]
        print(f"{name:12s} loss {row['final_loss']}  sft {row['sft_wall_s']} s | none: parse "
              f"{100 * none['parse_attempts']:.1f} % of {none['attempts']} attempts, {none['text']} | "
              f"grammar+spacegroup: {constrained['text']}, sample {constrained['sample_wall_s']} s", flush=True)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=1))
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
