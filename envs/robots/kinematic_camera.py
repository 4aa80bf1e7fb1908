"""A camera platform moved kinematically: a hovering drone, or a virtual camera, one discrete move per step.

The platform's state is ``(x, y, z, yaw)`` (metres, radians; yaw 0 faces +x). Moves are teleports: the task
checks a move against its world (collisions) before committing it with :meth:`KinematicCamera.place`, so a
refused move leaves the platform where it was, on every backend alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from envs.errors import InvalidArgumentError, UnknownNameError
from envs.sim.base import Pose, SimBackend

#: Every move a :class:`KinematicCamera` knows; ``stay`` (and any action that does not move) keeps the state.
MOVES = ("stay", "forward", "backward", "strafe_left", "strafe_right", "yaw_left", "yaw_right", "up", "down",
         "arc_left", "arc_right")


def wrap_angle(angle: float) -> float:
    """``angle`` wrapped into ``(-pi, pi]``."""
    return float(math.atan2(math.sin(angle), math.cos(angle)))


@dataclass(frozen=True)
class KinematicCamera:
    """Discrete moves of a camera-carrying ``entity``.

    Args:
        entity: the backend entity carrying the cameras (its pose is set with :meth:`place`).
        step_size: metres per ``forward``/``backward``/``strafe_*`` move.
        vertical_step: metres per ``up``/``down`` move.
        yaw_step: radians per ``yaw_*`` move.
        arc_step: radians per ``arc_*`` move around the pivot; the heading turns by the same angle, so a
            platform facing the pivot keeps facing it.
    """

    entity: str
    step_size: float = 0.1
    vertical_step: float = 0.05
    yaw_step: float = math.radians(3.0)
    arc_step: float = math.radians(15.0)

    def __post_init__(self) -> None:
        for name in ("step_size", "vertical_step", "yaw_step", "arc_step"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not (
                    math.isfinite(value) and value > 0):
                raise InvalidArgumentError(f"{name}={value!r} must be a positive finite number")

    def moved(self, state: np.ndarray, move: str, pivot: np.ndarray | None = None) -> np.ndarray:
        """The state after ``move`` from ``state``; ``arc_*`` moves turn about ``pivot`` ``(x, y)``."""
        x, y, z, yaw = state
        heading = np.array([math.cos(yaw), math.sin(yaw)])
        left = np.array([-heading[1], heading[0]])
        if move == "forward":
            return np.array([*(np.array([x, y]) + self.step_size * heading), z, yaw])
        if move == "backward":
            return np.array([*(np.array([x, y]) - self.step_size * heading), z, yaw])
        if move in ("strafe_left", "strafe_right"):
            sign = 1.0 if move == "strafe_left" else -1.0
            return np.array([*(np.array([x, y]) + sign * self.step_size * left), z, yaw])
        if move in ("yaw_left", "yaw_right"):
            return np.array([x, y, z, wrap_angle(yaw + (self.yaw_step if move == "yaw_left" else -self.yaw_step))])
        if move in ("up", "down"):
            return np.array([x, y, z + (self.vertical_step if move == "up" else -self.vertical_step), yaw])
        if move in ("arc_left", "arc_right"):
            if pivot is None:
                raise InvalidArgumentError(f"move {move!r} needs a pivot (x, y) to arc around")
            # Seen from above, the platform's left around a pivot it faces is clockwise about the pivot.
            delta = -self.arc_step if move == "arc_left" else self.arc_step
            px, py = pivot[0], pivot[1]
            c, s = math.cos(delta), math.sin(delta)
            rx, ry = x - px, y - py
            return np.array([px + c * rx - s * ry, py + s * rx + c * ry, z, wrap_angle(yaw + delta)])
        if move == "stay":
            return np.asarray(state, dtype=np.float64).copy()
        raise UnknownNameError("camera move", move, MOVES)

    def place(self, sim: SimBackend, state: np.ndarray) -> None:
        """Pose :attr:`entity` at ``state`` in ``sim``."""
        x, y, z, yaw = state
        sim.set_pose(self.entity, Pose.planar(x, y, yaw, z=z))
