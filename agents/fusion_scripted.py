"""The scripted insertion baseline: find the hole block in the depth image, approach, spiral-search under
force guidance, insert.

It sees what a policy sees (the ``depth``, ``wrench`` and ``proprio`` observations) plus the fixed camera's
calibration (pose and field of view), never the simulator's state:

1. **localise**: on the first step, every depth pixel is back-projected to the table frame; the pixels at the
   block's top height are the block's top face, and the rectangle of least area around them gives the block's
   centre (the hole) and yaw (the hole's, modulo 90 degrees);
2. **approach**: move the peg tip above the estimated hole, turning it to the hole's yaw (non-round pegs);
3. **search**: descend until the force/torque window shows contact beyond the peg's weight, then press lightly
   and follow an Archimedean spiral (3 mm pitch) around the estimate until the tip drops below the block top;
4. **insert**: push straight down.

A lost depth image (zeros) or wrench window (zeros) degrades it: no depth, no localisation (it searches around
the workspace centre); no wrench, contact is inferred from the tip not descending.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np

from envs.errors import UnknownNameError
from envs.tasks.peg_insertion import PegInsertionEnv
from envs.worlds import peg_insertion as world

__all__ = ["ScriptedInsertion", "localise_block"]

_ORIGIN = np.array([0.5, 0.0, 0.0])  # proprio positions are relative to this point


def back_project(depth: np.ndarray, position: np.ndarray, rotation: np.ndarray, fovy: float) -> np.ndarray:
    """World points ``(H*W, 3)`` of a depth image (distance along the optical axis; camera looks along -z)."""
    height, width = depth.shape[:2]
    f = 0.5 * height / math.tan(0.5 * fovy)
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    d = depth.reshape(height, width).astype(np.float64)
    local = np.stack([(u + 0.5 - width / 2) / f * d, -(v + 0.5 - height / 2) / f * d, -d], -1).reshape(-1, 3)
    return local @ rotation.T + position


def localise_block(points: np.ndarray, sides: int) -> tuple[np.ndarray, float] | None:
    """Centre ``(x, y)`` and yaw of the hole block from world points, or ``None`` when its top is not seen."""
    top = points[(np.abs(points[:, 2] - world.BLOCK_HEIGHT) < 0.008)
                 & (np.abs(points[:, 0] - 0.5) < 0.2) & (np.abs(points[:, 1]) < 0.2)]
    if len(top) < 6:
        return None
    xy = top[:, :2]
    best = (math.inf, 0.0, xy.mean(0))
    for angle in np.radians(np.arange(-45.0, 45.0, 1.0)):
        c, s = math.cos(angle), math.sin(angle)
        local = xy @ np.array([[c, -s], [s, c]])  # coordinates along the rotated axes
        low, high = local.min(0), local.max(0)
        area = float(np.prod(high - low))
        if area < best[0]:
            centre = np.array([[c, -s], [s, c]]) @ ((low + high) / 2)  # back to the world
            best = (area, float(angle), centre)
    return best[2], (best[1] if sides else 0.0)


class ScriptedInsertion:
    """Approach, force-guided spiral search and insertion for ``vantage/PegInsertion-v0`` (SB3 ``predict``).

    Args:
        env: the environment (its camera calibration and settings are read once).
        pitch: spiral pitch (m per turn).
        press: downward command while searching, in units of the action (the compliance turns it into a
            light push).
    """

    def __init__(self, env: gym.Env, pitch: float = 0.003, press: float = 0.3) -> None:
        inner = env.unwrapped
        if not isinstance(inner, PegInsertionEnv):
            raise UnknownNameError("environment for the scripted insertion", type(inner).__name__,
                                   ["PegInsertionEnv"])
        self.position, self.rotation = inner.sim.camera_frame(world.CAMERA)
        self.fovy = inner.sim.camera_fovy(world.CAMERA)
        self.step_size = inner.settings.max_translation
        self.max_yaw = inner.settings.max_yaw
        self.turns, self.sides = inner.turns, inner.sides
        self.pitch, self.press = pitch, press
        self.reset()

    def reset(self) -> None:
        """Forget the episode (called by the evaluation runner after each reset)."""
        self.goal: np.ndarray | None = None
        self.goal_yaw = 0.0
        self.phase = "approach"
        self.angle = 0.0
        self.heights: list[float] = []

    def _localise(self, depth: np.ndarray) -> None:
        found = None
        if np.any(depth > 0):
            found = localise_block(back_project(depth, self.position, self.rotation, self.fovy), self.sides)
        if found is None:
            self.goal, self.goal_yaw = _ORIGIN[:2].copy(), 0.0
        else:
            self.goal, self.goal_yaw = found

    def _contact(self, wrench: np.ndarray) -> bool:
        if not np.any(wrench):
            return False
        force = wrench[:, :3] + np.array([0.0, 0.0, world.PEG_MASS * 9.81])
        return bool(np.linalg.norm(force, axis=1).max() > 3.0)

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """The action for one (unbatched) observation."""
        if self.goal is None:
            self._localise(obs["depth"])
        proprio = obs["proprio"].astype(np.float64)
        tip = proprio[:3] + _ORIGIN
        yaw = math.atan2(proprio[3], proprio[4])
        top = world.BLOCK_HEIGHT
        move = np.zeros(3)
        self.heights = [*self.heights[-4:], float(tip[2])]
        if tip[2] < top - 0.004 and np.linalg.norm(tip[:2] - self.goal) < 0.02:
            self.phase = "insert"
        if self.phase == "approach":
            offset = self.goal - tip[:2]
            move[:2] = offset
            move[2] = (top + 0.015 - tip[2]) if np.linalg.norm(offset) < 0.004 else (top + 0.03 - tip[2])
            if np.linalg.norm(offset) < 0.004 and tip[2] < top + 0.02:
                self.phase = "descend"
        elif self.phase == "descend":
            move[2] = -self.press * self.step_size
            stalled = len(self.heights) == 5 and self.heights[0] - self.heights[-1] < 0.001
            if self._contact(obs["wrench"]) or stalled:
                self.phase = "search"
        elif self.phase == "search":
            self.angle += min(0.6, 0.0025 / max(self.pitch * self.angle / (2 * math.pi), 1e-3))  # ~2.5 mm steps
            radius = self.pitch * self.angle / (2 * math.pi)
            if radius > 0.02:
                self.angle = 0.0
            spot = self.goal + radius * np.array([math.cos(self.angle), math.sin(self.angle)])
            move[:2] = spot - tip[:2]
            move[2] = -self.press * self.step_size
        else:  # insert
            move[:2] = 0.0
            move[2] = -self.step_size
        action = np.clip(0.5 * move / self.step_size, -1.0, 1.0)
        if self.phase in ("descend", "search", "insert"):
            action[2] = np.clip(move[2] / self.step_size, -1.0, 1.0)
        if not self.turns:
            return action.astype(np.float32)
        period = 2 * math.pi / self.sides
        turn = math.remainder(self.goal_yaw - yaw, period)
        return np.append(action, np.clip(0.5 * turn / self.max_yaw, -1.0, 1.0)).astype(np.float32)

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = True) -> tuple[np.ndarray, None]:
        """SB3's ``predict`` for one observation (or a batch of one)."""
        obs = {k: np.asarray(v) for k, v in observation.items()}
        batched = obs["proprio"].ndim == 2
        if batched:
            obs = {k: v[0] for k, v in obs.items()}
        action = self.act(obs)
        return (action[None] if batched else action), None
