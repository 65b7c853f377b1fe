"""plaidpp: crystal generation with language models aligned by reinforcement learning from interatomic potentials."""

import logging as _logging
import warnings as _warnings

__version__ = "0.1.0"

# Two messages every command would print that say nothing about the run:
# - pymatgen warns "No Pauling electronegativity for Ne/He/Ar" whenever a noble gas's electronegativity is
#   touched (building a hull with XeF4, say); it returns NaN, which is what the code expects.
# - bitsandbytes logs that its optional CPU kernel package "kernels" is missing; that package downloads
#   kernels from a model hub at run time, which this project never does, and the built-in CPU path is used.
_warnings.filterwarnings("ignore", message="No Pauling electronegativity", category=UserWarning)
_logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(_logging.ERROR)
