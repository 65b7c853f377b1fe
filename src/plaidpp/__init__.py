"""plaidpp: crystal generation with language models aligned by reinforcement learning from interatomic potentials."""

__version__ = "0.1.0"
