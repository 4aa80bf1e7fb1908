"""Arms driven by joint position servos: joint targets in, and differential inverse kinematics for the end effector.

An :class:`Arm` names the joints it moves, the position actuator driving each joint (same order) and the site
that is its end effector; everything else comes from the backend, so the same adapter drives
``worlds/mujoco/arm2.xml`` and ``worlds/webots/arm2.wbt`` (and any arm whose actuators are position servos).

Differential IK is damped least squares on the site Jacobian (:meth:`SimBackend.site_jacobian`): for a small
end-effector displacement ``e`` the joint step is ``dq = J^T (J J^T + damping^2 I)^-1 e``. The damping keeps
``dq`` bounded near singular configurations (a stretched arm) at the price of undershooting there, so a
target is reached over a few control steps, re-linearising each time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from envs.errors import InvalidActionError, InvalidArgumentError
from envs.sim.base import Pose, SimBackend


@dataclass(frozen=True)
class Arm:
    """A serial arm: ``joints[i]`` is driven by the position actuator ``actuators[i]``; ``site`` is the end effector.

    Joint targets are validated here against the joint limits the backend reports, narrowed to the actuators'
    control ranges (an :class:`~envs.errors.InvalidActionError` names the value and the range), so a policy's
    out-of-range action fails loudly instead of being clipped by the simulator. IK targets, in contrast, are
    clipped into those limits: choosing a feasible target is the IK's job.

    Args:
        joints: joint names, in the order of every joint vector this adapter takes or returns.
        actuators: the position actuator of each joint (its control is the joint's target angle or offset).
        site: the end-effector site.
    """

    joints: tuple[str, ...]
    actuators: tuple[str, ...]
    site: str

    def __post_init__(self) -> None:
        for field_name in ("joints", "actuators"):
            value = getattr(self, field_name)
            if isinstance(value, str):
                raise InvalidArgumentError(f"Arm {field_name} must be a sequence of names, got the string {value!r}")
            object.__setattr__(self, field_name, tuple(value))
        if not self.joints or len(self.joints) != len(self.actuators):
            raise InvalidArgumentError(
                f"Arm needs one position actuator per joint, got joints {list(self.joints)} and actuators "
                f"{list(self.actuators)}"
            )

    @property
    def n_joints(self) -> int:
        return len(self.joints)

    # -- state ---------------------------------------------------------------------------------------------
    def joint_positions(self, sim: SimBackend) -> np.ndarray:
        """Current joint positions, float64 ``(n_joints,)``."""
        return sim.get_joint_positions(self.joints)

    def joint_velocities(self, sim: SimBackend) -> np.ndarray:
        """Current joint velocities, float64 ``(n_joints,)``."""
        return sim.get_joint_velocities(self.joints)

    def joint_limits(self, sim: SimBackend) -> tuple[np.ndarray, np.ndarray]:
        """``(low, high)`` of the joints (``-inf``/``inf`` where unlimited)."""
        return sim.joint_limits(self.joints)

    def target_limits(self, sim: SimBackend) -> tuple[np.ndarray, np.ndarray]:
        """``(low, high)`` a joint target may take: the joint limits within the actuator's control range."""
        joint_low, joint_high = sim.joint_limits(self.joints)
        control_low, control_high = sim.actuator_ranges(self.actuators)
        return np.maximum(joint_low, control_low), np.minimum(joint_high, control_high)

    def end_effector_pose(self, sim: SimBackend) -> Pose:
        """World pose of the end-effector site."""
        return sim.get_site_pose(self.site)

    # -- commands ------------------------------------------------------------------------------------------
    def command_joint_targets(self, sim: SimBackend, targets: Sequence[float] | np.ndarray) -> np.ndarray:
        """Send joint targets to the position actuators; held until the next command or a reset.

        Returns:
            The targets sent, float64 ``(n_joints,)``.

        Raises:
            InvalidActionError: ``targets`` has the wrong shape, a value is not finite or lies outside its
                joint's limits (:meth:`target_limits`).
        """
        array = np.asarray(targets, dtype=np.float64)
        if array.shape != (self.n_joints,):
            raise InvalidActionError(
                f"joint targets for {list(self.joints)} must have shape ({self.n_joints},), got {array.shape}"
            )
        low, high = self.target_limits(sim)
        for name, value, lo, hi in zip(self.joints, array, low, high):
            if not math.isfinite(value):
                raise InvalidActionError(f"target {float(value)!r} for joint {name!r} is not finite")
            if not lo - 1e-9 <= value <= hi + 1e-9:
                raise InvalidActionError(
                    f"target {float(value)!r} for joint {name!r} is outside its limits [{lo}, {hi}]"
                )
        # Within 1e-9 of a limit counts as on it; clip that rounding so the actuator range check agrees.
        array = np.clip(array, low, high)
        sim.set_actuator_controls(dict(zip(self.actuators, (float(v) for v in array))))
        return array

    def reset_to(self, sim: SimBackend, positions: Sequence[float] | np.ndarray) -> None:
        """Teleport the joints to ``positions`` (velocities zeroed) and hold them there with the servos."""
        sim.set_joint_positions(self.joints, positions)
        self.command_joint_targets(sim, positions)

    # -- differential inverse kinematics -------------------------------------------------------------------
    def ik_targets(
        self,
        sim: SimBackend,
        delta_position: Sequence[float] | np.ndarray,
        delta_yaw: float | None = None,
        damping: float = 0.05,
    ) -> np.ndarray:
        """Joint targets that move the end effector by ``delta_position`` (and turn it by ``delta_yaw``).

        One damped-least-squares step from the current joint positions, linearised at the current
        configuration and clipped into the joint limits. Directions the arm cannot move in (a planar arm's
        height) are left alone rather than approximated by wild joint motion.

        Args:
            sim: the backend.
            delta_position: world-frame displacement ``(dx, dy, dz)`` of the site, metres.
            delta_yaw: rotation of the site about world +z, radians; ``None`` controls the position only.
            damping: the damping ``lambda`` (metres; also weighs the yaw row in radians). Larger is smoother
                and slower near singularities.

        Returns:
            Joint targets, float64 ``(n_joints,)``.

        Raises:
            InvalidActionError: ``delta_position`` is not 3 finite numbers or ``delta_yaw`` is not finite.
            InvalidArgumentError: ``damping`` is not a positive finite number.
        """
        error = np.asarray(delta_position, dtype=np.float64)
        if error.shape != (3,) or not np.all(np.isfinite(error)):
            raise InvalidActionError(f"delta_position must be 3 finite numbers (metres), got {delta_position!r}")
        if not (np.isscalar(damping) and np.isfinite(damping) and damping > 0):
            raise InvalidArgumentError(f"damping must be a positive finite number, got {damping!r}")
        jacobian = sim.site_jacobian(self.site, self.joints)
        rows = jacobian[:3]
        if delta_yaw is not None:
            if not math.isfinite(delta_yaw):
                raise InvalidActionError(f"delta_yaw must be finite (radians), got {delta_yaw!r}")
            rows = np.vstack([rows, jacobian[5:6]])  # world-z angular velocity is the yaw rate
            error = np.append(error, float(delta_yaw))
        step = rows.T @ np.linalg.solve(rows @ rows.T + damping**2 * np.eye(len(rows)), error)
        low, high = self.target_limits(sim)
        return np.clip(self.joint_positions(sim) + step, low, high)

    def move_end_effector(
        self,
        sim: SimBackend,
        delta_position: Sequence[float] | np.ndarray,
        delta_yaw: float | None = None,
        damping: float = 0.05,
    ) -> np.ndarray:
        """Command the joint targets of :meth:`ik_targets`; returns them."""
        targets = self.ik_targets(sim, delta_position, delta_yaw, damping)
        return self.command_joint_targets(sim, targets)
