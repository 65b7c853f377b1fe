"""RLIP: reinforcement learning from interatomic potentials (PLaID++ section 4.2, appendix 7.2, Algorithm 1).

One iteration: sample from pi_{i-1} at temperature T_i -> score with the reward MLIP -> preference pairs ->
DPO with pi_ref = pi_{i-1} -> evaluate with a different (evaluation) MLIP.

- ``pairs``: scored samples -> (prompt, chosen, rejected, kind) pairs; pure and seeded.
- ``schedules``: the sampling temperature T_i of each iteration.
- ``loop``: the resumable iteration loop behind ``plaidpp rlip``.
"""
