"""Shared fixtures. Tests use the real vendored MP-20 rows and the real Hydra config, shrunk."""

from __future__ import annotations

import os
import warnings

# No hub, no telemetry, ever (also set by .ci/run; repeated so a bare `pytest` is safe).
for key, value in {
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DVC_NO_ANALYTICS": "1",
    "TOKENIZERS_PARALLELISM": "false",
}.items():
    os.environ.setdefault(key, value)

import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from plaidpp.config import PROJECT_ROOT  # noqa: E402

VENDORED_MP20 = PROJECT_ROOT / "data" / "raw" / "mp20" / "mp20_partial_merged.csv.gz"


@pytest.fixture(scope="session")
def mp20_rows() -> pd.DataFrame:
    """All 18,106 vendored MP-20 rows (cdvae columns + split)."""
    return pd.read_csv(VENDORED_MP20, keep_default_na=False, na_values=[""])


@pytest.fixture(scope="session")
def mp20_sample(mp20_rows):
    """A fixed random sample of rows across all splits, for tests that need many real crystals."""

    def take(n: int, seed: int = 0, split: str | None = None) -> pd.DataFrame:
        rows = mp20_rows if split is None else mp20_rows[mp20_rows["split"] == split]
        return rows.sample(n, random_state=seed).reset_index(drop=True)

    return take


@pytest.fixture(scope="session")
def structures(mp20_sample):
    """pymatgen Structures for a fixed sample (parsed once per session)."""
    from pymatgen.core import Structure

    cache: dict = {}

    def take(n: int, seed: int = 0, split: str | None = None):
        key = (n, seed, split)
        if key not in cache:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cache[key] = [Structure.from_str(cif, fmt="cif") for cif in mp20_sample(n, seed, split)["cif"]]
        return cache[key]

    return take
