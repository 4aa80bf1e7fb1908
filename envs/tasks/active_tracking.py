"""Active robot tracking from the tracker's own camera, with temporal-difference rewards."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from gymnasium import spaces

from envs.errors import InvalidActionError, InvalidArgumentError, check_choice
from envs.rewards import make_reward
from envs.robots.differential_drive import DifferentialDrive
from envs.sim import Pose
from envs.tasks.base import EpisodeEvaluator, TaskSettings, VantageEnv
from envs.worlds.tracking import (
    ARENA_HALF_SIZE,
    CHASE_CAMERA,
    OBSTACLES,
    TARGET,
    TRACKER,
    TRACKER_CAMERA,
    WORLD_NAME,
    open_tracking_world,
)

REWARDS = ("td", "negative", "hint")
MAX_K = 50  #: (2k+1)**2 discrete actions: 10201 at k = 50, far more than any policy head wants
MAX_CONTROL_PERIOD = 1.0  #: seconds per step; longer would make one step a minute of physics at 10 ms
ACTION_MODES = ("discrete", "continuous")
MOTIONS = ("constant", "switching", "obstacles")


@dataclass(frozen=True)
class TrackingSettings(TaskSettings):
    """The tunable settings of :class:`ActiveTrackingEnv` (see its docstring for their meaning)."""

    reward: str = "td"
    action_mode: str = "discrete"
    k: int = 2
    motion: str = "constant"
    image_size: int = 64
    reward_params: Mapping[str, Any] | None = None
    safe_distance: float = 0.2
    max_range: float = 1.0
    lost_patience: int = 10
    max_speed: float = 6.28
    target_speed_range: tuple[float, float] = (0.1, 0.5)
    switch_interval: int = 200
    control_period: float = 0.05

    def __post_init__(self) -> None:
        check_choice("reward scheme", self.reward, REWARDS)
        check_choice("action_mode", self.action_mode, ACTION_MODES)
        check_choice("motion", self.motion, MOTIONS)
        self._check_int("k", 1, MAX_K)
        self._check_int("image_size", 16, 512)
        low, high = self._check_range("target_speed_range")
        if not 0.0 <= low <= high <= 1.0:
            raise InvalidArgumentError(f"target_speed_range={self.target_speed_range!r} must satisfy "
                                       "0 <= low <= high <= 1")
        if self.reward_params is not None and not isinstance(self.reward_params, Mapping):
            raise InvalidArgumentError(f"reward_params={self.reward_params!r} must be a dict of the reward scheme's "
                                       "parameters, e.g. {'margin': 0.05}")
        self._check_positive("safe_distance", "max_range", "max_speed")
        self._check_positive("control_period", maximum=MAX_CONTROL_PERIOD)
        if self.max_range <= self.safe_distance:
            raise InvalidArgumentError(f"max_range={self.max_range} must exceed safe_distance={self.safe_distance}")
        self._check_int("lost_patience", 1)
        self._check_int("switch_interval", 1)


class ActiveTrackingEnv(VantageEnv):
    """A wheeled tracker keeps a moving wheeled target in view at a safe distance, from pixels only.

    Two e-puck-sized differential-drive robots share a 5 m x 5 m walled arena with a textured floor
    (``worlds/mujoco/tracking.xml``, ``worlds/webots/tracking.wbt``). The ``target`` drives along arcs; the
    ``tracker`` sees it through ``tracker_camera`` and commands its own two wheels. Reproduces Tiritiris,
    Passalis & Tefas (ICETCI 2021); see ``shared/specs/active-tracking.md``.

    **Action space** (``action_mode``):

    ==============  ==========================  ===============================================================
    mode            space                       meaning
    ==============  ==========================  ===============================================================
    ``discrete``    ``Discrete((2k+1)**2)``     ``a = i*(2k+1) + j``: left wheel level ``i``, right level ``j``,
                                                levels evenly spaced in ``[-max_speed, max_speed]`` rad/s
    ``continuous``  ``Box(-1, 1, (2,))``        ``[left, right]`` wheel speed as a fraction of ``max_speed``
    ==============  ==========================  ===============================================================

    Out-of-range, non-integer or non-finite actions raise :class:`~envs.errors.InvalidActionError`; nothing
    is clipped. With ``k=2`` the 25 discrete actions use wheel speeds ``{-1, -0.5, 0, 0.5, 1} * max_speed``.

    **Observation**: ``Box(0, 255, (image_size, image_size, 3), uint8)``, the RGB frame of ``tracker_camera``
    (60 degree vertical field of view, mounted on the tracker's front, looking along its heading). Stack
    frames with ``gymnasium.wrappers.FrameStackObservation`` if wanted.

    **Errors and reward**. ``d`` is the planar distance between the robots' centres; ``s`` the safe
    distance (0.2 m).

    * ``distance_error = |d - s|`` (m).
    * ``angle_error = |atan2(y_t, x_t)|`` (rad, in ``[0, pi]``) where ``(x_t, y_t)`` is the target's centre in
      the tracker's frame: the horizontal angle between the camera's optical axis and the line to the target.
    * ``reward = r_d + r_a``, each term from the scheme ``reward`` (``td``, ``negative`` or ``hint``; see
      :mod:`envs.rewards`) applied to its error; ``info["reward_distance"]`` and ``info["reward_angle"]`` hold
      the terms. ``reward_params`` are passed to the scheme (e.g. ``{"margin": {...}}`` for ``hint``; the
      default hint margin is 0.05 for both signals, metres and radians).

    **Target motion** (``motion``):

    * ``constant``: each target wheel speed is drawn uniformly from ``target_speed_range * max_speed`` at
      reset and held all episode (an arc; the walls stop it).
    * ``switching``: as ``constant`` with new speeds every ``switch_interval`` (200) steps.
    * ``obstacles``: as ``switching``, with the four static obstacles placed at random, at least 0.5 m from
      both robots' starts and 0.4 m from each other (otherwise parked under the floor).

    **Start state**: the target at a uniform position in ``[-1.2, 1.2]^2`` m with a uniform heading; the
    tracker behind it (bearing ``pi +- 30 deg`` from the target's heading) at ``s + U(-0.05, 0.1)`` m, facing
    the target ``+- 10 deg``.

    **Lost target, termination and truncation**. The target is *visible* when its centre is inside the
    camera's horizontal field of view and within ``max_range`` (1.0 m). After ``lost_patience`` (10)
    consecutive invisible steps the target is *lost* and the episode **terminates**. Episodes are
    **truncated** at 1000 steps by the registration's ``TimeLimit``.

    **Other settings**: control period 0.05 s (20 Hz; one step = 5 physics steps of 10 ms);
    ``max_speed`` 6.28 rad/s (e-puck), i.e. up to 0.129 m/s forward; ``target_speed_range`` (0.1, 0.5).

    **info** keys every step: ``distance_error``, ``angle_error``, ``target_visible``, ``target_lost``,
    ``distance``, ``reward_distance``, ``reward_angle``, ``left_speed``, ``right_speed``.

    **Rendering**: ``render_mode="rgb_array"`` returns a 240x480 frame: the view from ``chase_camera`` (behind
    and above the tracker) on the left, the tracker's own camera frame (nearest-neighbour upscaled) on the right.

    Args:
        backend: ``"mujoco"`` (embedded, default) or ``"webots"``.
        render_mode: ``None`` or ``"rgb_array"``.
        world: world file path or name (default ``"tracking"``).
        backend_kwargs: extra keyword arguments for the backend (e.g. ``webots_home``).
        corruption: observation corruption, ``{"rgb": {"noise_std": ..., "dropout": ..., "delay": ...}}``
            (:mod:`envs.observables`; drawn from the episode's RNG; none by default).
        **settings: the fields of :class:`TrackingSettings` (``reward``, ``action_mode``, ``k``, ``motion``,
            ``image_size``, ``reward_params``, ``safe_distance``, ``max_range``, ``lost_patience``,
            ``max_speed``, ``target_speed_range``, ``switch_interval``, ``control_period``).

    Version history: v0 — initial release.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 20}
    settings_class = TrackingSettings
    settings: TrackingSettings

    ERROR_SIGNALS = ("distance_error", "angle_error")
    camera = TRACKER_CAMERA
    view_camera = CHASE_CAMERA

    def __init__(self, /, backend: str = "mujoco", render_mode: str | None = None, world: str | Path = WORLD_NAME,
                 backend_kwargs: Mapping[str, Any] | None = None,
                 corruption: Mapping[str, Mapping[str, Any]] | None = None, **settings: Any) -> None:
        super().__init__(backend, render_mode, corruption, **settings)
        cfg = self.settings
        self.reward_name, self.action_mode, self.motion = cfg.reward, cfg.action_mode, cfg.motion
        self.k, self.image_size = int(cfg.k), int(cfg.image_size)

        self.sim = open_tracking_world(backend, world, control_period=cfg.control_period,
                                       camera_sizes={self.camera: (self.image_size, self.image_size)},
                                       **dict(backend_kwargs or {}))
        self.tracker = DifferentialDrive(TRACKER, max_wheel_speed=float(cfg.max_speed))
        self.target = DifferentialDrive(TARGET, max_wheel_speed=float(cfg.max_speed))
        fovy = self.sim.camera_fovy(self.camera)
        self._half_hfov = math.atan(math.tan(fovy / 2.0))  # square image: horizontal fov == vertical fov

        params = dict(cfg.reward_params or {})
        if cfg.reward == "hint":
            params.setdefault("margin", 0.05)
        self.reward_scheme = make_reward(cfg.reward, self.ERROR_SIGNALS, **params)

        n_levels = 2 * self.k + 1
        self._levels = np.linspace(-cfg.max_speed, cfg.max_speed, n_levels)
        if cfg.action_mode == "discrete":
            self.action_space = spaces.Discrete(n_levels * n_levels)
        else:
            self.action_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.observation_space = spaces.Box(0, 255, shape=(self.image_size, self.image_size, 3), dtype=np.uint8)
        self._make_observables({"rgb": ("rgb", lambda: self.sim.render(self.camera))})

        self._steps = 0
        self._invisible_steps = 0
        self._target_wheels = (0.0, 0.0)

    # -- helpers ---------------------------------------------------------------------------------
    def decode_action(self, action: Any) -> tuple[float, float]:
        """``(left, right)`` wheel speeds in rad/s of ``action``; raises :class:`InvalidActionError`."""
        if self.action_mode == "discrete":
            left, right = divmod(self.decode_discrete(action), len(self._levels))
            return float(self._levels[left]), float(self._levels[right])
        try:
            if np.iscomplexobj(action):
                raise TypeError("complex")
            arr = np.asarray(action, dtype=np.float64)
        except (ValueError, TypeError):
            raise InvalidActionError(f"continuous action must be 2 numbers in [-1, 1], got {action!r}") from None
        if arr.shape != (2,):
            raise InvalidActionError(f"continuous action must have shape (2,), got shape {arr.shape}: {action!r}")
        if not np.all(np.isfinite(arr)) or np.any(np.abs(arr) > 1.0 + 1e-6):
            raise InvalidActionError(f"continuous action {arr.tolist()} must be finite and within [-1, 1]")
        return float(arr[0] * self.tracker.max_wheel_speed), float(arr[1] * self.tracker.max_wheel_speed)

    def _draw_target_wheels(self) -> None:
        low, high = self.settings.target_speed_range
        speeds = self.np_random.uniform(low, high, size=2) * self.target.max_wheel_speed
        self._target_wheels = (float(speeds[0]), float(speeds[1]))
        self.target.drive(self.sim, *self._target_wheels)

    def _measure(self) -> dict[str, float | bool]:
        tracker, target = self.sim.get_pose(TRACKER), self.sim.get_pose(TARGET)
        delta = target.xy - tracker.xy
        distance = float(np.hypot(*delta))
        cos_yaw, sin_yaw = math.cos(tracker.yaw), math.sin(tracker.yaw)
        local_x = cos_yaw * delta[0] + sin_yaw * delta[1]
        local_y = -sin_yaw * delta[0] + cos_yaw * delta[1]
        bearing = math.atan2(local_y, local_x)
        visible = abs(bearing) <= self._half_hfov and distance <= self.settings.max_range
        return {
            "distance_error": abs(distance - self.settings.safe_distance),
            "angle_error": abs(bearing),
            "distance": distance,
            "target_visible": bool(visible),
        }

    def _place_robots(self) -> tuple[np.ndarray, np.ndarray]:
        rng = self.np_random
        target_xy = rng.uniform(-1.2, 1.2, size=2)
        target_yaw = rng.uniform(-math.pi, math.pi)
        behind = target_yaw + math.pi + rng.uniform(-math.pi / 6, math.pi / 6)
        gap = self.settings.safe_distance + rng.uniform(-0.05, 0.1)
        tracker_xy = target_xy + gap * np.array([math.cos(behind), math.sin(behind)])
        facing = math.atan2(*(target_xy - tracker_xy)[::-1]) + rng.uniform(-math.pi / 18, math.pi / 18)
        self.sim.set_pose(TARGET, Pose.planar(*target_xy, target_yaw))
        self.sim.set_pose(TRACKER, Pose.planar(*tracker_xy, facing))
        return target_xy, tracker_xy

    def _place_obstacles(self, keep_clear: tuple[np.ndarray, ...]) -> None:
        placed: list[np.ndarray] = []
        for name in OBSTACLES:
            for _ in range(200):
                xy = self.np_random.uniform(-ARENA_HALF_SIZE + 0.3, ARENA_HALF_SIZE - 0.3, size=2)
                if all(np.linalg.norm(xy - p) >= 0.5 for p in keep_clear) and all(
                    np.linalg.norm(xy - p) >= 0.4 for p in placed
                ):
                    break
            else:  # pragma: no cover - the arena is far larger than the clearances need
                raise InvalidArgumentError(f"could not place {name} clear of the robots")
            placed.append(xy)
            self.sim.set_pose(name, Pose.planar(*xy, self.np_random.uniform(-math.pi, math.pi)))

    # -- gymnasium API ---------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        self._start_episode(seed, options)
        target_xy, tracker_xy = self._place_robots()
        if self.motion == "obstacles":
            self._place_obstacles((target_xy, tracker_xy))
        self._draw_target_wheels()
        self.tracker.drive(self.sim, 0.0, 0.0)
        self._steps = 0
        self._invisible_steps = 0
        measure = self._measure()
        self.reward_scheme.reset(measure)
        info = {**measure, "target_lost": False, "reward_distance": 0.0, "reward_angle": 0.0,
                "left_speed": 0.0, "right_speed": 0.0}
        return self._observe("rgb"), info

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        left, right = self.decode_action(action)
        self.tracker.drive(self.sim, left, right)
        self._steps += 1
        if self.motion != "constant" and self._steps % self.settings.switch_interval == 0:
            self._draw_target_wheels()
        self.sim.step()

        measure = self._measure()
        self._invisible_steps = 0 if measure["target_visible"] else self._invisible_steps + 1
        lost = self._invisible_steps >= self.settings.lost_patience
        reward, terms = self.reward_scheme(measure)
        info = {
            **measure,
            "target_lost": lost,
            "reward_distance": terms["distance_error"],
            "reward_angle": terms["angle_error"],
            "left_speed": left,
            "right_speed": right,
        }
        return self._observe("rgb"), reward, lost, False, info


class TrackingEvaluator(EpisodeEvaluator):
    """An episode's mean distance and angle errors and whether the target was lost; summaries average the
    episodes' means (``distance_error_std`` is the spread across episodes)."""

    trace_key = "distance_error"

    def start(self, info: Mapping[str, Any]) -> None:
        self._distance: list[float] = []
        self._angle: list[float] = []
        self._lost = False

    def step(self, info: Mapping[str, Any]) -> None:
        self._distance.append(info["distance_error"])
        self._angle.append(info["angle_error"])
        self._lost = self._lost or bool(info.get("target_lost", False))

    def finish(self) -> dict[str, Any]:
        return {"distance_error_mean": float(np.mean(self._distance)),
                "angle_error_mean": float(np.mean(self._angle)), "target_lost": self._lost}

    def summarize(self, episodes: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        errors = np.array([e["distance_error_mean"] for e in episodes])
        return {
            "distance_error_mean": float(errors.mean()),
            "distance_error_std": float(errors.std()),
            "angle_error_mean": float(np.mean([e["angle_error_mean"] for e in episodes])),
            "steps_mean": float(np.mean([e["steps"] for e in episodes])),
            "return_mean": float(np.mean([e["return_"] for e in episodes])),
            "lost_fraction": float(np.mean([e["target_lost"] for e in episodes])),
        }

    def format_table(self, rows: Sequence[tuple[str, Mapping[str, Any]]]) -> str:
        lines = ["| policy | distance error (m) | angle error (rad) | steps/episode | target lost | episodes |",
                 "|---|---|---|---|---|---|"]
        lines += [f"| {label} | {s['distance_error_mean']:.4f} ± {s['distance_error_std']:.4f} | "
                  f"{s['angle_error_mean']:.3f} | {s['steps_mean']:.0f} | {100 * s['lost_fraction']:.0f} % | "
                  f"{s['episodes']} |" for label, s in rows]
        return "\n".join(lines)
