"""Constrained against unconstrained sampling from one model (issue 12): throughput and what the constraint
changes before any relaxation. A benchmark, not a test; run it alone (it prints the load).

    python benchmarks/bench_constrained_sampling.py --model models/sft [--n-unconditional 500 --n-per-group 72]
        [--engines compact,hf] [--out .cache/benchmarks/constrained]

For every engine and every ``sampler.constraint`` (none, grammar, grammar+spacegroup) it samples the same
prompts with the same seed through ``plaidpp.sampling.generate`` (the stage's sampler), then scores the
samples with ``plaidpp evaluate`` without relaxation (``relax.enabled=false``: parse, structural and SMACT
validity, space group as generated, uniqueness, novelty; each rate with its Wilson interval and
denominator). Throughput is crystals per second of finished slots (resampling included) and tokens per
second; the ratio to ``none`` on the same engine is the issue's ">= 80 %" figure.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

MODES = ("none", "grammar", "grammar+spacegroup")
RATES = ("parse_rate", "validity_structural", "validity_composition", "spacegroup_accuracy_generated",
         "uniqueness_rate", "novelty_rate")


def _fmt(summary: dict, name: str) -> str:
    value, interval = summary.get(name), summary.get(f"{name}_ci95")
    if value is None:
        return "-"
    return f"{100 * value:5.1f} [{100 * interval[0]:.1f}, {100 * interval[1]:.1f}]" if interval else f"{100 * value:5.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a trained model directory (plaidpp sft)")
    parser.add_argument("--n-unconditional", type=int, default=200)
    parser.add_argument("--n-per-group", type=int, default=20, help="per paper target group")
    parser.add_argument("--engines", default="compact", help="comma-separated: compact,hf")
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default=".cache/benchmarks/constrained")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated sampler.constraint values")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME:KEY=VALUE[,KEY=VALUE]",
                        help="sampler overrides compared in the same run (repeat; default: the settings as they are)")
    args = parser.parse_args()
    variants = dict(v.split(":", 1) for v in args.variant) or {"default": ""}

    import torch

    from plaidpp.config import compose
    from plaidpp.evaluation.evaluate import evaluate
    from plaidpp.prompts import prompt_counts
    from plaidpp.runtime import set_torch_threads
    from plaidpp.sampling.generate import generate
    from plaidpp.settings.sampling import PAPER_SPACEGROUPS, PromptSet
    from plaidpp.training.models import load_model_and_tokenizer, model_fingerprint

    set_torch_threads(2)
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start; torch threads "
          f"{torch.get_num_threads()}")
    base = compose("sample", [f"model_dir={args.model}"])
    model, tokenizer = load_model_and_tokenizer(args.model, base.model, for_training=False)
    prompts, counts = prompt_counts(PromptSet(args.n_unconditional, args.n_per_group, list(PAPER_SPACEGROUPS)))
    out = Path(args.out)
    results = []
    for engine in args.engines.split(","):
        for (variant, overrides), mode in ((v, m) for v in variants.items() for m in args.modes.split(",")):
            path = out / f"{engine}_{variant}_{mode}.jsonl"
            for stale in (path, path.with_name(path.name + ".run.json")):
                stale.unlink(missing_ok=True)
            sampler = compose("sample", [f"model_dir={args.model}", f"sampler.engine={engine}",
                                         f"sampler.constraint={mode}", *filter(None, overrides.split(","))]).sampler
            stats = generate(model, tokenizer, prompts, counts, sampler=sampler, temperature=args.temperature,
                             repr="wyckoff", out_path=path, seed=args.seed, model_id=model_fingerprint(args.model),
                             progress=False)
            started = time.perf_counter()
            cfg = compose("evaluate", [f"samples={path}", f"out={out / f'eval_{engine}_{variant}_{mode}'}",
                                       "relax.enabled=false",
                                       "progress=false", "tracking.uri=null", "metrics_file=null"])
            summary = evaluate(cfg)
            results.append({"engine": engine, "variant": variant, "constraint": mode, **stats.as_dict(),
                            "score_seconds": round(time.perf_counter() - started, 1),
                            **{k: summary.get(k) for k in summary if k.startswith(RATES) or k.startswith("n_")}})
            row = results[-1]
            print(f"{engine:8s} {variant:10s} {mode:19s} {stats.attempts:5d} attempts for {stats.n_slots} slots, parse "
                  f"{100 * stats.decoded / stats.attempts:5.1f} %, {stats.crystals_per_s:6.1f} crystals/s, "
                  f"{stats.tokens_per_s:7.0f} tokens/s, redraws {stats.constraint_redraws} of {stats.new_tokens} "
                  f"tokens, dead ends {stats.constraint_dead_ends}, refused {stats.refused}, texts loosened "
                  f"{stats.constraint_loosened} / crowded {stats.constraint_crowded}", flush=True)
            print("    " + "  ".join(f"{name.removesuffix('_rate')} {_fmt(summary, name)}" for name in RATES)
                  + f"  (of {summary.get('n_requested')} requested)", flush=True)
    print("\nthroughput against none on the same engine and variant (crystals/s, tokens/s):")
    for row in results:
        ref = next((r for r in results if r["engine"] == row["engine"] and r["variant"] == row["variant"]
                    and r["constraint"] == "none"), None)
        if ref is None:
            continue
        print(f"  {row['engine']:8s} {row['variant']:10s} {row['constraint']:19s} "
              f"{row['crystals_per_s'] / ref['crystals_per_s']:6.2f}  "
              f"{row['tokens_per_s'] / ref['tokens_per_s']:6.2f}")
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
