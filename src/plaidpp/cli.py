"""``plaidpp`` command line: a thin dispatcher; each command's work lives in its stage package.

Stage commands take Hydra overrides (``plaidpp prepare workers=4``, ``-m`` for sweeps) and are what
``dvc.yaml`` runs; ``plaidpp <stage> --help`` (or ``plaidpp config <stage> [overrides]``) prints every
setting of the stage with its value and help. ``encode``/``decode`` are small tools for one crystal at a time;
``pipeline`` writes (or checks) ``dvc.yaml``; ``compare`` and ``export`` read scored folders. Problems in the user's input print one line on stderr and exit
with status 2, before any work is done.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from plaidpp.errors import UserError

# command -> "module:function"; each function takes the stage's typed config and returns a summary dict.
HYDRA_COMMANDS: dict[str, str] = {
    "fetch": "plaidpp.data.mp20:fetch_stage",
    "prepare": "plaidpp.data.prepare:prepare",
    "evaluate": "plaidpp.evaluation.evaluate:evaluate",
    "sft": "plaidpp.training.sft:sft",
    "sample": "plaidpp.sampling.sample:sample",
    "pairs": "plaidpp.rlip.pairs:pairs_stage",
    "dpo": "plaidpp.training.dpo:dpo_stage",
    "rlip": "plaidpp.rlip.driver:rlip",
    "report": "plaidpp.reporting.report:report",
}


# Flag sugar for stages whose documented CLI uses flags: `--samples X` -> Hydra override `samples=X`.
FLAG_OVERRIDES: dict[str, tuple[str, ...]] = {"evaluate": ("samples", "out")}


def _flags_to_overrides(command: str, argv: list[str]) -> list[str]:
    flags = FLAG_OVERRIDES.get(command, ())
    out, i = [], 0
    while i < len(argv):
        arg = argv[i]
        name, _, value = arg[2:].partition("=") if arg.startswith("--") else ("", "", "")
        if name in flags:
            if not value:
                if i + 1 >= len(argv) or argv[i + 1].startswith("-"):
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
        stream = getattr(sys.stdin, "buffer", None)  # a text stream without bytes underneath (tests) reads as is
        if stream is None:
            return sys.stdin.read()
        data = stream.read()
    else:
        file = Path(path)
        if not file.is_file():
            raise UserError(f"no such file: {path}")
        data = file.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{path} is not a text file (not UTF-8)") from None


def _encode(args: argparse.Namespace) -> int:
    import warnings

    from pymatgen.core import Structure

    from plaidpp.representation import EncodeError, get

    text = _read_input(args.file)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            structure = Structure.from_str(text, fmt="cif")
    except Exception as exc:  # noqa: BLE001 - pymatgen raises many types for malformed CIF
        raise UserError(f"{args.file} is not a readable CIF ({type(exc).__name__})") from None
    try:
        print(get(args.repr).encode(structure))
    except EncodeError as exc:
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


def _config(args: argparse.Namespace) -> int:
    from plaidpp.config import settings_table

    print(settings_table(args.stage, _flags_to_overrides(args.stage, args.overrides)))
    return 0


def _pipeline(args: argparse.Namespace) -> int:
    from plaidpp.pipeline import check, write

    if args.check:
        check()
        print("dvc.yaml is up to date with params.yaml, conf/ and the code")
    else:
        print(write())
    return 0


def _compare(args: argparse.Namespace) -> int:
    from plaidpp.evaluation.compare import compare_main

    compare_main(args.a, args.b, args.json)
    return 0


def _export(args: argparse.Namespace) -> int:
    from plaidpp.evaluation.export import export

    export(args.scored, args.out)
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
    cfg = sub.add_parser("config", help="every setting of a stage: value, unit, allowed values, help")
    cfg.add_argument("stage", choices=list(HYDRA_COMMANDS))
    cfg.add_argument("overrides", nargs=argparse.REMAINDER, help="Hydra overrides (and --flags), as for the stage")
    cfg.set_defaults(run=_config)
    pipe = sub.add_parser("pipeline", help="write dvc.yaml from params.yaml, conf/ and the code (--check: verify)")
    pipe.add_argument("--check", action="store_true", help="exit 2 if the committed dvc.yaml is stale")
    pipe.set_defaults(run=_pipeline)
    cmp = sub.add_parser("compare", help="two evaluations: every rate with its interval, and A - B with a 95 %% "
                         "interval (paired when they share prompts and seeds)")
    cmp.add_argument("a", help="a scored folder (plaidpp evaluate --out)")
    cmp.add_argument("b", help="another scored folder")
    cmp.add_argument("--json", help="also write the comparison here")
    cmp.set_defaults(run=_compare)
    exp = sub.add_parser("export", help="the S.U.N. and S.S.U.N. crystals of a scored folder as relaxed CIFs + index.csv")
    exp.add_argument("scored", help="a scored folder (plaidpp evaluate --out)")
    exp.add_argument("--out", required=True, help="folder for the CIFs and index.csv")
    exp.set_defaults(run=_export)
    for name in HYDRA_COMMANDS:
        sub.add_parser(name, help=f"run the {name} stage (Hydra overrides follow; --help lists its settings)")
    args = parser.parse_args(argv)
    return args.run(args)


# Hydra's flags that take a value (`--cfg job`, `-p model`)
_HYDRA_VALUE_FLAGS = ("--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn",
                      "--config-dir", "-cd", "--experimental-rerun", "--info", "-i")


def _split_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """(Hydra's flags with their values: -m, --cfg job, ...; the overrides, Hydra's own included)."""
    flags, overrides, value_of_flag = [], [], False
    for arg in argv:
        if value_of_flag:
            flags.append(arg)
            value_of_flag = False
        elif arg.startswith("-"):
            flags.append(arg)
            value_of_flag = arg in _HYDRA_VALUE_FLAGS
        else:
            overrides.append(arg)
    return flags, overrides


def _stage_args(argv: list[str]) -> list[str]:
    """The stage's own overrides: no Hydra flags, no hydra.* / hydra/... settings."""
    return [a for a in _split_args(argv)[1] if not a.lstrip("+~").startswith("hydra")]


def _first_of_sweeps(overrides: list[str]) -> list[str]:
    """For checking a ``-m`` sweep before it starts: every sweep override reduced to its first value."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    out = []
    for text, override in zip(overrides, parsed, strict=True):
        if override.is_sweep_override():
            first = next(iter(override.sweep_string_iterator()))
            out.append(f"{override.get_key_element()}={first}")
        else:
            out.append(text)
    return out


def _hydra_main(command: str, argv: list[str]) -> int:
    import hydra
    from hydra.errors import HydraException

    from plaidpp.config import compose, compose_dict, conf_dir, to_settings

    stage_args = _stage_args(argv)
    try:
        checked = _first_of_sweeps(stage_args)
    except HydraException as exc:
        raise UserError(f"bad override: {str(exc).splitlines()[0]}") from None
    # Compose and validate once before Hydra runs: a bad setting is one line and status 2 before any work, and
    # the params.yaml knobs this composition needed are handed to Hydra as overrides so it composes the same.
    cfg, added = compose_dict(command, checked)
    to_settings(cfg, command)
    module_name, function_name = HYDRA_COMMANDS[command].split(":")

    @hydra.main(config_path=str(conf_dir()), config_name=command, version_base="1.3")
    def _run(_: object) -> None:
        from hydra.core.hydra_config import HydraConfig

        try:
            settings = compose(command, list(HydraConfig.get().overrides.task))
            stage = getattr(importlib.import_module(module_name), function_name)
            stage(settings)
        except UserError as exc:
            print(f"plaidpp {command}: error: {exc}", file=sys.stderr)
            sys.exit(2)

    flags, overrides = _split_args(argv)
    sys.argv = [f"plaidpp {command}", *flags, *overrides, *added]  # Hydra's parser wants the overrides together
    _run()
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in HYDRA_COMMANDS:
            command, rest = argv[0], _flags_to_overrides(argv[0], argv[1:])
            if "--help" in rest or "-h" in rest:
                from plaidpp.config import settings_table

                print(settings_table(command, [a for a in rest if a not in ("--help", "-h")]))
                return 0
            return _hydra_main(command, rest)
        return _argparse_main(argv)
    except UserError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return _fail("interrupted")
    except SystemExit as exc:  # a stage's error inside hydra.main (already printed), when called in-process
        return exc.code if isinstance(exc.code, int) else 1


if __name__ == "__main__":
    sys.exit(main())
