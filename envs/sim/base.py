"""The simulator interface every Vantage task talks to.

Tasks never import a simulator: they address *entities* (bodies or robots) by name, read and set their
poses, command planar velocities, read named cameras and sensors, reset with a seed and advance by one fixed
control period. :mod:`envs.sim.mujoco` and :mod:`envs.sim.webots` implement it; both must give the same
poses, camera shapes and velocity semantics for the same world, so a task runs unchanged on either.

Conventions (both backends):

* World frame: x forward/east, y left/north, z up; metres, radians, seconds.
* Quaternions are ``(w, x, y, z)``. Planar robots only use ``yaw`` (rotation about +z, 0 = facing +x).
* Images are ``uint8`` arrays of shape ``(height, width, 3)`` in RGB order; depth is ``float32`` metres.
* A planar velocity command is a body-frame forward speed (m/s) and a yaw rate (rad/s), held until changed
  and cleared by :meth:`SimBackend.reset`.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass, field
from typing import Self

import numpy as np

from envs.errors import SimulatorError, UnknownNameError


@dataclass(frozen=True)
class Pose:
    """Position and orientation of an entity in the world frame."""

    position: np.ndarray = field(default_factory=lambda: np.zeros(3))
    quaternion: np.ndarray = field(default_factory=lambda: np.array([1.0, 0.0, 0.0, 0.0]))

    def __post_init__(self) -> None:
        pos = np.asarray(self.position, dtype=np.float64).reshape(-1)
        quat = np.asarray(self.quaternion, dtype=np.float64).reshape(-1)
        if pos.shape != (3,) or quat.shape != (4,):
            raise ValueError(
                f"Pose needs a position of shape (3,) and a quaternion of shape (4,), "
                f"got {pos.shape} and {quat.shape}"
            )
        if not (np.all(np.isfinite(pos)) and np.all(np.isfinite(quat))):
            raise ValueError(f"Pose values must be finite, got position={pos}, quaternion={quat}")
        norm = np.linalg.norm(quat)
        if norm < 1e-9:
            raise ValueError(f"Pose quaternion must be non-zero, got {quat}")
        object.__setattr__(self, "position", pos)
        object.__setattr__(self, "quaternion", quat / norm)

    @classmethod
    def planar(cls, x: float, y: float, yaw: float, z: float = 0.0) -> Self:
        """A pose at ``(x, y, z)`` rotated by ``yaw`` about +z."""
        half = 0.5 * float(yaw)
        return cls(np.array([x, y, z], dtype=np.float64), np.array([np.cos(half), 0.0, 0.0, np.sin(half)]))

    @property
    def yaw(self) -> float:
        """Heading about +z in ``(-pi, pi]``."""
        w, x, y, z = self.quaternion
        return float(np.arctan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z)))

    @property
    def xy(self) -> np.ndarray:
        return self.position[:2].copy()

    @classmethod
    def look_at(cls, eye: np.ndarray, target: np.ndarray) -> Self:
        """A pose at ``eye`` whose +x axis points at ``target``, with no roll (+y stays horizontal)."""
        eye = np.asarray(eye, dtype=np.float64)
        d = np.asarray(target, dtype=np.float64) - eye
        d = d / max(float(np.linalg.norm(d)), 1e-9)
        yaw = math.atan2(d[1], d[0])
        pitch = -math.asin(float(np.clip(d[2], -1, 1)))
        w1, z1 = math.cos(yaw / 2), math.sin(yaw / 2)
        w2, y2 = math.cos(pitch / 2), math.sin(pitch / 2)
        # yaw about +z, then pitch about the new +y (a yaw-pitch quaternion product written out)
        return cls(eye, np.array([w1 * w2, -z1 * y2, w1 * y2, z1 * w2]))


class SimBackend(abc.ABC):
    """A loaded world that can be reset, stepped, queried and rendered.

    Args of concrete backends always include the world file and the control period in seconds.
    """

    #: Seconds of simulated time advanced by one :meth:`step`.
    control_period: float

    # -- lifecycle -------------------------------------------------------------------------------
    @abc.abstractmethod
    def reset(self, seed: int | None = None) -> None:
        """Return the world to its initial state; clear velocity commands and moved entities."""

    @abc.abstractmethod
    def step(self) -> None:
        """Advance the simulation by one control period, applying the held velocity commands."""

    def close(self) -> None:
        """Release renderers, processes and connections. Safe to call twice."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- introspection ---------------------------------------------------------------------------
    @property
    @abc.abstractmethod
    def entity_names(self) -> tuple[str, ...]:
        """Names of the entities that can be posed or commanded."""

    @property
    @abc.abstractmethod
    def camera_names(self) -> tuple[str, ...]:
        """Names of the cameras that can be rendered."""

    @property
    def sensor_names(self) -> tuple[str, ...]:
        """Names of the sensors that can be read."""
        return ()

    @property
    @abc.abstractmethod
    def time(self) -> float:
        """Simulated seconds since the last reset."""

    # -- entities --------------------------------------------------------------------------------
    @abc.abstractmethod
    def get_pose(self, entity: str) -> Pose:
        """World pose of ``entity``."""

    @abc.abstractmethod
    def set_pose(self, entity: str, pose: Pose) -> None:
        """Teleport ``entity`` to ``pose`` (velocities of a moved body are zeroed)."""

    @abc.abstractmethod
    def set_planar_velocity(self, entity: str, forward: float, yaw_rate: float) -> None:
        """Command a planar robot: forward speed along its heading (m/s) and yaw rate (rad/s).

        The command is held over following steps until replaced. Contacts (walls, obstacles, other
        robots) still stop the body: the command is a velocity target, not a teleport.
        """

    # -- cameras and sensors ---------------------------------------------------------------------
    @abc.abstractmethod
    def render(self, camera: str) -> np.ndarray:
        """RGB image from ``camera`` as ``uint8 (H, W, 3)``."""

    def render_depth(self, camera: str) -> np.ndarray:
        """Depth image from ``camera`` in metres as ``float32 (H, W)``."""
        raise SimulatorError(f"{type(self).__name__} does not render depth")

    def camera_shape(self, camera: str) -> tuple[int, int]:
        """``(height, width)`` of ``camera``'s images."""
        return tuple(self.render(camera).shape[:2])  # type: ignore[return-value]

    @abc.abstractmethod
    def camera_fovy(self, camera: str) -> float:
        """Vertical field of view of ``camera`` in radians."""

    def read_sensor(self, name: str) -> np.ndarray:
        """Current reading of sensor ``name`` as a float array."""
        raise UnknownNameError("sensor", name, self.sensor_names)

    def camera_frame(self, camera: str) -> tuple[np.ndarray, np.ndarray]:
        """World position ``(3,)`` and rotation ``(3, 3)`` of ``camera``.

        The rotation's columns are the camera's x (image right), y (image up) and z axes; the camera looks
        along -z (the OpenGL convention both simulators use).
        """
        raise SimulatorError(f"{type(self).__name__} does not report camera frames")

    def project(self, points: np.ndarray, camera: str) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates ``(N, 2)`` (x right, y down) and depths ``(N,)`` of world ``points`` in ``camera``.

        Points behind the camera have depth <= 0 and meaningless pixel coordinates.
        """
        pos, rot = self.camera_frame(camera)
        local = (np.asarray(points, dtype=np.float64).reshape(-1, 3) - pos) @ rot
        depth = -local[:, 2]
        height, width = self.camera_shape(camera)
        f = 0.5 * height / math.tan(0.5 * self.camera_fovy(camera))
        safe = np.where(depth > 1e-6, depth, 1e-6)
        uv = np.stack([width / 2 + f * local[:, 0] / safe, height / 2 - f * local[:, 1] / safe], -1)
        return uv, depth

    def ray_cast(self, start: np.ndarray, end: np.ndarray) -> tuple[float, str | None]:
        """The first body a ray from ``start`` towards ``end`` hits.

        Returns:
            ``(fraction, body)``: the hit point is ``start + fraction * (end - start)`` (``fraction`` may
            exceed 1 when the first hit lies beyond ``end``); ``(inf, None)`` when nothing is hit.
        """
        raise SimulatorError(f"{type(self).__name__} does not cast rays")

    def set_visible(self, entity: str, visible: bool) -> None:
        """Show or hide ``entity`` (with everything attached to it) in every camera; physics is unchanged."""
        raise SimulatorError(f"{type(self).__name__} cannot hide entities")

    def set_lighting(self, scale: float, ambient: float) -> None:
        """Scale every light's diffuse intensity by ``scale`` (relative to the world file) and set the
        ambient term of the camera headlight to ``ambient``; :meth:`reset` restores the file's lighting."""
        raise SimulatorError(f"{type(self).__name__} cannot change the lighting")
