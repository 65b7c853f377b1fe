"""``plaidpp`` command line: a thin dispatcher; each command's work lives in its stage package.

Stage commands take Hydra overrides (``plaidpp prepare data=full workers=4``, ``-m`` for sweeps) and are what
``dvc.yaml`` runs. ``encode``/``decode`` are small argparse tools for one crystal at a time.
Problems in the user's input print one line on stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from plaidpp.errors import UserError

# command -> "module:function"; each function takes the composed DictConfig and returns a summary dict.
HYDRA_COMMANDS: dict[str, str] = {
    "fetch": "plaidpp.data.mp20:fetch_stage",
    "prepare": "plaidpp.data.prepare:prepare",
    "evaluate": "plaidpp.evaluation.evaluate:evaluate",
    "sft": "plaidpp.training.sft:sft",
    "sample": "plaidpp.sampling.sample:sample",
    "pairs": "plaidpp.rlip.pairs:pairs_stage",
    "dpo": "plaidpp.training.dpo:dpo_stage",
    "rlip": "plaidpp.rlip.loop:rlip",
    "report": "plaidpp.reporting.report:report",
}


# Flag sugar for stages whose issue-given CLI uses flags: `--samples X` -> Hydra override `samples=X`.
FLAG_OVERRIDES: dict[str, tuple[str, ...]] = {"evaluate": ("samples", "out")}


def _flags_to_overrides(command: str, argv: list[str]) -> list[str]:
    flags = FLAG_OVERRIDES.get(command, ())
    out, i = [], 0
    while i < len(argv):
        arg = argv[i]
        name, _, value = arg[2:].partition("=") if arg.startswith("--") else ("", "", "")
        if name in flags:
            if not value:
                if i + 1 >= len(argv):
                    raise UserError(f"--{name} needs a value")
                value, i = argv[i + 1], i + 1
            arg = f"{name}={value}"
        out.append(arg)
        i += 1
    return out


def _fail(message: str) -> int:
    print(f"plaidpp: error: {message}", file=sys.stderr)
    return 2


def _read_input(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    file = Path(path)
    if not file.is_file():
        raise UserError(f"no such file: {path}")
    return file.read_text()


def _encode(args: argparse.Namespace) -> int:
    from pymatgen.core import Structure

    from plaidpp.representation import get

    text = _read_input(args.file)
    try:
        structure = Structure.from_str(text, fmt="cif")
    except Exception as exc:  # pymatgen raises many types for malformed CIF
        raise UserError(f"{args.file} is not a readable CIF ({type(exc).__name__})") from None
    try:
        print(get(args.repr).encode(structure))
    except ValueError as exc:
        raise UserError(f"cannot encode {args.file}: {exc}") from None
    return 0


def _decode(args: argparse.Namespace) -> int:
    from pymatgen.io.cif import CifWriter

    from plaidpp.representation import DecodeError, get

    text = _read_input(args.file)
    try:
        structure = get(args.repr, **({"strict": True} if args.strict else {})).decode(text)
    except DecodeError as exc:
        raise UserError(f"cannot decode {args.file}: {exc}") from None
    print(CifWriter(structure), end="")
    return 0


def _argparse_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="plaidpp", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    enc = sub.add_parser("encode", help="print the text form of a CIF file")
    enc.add_argument("--repr", choices=["wyckoff", "coords"], default="wyckoff")
    enc.add_argument("file", help="CIF file, or - for stdin")
    enc.set_defaults(run=_encode)
    dec = sub.add_parser("decode", help="print a CIF for a crystal text (file or - for stdin)")
    dec.add_argument("--repr", choices=["wyckoff", "coords"], default="wyckoff")
    dec.add_argument("--strict", action="store_true", help="reject a formula/'Sites (N)' header that disagrees")
    dec.add_argument("file", nargs="?", default="-")
    dec.set_defaults(run=_decode)
    for name in HYDRA_COMMANDS:
        sub.add_parser(name, help=f"run the {name} stage (Hydra overrides follow; see conf/{name}.yaml)")
    args = parser.parse_args(argv)
    return args.run(args)


def _check_overrides(command: str, argv: list[str]) -> None:
    """Compose once before Hydra runs, so a mistyped override (bad syntax, unknown group option or key) is one
    line and status 2 instead of Hydra's multi-line report and status 1. Sweeps and Hydra's own flags and
    settings are left to Hydra."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from plaidpp.config import compose

    if any(arg.startswith("-") or arg.lstrip("+~").startswith("hydra") for arg in argv):
        return
    try:
        compose(command, argv)
    except (HydraException, OmegaConfBaseException) as exc:
        first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise UserError(f"bad override: {first}") from None


def _hydra_main(command: str, argv: list[str]) -> int:
    import hydra
    from omegaconf import DictConfig

    from plaidpp.config import conf_dir

    _check_overrides(command, argv)
    module_name, function_name = HYDRA_COMMANDS[command].split(":")

    @hydra.main(config_path=str(conf_dir()), config_name=command, version_base="1.3")
    def _run(cfg: DictConfig) -> None:
        stage = getattr(importlib.import_module(module_name), function_name)
        try:
            stage(cfg)
        except UserError as exc:
            print(f"plaidpp {command}: error: {exc}", file=sys.stderr)
            sys.exit(2)

    sys.argv = [f"plaidpp {command}", *argv]
    _run()
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in HYDRA_COMMANDS and "-h" not in argv[1:2]:
            return _hydra_main(argv[0], _flags_to_overrides(argv[0], argv[1:]))
        return _argparse_main(argv)
    except UserError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return _fail("interrupted")


if __name__ == "__main__":
    sys.exit(main())
