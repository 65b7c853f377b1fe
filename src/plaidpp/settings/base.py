"""The machinery behind every setting: one ``setting()`` per field, one validator, one help printer.

A setting is a dataclass field whose metadata carries its documentation and its constraints, the way TRL's
``DPOConfig`` documents its fields, so the same text feeds ``plaidpp config <stage>``, the error messages and
the docs::

    steps: int = setting(150, help="maximum FIRE steps", ge=0)
    cell_filter: str = setting("frechet", help="ASE cell filter", choices=("frechet", "exp"))

Hydra/OmegaConf already reject an unknown key or a value of the wrong type while composing (the dataclasses
are registered as structured configs). What a type cannot say - a range, a set of choices, a relation between
two fields - is checked once, by ``validate``, on the composed object, before any stage does work. Nothing is
coerced: a value outside its range is an error naming the key, never clipped or reinterpreted.
"""

from __future__ import annotations

import dataclasses
import math
import operator
import typing
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

from omegaconf import MISSING

from plaidpp.errors import UserError

# How a field takes part in the DVC graph (plaidpp.pipeline): a path the stage reads, writes, or a metrics file
# it writes (git-tracked, `dvc metrics show`).
READS, WRITES, METRICS = "in", "out", "metrics"


class SettingError(UserError):
    """A setting with a value it may not have. ``key`` is the dotted path, filled in as the error bubbles up."""

    def __init__(self, key: str, message: str) -> None:
        self.key, self.message = key, message
        super().__init__(f"{key}: {message}" if key else message)

    def under(self, prefix: str) -> SettingError:
        return SettingError(f"{prefix}{self.key}" if self.key else prefix.rstrip("."), self.message)


def setting(
    default: Any = MISSING,
    *,
    help: str,  # noqa: A002 - the name every reader of a config expects
    unit: str | None = None,
    choices: Sequence[Any] | Callable[[], Sequence[Any]] | None = None,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    factory: Callable[[], Any] | None = None,
    path: str | None = None,
    feeds: dict[str, tuple[str, bool]] | None = None,
    cache_key: bool = True,
) -> Any:
    """A documented dataclass field.

    Args:
        default: the value (``MISSING`` = no default: a preset under ``conf/`` or ``params.yaml`` supplies it).
        help: one sentence for ``plaidpp config``; say why a value was chosen when it was measured.
        unit: physical unit (``"eV/atom"``, ``"Å"``, ``"s"``), shown beside the value.
        choices: allowed values (for a list: allowed items); a callable is asked lazily (library enums).
        ge, gt, le, lt: numeric bounds (for a list: on every item); None values are not checked.
        factory: for mutable defaults (lists, dicts, nested settings).
        path: ``READS`` / ``WRITES`` / ``METRICS`` when the value is a file or folder the stage reads or writes.
        feeds: for a pipeline knob (``params.yaml``): stage -> (config key, is a Hydra group choice).
        cache_key: False for a relaxation setting that cannot change a cached relaxation result (say why in the
            help); every other field of the MLIP, relaxation and symmetry settings is part of the cache key.
    """
    metadata = {"help": help, "unit": unit, "choices": choices, "ge": ge, "gt": gt, "le": le, "lt": lt,
                "path": path, "feeds": feeds or {}, "cache_key": cache_key}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def nested(cls: type, help: str) -> Any:  # noqa: A002
    """A field holding another settings dataclass, built from its own defaults."""
    return setting(help=help, factory=cls)


def choices_of(meta: dict[str, Any]) -> Sequence[Any] | None:
    choices = meta.get("choices")
    return choices() if callable(choices) else choices


def _check_value(key: str, value: Any, meta: dict[str, Any]) -> None:
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    allowed = choices_of(meta)
    for item in items:
        if item is None:
            continue
        if allowed is not None and item not in allowed:
            raise SettingError(key, f"{item!r} is not one of {', '.join(map(str, allowed))}")
        if isinstance(item, bool) or not isinstance(item, (int, float)):
            continue
        if isinstance(item, float) and not math.isfinite(item):
            raise SettingError(key, f"{item} is not a finite number")
        for name, word, holds in (("ge", ">=", operator.ge), ("gt", ">", operator.gt), ("le", "<=", operator.le),
                                  ("lt", "<", operator.lt)):
            bound = meta.get(name)
            if bound is not None and not holds(item, bound):
                raise SettingError(key, f"{item} must be {word} {bound}")


def validate(obj: Any, prefix: str = "") -> Any:
    """Check every field of a settings tree against its metadata, then each object's own ``check()``.

    Returns ``obj``; raises ``SettingError`` naming the full dotted key of the first bad value.
    """
    for f in fields(obj):
        value = getattr(obj, f.name)
        key = f"{prefix}{f.name}"
        if is_dataclass(value):
            validate(value, f"{key}.")
        elif f.metadata:
            _check_value(key, value, dict(f.metadata))
    check = getattr(obj, "check", None)
    if check is not None:
        try:
            check()
        except SettingError as exc:
            raise exc.under(prefix) from None
    return obj


@dataclass(frozen=True)
class Described:
    key: str
    value: Any
    type: str
    help: str
    unit: str | None
    choices: Sequence[Any] | None
    bounds: str


def _type_name(f: dataclasses.Field) -> str:
    text = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    return text.replace("typing.", "")


def describe(obj: Any, prefix: str = "") -> Iterator[Described]:
    """Every leaf setting of a settings tree with its current value and documentation (for ``plaidpp config``)."""
    for f in fields(obj):
        value = getattr(obj, f.name)
        key = f"{prefix}{f.name}"
        if is_dataclass(value):
            yield from describe(value, f"{key}.")
            continue
        meta = dict(f.metadata)
        bounds = ", ".join(f"{word} {meta[b]}" for b, word in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))
                          if meta.get(b) is not None)
        yield Described(key, value, _type_name(f), meta.get("help", ""), meta.get("unit"), choices_of(meta), bounds)


def leaf_fields(cls: type, prefix: str = "") -> Iterator[tuple[str, dataclasses.Field, Any]]:
    """(dotted key, field, resolved type) of every leaf of a settings class, nested settings followed."""
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        key = f"{prefix}{f.name}"
        kind = hints[f.name]
        inner = [a for a in typing.get_args(kind) if a is not type(None)] or [kind]  # X | None -> X
        if len(inner) == 1 and isinstance(inner[0], type) and is_dataclass(inner[0]):
            yield from leaf_fields(inner[0], f"{key}.")
        else:
            yield key, f, kind
