"""Crystal text representations: a registry of encoders/decoders sharing one error type.

>>> from plaidpp.representation import get
>>> text = get("wyckoff").encode(structure)
>>> structure = get("wyckoff").decode(text)   # or raises DecodeError(reason, detail)
"""

from __future__ import annotations

from plaidpp.representation.base import DECODE_REASONS, DecodeError, EncodeError, Representation
from plaidpp.representation.coords import CoordsRepresentation
from plaidpp.representation.wyckoff import WyckoffRepresentation

_REGISTRY: dict[str, type] = {"wyckoff": WyckoffRepresentation, "coords": CoordsRepresentation}


def names() -> list[str]:
    return sorted(_REGISTRY)


def get(name: str, **options) -> Representation:
    """The representation called ``name`` ("wyckoff" or "coords")."""
    try:
        return _REGISTRY[name](**options)
    except KeyError:
        raise KeyError(f"unknown representation {name!r}; choose from {names()}") from None


__all__ = ["DECODE_REASONS", "DecodeError", "EncodeError", "Representation", "get", "names"]
