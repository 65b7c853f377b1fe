"""RLIP: reinforcement learning from interatomic potentials (PLaID++ section 4.2, appendix 7.2, Algorithm 1).

One iteration: sample from pi_{i-1} at temperature T_i -> score with the reward MLIP -> preference pairs ->
DPO with pi_ref = pi_{i-1} -> evaluate with a different (evaluation) MLIP.

- ``driver``: the resumable loop behind ``plaidpp rlip``; ``steps/``: one module per step;
- ``layout``: run names, folders, markers, seeds; ``roles``: the reward and evaluation potentials;
- ``record``: the per-iteration figures; ``pairs``: scored samples -> preference pairs (pure, seeded);
- ``iterative_sft``: the rejection-sampling baseline. Temperature schedules: ``settings.rlip.ScheduleSettings``.
"""
