"""Every RLIP variant the paper compares is one `+experiment=` override that composes to what it claims."""

from __future__ import annotations

import pytest

from plaidpp.config import PROJECT_ROOT, compose
from plaidpp.errors import UserError
from plaidpp.rlip.roles import check_distinct_mlips

EXPERIMENTS = sorted(p.stem for p in (PROJECT_ROOT / "conf" / "experiment").glob("rlip_*.yaml"))


def test_the_papers_variants_are_all_there():
    assert set(EXPERIMENTS) >= {"rlip_flagship", "rlip_nontiered", "rlip_stability_novelty", "rlip_fixed_ref",
                                "rlip_iterative_sft", "rlip_coords", "rlip_paper"}


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_composes_to_its_own_run_with_distinct_mlips(name):
    cfg = compose("rlip", [f"+experiment={name}"])
    # its own folders and MLflow run name; a preset swept over schedules (rlip_collapse) adds the schedule
    assert cfg.rlip.run in (name.removeprefix("rlip_"), f"{name.removeprefix('rlip_')}_{cfg.schedule.name}")
    check_distinct_mlips(cfg)


def test_variants_change_what_the_paper_changes():
    def get(name):
        return compose("rlip", [f"+experiment={name}"])

    assert list(get("rlip_nontiered").pairs.kinds) == ["stability"]
    assert get("rlip_nontiered").rollout.n_per_spacegroup == 0  # the stability ablations are unconditional
    assert set(get("rlip_stability_novelty").pairs.kinds) == {"stability_tiered", "novelty"}
    assert set(get("rlip_flagship").pairs.kinds) == {"stability_tiered", "novelty", "spacegroup",
                                                     "spacegroup_stability"}
    assert get("rlip_fixed_ref").rlip.reference == "initial"
    assert get("rlip_iterative_sft").rlip.algorithm == "sft"
    assert get("rlip_coords").repr == "coords"
    paper = get("rlip_paper")
    assert (paper.model.name, paper.rlip.iterations, paper.rollout.n_unconditional) == ("qwen2.5-7b", 7, 10000)
    assert (paper.dpo.beta, paper.dpo.lr) == (0.1, 1e-6)


def test_reward_and_evaluation_mlip_must_differ():
    with pytest.raises(UserError, match="same MLIP"):
        check_distinct_mlips(compose("rlip", ["evaluation.mlip=chgnet"]))
    check_distinct_mlips(compose("rlip", ["evaluation.mlip=chgnet", "rlip.allow_same_mlip=true"]))
    with pytest.raises(UserError, match="same MLIP"):  # one fairchem checkpoint for both roles
        check_distinct_mlips(compose("rlip", ["+experiment=rlip_paper",
                                              'evaluation.overrides=["mlip.checkpoint=/c/eqV2_86M_omat_mp_salex.pt"]',
                                              'reward.overrides=["mlip.checkpoint=/c/eqV2_86M_omat_mp_salex.pt"]']))


def test_reward_relaxation_settings_reach_the_reward_only():
    from plaidpp.rlip.roles import role_config

    cfg = compose("rlip", ["reward.relax_steps=40", "reward.relax_fmax=0.2"])
    reward, judge = role_config(cfg, "reward"), role_config(cfg, "evaluation")
    assert (reward.relax.steps, reward.relax.fmax) == (40, 0.2)
    stage = compose("evaluate", ["samples=-", "out=-"]).relax  # what `plaidpp evaluate` relaxes with
    assert (judge.relax.steps, judge.relax.fmax) == (stage.steps, stage.fmax) != (40, 0.2)
    # the role's own overrides still win over its relaxation settings
    cfg = compose("rlip", ["reward.relax_steps=40", 'reward.overrides=["relax.steps=7"]'])
    assert role_config(cfg, "reward").relax.steps == 7
    paper = compose("rlip", ["+experiment=rlip_paper"])
    assert (role_config(paper, "reward").relax.steps, role_config(paper, "reward").relax.fmax) == (500, 0.02)
    # by default the judge relaxes as the paper does and the reward keeps the cheaper relaxation (issue 30)
    default = compose("rlip")
    judge, reward = role_config(default, "evaluation").relax, role_config(default, "reward").relax
    assert (judge.steps, judge.fmax) == (500, 0.02) and (reward.steps, reward.fmax) == (150, 0.05)


def test_reference_run_is_powered_and_paired():
    """Issue 13's reference run: >= 4 iterations of the flagship schedule, >= 500 evaluation samples for pi_0 and
    the last iteration (the paired comparison), >= 150 between, judged by another potential than the reward."""
    cfg = compose("rlip", ["+experiment=rlip_reference"])
    last = cfg.rlip.iterations
    assert last >= 4 and cfg.schedule.temperatures(4) == [0.7, 0.7, 0.9, 0.9]
    sizes = [cfg.evaluation.prompts_for(i, last).total for i in range(last + 1)]
    assert sizes[0] == sizes[-1] >= 500 and min(sizes[1:-1]) >= 150
    assert cfg.evaluation.temperature is not None  # every model sampled alike: the comparison is paired
