"""MP-20 rows: the vendored partial copy, or the full cdvae files verified against their git blob hashes.

Both sources yield the cdvae columns (material_id, formation_energy_per_atom, band_gap, pretty_formula,
e_above_hull, elements, cif, spacegroup.number) plus ``split``. The vendored file keeps the original row
index as ``orig_index`` and the raw files it came from in ``sources`` (see data/raw/mp20/PROVENANCE.md).
"""

from __future__ import annotations

import hashlib
import urllib.request
from pathlib import Path

import pandas as pd

from plaidpp.errors import UserError
from plaidpp.settings.data import DataSettings
from plaidpp.settings.stages import FetchConfig

CDVAE_COLUMNS = [
    "material_id",
    "formation_energy_per_atom",
    "band_gap",
    "pretty_formula",
    "e_above_hull",
    "elements",
    "cif",
    "spacegroup.number",
]
SPLITS = ("train", "val", "test")


def git_blob_sha1(path: Path) -> str:
    """The hash ``git hash-object FILE`` prints: sha1 over ``b"blob <size>\\0" + content``."""
    data = Path(path).read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def verify_full_split(path: Path, expected_sha1: str) -> None:
    """Refuse a full-MP-20 file that is not byte-identical to the cdvae release."""
    if not Path(path).is_file():
        raise UserError(f"full MP-20 file missing: {path} (fetch it: plaidpp fetch data=full, see README)")
    actual = git_blob_sha1(path)
    if actual != expected_sha1:
        raise UserError(f"{path}: git blob sha1 {actual} != expected {expected_sha1}; the file is not cdvae's MP-20")


def _download(url: str, target: Path, timeout_s: float) -> None:
    """``url`` to ``target`` via a ``.part`` file; ``timeout_s`` bounds every blocking socket operation."""
    import shutil

    tmp = target.with_suffix(target.suffix + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response, open(tmp, "wb") as out:
            shutil.copyfileobj(response, out)
    except OSError as exc:  # URLError, HTTPError, socket time-outs: no internet is the usual cause
        tmp.unlink(missing_ok=True)
        raise UserError(f"could not download {url} ({getattr(exc, 'reason', exc)}); "
                        "plaidpp fetch needs internet once") from None
    tmp.replace(target)


def fetch_full(data_cfg: DataSettings) -> list[Path]:
    """Download the full cdvae MP-20 splits (needs internet) and verify them; returns the paths."""
    out = Path(data_cfg.dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for split in data_cfg.splits:
        target = out / f"{split}.csv"
        if not target.exists():
            _download(data_cfg.url.format(split=split), target, data_cfg.timeout_s)
        verify_full_split(target, data_cfg.git_blob_sha1[split])
        paths.append(target)
    return paths


def _check_columns(frame: pd.DataFrame, where: str) -> None:
    missing = [c for c in CDVAE_COLUMNS if c not in frame.columns]
    if missing:
        raise UserError(f"{where} lacks MP-20 columns {missing}")


def load_rows(data_cfg: DataSettings, split: str) -> pd.DataFrame:
    """All rows of one split, from the source the config selects (``vendored`` or ``full``)."""
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; choose from {SPLITS}")
    if data_cfg.source == "vendored":
        path = Path(data_cfg.file)
        if not path.is_file():
            raise UserError(f"vendored MP-20 file not found: {path}")
        frame = pd.read_csv(path, keep_default_na=False, na_values=[""])
        _check_columns(frame, str(path))
        frame = frame[frame["split"] == split]
    elif data_cfg.source == "full":
        path = Path(data_cfg.dir) / f"{split}.csv"
        verify_full_split(path, data_cfg.git_blob_sha1[split])
        frame = pd.read_csv(path, keep_default_na=False, na_values=[""])
        _check_columns(frame, str(path))
        frame = frame.rename(columns={frame.columns[0]: "orig_index"}).assign(split=split)
    else:
        raise UserError(f"unknown data source {data_cfg.source!r}; use data=vendored or data=full")
    if data_cfg.max_rows_per_split is not None:
        frame = frame.head(data_cfg.max_rows_per_split)
    return frame.reset_index(drop=True)


def row_properties(row: pd.Series) -> dict:
    """The conditioning properties of a row, under the prompt module's keys."""
    return {
        "formula": row["pretty_formula"],
        "e_above_hull": float(row["e_above_hull"]),
        "formation_energy_per_atom": float(row["formation_energy_per_atom"]),
        "band_gap": float(row["band_gap"]),
        "spacegroup": int(row["spacegroup.number"]),
    }


def fetch_stage(cfg: FetchConfig) -> dict:
    """``plaidpp fetch data=full``: download and verify the full MP-20 splits."""
    if cfg.data.source != "full":
        raise UserError("fetch only applies to the full MP-20: run `plaidpp fetch data=full`")
    paths = fetch_full(cfg.data)
    for path in paths:
        print(f"verified {path}")
    return {"files": [str(p) for p in paths]}
