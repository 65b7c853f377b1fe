"""How a stage gets its settings: Hydra composes ``conf/<stage>.yaml`` over the typed schemas, the pipeline's
knobs from ``params.yaml`` fill what nothing else set, and the result is checked and handed over as dataclasses.

The CLI, DVC (whose ``cmd`` is the CLI) and tests all take this path. Every problem - a mistyped key in a file
under ``conf/``, in ``params.yaml`` or on the command line, a value of the wrong type or out of range - becomes
one ``UserError`` line naming the key (and the nearest valid key), before any stage does work.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from plaidpp.errors import UserError
from plaidpp.settings import STAGE_CONFIGS, PipelineParams, leaf_fields, register, validate

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def conf_dir() -> Path:
    """``$PLAIDPP_CONF`` if set, else ``conf/`` beside ``src/`` (the project is installed editable)."""
    path = Path(os.environ.get("PLAIDPP_CONF", PROJECT_ROOT / "conf"))
    if not (path / "prepare.yaml").exists():
        raise UserError(f"no Hydra configs in {path}; set PLAIDPP_CONF to the project's conf/ folder")
    return path


def params_file() -> Path:
    """``$PLAIDPP_PARAMS`` if set, else the project's ``params.yaml``."""
    return Path(os.environ.get("PLAIDPP_PARAMS", PROJECT_ROOT / "params.yaml"))


# ------------------------------------------------------------------------------------------- params.yaml
@dataclass(frozen=True)
class Knob:
    """One pipeline knob feeding one stage setting."""

    param: str  # dotted key in params.yaml, e.g. "sample.temperature"
    target: str  # dotted key in the stage config, or a Hydra group name
    group: bool
    value: Any


@lru_cache(maxsize=8)
def _load_params(path: str, mtime_ns: int) -> PipelineParams:  # noqa: ARG001 - mtime keys the cache
    import yaml

    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not YAML ({str(exc).splitlines()[0]})") from None
    schema = OmegaConf.structured(PipelineParams)
    try:
        merged = OmegaConf.merge(schema, raw)
        params = OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        raise UserError(f"{path}: {_describe_error(exc, PipelineParams)}") from None
    try:
        return validate(params)
    except UserError as exc:
        raise UserError(f"{path}: {exc}") from None


def load_params() -> PipelineParams:
    path = params_file()
    if not path.is_file():
        raise UserError(f"no pipeline parameters at {path} (params.yaml in the project root, or $PLAIDPP_PARAMS)")
    return _load_params(str(path), path.stat().st_mtime_ns)


def knobs(stage: str, params: PipelineParams | None = None) -> list[Knob]:
    """The params.yaml knobs that feed ``stage``, with their values."""
    params = params if params is not None else load_params()
    out = []
    for key, f, _ in leaf_fields(PipelineParams):
        feed = f.metadata["feeds"].get(stage)
        if feed is not None:
            value = params
            for part in key.split("."):
                value = getattr(value, part)
            out.append(Knob(key, feed[0], feed[1], value))
    return out


# ------------------------------------------------------------------------------------------- composing
@contextmanager
def _hydra() -> Iterator[Any]:
    """Hydra's compose API, initialised on conf/ unless a caller (``hydra.main``, a test) already did."""
    import hydra
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register()
    if GlobalHydra.instance().is_initialized():
        yield hydra.compose
        return
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3", job_name="plaidpp"):
        yield hydra.compose


def _missing(cfg: DictConfig, key: str) -> bool:
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent, throw_on_missing=False) if parent else cfg
    return node is not None and OmegaConf.is_missing(node, leaf)


def compose_dict(stage: str, overrides: list[str] | tuple[str, ...] = (), *, use_params: bool = True,
                 return_hydra_config: bool = False) -> tuple[DictConfig, list[str]]:
    """The stage's composed config and the overrides the params.yaml knobs added (what ``hydra.main`` must be
    given to compose the same). ``use_params=False`` leaves the knobs unset (tests of where values live);
    ``return_hydra_config`` keeps Hydra's own node (``hydra.runtime.choices``: which preset of each group)."""
    from hydra.errors import HydraException

    if stage not in STAGE_CONFIGS:
        raise UserError(f"unknown stage {stage!r}; stages: {', '.join(STAGE_CONFIGS)}")
    feeds = knobs(stage) if use_params else []
    groups = {k.target: k.value for k in feeds if k.group}
    added: list[str] = []
    try:
        with _hydra() as hydra_compose:
            while True:
                try:
                    cfg = hydra_compose(config_name=stage, overrides=[*overrides, *added],
                                        return_hydra_config=return_hydra_config)
                    break
                except HydraException as exc:
                    wanted = re.match(r"You must specify '([^']+)'", str(exc))
                    group = wanted.group(1) if wanted else None
                    if group in groups and not any(a.startswith(f"{group}=") for a in added):
                        added.append(f"{group}={groups[group]}")  # the knob fills a choice nobody made
                        continue
                    raise
    except (HydraException, OmegaConfBaseException) as exc:
        raise UserError(_describe_error(exc, STAGE_CONFIGS[stage])) from None
    for knob in feeds:
        if not knob.group and _missing(cfg, knob.target):
            OmegaConf.update(cfg, knob.target, knob.value, merge=False)
            added.append(f"{knob.target}={_override_value(knob.value)}")
    return cfg, added


def _override_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_override_value(v) for v in value) + "]"
    return str(value)


def compose(stage: str, overrides: list[str] | tuple[str, ...] = (), *, use_params: bool = True) -> Any:
    """The typed, validated config ``plaidpp <stage> <overrides>`` runs with (a ``settings.stages`` dataclass)."""
    cfg, _ = compose_dict(stage, overrides, use_params=use_params)
    return to_settings(cfg, stage)


def to_settings(cfg: DictConfig, stage: str) -> Any:
    try:
        obj = OmegaConf.to_object(cfg)
    except MissingMandatoryValue as exc:
        key = _full_key(exc) or str(exc)
        raise UserError(f"{key} has no value: set it on the command line ({key}=...); "
                        f"`plaidpp config {stage}` lists every setting") from None
    except OmegaConfBaseException as exc:
        raise UserError(_describe_error(exc, STAGE_CONFIGS[stage])) from None
    return validate(obj)


# ------------------------------------------------------------------------------------------- errors
def _full_key(exc: BaseException) -> str | None:
    key = getattr(exc, "full_key", None)
    if key:
        return str(key)
    found = re.search(r"full_key: (\S+)", str(exc))
    return found.group(1) if found else None


def _suggest(key: str, schema: type) -> str:
    """The nearest valid key: among the siblings of ``key`` first, then anywhere in the stage's settings."""
    known = [k for k, _, _ in leaf_fields(schema)]
    parent, _, leaf = key.rpartition(".")
    siblings = {k.rpartition(".")[2]: k for k in known if k.rpartition(".")[0] == parent}
    close = [siblings[c] for c in difflib.get_close_matches(leaf, list(siblings), n=1, cutoff=0.6)]
    close = close or difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def _describe_error(exc: BaseException, schema: type) -> str:
    """One line for a Hydra / OmegaConf composition error, naming the key and the nearest valid one."""
    text = str(exc)
    cause = exc.__cause__ or exc.__context__
    source = re.match(r"In '([^']+)'", text)
    where = f"conf/{source.group(1)}.yaml: " if source and "/" in source.group(1) else ""
    if found := re.search(r"Key '([^']+)' not in '", text):
        key = _full_key(exc) or found.group(1)
        return f"{where}unknown setting {key}{_suggest(key, schema)}"
    if found := re.match(r"Could not override '([^']+)'", text):
        key = found.group(1)
        return f"unknown setting {key}{_suggest(key, schema)}"
    if found := re.search(r"Could not find '([^']+)/([^']+)'", text):
        options = re.findall(r"^\t(\S+)$", text, flags=re.M)
        return f"{found.group(1)}={found.group(2)}: no such preset; choose from {', '.join(options) or '(none)'}"
    if found := re.match(r"You must specify '([^']+)'", text):
        options = [o for o in re.findall(r"^\t(\S+)$", text, flags=re.M)]
        return f"choose {found.group(1)}=<{'|'.join(options)}>"
    if found := re.match(r"Error merging override (\S+)", text):
        detail = str(cause).splitlines()[0] if cause else "cannot be merged"
        return f"{found.group(1)}: {_value_problem(detail)}"
    first = next((line for line in text.splitlines() if line.strip()), type(exc).__name__)
    if type(exc).__name__ == "OverrideParseException" or "LexerNoViableAlt" in first or "mismatched input" in first:
        return f"bad override: {first.split(': ', 1)[-1]!r} is not key=value (quote values with spaces or brackets)"
    key = _full_key(exc)
    if key and ("could not be converted" in text or "Value '" in text):
        return f"{where}{key}: {_value_problem(first)}"
    return f"{where}bad setting: {first}"


def _value_problem(detail: str) -> str:
    found = re.match(r"Value '(.*)' of type '\w+' could not be converted to (\w+)", detail)
    if found:
        return f"{found.group(1)!r} is not a{'n' if found.group(2)[0] in 'AEIOU' else ''} {found.group(2).lower()}"
    return detail


# ------------------------------------------------------------------------------------------- help
def settings_table(stage: str, overrides: list[str] | tuple[str, ...] = ()) -> str:
    """Every setting of a stage with its current value, unit, allowed values and help (``plaidpp config``)."""
    from plaidpp.settings import describe

    raw, added = compose_dict(stage, overrides)
    cfg = to_settings(raw, stage)
    from_params = {o.split("=", 1)[0] for o in added}  # what a params.yaml knob filled (the value or the preset)
    lines = [f"# plaidpp {stage}: every setting, its value now, and what it means "
             f"(* = from params.yaml, the value or its preset). Override any with key=value."]
    for item in describe(cfg):
        value = OmegaConf.to_yaml({"v": item.value}).strip()[3:].replace("\n", " ")
        extra = [x for x in (item.unit, item.bounds,
                             f"one of {'|'.join(map(str, item.choices))}" if item.choices and len(item.choices) < 15
                             else None) if x]
        mark = "*" if item.key in from_params or item.key.split(".")[0] in from_params else " "
        lines.append(f"{mark}{item.key} = {value}" + (f"  [{'; '.join(extra)}]" if extra else ""))
        if item.help:
            lines.append(f"      {item.help}")
    return "\n".join(lines)


__all__ = ["PROJECT_ROOT", "compose", "compose_dict", "conf_dir", "knobs", "load_params", "params_file",
           "settings_table", "to_settings"]

