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


def few_site_rows(pool: pd.DataFrame, n: int) -> pd.DataFrame:
    """The first ``n`` rows of ``pool`` whose crystals have at most 4 sites (cheap to encode and relax)."""
    from pymatgen.core import Structure

    return pool[pool["cif"].map(lambda c: len(Structure.from_str(c, fmt="cif")) <= 4)].head(n)


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


# ------------------------------------------------------------------------------------------- real config
# The tiny model made tinier: every stage with a model composes this architecture unless a test asks otherwise.
TINY_MODEL = [
    "model.architecture.hidden_size=32",
    "model.architecture.intermediate_size=64",
    "model.architecture.num_hidden_layers=1",
    "model.architecture.num_attention_heads=2",
    "model.architecture.num_key_value_heads=1",
    "model.tokenizer_vocab_size=400",
]
_MODEL_STAGES = ("sft", "sample", "dpo", "rlip")


def shrunk_overrides(stage: str, root, overrides=(), tracking: bool = False) -> list[str]:
    """What ``make_config`` adds to a stage's real config (also for tests that run the CLI in a subprocess)."""
    base = [f"paths.root={root}", f"paths.raw={PROJECT_ROOT}/data/raw", "workers=1",
            f"tracking.uri=sqlite:///{root}/mlflow.db" if tracking else "tracking.uri=null"]
    if stage in _MODEL_STAGES and not any(o.startswith(("model=", "+experiment=")) for o in overrides):
        base += TINY_MODEL
    return [*base, *overrides]


@pytest.fixture
def make_config(tmp_path):
    """The real config of a stage, composed exactly as ``plaidpp <stage>`` would (conf/ + params.yaml), then
    shrunk for a test: every output under ``tmp_path`` (``paths.root``), the vendored inputs of the project,
    MLflow off unless ``tracking=True``, one worker, and the tiny model made tinier (``TINY_MODEL``)."""
    from plaidpp.config import compose

    def make(stage: str, *overrides: str, tracking: bool = False):
        return compose(stage, shrunk_overrides(stage, tmp_path, overrides, tracking))

    return make


TINY_CRYSTALS = (
    "Na4Cl4\nSpacegroup: Fm-3m\nabc: 5.69 5.69 5.69\nangles: 90.00 90.00 90.00\nSites (8)\n"
    "Na 0.000 0.000 0.000 4a\nCl 0.500 0.500 0.500 4b",
    "Ca8Sb4O2\nSpacegroup: I4/mmm\nabc: 4.71 4.71 16.39\nangles: 90.00 90.00 90.00\nSites (14)\n"
    "Ca 0.000 0.000 0.335 4e\nCa 0.000 0.500 0.000 4c\nSb 0.000 0.000 0.140 4e\nO 0.000 0.000 0.500 2b",
)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """One untrained tiny Qwen2 (the ``TINY_MODEL`` shape of the real tiny preset) with a crystal BPE, saved as
    ``plaidpp sft`` saves a model (training_data.json says Wyckoff). Its samples rarely decode: fast."""
    from plaidpp.config import compose
    from plaidpp.prompts import spacegroup_prompt, unconditional_prompt
    from plaidpp.training.models import build_tiny_model
    from plaidpp.training.tokenizer import train_crystal_tokenizer

    root = tmp_path_factory.mktemp("tiny_model")
    corpus = [p + c for c in TINY_CRYSTALS for p in (unconditional_prompt(), spacegroup_prompt(15))] * 10
    tokenizer = train_crystal_tokenizer(corpus, vocab_size=300)
    model = build_tiny_model(compose("sft", TINY_MODEL).model, tokenizer)
    model.save_pretrained(root)
    tokenizer.save_pretrained(root)
    (root / "training_data.json").write_text('{"repr": "wyckoff"}')
    return root
