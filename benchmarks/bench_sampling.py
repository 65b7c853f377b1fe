"""Sampling throughput of a trained generator (not a test): crystals/s and new tokens/s.

    python benchmarks/bench_sampling.py                                   # models/sft, 512 unconditional samples
    python benchmarks/bench_sampling.py --n 1024 --threads 2 sampler.batch_size=256 temperature=1.0

It runs the real sampler (``plaidpp.sampling.generate``: KV-cached batched sampling, decoding of every
output, resampling, JSONL rows) with the ``sample`` stage's own settings (conf/ + params.yaml, then the
overrides given) into a temporary file, after one warm-up batch, and prints one JSON line. ``--raw`` (the
default) sets ``sampler.max_attempts=1``: the generation rate without resampling. The machine is shared:
run it when nothing else is busy and say whether something was.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=512, help="unconditional samples to draw")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = all cores)")
    parser.add_argument("--resample", action="store_true", help="keep the configured max_attempts (default: 1)")
    parser.add_argument("overrides", nargs="*", help="sample-stage overrides (model_dir=, temperature=, sampler.*)")
    args = parser.parse_args()

    import torch

    from plaidpp.config import compose
    from plaidpp.prompts import unconditional_prompt
    from plaidpp.runtime import set_torch_threads
    from plaidpp.sampling.generate import generate
    from plaidpp.training.models import count_parameters, load_model_and_tokenizer

    cfg = compose("sample", ["tracking.uri=null", *args.overrides])
    sampler = cfg.sampler if args.resample else dataclasses.replace(cfg.sampler, max_attempts=1)
    set_torch_threads(args.threads)
    model, tokenizer = load_model_and_tokenizer(cfg.model_dir, cfg.model, for_training=False)
    with tempfile.TemporaryDirectory() as tmp:
        common = dict(sampler=sampler, temperature=cfg.temperature, repr=cfg.repr, model_id="bench", progress=False)
        generate(model, tokenizer, [unconditional_prompt()], n=min(sampler.batch_size, 32),
                 out_path=Path(tmp) / "warmup.jsonl", seed=1, **common)
        started = time.perf_counter()
        stats = generate(model, tokenizer, [unconditional_prompt()], n=args.n, out_path=Path(tmp) / "bench.jsonl",
                         seed=0, **common)
        wall = time.perf_counter() - started
    print(json.dumps({
        "model_dir": cfg.model_dir, "parameters": count_parameters(model)["parameters"],
        "device": "cuda:" + torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
        "engine": sampler.engine, "n": args.n, "batch_size": sampler.batch_size, "max_attempts": sampler.max_attempts,
        "temperature": cfg.temperature, "wall_s": round(wall, 2), "crystals_per_s": round(stats.finals / wall, 2),
        "attempts_per_s": round(stats.attempts / wall, 2), "new_tokens_per_s": round(stats.new_tokens / wall, 1),
        "mean_new_tokens": round(stats.new_tokens / max(stats.attempts, 1), 1),
        "generate_share": round(stats.generate_seconds / wall, 3),
        "attempt_parse_rate": round(stats.decoded / max(stats.attempts, 1), 4),
        "load_average_1min": os.getloadavg()[0],
    }))


if __name__ == "__main__":
    main()
