"""Encode/decode throughput of the crystal text representations (a benchmark, not a test).

    make bench-representation            # or: python benchmarks/bench_representation.py --rows 600

Prints structures/second on one core and on all cores (process pool), per representation and direction.
Wyckoff encoding includes pyxtal's symmetry search and the round-trip check that picks its tolerance.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import time
import warnings

import pandas as pd

from plaidpp.config import PROJECT_ROOT
from plaidpp.representation import get

ROWS = PROJECT_ROOT / "data" / "raw" / "mp20" / "mp20_partial_merged.csv.gz"


def _structures(cifs):
    from pymatgen.core import Structure

    warnings.filterwarnings("ignore")
    return [Structure.from_str(c, fmt="cif") for c in cifs]


def _encode_chunk(args):
    name, cifs = args
    rep = get(name)
    return [rep.encode(s) for s in _structures(cifs)]


def _decode_chunk(args):
    name, texts = args
    rep = get(name)
    return [len(rep.decode(t)) for t in texts]


def _timed(fn, tasks, workers):
    start = time.perf_counter()
    if workers == 1:
        out = [fn(t) for t in tasks]
    else:
        with mp.get_context("fork").Pool(workers) as pool:
            out = pool.map(fn, tasks)
    return time.perf_counter() - start, [x for chunk in out for x in chunk]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=600)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    cifs = pd.read_csv(ROWS, keep_default_na=False).sample(args.rows, random_state=0)["cif"].tolist()
    chunks = lambda items, k: [items[i::k] for i in range(k)]  # noqa: E731
    print(f"{args.rows} MP-20 rows, {args.workers} workers, cpu_count={os.cpu_count()}")
    for name in ("wyckoff", "coords"):
        t1, texts = _timed(_encode_chunk, [(name, cifs)], 1)
        tn, _ = _timed(_encode_chunk, [(name, c) for c in chunks(cifs, args.workers)], args.workers)
        d1, _ = _timed(_decode_chunk, [(name, texts)], 1)
        dn, _ = _timed(_decode_chunk, [(name, c) for c in chunks(texts, args.workers)], args.workers)
        n = len(cifs)
        print(
            f"{name:8s} encode {n / t1:7.1f}/s per core, {n / tn:7.1f}/s on {args.workers} | "
            f"decode {n / d1:7.1f}/s per core, {n / dn:7.1f}/s on {args.workers}"
        )


if __name__ == "__main__":
    main()
