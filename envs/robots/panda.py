"""Compliant Cartesian control of a 7-joint arm (the Panda) on joint position servos: a target pose the
policy nudges, reached by damped least-squares differential IK with a posture task in the null space.

The arm's joint servos are springs (``kp`` in the world file) and the links are gravity-compensated, so a
joint target ``dq`` ahead of the current angles pushes with ``kp * dq``. Each control step the controller
recomputes ``dq`` from where the tool *is* toward where it should be, and never lets the target run more than
``max_lead`` metres (and ``max_lead_yaw`` radians) ahead of the tool: a blocked peg therefore pushes with a
bounded force (the arm is compliant) instead of winding the target up into the table.

Orientation: the tool's roll and pitch are held at their reset values (a vertical peg); only the yaw about
world +z is commanded.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from envs.errors import InvalidActionError
from envs.robots.arm import Arm
from envs.sim.base import SimBackend

__all__ = ["CartesianController", "tool_yaw"]


def _rotz(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def tool_yaw(rotation: np.ndarray) -> float:
    """Yaw (rad) about world +z of a frame's x axis."""
    return math.atan2(rotation[1, 0], rotation[0, 0])


@dataclass
class CartesianController:
    """End-effector (tool site) position and yaw control of ``arm`` with bounded lead (compliance).

    Args:
        arm: the joints, their position actuators and the tool site (the controlled point).
        posture: joint angles the null-space task pulls toward (redundancy resolution).
        workspace: ``((x0, y0, z0), (x1, y1, z1))`` box the target stays in (metres, world frame).
        max_lead: metres the position target may run ahead of the tool (sets the largest push).
        max_lead_yaw: radians the yaw target may run ahead.
        damping: damped-least-squares ``lambda``.
        posture_gain: fraction of the posture error corrected per step in the null space.
    """

    arm: Arm
    posture: Sequence[float]
    workspace: tuple[tuple[float, float, float], tuple[float, float, float]]
    max_lead: float = 0.01
    max_lead_yaw: float = 0.15
    damping: float = 0.02
    posture_gain: float = 0.1
    target_position: np.ndarray = field(default_factory=lambda: np.zeros(3), init=False)
    target_yaw: float = field(default=0.0, init=False)
    _rotation0: np.ndarray = field(default_factory=lambda: np.eye(3), init=False, repr=False)

    def reset(self, sim: SimBackend) -> None:
        """Take the tool's current pose as the target (and its roll and pitch as the ones to hold)."""
        pose = self.arm.end_effector_pose(sim)
        rotation = pose.rotation_matrix
        self.target_position = pose.position.copy()
        self.target_yaw = tool_yaw(rotation)
        self._rotation0 = _rotz(-self.target_yaw) @ rotation

    def tool_pose(self, sim: SimBackend) -> tuple[np.ndarray, float]:
        """The tool's world position and yaw."""
        pose = self.arm.end_effector_pose(sim)
        return pose.position.copy(), tool_yaw(pose.rotation_matrix)

    def command(self, sim: SimBackend, delta_position: Sequence[float] | np.ndarray, delta_yaw: float = 0.0
                ) -> np.ndarray:
        """Move the target by ``delta_position`` (m, world) and ``delta_yaw`` (rad) and send the joint targets.

        Returns:
            The joint targets sent.

        Raises:
            InvalidActionError: a delta that is not finite.
        """
        delta = np.asarray(delta_position, dtype=np.float64)
        if delta.shape != (3,) or not np.all(np.isfinite(delta)) or not math.isfinite(delta_yaw):
            raise InvalidActionError(f"end-effector deltas must be finite, got {delta_position!r}, {delta_yaw!r}")
        pose = self.arm.end_effector_pose(sim)
        position, rotation = pose.position, pose.rotation_matrix
        low, high = (np.asarray(b, dtype=np.float64) for b in self.workspace)
        target = np.clip(self.target_position + delta, low, high)
        lead = target - position
        distance = float(np.linalg.norm(lead))
        if distance > self.max_lead:  # the compliance bound: the target waits for a blocked tool
            lead *= self.max_lead / distance
            target = position + lead
        self.target_position = target
        yaw = tool_yaw(rotation)
        yaw_lead = math.remainder(self.target_yaw + delta_yaw - yaw, 2 * math.pi)
        yaw_lead = float(np.clip(yaw_lead, -self.max_lead_yaw, self.max_lead_yaw))
        self.target_yaw = yaw + yaw_lead
        desired = _rotz(self.target_yaw) @ self._rotation0
        rotation_error = 0.5 * sum(np.cross(rotation[:, i], desired[:, i]) for i in range(3))
        error = np.concatenate([lead, rotation_error])
        jacobian = sim.site_jacobian(self.arm.site, self.arm.joints)
        gram = jacobian @ jacobian.T + self.damping**2 * np.eye(6)
        step = jacobian.T @ np.linalg.solve(gram, error)
        q = self.arm.joint_positions(sim)
        # The exact (undamped) projector: a damped one leaks the posture pull into the tool's position.
        null = np.eye(len(q)) - np.linalg.pinv(jacobian) @ jacobian
        step += null @ (self.posture_gain * (np.asarray(self.posture) - q))
        low_q, high_q = self.arm.target_limits(sim)
        return self.arm.command_joint_targets(sim, np.clip(q + step, low_q, high_q))
