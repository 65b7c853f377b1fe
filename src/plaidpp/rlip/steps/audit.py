"""Step 6: is the reward being hacked? The evaluation sample of pi_i scored again with the *reward* potential.

If RLIP climbs the reward while the two potentials agree less and less on the same crystals, the policy is
learning the reward potential's errors rather than stability. Per iteration this records how often the two put
a crystal in the same tier (stable / metastable / unstable: the evaluate config's thresholds, 0 and 0.1
eV/atom), Cohen's kappa, the Spearman correlation of their E_hull, and the reward potential's rates on the
evaluation sample (``evaluation.compare.agreement``). ``evaluation.audit=false`` skips the scoring (the step
leaves an empty folder and a marker that says so). Cost: one reward relaxation per evaluation sample (or per
one of ``evaluation.audit_samples`` of them, evenly spaced); the reward potential is the cheaper of the two.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from plaidpp.evaluation.compare import agreement, read_scored
from plaidpp.rlip.layout import Layout
from plaidpp.rlip.roles import role_config
from plaidpp.rlip.steps.score import score_file
from plaidpp.settings.stages import RlipConfig

READS = ("reward", "evaluation.audit", "evaluation.audit_samples")
ROLE = "reward"


def paths(cfg: RlipConfig, layout: Layout, i: int) -> tuple[list[Path], list[Path]]:
    return [layout.iter_dir(i) / "eval"], [layout.iter_dir(i) / "audit", layout.marker(i, "audit")]


def run(cfg: RlipConfig, layout: Layout, i: int) -> dict[str, Any]:
    out = layout.iter_dir(i) / "audit"
    if not cfg.evaluation.audit:
        out.mkdir(parents=True, exist_ok=True)
        return {"n": 0, "skipped": "evaluation.audit=false"}
    evaluated = layout.iter_dir(i) / "eval"
    summary = score_file(evaluated / "samples.jsonl", out, cfg, ROLE, at_most=cfg.evaluation.audit_samples)
    judge, _ = read_scored(evaluated)
    reward, _ = read_scored(out)
    thresholds = role_config(cfg, ROLE).thresholds
    return {"reward": {k: summary.get(k) for k in ("n_requested", "n_relaxed", "stability_rate",
                                                    "metastability_rate", "mean_e_hull")},
            "reward_mlip": summary.get("mlip"), **agreement(judge, reward, thresholds.stable, thresholds.metastable)}
