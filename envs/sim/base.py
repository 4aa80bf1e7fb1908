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

Articulated bodies (arms, grippers) are described by four more kinds of names:

* **Joints** are 1-DoF hinge (radians) and slide (metres) joints. Free and planar base joints are not
  joints here: they stay the machinery of *entities*. :meth:`SimBackend.set_joint_positions` teleports
  (for resets) and zeroes the joints' velocities; limits are ``(-inf, inf)`` for an unlimited joint.
* **Actuators** take one control each. What it means is the actuator's: the target angle of a position
  servo, the torque of a motor. Controls are held over following steps until replaced and cleared by
  :meth:`SimBackend.reset`; a control outside the actuator's range, or not finite, raises
  :class:`~envs.errors.InvalidArgumentError` (a control is never clipped silently).
* **Force/torque sensors** read ``[fx, fy, fz, tx, ty, tz]`` (N, N m) in the sensor's own frame: the wrench
  the parent side exerts on the child side, torque about the sensor origin. With ``substeps=True`` they
  give the readings after every physics substep of the last :meth:`SimBackend.step`.
* **Sites** are frames fixed to a body (an end effector, a sensor mount). :meth:`SimBackend.site_jacobian`
  maps joint velocities to the site's world-frame velocity: rows are linear x, y, z then angular x, y, z.

Every name-taking method raises :class:`~envs.errors.UnknownNameError` listing the known names. A backend
without one of these features raises :class:`~envs.errors.SimulatorError` naming itself.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Self

import numpy as np

from envs.errors import InvalidArgumentError, SimulatorError, UnknownNameError


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

    @classmethod
    def from_matrix(cls, position: np.ndarray, rotation: np.ndarray) -> Self:
        """A pose from a position and a rotation matrix whose columns are the frame's axes in the world.

        Args:
            position: ``(3,)`` world position.
            rotation: ``(3, 3)`` or row-major ``(9,)`` rotation matrix (Webots' ``Node.getOrientation``).
        """
        r = np.asarray(rotation, dtype=np.float64).reshape(3, 3)
        # Shepperd's method: take the square root of the largest of the four candidates for stability.
        trace = r[0, 0] + r[1, 1] + r[2, 2]
        if trace > 0:
            s = 2.0 * math.sqrt(trace + 1.0)
            q = [0.25 * s, (r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s]
        elif r[0, 0] > r[1, 1] and r[0, 0] > r[2, 2]:
            s = 2.0 * math.sqrt(1.0 + r[0, 0] - r[1, 1] - r[2, 2])
            q = [(r[2, 1] - r[1, 2]) / s, 0.25 * s, (r[0, 1] + r[1, 0]) / s, (r[0, 2] + r[2, 0]) / s]
        elif r[1, 1] > r[2, 2]:
            s = 2.0 * math.sqrt(1.0 + r[1, 1] - r[0, 0] - r[2, 2])
            q = [(r[0, 2] - r[2, 0]) / s, (r[0, 1] + r[1, 0]) / s, 0.25 * s, (r[1, 2] + r[2, 1]) / s]
        else:
            s = 2.0 * math.sqrt(1.0 + r[2, 2] - r[0, 0] - r[1, 1])
            q = [(r[1, 0] - r[0, 1]) / s, (r[0, 2] + r[2, 0]) / s, (r[1, 2] + r[2, 1]) / s, 0.25 * s]
        return cls(np.asarray(position, dtype=np.float64), np.array(q))

    @property
    def rotation_matrix(self) -> np.ndarray:
        """``(3, 3)`` rotation whose columns are the frame's x, y and z axes in the world."""
        w, x, y, z = self.quaternion
        return np.array([
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ])


# --------------------------------------------------------------------------------------------------
# Argument checks shared by the backends (one wording for both simulators)
# --------------------------------------------------------------------------------------------------


def check_names(kind: str, names: Sequence[str], known: Iterable[str]) -> tuple[str, ...]:
    """``names`` as a tuple, each one of ``known``.

    Raises:
        InvalidArgumentError: ``names`` is a single string (pass a one-element list) or empty.
        UnknownNameError: a name is not known; the message lists the known ones.
    """
    if isinstance(names, str):
        raise InvalidArgumentError(f"{kind} names must be a sequence of names, got the string {names!r}")
    names = tuple(names)
    if not names:
        raise InvalidArgumentError(f"need at least one {kind} name, got an empty sequence")
    known = set(known)
    for name in names:
        if name not in known:
            raise UnknownNameError(kind, name, known)
    return names


def check_joint_values(
    joints: Sequence[str], values: Sequence[float] | np.ndarray, low: np.ndarray, high: np.ndarray
) -> np.ndarray:
    """``values`` as float64 ``(len(joints),)``, finite and within ``[low, high]`` joint by joint.

    Raises:
        InvalidArgumentError: wrong shape, a value that is not finite or outside its joint's limits.
    """
    array = np.asarray(values, dtype=np.float64)
    if array.shape != (len(joints),):
        raise InvalidArgumentError(
            f"need {len(joints)} joint values of shape ({len(joints)},) for {list(joints)}, got shape {array.shape}"
        )
    for name, value, lo, hi in zip(joints, array, low, high):
        if not math.isfinite(value):
            raise InvalidArgumentError(f"joint {name!r} value {float(value)!r} is not finite")
        if not lo - 1e-9 <= value <= hi + 1e-9:
            raise InvalidArgumentError(f"joint {name!r} value {float(value)!r} is outside its limits [{lo}, {hi}]")
    return array


def check_controls(controls: Mapping[str, float], ranges: Mapping[str, tuple[float, float]]) -> dict[str, float]:
    """``controls`` as ``{actuator: float}``, each known, finite and within its actuator's range.

    Everything is checked before anything is applied, so a rejected call changes nothing.

    Raises:
        UnknownNameError: an actuator is not one of ``ranges``.
        InvalidArgumentError: a control is not a finite number inside ``[low, high]`` of its actuator.
    """
    if not isinstance(controls, Mapping):
        raise InvalidArgumentError(f"controls must be a mapping {{actuator: value}}, got {type(controls).__name__}")
    checked = {}
    for name, value in controls.items():
        if name not in ranges:
            raise UnknownNameError("actuator", name, ranges)
        low, high = ranges[name]
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise InvalidArgumentError(f"control for actuator {name!r} must be a number, got {value!r}") from None
        if not math.isfinite(number):
            raise InvalidArgumentError(f"control {number!r} for actuator {name!r} is not finite")
        if not low <= number <= high:
            raise InvalidArgumentError(
                f"control {number!r} for actuator {name!r} is outside its control range [{low}, {high}]"
            )
        checked[name] = number
    return checked


def hinge_jacobian_column(axis: np.ndarray, anchor: np.ndarray, point: np.ndarray) -> np.ndarray:
    """Velocity of ``point`` (linear, then angular) per unit rate of a hinge about ``axis`` through ``anchor``.

    All vectors are world-frame; ``axis`` is normalised here. A slide joint's column is ``[axis, 0]``.
    """
    axis = np.asarray(axis, dtype=np.float64)
    axis = axis / np.linalg.norm(axis)
    return np.concatenate([np.cross(axis, np.asarray(point, dtype=np.float64) - anchor), axis])


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

    def get_frame(self, entity: str) -> tuple[np.ndarray, np.ndarray]:
        """World position ``(3,)`` and rotation matrix ``(3, 3)`` (columns: the entity's axes) of ``entity``.

        The simulator's own matrix, where it keeps one: labelling code that projects points fixed to a body
        gets the same numbers as the renderer, to the last bit.
        """
        pose = self.get_pose(entity)
        w, x, y, z = pose.quaternion
        rotation = np.array([
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ])
        return pose.position, rotation

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
        """Depth image from ``camera`` in metres as ``float32 (H, W)``, pixel for pixel with :meth:`render`.

        A pixel's depth is the distance along the optical axis to the surface it sees (the depth
        :meth:`project` gives for points), not the length of the ray.
        """
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

    # -- articulated bodies: joints, actuators, force/torque sensors, sites ------------------------------
    def _unsupported(self, feature: str) -> SimulatorError:
        return SimulatorError(f"{type(self).__name__} for {getattr(self, 'world', 'this world')} has no {feature}")

    @property
    def joint_names(self) -> tuple[str, ...]:
        """Names of the hinge and slide joints (free and planar base joints belong to entities)."""
        return ()

    def get_joint_positions(self, joints: Sequence[str]) -> np.ndarray:
        """Positions of ``joints`` (radians or metres) as float64 ``(len(joints),)``, in the order given."""
        raise self._unsupported("joints")

    def get_joint_velocities(self, joints: Sequence[str]) -> np.ndarray:
        """Velocities of ``joints`` (rad/s or m/s) as float64 ``(len(joints),)``, in the order given."""
        raise self._unsupported("joints")

    def set_joint_positions(self, joints: Sequence[str], values: Sequence[float] | np.ndarray) -> None:
        """Teleport ``joints`` to ``values`` and zero their velocities (for resets; no physics is simulated).

        Held actuator controls are not changed: command position servos to the same values to hold the pose.

        Raises:
            InvalidArgumentError: wrong number of values, a value not finite or outside the joint limits.
        """
        raise self._unsupported("joints")

    def joint_limits(self, joints: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(low, high)`` float64 arrays of the joints' limits; ``-inf``/``inf`` where a joint is unlimited."""
        raise self._unsupported("joints")

    @property
    def actuator_names(self) -> tuple[str, ...]:
        """Names of the actuators :meth:`set_actuator_controls` accepts."""
        return ()

    def set_actuator_controls(self, controls: Mapping[str, float]) -> None:
        """Set the controls of some actuators; the others keep theirs.

        Controls are held over following steps until replaced and cleared by :meth:`reset`. What a control
        means is the actuator's: a target position for a position servo, a torque for a motor.

        Raises:
            UnknownNameError: an actuator is not known.
            InvalidArgumentError: a control is not finite or outside the actuator's range (nothing is applied).
        """
        raise self._unsupported("actuators")

    def actuator_ranges(self, actuators: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(low, high)`` float64 arrays of the actuators' control ranges; ``-inf``/``inf`` where unlimited."""
        raise self._unsupported("actuators")

    @property
    def force_torque_names(self) -> tuple[str, ...]:
        """Names of the 6-axis force/torque sensors :meth:`read_force_torque` reads."""
        return ()

    def read_force_torque(self, name: str, substeps: bool = False) -> np.ndarray:
        """Wrench ``[fx, fy, fz, tx, ty, tz]`` (N, N m) measured by force/torque sensor ``name``.

        Args:
            name: one of :attr:`force_torque_names`.
            substeps: ``False`` for the current reading, float64 ``(6,)``; ``True`` for the readings after
                each physics substep of the last :meth:`step`, float64 ``(n_substeps, 6)`` (oldest first; its
                last row is the current reading).
        """
        raise self._unsupported("force/torque sensors")

    @property
    def site_names(self) -> tuple[str, ...]:
        """Names of the sites (frames fixed to bodies) :meth:`get_site_pose` and :meth:`site_jacobian` take."""
        return ()

    def get_site_pose(self, site: str) -> Pose:
        """World pose of ``site``."""
        raise self._unsupported("sites")

    def site_jacobian(self, site: str, joints: Sequence[str]) -> np.ndarray:
        """Float64 ``(6, len(joints))`` Jacobian of ``site``'s world velocity w.r.t. the joints' velocities.

        Rows are linear velocity x, y, z then angular velocity x, y, z, in the world frame; columns follow
        ``joints``. A joint that does not move the site has a zero column.
        """
        raise self._unsupported("sites")
