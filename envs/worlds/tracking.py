"""The tracking arena: two e-puck-sized robots in a 5 m x 5 m walled room (``worlds/*/tracking.*``).

The world files are written by hand, one per simulator, with the same names: entities ``tracker`` and
``target`` (planar robots), ``obstacle_0`` .. ``obstacle_3`` (static; parked under the floor until a task
places them), cameras ``tracker_camera`` (on the tracker's front, looking along its heading) and
``chase_camera`` (behind and above the tracker).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from envs.sim import SimBackend, make_backend

WORLD_NAME = "tracking"
ARENA_HALF_SIZE = 2.5  #: metres, inner half-width of the square arena
TRACKER, TARGET = "tracker", "target"
OBSTACLES = ("obstacle_0", "obstacle_1", "obstacle_2", "obstacle_3")
TRACKER_CAMERA, CHASE_CAMERA = "tracker_camera", "chase_camera"


def open_tracking_world(backend: str, world: str | Path = WORLD_NAME, **kwargs: Any) -> SimBackend:
    """Load the tracking arena (or another world file with the same names) on ``backend``."""
    return make_backend(backend, world, **kwargs)
