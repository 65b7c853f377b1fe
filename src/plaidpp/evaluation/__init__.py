"""Evaluation suite: validity, MLIP relaxation, E_hull, uniqueness, novelty, S.U.N., S.S.U.N.

>>> from plaidpp.config import compose
>>> from plaidpp.evaluation.score import score_samples
>>> table, summary = score_samples(rows, compose("evaluate", ["--samples", ...]))

``plaidpp evaluate --samples FILE.jsonl --out DIR`` runs ``evaluate.evaluate(cfg)``. Definitions and measured
calibration: docs/evaluation.md. (Nothing is imported here, so that a module reading only the metric registry
does not load the potentials.)
"""
