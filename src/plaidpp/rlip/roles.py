"""The two potentials of an RLIP run: the *reward* scores rollouts, a different *evaluation* potential judges.

Each role scores with the ``evaluate`` stage's own config (composed exactly as ``plaidpp evaluate`` would be,
with the role's MLIP and overrides), so a reward and an evaluation differ from ``plaidpp evaluate`` only in
what the role says.
"""

from __future__ import annotations

from dataclasses import fields

from plaidpp.errors import UserError
from plaidpp.settings.stages import EvaluateConfig, RlipConfig

ROLES = ("reward", "evaluation")


def role_overrides(cfg: RlipConfig, role: str) -> list[str]:
    """The ``plaidpp evaluate`` overrides of a role: its MLIP, this run's folders, seed and workers, the reward's
    relaxation settings, its own overrides. Tracking is off: the RLIP run logs the figures itself."""
    node = getattr(cfg, role)
    folders = [f"paths.{f.name}={getattr(cfg.paths, f.name)}" for f in fields(cfg.paths)]
    # the reward's own relaxation settings, and its pair tiers as cuts a tier exit (relax.tier_exit) respects
    own_relax = [*cfg.reward.relax_overrides(),
                 f"relax.tier_exit_cuts=[{cfg.pairs.stable_max},{cfg.pairs.metastable_max}]"] if role == "reward" else []
    return [f"mlip={node.mlip}", *folders, f"seed={cfg.seed}", f"workers={cfg.workers}", "tracking.uri=null",
            "progress=false", *own_relax, *node.overrides]


def role_config(cfg: RlipConfig, role: str) -> EvaluateConfig:
    """The evaluate config a role scores with (``samples`` and ``out`` are set per call)."""
    from plaidpp.config import compose

    return compose("evaluate", [*role_overrides(cfg, role), "samples=-", "out=-"])


def check_distinct_mlips(cfg: RlipConfig) -> None:
    """The reward and the evaluation MLIP must differ (the paper: eqV2 reward, eSEN evaluation), otherwise the
    evaluation measures how well the policy games its own reward. ``rlip.allow_same_mlip=true`` opts out."""
    if not cfg.evaluation.enabled or cfg.rlip.allow_same_mlip:
        return

    def identity(node) -> tuple[str, list[str]]:  # noqa: ANN001 - the potential and its checkpoint overrides
        return node.mlip, sorted(o for o in node.overrides if o.startswith("mlip."))

    reward, judge = identity(cfg.reward), identity(cfg.evaluation)
    if reward == judge:
        raise UserError(f"reward and evaluation use the same MLIP ({reward[0]} {' '.join(reward[1])}); "
                        "choose another evaluation.mlip or checkpoint, or set rlip.allow_same_mlip=true")
