"""Simulator backends behind one interface (:class:`envs.sim.base.SimBackend`).

``make_backend("mujoco", world)`` and ``make_backend("webots", world)`` load the same task world on either
simulator; :func:`world_path` finds a task's world file for a backend. Backends are imported lazily so that
using one never requires the other to be installed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from envs.errors import UnknownNameError, WorldFileError
from envs.sim.base import Pose, SimBackend

__all__ = ["BACKENDS", "Pose", "SimBackend", "make_backend", "world_path", "worlds_dir"]

#: Backend name -> world file extension.
BACKENDS: dict[str, str] = {"mujoco": ".xml", "webots": ".wbt"}


def worlds_dir() -> Path:
    """The folder holding ``mujoco/`` and ``webots/`` world files (``VANTAGE_WORLDS`` overrides)."""
    override = os.environ.get("VANTAGE_WORLDS")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2] / "worlds"


def world_path(name: str, backend: str) -> Path:
    """Path of world ``name`` (e.g. ``"tracking"``) for ``backend``; raises if it does not exist."""
    if backend not in BACKENDS:
        raise UnknownNameError("backend", backend, BACKENDS)
    path = worlds_dir() / backend / f"{name}{BACKENDS[backend]}"
    if not path.is_file():
        known = sorted(p.stem for p in (worlds_dir() / backend).glob(f"*{BACKENDS[backend]}"))
        raise WorldFileError(f"no {backend} world named {name!r} at {path}; worlds there: {known}")
    return path


def make_backend(backend: str, world: str | Path, **kwargs: Any) -> SimBackend:
    """Load ``world`` (a path, or a world name looked up with :func:`world_path`) on ``backend``."""
    if backend not in BACKENDS:
        raise UnknownNameError("backend", backend, BACKENDS)
    path = Path(world)
    if path.suffix != BACKENDS[backend]:
        path = world_path(str(world), backend)
    if backend == "mujoco":
        from envs.sim.mujoco import MujocoBackend

        return MujocoBackend(path, **kwargs)
    from envs.sim.webots import WebotsBackend

    return WebotsBackend(path, **kwargs)
