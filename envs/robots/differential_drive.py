"""Differential-drive robots (e-puck and alike): wheel speeds in, planar velocity commands out."""

from __future__ import annotations

import math
from dataclasses import dataclass

from envs.errors import InvalidActionError
from envs.sim.base import SimBackend


@dataclass(frozen=True)
class DifferentialDrive:
    """Maps left/right wheel angular speeds to the backend's planar velocity of ``entity``.

    Defaults are the e-puck's: wheel radius 20.5 mm, axle 52 mm, wheel speed limit 6.28 rad/s.
    Forward speed is ``r (w_l + w_r) / 2`` and yaw rate ``r (w_r - w_l) / axle``.
    """

    entity: str
    wheel_radius: float = 0.0205
    axle_length: float = 0.052
    max_wheel_speed: float = 6.28

    def drive(self, sim: SimBackend, left: float, right: float) -> tuple[float, float]:
        """Command wheel speeds (rad/s); returns the ``(forward m/s, yaw_rate rad/s)`` sent to ``sim``.

        Raises:
            InvalidActionError: a speed is not finite or exceeds ``max_wheel_speed``.
        """
        for side, speed in (("left", left), ("right", right)):
            if not math.isfinite(speed) or abs(speed) > self.max_wheel_speed + 1e-9:
                raise InvalidActionError(
                    f"{self.entity} {side} wheel speed {speed!r} rad/s is outside "
                    f"[-{self.max_wheel_speed}, {self.max_wheel_speed}]"
                )
        forward = self.wheel_radius * (left + right) / 2.0
        yaw_rate = self.wheel_radius * (right - left) / self.axle_length
        sim.set_planar_velocity(self.entity, forward, yaw_rate)
        return forward, yaw_rate

    @property
    def max_forward_speed(self) -> float:
        return self.wheel_radius * self.max_wheel_speed
