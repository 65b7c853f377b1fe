"""How far one DPO round moves the tiny model at different learning rates (the tiny config's lr choice).

Runs one round (one epoch, beta 0.1, batch 16) on a real pairs file from pi_0 for each learning rate and prints
the DPO loss, reward margin (beta * difference of log-ratios, nats) and pair accuracy of the *trained* policy
against pi_0 on the same pairs (``DPOTrainer.evaluate``), i.e. how far the round moved the model.

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
from plaidpp.training.dpo import build_trainer, dpo_args, load_pairs_dataset, train_dpo


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
        summary = train_dpo(args.policy, args.policy, args.pairs, out, cfg.model, cfg.dpo, cfg.seed)
        dataset = load_pairs_dataset(args.pairs)
        trainer = build_trainer(out, args.policy, dataset,
                                dpo_args(cfg.dpo, out.parent / "eval", 0, cfg.model, len(dataset)), cfg.model)
        after = trainer.evaluate(eval_dataset=dataset)
        keys = ("eval_loss", "eval_rewards/margins", "eval_rewards/accuracies", "eval_rewards/chosen",
                "eval_rewards/rejected")
        print(json.dumps({"lr": float(lr), "n_pairs": summary["n_pairs"], "steps": summary.get("log_history", [{}])[-1].get("step"),
                          "train_wall_s": summary.get("wall_s"), **{k: after.get(k) for k in keys}}))
        shutil.rmtree(out.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
