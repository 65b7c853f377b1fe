"""How far one DPO round moves the tiny model at different learning rates (the tiny config's lr choice).

Runs one round (one epoch, beta 0.1, batch 16) on a real pairs file from pi_0 for each learning rate and prints
the final logged DPO loss, reward margin (beta * difference of log-ratios, nats) and pair accuracy.

    python benchmarks/rlip_dpo_lr.py --policy models/sft --pairs data/rlip/default/iter_1/pairs.jsonl \
        --lrs 1e-6,1e-5,1e-4
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from plaidpp.config import compose
from plaidpp.training.dpo import train_dpo


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--policy", required=True)
    parser.add_argument("--pairs", required=True)
    parser.add_argument("--lrs", default="1e-6,1e-5,1e-4")
    args = parser.parse_args()
    for lr in args.lrs.split(","):
        out = Path(tempfile.mkdtemp()) / "model"
        cfg = compose("dpo", [f"policy={args.policy}", f"pairs_file={args.pairs}", f"out={out}", f"dpo.lr={lr}",
                              "tracking.uri=null"])
        summary = train_dpo(args.policy, args.policy, args.pairs, out, cfg)
        keys = ("dpo/loss_first", "dpo/loss_last", "dpo/margins_last", "dpo/margins_mean", "dpo/accuracies_last",
                "dpo/chosen_last", "dpo/rejected_last", "wall_s")
        print(json.dumps({"lr": float(lr), "n_pairs": summary["n_pairs"], **{k: summary.get(k) for k in keys}}))
        shutil.rmtree(out.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
