"""Sampling throughput of a trained generator (not a test): crystals/s and new tokens/s.

    python benchmarks/bench_sampling.py                       # models/sft, 512 unconditional samples
    python benchmarks/bench_sampling.py --n 1024 --batch-size 256 --threads 2

It runs the real sampler (``plaidpp.sampling.generate``: KV-cached batched sampling, decoding of every
output, resampling, JSONL rows) into a temporary file, after one warm-up batch, and prints one JSON line.
The machine is shared: run it when nothing else is busy and say whether something was.
"""

from __future__ import annotations

import argparse
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
    parser.add_argument("--model-dir", default="models/sft")
    parser.add_argument("--n", type=int, default=512, help="unconditional samples to draw")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--max-attempts", type=int, default=1, help="1 = raw generation rate, no resampling")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = all cores)")
    parser.add_argument("--repr", default="wyckoff")
    parser.add_argument("--engine", default="compact", choices=["compact", "hf"])
    args = parser.parse_args()

    import torch
    from omegaconf import OmegaConf

    from plaidpp.prompts import unconditional_prompt
    from plaidpp.sampling.generate import generate
    from plaidpp.training.models import count_parameters, load_model_and_tokenizer

    if args.threads:
        torch.set_num_threads(args.threads)
    model, tokenizer = load_model_and_tokenizer(args.model_dir, OmegaConf.create({}), for_training=False)
    with tempfile.TemporaryDirectory() as tmp:
        common = dict(temperature=args.temperature, top_p=args.top_p, batch_size=args.batch_size,
                      repr=args.repr, max_attempts=args.max_attempts, progress=False, engine=args.engine)
        generate(model, tokenizer, [unconditional_prompt()], n=min(args.batch_size, 32),
                 out_path=Path(tmp) / "warmup.jsonl", seed=1, **common)
        started = time.perf_counter()
        stats = generate(model, tokenizer, [unconditional_prompt()], n=args.n, out_path=Path(tmp) / "bench.jsonl",
                         seed=0, **common)
        wall = time.perf_counter() - started
    print(json.dumps({
        "model_dir": args.model_dir, "parameters": count_parameters(model)["parameters"],
        "device": "cuda:" + torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
        "engine": args.engine, "n": args.n, "batch_size": args.batch_size, "max_attempts": args.max_attempts,
        "wall_s": round(wall, 2), "crystals_per_s": round(stats.finals / wall, 2),
        "attempts_per_s": round(stats.attempts / wall, 2), "new_tokens_per_s": round(stats.new_tokens / wall, 1),
        "mean_new_tokens": round(stats.new_tokens / max(stats.attempts, 1), 1),
        "generate_share": round(stats.generate_seconds / wall, 3),
        "attempt_parse_rate": round(stats.decoded / max(stats.attempts, 1), 4),
        "load_average_1min": os.getloadavg()[0],
    }))


if __name__ == "__main__":
    main()
