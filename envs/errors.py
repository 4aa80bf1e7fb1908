"""Errors of environments and simulator backends, on the shared hierarchy of :mod:`common.errors`.

The shared classes are re-exported here, so environment code and its callers import every error they need
from one module.
"""

from __future__ import annotations

from common.errors import (
    CheckpointError,
    InvalidArgumentError,
    ManifestError,
    UnknownNameError,
    VantageError,
    check_choice,
    lookup,
)

__all__ = [
    "CheckpointError",
    "InvalidActionError",
    "InvalidArgumentError",
    "ManifestError",
    "SimulatorError",
    "SimulatorNotAvailableError",
    "UnknownNameError",
    "VantageError",
    "WorldFileError",
    "check_choice",
    "lookup",
]


class InvalidActionError(InvalidArgumentError):
    """An action is malformed, out of range or not finite."""


class SimulatorError(VantageError):
    """A simulator backend failed or is misconfigured."""


class SimulatorNotAvailableError(SimulatorError, ImportError):
    """A simulator's Python package or installation cannot be found."""


class WorldFileError(SimulatorError, ValueError):
    """A world file is missing or malformed."""
