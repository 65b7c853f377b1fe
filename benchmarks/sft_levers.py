"""Levers on the embedded SFT model (issue 12, item 2), each measured the same way (a benchmark, not a test).

A lever is a set of overrides of ``plaidpp sft``. Each trains the tiny model from scratch in a temporary root
on the project's processed rows (the same budget: the overrides change what a step is, not how many epochs),
then samples the same prompts with the same seed twice, unconstrained (what the model itself learned) and
under ``grammar+spacegroup`` (what the default pipeline gets), and scores them without relaxation. Printed per
lever: final training loss, SFT wall time, parse rate of unconstrained attempts, structural validity and
space group as generated (Wilson 95 % intervals, of the requested), the constrained validity and throughput.

    python benchmarks/sft_levers.py --levers base,vocab4096 --n-unconditional 200 --n-per-group 20
    python benchmarks/sft_levers.py --levers vocab4096 --base-model models/sft    # reuse a trained baseline
    python benchmarks/sft_levers.py --levers base --train-seeds 1,2,3 --extra train.epochs=0.5   # pi_0's spread

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
RATES = ("validity_structural", "validity_composition", "spacegroup_accuracy_generated")


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
        model_dir = base_model
        metrics = json.loads(Path(args.base_metrics).read_text()) if base_model and args.base_metrics else {}
        started = time.perf_counter()
        if model_dir is None:
            _plaidpp("sft", f"paths.root={tmp}", f"paths.raw={PROJECT_ROOT}/data/raw",
                     f"paths.processed={PROJECT_ROOT}/data/processed", "tracking.uri=null",
                     f"checkpoint_dir={tmp}/checkpoints", "log_model_artifacts=false", *overrides)
            model_dir = f"{tmp}/models/sft"
            metrics = json.loads((Path(tmp) / "metrics" / "sft.json").read_text())
            sft_wall = round(time.perf_counter() - started, 1)
        else:
            sft_wall = metrics.get("wall_seconds_this_run")  # the reused baseline's own training time, if given
        row = {"lever": name, "overrides": overrides, "final_loss": metrics.get("final_loss"), "sft_wall_s": sft_wall}
        for mode in ("none", "grammar+spacegroup"):
            samples = Path(tmp) / f"samples_{mode}.jsonl"
            started = time.perf_counter()
            _plaidpp("sample", f"model_dir={model_dir}", f"out_file={samples}", f"sampler.constraint={mode}",
                     f"prompts.n_unconditional={args.n_unconditional}", f"prompts.n_per_spacegroup={args.n_per_group}",
                     f"seed={args.seed}", "tracking.uri=null", f"metrics_file={tmp}/sample_{mode}.json")
            sample_wall = time.perf_counter() - started
            _plaidpp("evaluate", f"samples={samples}", f"out={tmp}/eval_{mode}", "relax.enabled=false",
                     "progress=false", "tracking.uri=null", f"metrics_file={tmp}/evaluate_{mode}.json")
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
    parser.add_argument("--base-metrics", default=None, help="that baseline's metrics/sft.json (its loss and time)")
    parser.add_argument("--n-unconditional", type=int, default=200)
    parser.add_argument("--n-per-group", type=int, default=20, help="per paper target group")
    parser.add_argument("--seed", type=int, default=1, help="the sampling seed (the same for every lever)")
    parser.add_argument("--train-seeds", default=None,
                        help="comma-separated: train every lever once per seed (`seed=N model.init_seed=N`) and "
                             "print the spread of each rate across them beside its sampling interval (how much pi_0 itself varies)")
    parser.add_argument("--extra", default="", help="comma-separated overrides added to every lever's `plaidpp sft`")
    parser.add_argument("--out", default=".cache/benchmarks/sft_levers.json")
    args = parser.parse_args()
    unknown = set(args.levers.split(",")) - set(LEVERS)
    if unknown:
        raise SystemExit(f"unknown lever(s) {sorted(unknown)}; choose from {', '.join(LEVERS)}")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start", flush=True)
    extra = [o for o in args.extra.split(",") if o]
    runs = [(name, [*LEVERS[name], *extra]) for name in args.levers.split(",")]
    if args.train_seeds:
        # a seed draws both the initial weights and the data order / dropout: a different pi_0 in every respect
        runs = [(f"{name}/seed={seed}", [*overrides, f"seed={seed}", f"model.init_seed={seed}"])
                for name, overrides in runs for seed in args.train_seeds.split(",")]
    results = []
    for name, overrides in runs:
        reuse = args.base_model if overrides == [] else None
        row = measure(name, overrides, reuse, args)
        results.append(row)
        none, constrained = row["none"], row["grammar+spacegroup"]
        print(f"{name:12s} loss {row['final_loss']}  sft {row['sft_wall_s']} s | none: parse "
              f"{100 * none['parse_attempts']:.1f} % of {none['attempts']} attempts, {none['text']} | "
              f"grammar+spacegroup: {constrained['text']}, sample {constrained['sample_wall_s']} s", flush=True)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=1))
    if args.train_seeds:
        print_spread(results)
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


def print_spread(results: list[dict]) -> None:
    """Per lever and rate: the range and standard deviation over training seeds, beside the mean width of one
    sample's Wilson interval - if the seeds spread wider than that, a single model's interval understates the
    uncertainty of a comparison between two trainings."""
    import numpy as np

    for lever in dict.fromkeys(row["lever"].split("/")[0] for row in results):
        rows = [row for row in results if row["lever"].split("/")[0] == lever]
        for mode in ("none", "grammar+spacegroup"):
            for rate in ("parse_attempts", *RATES):
                values = np.array([row[mode][rate] for row in rows if row[mode].get(rate) is not None], float)
                widths = [row[mode][rate + "_ci95"][1] - row[mode][rate + "_ci95"][0] for row in rows
                          if row[mode].get(rate + "_ci95")]
                if len(values) < 2:
                    continue
                width = f", one sample's 95 % interval {100 * np.mean(widths):.1f} pts wide" if widths else ""
                print(f"{lever:10s} {mode:18s} {rate:30s} over {len(values)} seeds: {100 * values.min():.1f}-"
                      f"{100 * values.max():.1f} %, sd {100 * values.std(ddof=1):.1f} pts{width}")


if __name__ == "__main__":
    main()
