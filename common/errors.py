"""The error hierarchy shared by every Vantage package.

One base class, narrow subclasses; argument errors also subclass :class:`ValueError` so callers that only
know the standard library still catch them. Every message names the bad value and what is allowed.
Simulator and environment errors extend this in :mod:`envs.errors`, perception errors in
:mod:`perception.errors`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TypeVar

T = TypeVar("T")

__all__ = [
    "CheckpointError",
    "InvalidArgumentError",
    "ManifestError",
    "OutputExistsError",
    "UnknownNameError",
    "VantageError",
    "check_choice",
    "lookup",
]


class VantageError(Exception):
    """Base class of all Vantage errors."""


class InvalidArgumentError(VantageError, ValueError):
    """A constructor or function argument is outside the allowed set or range."""


class UnknownNameError(InvalidArgumentError):
    """A name (reward scheme, backend, entity, camera, motion pattern, ...) is not one of the known names."""

    def __init__(self, kind: str, name: object, known: Iterable[str]) -> None:
        self.kind = kind
        self.name = name
        self.known = tuple(sorted(known))
        super().__init__(f"unknown {kind} {name!r}; known: {', '.join(self.known) or '(none)'}")


class CheckpointError(VantageError):
    """A checkpoint or saved model is missing, corrupt or does not match what is expected."""


class ManifestError(CheckpointError, ValueError):
    """A saved model's JSON manifest is missing, malformed or does not match the weights."""


class OutputExistsError(VantageError, FileExistsError):
    """Writing would replace an existing file (pass ``overwrite``) or mix with another kind of artefact."""


def check_choice(kind: str, value: str, allowed: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``allowed``; raise :class:`UnknownNameError` otherwise."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise UnknownNameError(kind, value, allowed)
    return value


def lookup(kind: str, table: Mapping[str, T], name: str) -> T:
    """``table[name]``, or :class:`UnknownNameError` listing ``table``'s names."""
    try:
        return table[name]
    except KeyError:
        raise UnknownNameError(kind, name, table) from None
