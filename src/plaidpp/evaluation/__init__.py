"""Evaluation suite (issue 3): validity, MLIP relaxation, E_hull, uniqueness, novelty, S.U.N., S.S.U.N.

>>> from plaidpp.config import compose
>>> from plaidpp.evaluation import score_samples
>>> table, summary = score_samples([{"text": text, "repr": "wyckoff", "spacegroup": None}], compose("evaluate"))

``plaidpp evaluate samples=FILE.jsonl out=DIR`` runs ``evaluate.evaluate(cfg)``. Definitions and measured
calibration: docs/evaluation.md.
"""

from __future__ import annotations

from plaidpp.evaluation.score import score_samples

__all__ = ["score_samples"]
