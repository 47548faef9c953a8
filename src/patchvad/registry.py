"""The two operations every registry (methods, selection rules, metrics) shares.

Each registry is a plain ``dict`` from name to object, so the CLI, validation and
tables read it directly; these helpers make lookups and registrations behave the same
everywhere: an unknown name is a :class:`~patchvad.errors.ConfigError` naming the
choices, and a name is never silently taken over by another object.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from patchvad.errors import ConfigError

T = TypeVar("T")


def lookup(registry: Mapping[str, T], name: str, unknown: str) -> T:
    """``registry[name]``, or a ConfigError with the message ``unknown``."""
    try:
        return registry[name]
    except KeyError:
        raise ConfigError(unknown) from None


def add(registry: dict[str, T], name: str, item: T, kind: str, key: str = "name") -> T:
    """Register ``item`` under ``name``; refuses an empty name and another object's name (ValueError)."""
    if not name:
        raise ValueError(f"a {kind} needs a {key}")
    if name in registry and registry[name] is not item:
        raise ValueError(f"{kind} '{name}' is registered already")
    registry[name] = item
    return item


__all__ = ["add", "lookup"]
