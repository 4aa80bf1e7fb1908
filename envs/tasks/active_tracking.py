"""Active robot tracking from the tracker's own camera, with temporal-difference rewards."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.errors import InvalidActionError, InvalidArgumentError, check_choice
from envs.rewards import REWARD_SCHEMES, make_reward
from envs.robots.differential_drive import DifferentialDrive
from envs.sim import BACKENDS, Pose, SimBackend, make_backend

ARENA_HALF_SIZE = 2.5  # metres, inner half-width of the square arena in worlds/*/tracking.*
OBSTACLES = ("obstacle_0", "obstacle_1", "obstacle_2", "obstacle_3")


class ActiveTrackingEnv(gym.Env[np.ndarray, Any]):
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
        reward: ``"td"``, ``"negative"`` or ``"hint"``.
        action_mode: ``"discrete"`` or ``"continuous"``.
        k: discrete levels per wheel direction (``2k+1`` speeds per wheel), ``k >= 1``.
        motion: ``"constant"``, ``"switching"`` or ``"obstacles"``.
        render_mode: ``None`` or ``"rgb_array"``.
        image_size: side of the square observation in pixels (16-512).
        reward_params: keyword arguments for the reward scheme.
        safe_distance: ``s`` in metres.
        max_range: visibility range in metres.
        lost_patience: consecutive invisible steps before the target counts as lost.
        max_speed: wheel speed limit in rad/s.
        target_speed_range: target wheel speeds as fractions of ``max_speed``.
        switch_interval: steps between target speed changes (``switching`` and ``obstacles``).
        control_period: seconds per step.
        world: world file path or name (default ``"tracking"``).
        backend_kwargs: extra keyword arguments for the backend (e.g. ``webots_home``).

    Version history: v0 — initial release.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 20}

    ACTION_MODES = ("discrete", "continuous")
    MOTIONS = ("constant", "switching", "obstacles")
    ERROR_SIGNALS = ("distance_error", "angle_error")
    CAMERA = "tracker_camera"
    VIEW_CAMERA = "chase_camera"

    def __init__(
        self,
        backend: str = "mujoco",
        reward: str = "td",
        action_mode: str = "discrete",
        k: int = 2,
        motion: str = "constant",
        render_mode: str | None = None,
        image_size: int = 64,
        reward_params: Mapping[str, Any] | None = None,
        safe_distance: float = 0.2,
        max_range: float = 1.0,
        lost_patience: int = 10,
        max_speed: float = 6.28,
        target_speed_range: tuple[float, float] = (0.1, 0.5),
        switch_interval: int = 200,
        control_period: float = 0.05,
        world: str = "tracking",
        backend_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        check_choice("backend", backend, BACKENDS)
        check_choice("reward scheme", reward, REWARD_SCHEMES)
        check_choice("action_mode", action_mode, self.ACTION_MODES)
        check_choice("motion", motion, self.MOTIONS)
        if render_mode is not None:
            check_choice("render_mode", render_mode, self.metadata["render_modes"])
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise InvalidArgumentError(f"k={k!r} must be an integer >= 1")
        if isinstance(image_size, bool) or not isinstance(image_size, int | np.integer) or not 16 <= image_size <= 512:
            raise InvalidArgumentError(f"image_size={image_size!r} must be an integer in [16, 512]")
        low, high = target_speed_range
        if not 0.0 <= low <= high <= 1.0:
            raise InvalidArgumentError(f"target_speed_range={target_speed_range!r} must satisfy 0 <= low <= high <= 1")
        for name, value in (("safe_distance", safe_distance), ("max_range", max_range), ("max_speed", max_speed)):
            if not (math.isfinite(value) and value > 0):
                raise InvalidArgumentError(f"{name}={value!r} must be a positive number")
        if max_range <= safe_distance:
            raise InvalidArgumentError(f"max_range={max_range} must exceed safe_distance={safe_distance}")
        if lost_patience < 1 or switch_interval < 1:
            raise InvalidArgumentError(
                f"lost_patience={lost_patience!r} and switch_interval={switch_interval!r} must be >= 1"
            )

        self.backend_name, self.reward_name, self.action_mode, self.motion = backend, reward, action_mode, motion
        self.render_mode = render_mode
        self.k, self.image_size = int(k), int(image_size)
        self._safe_distance, self._max_range = float(safe_distance), float(max_range)
        self._lost_patience, self._switch_interval = int(lost_patience), int(switch_interval)
        self._target_speed_range = (float(low), float(high))

        self.sim: SimBackend = make_backend(
            backend,
            world,
            control_period=control_period,
            camera_sizes={self.CAMERA: (self.image_size, self.image_size)},
            **dict(backend_kwargs or {}),
        )
        self.tracker = DifferentialDrive("tracker", max_wheel_speed=float(max_speed))
        self.target = DifferentialDrive("target", max_wheel_speed=float(max_speed))
        fovy = self.sim.camera_fovy(self.CAMERA)
        self._half_hfov = math.atan(math.tan(fovy / 2.0))  # square image: horizontal fov == vertical fov

        params = dict(reward_params or {})
        if reward == "hint":
            params.setdefault("margin", 0.05)
        self.reward_scheme = make_reward(reward, self.ERROR_SIGNALS, **params)

        n_levels = 2 * self.k + 1
        self._levels = np.linspace(-max_speed, max_speed, n_levels)
        if action_mode == "discrete":
            self.action_space = spaces.Discrete(n_levels * n_levels)
        else:
            self.action_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.observation_space = spaces.Box(0, 255, shape=(self.image_size, self.image_size, 3), dtype=np.uint8)

        self._steps = 0
        self._invisible_steps = 0
        self._target_wheels = (0.0, 0.0)

    # -- helpers ---------------------------------------------------------------------------------
    def _decode_action(self, action: Any) -> tuple[float, float]:
        if self.action_mode == "discrete":
            arr = np.asarray(action)
            if arr.shape not in ((), (1,)) or not np.issubdtype(arr.dtype, np.integer):
                raise InvalidActionError(
                    f"discrete action must be one integer in [0, {self.action_space.n}), got {action!r}"
                )
            index = int(arr.reshape(()))
            if not 0 <= index < self.action_space.n:
                raise InvalidActionError(f"discrete action {index} is outside [0, {self.action_space.n})")
            left, right = divmod(index, len(self._levels))
            return float(self._levels[left]), float(self._levels[right])
        arr = np.asarray(action, dtype=np.float64)
        if arr.shape != (2,):
            raise InvalidActionError(f"continuous action must have shape (2,), got shape {arr.shape}: {action!r}")
        if not np.all(np.isfinite(arr)) or np.any(np.abs(arr) > 1.0 + 1e-6):
            raise InvalidActionError(f"continuous action {arr.tolist()} must be finite and within [-1, 1]")
        return float(arr[0] * self.tracker.max_wheel_speed), float(arr[1] * self.tracker.max_wheel_speed)

    def _draw_target_wheels(self) -> None:
        low, high = self._target_speed_range
        speeds = self.np_random.uniform(low, high, size=2) * self.target.max_wheel_speed
        self._target_wheels = (float(speeds[0]), float(speeds[1]))
        self.target.drive(self.sim, *self._target_wheels)

    def _measure(self) -> dict[str, float | bool]:
        tracker, target = self.sim.get_pose("tracker"), self.sim.get_pose("target")
        delta = target.xy - tracker.xy
        distance = float(np.hypot(*delta))
        cos_yaw, sin_yaw = math.cos(tracker.yaw), math.sin(tracker.yaw)
        local_x = cos_yaw * delta[0] + sin_yaw * delta[1]
        local_y = -sin_yaw * delta[0] + cos_yaw * delta[1]
        bearing = math.atan2(local_y, local_x)
        visible = abs(bearing) <= self._half_hfov and distance <= self._max_range
        return {
            "distance_error": abs(distance - self._safe_distance),
            "angle_error": abs(bearing),
            "distance": distance,
            "target_visible": bool(visible),
        }

    def _place_robots(self) -> tuple[np.ndarray, np.ndarray]:
        rng = self.np_random
        target_xy = rng.uniform(-1.2, 1.2, size=2)
        target_yaw = rng.uniform(-math.pi, math.pi)
        behind = target_yaw + math.pi + rng.uniform(-math.pi / 6, math.pi / 6)
        gap = self._safe_distance + rng.uniform(-0.05, 0.1)
        tracker_xy = target_xy + gap * np.array([math.cos(behind), math.sin(behind)])
        facing = math.atan2(*(target_xy - tracker_xy)[::-1]) + rng.uniform(-math.pi / 18, math.pi / 18)
        self.sim.set_pose("target", Pose.planar(*target_xy, target_yaw))
        self.sim.set_pose("tracker", Pose.planar(*tracker_xy, facing))
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
        super().reset(seed=seed)
        self.sim.reset(seed=seed)
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
        return self.sim.render(self.CAMERA), info

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        left, right = self._decode_action(action)
        self.tracker.drive(self.sim, left, right)
        self._steps += 1
        if self.motion != "constant" and self._steps % self._switch_interval == 0:
            self._draw_target_wheels()
        self.sim.step()

        measure = self._measure()
        self._invisible_steps = 0 if measure["target_visible"] else self._invisible_steps + 1
        lost = self._invisible_steps >= self._lost_patience
        reward, terms = self.reward_scheme(measure)
        info = {
            **measure,
            "target_lost": lost,
            "reward_distance": terms["distance_error"],
            "reward_angle": terms["angle_error"],
            "left_speed": left,
            "right_speed": right,
        }
        return self.sim.render(self.CAMERA), reward, lost, False, info

    def render(self) -> np.ndarray | None:
        if self.render_mode is None:
            gym.logger.warn("render() called without render_mode; pass render_mode='rgb_array' to make()")
            return None
        view = self.sim.render(self.VIEW_CAMERA)
        own = self.sim.render(self.CAMERA)
        # Side by side rather than inset: an inset in the chase view hid the robots it was meant to show.
        rows = np.linspace(0, own.shape[0] - 1, view.shape[0]).round().astype(int)
        cols = np.linspace(0, own.shape[1] - 1, view.shape[0]).round().astype(int)
        return np.concatenate([view, own[rows][:, cols]], axis=1)

    def close(self) -> None:
        sim = getattr(self, "sim", None)
        if sim is not None:
            sim.close()
