"""Constrained decoding of crystal texts (issue 12): the grammar (syntax), the Wyckoff automaton (what a grammar
cannot hold: counts, tied lattice parameters, positions) and the per-batch masks the samplers apply."""

from plaidpp.constraint.automaton import (
    CONSTRAINTS,
    ConstrainedBatch,
    Constraint,
    WyckoffState,
)

__all__ = ["CONSTRAINTS", "ConstrainedBatch", "Constraint", "WyckoffState"]
