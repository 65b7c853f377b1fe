"""A LoRA policy sampled by vLLM merged into its base or served as a LoRA request: which is faster.

    .venv-vllm/bin/python benchmarks/vllm_lora.py --model models/sft --n 512

Builds a LoRA adapter (r 8 on every projection: the paper's, ``model.lora``) on ``--model`` with random, non-zero
A and B, so the adapted model differs from the base, then samples ``--n`` unconditional crystals through
plaidpp's sampler (``sampler.engine=vllm``, no constraint) once per ``sampler.vllm.lora`` mode. Prints the
engine's build time (merge and save included for ``merge``), the sampling time and crystals/s. In RLIP each
iteration's policy is a new adapter, so a merge is paid once per iteration and sampling many times.
"""

from __future__ import annotations

import argparse
import gc
import json
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/sft")
    parser.add_argument("--n", type=int, default=512)
    args = parser.parse_args()
    import torch

    from plaidpp.config import compose
    from plaidpp.sampling.sample import plan_sampling, sample_model
    from plaidpp.settings.sampling import PromptSet
    from plaidpp.training.models import add_lora, load_model_and_tokenizer

    work = Path(tempfile.mkdtemp(prefix="vllm-lora-"))
    cfg = compose("sample", [f"paths.root={work}", "sampler.engine=vllm", "sampler.constraint=none",
                             f"sampler.batch_size={args.n}", "tracking.uri=null"])
    model, tokenizer = load_model_and_tokenizer(args.model, cfg.model, for_training=False)
    adapter = add_lora(model, cfg.model)
    torch.manual_seed(0)
    with torch.no_grad():
        for name, weight in adapter.named_parameters():
            if "lora_" in name:
                weight.normal_(0.0, 0.02)
    adapter_dir = work / "adapter"
    adapter.save_pretrained(adapter_dir)
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = str(Path(args.model).resolve())
    (adapter_dir / "adapter_config.json").write_text(json.dumps(config))
    tokenizer.save_pretrained(adapter_dir)
    (adapter_dir / "training_data.json").write_text('{"repr": "wyckoff"}')
    del model, adapter
    for mode in ("merge", "request"):
        cfg.sampler.vllm.lora = mode
        out = work / f"{mode}.jsonl"
        plan = plan_sampling(adapter_dir, PromptSet(n_unconditional=args.n, n_per_spacegroup=0, spacegroups=[]),
                             sampler=cfg.sampler, temperature=0.7, repr="wyckoff", seed=0, out_path=out)
        started = time.perf_counter()
        stats, info = sample_model(plan, cfg.model, progress=False)
        total = time.perf_counter() - started
        print(json.dumps({"mode": mode, "n": stats.finals, "build_s": info["model_load_seconds"],
                          "sample_s": round(stats.seconds, 2), "crystals_per_s": round(stats.crystals_per_s, 2),
                          "tokens_per_s": round(stats.tokens_per_s, 1), "total_s": round(total, 2),
                          "attempt_parse_rate": round(stats.decoded / max(1, stats.attempts), 3)}), flush=True)
        gc.collect()


if __name__ == "__main__":
    main()
