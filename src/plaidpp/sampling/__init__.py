"""Sampling crystals from a generator: ``generate`` (resumable, resampling) and the ``sample`` stage."""

from plaidpp.sampling.generate import SamplingStats, final_rows, generate, requested_spacegroup

__all__ = ["SamplingStats", "final_rows", "generate", "requested_spacegroup"]
