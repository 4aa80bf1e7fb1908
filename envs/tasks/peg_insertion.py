"""Sensor-fused peg-in-hole insertion with a Franka Emika Panda (``vantage/PegInsertion-v0``).

World: ``envs/worlds/peg_insertion.py`` (the Panda, a peg held in the hand, a hole block placed at random on
the table, a fixed RGB + depth camera and a force/torque sensor where the peg meets the hand).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces

from envs.errors import InvalidActionError, InvalidArgumentError, UnknownNameError, check_choice
from envs.rewards import INSERTION_REWARDS, InsertionReward
from envs.robots.arm import Arm
from envs.robots.panda import CartesianController
from envs.sim.base import Pose
from envs.tasks.base import EpisodeEvaluator, TaskSettings, VantageEnv
from envs.worlds import peg_insertion as world

__all__ = ["CORRUPTIONS", "FAILURE_KINDS", "FUSION_MODALITIES", "FailureSpec", "PegInsertionEnv",
           "PegInsertionEvaluator", "PegInsertionSettings", "parse_failures"]

#: Observation keys, one per modality, in the order every fusion model takes them.
FUSION_MODALITIES = ("rgb", "depth", "wrench", "proprio")
#: Ways a sensor fails: ``missing`` (zeros), ``noise`` (Gaussian), ``frozen`` (the last good reading repeats),
#: ``dropout`` (bursts of zeros).
FAILURE_KINDS = ("missing", "noise", "frozen", "dropout")
#: The corruptions (failures a detector should flag; ``missing`` is known to the robot and compensated instead).
CORRUPTIONS = ("noise", "frozen", "dropout")
#: Gaussian noise standard deviation per modality at ``std=1`` (in the reading's units).
NOISE_SCALE = {"rgb": 60.0, "depth": 0.15, "wrench": 3.0, "proprio": 0.1}
_MODALITY_TAG = {"rgb": "rgb", "depth": "depth", "wrench": "wrench", "proprio": "joints"}
WRENCH_WINDOW = 32
PROPRIO_SIZE = 15
DEPTH_FAR = 2.0  #: metres; depth readings are clipped here
WRENCH_RANGE = 500.0  #: N and N m: the sensor saturates here (a blocked push stays under 100 N)
PROPRIO_RANGE = 10.0  #: bound of every proprioceptive value (m, m/s, rad)
CONTACT_FORCE = 2.0  #: newtons of force beyond the peg's weight that count as contact


@dataclass(frozen=True)
class FailureSpec:
    """One modality's failure: ``kind`` happens on each step with probability ``rate``.

    ``dropout`` starts a burst of ``burst`` zero readings with probability ``rate`` on a step outside a burst;
    ``noise`` adds Gaussian noise of ``std`` x the modality's :data:`NOISE_SCALE`.
    """

    kind: str
    rate: float = 1.0
    std: float = 1.0
    burst: int = 5

    def __post_init__(self) -> None:
        check_choice("failure kind", self.kind, FAILURE_KINDS)
        for name in ("rate", "std"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise InvalidArgumentError(f"failure {name}={value!r} must be a finite number")
        if not 0.0 <= self.rate <= 1.0:
            raise InvalidArgumentError(f"failure rate={self.rate!r} must be in [0, 1]")
        if self.std < 0:
            raise InvalidArgumentError(f"failure std={self.std!r} must be >= 0")
        if isinstance(self.burst, bool) or not isinstance(self.burst, int) or self.burst < 1:
            raise InvalidArgumentError(f"failure burst={self.burst!r} must be an integer >= 1")


def parse_failures(value: Any) -> dict[str, FailureSpec]:
    """Failures from ``{"rgb": {"kind": "noise", "rate": 0.5}}`` or the text ``"noise:rgb@0.5,missing:depth"``.

    Raises:
        UnknownNameError: an unknown modality, failure kind or option.
        InvalidArgumentError: a malformed entry or a rate outside [0, 1].
    """
    if value is None or value == "" or value == "none":
        return {}
    if isinstance(value, str):
        out: dict[str, Any] = {}
        for item in (part.strip() for part in value.split(",") if part.strip()):
            head, _, rate = item.partition("@")
            kind, sep, modality = head.partition(":")
            if not sep:
                raise InvalidArgumentError(f"failure {item!r} must look like KIND:MODALITY[@RATE], e.g. noise:rgb@0.5")
            try:
                out[modality] = {"kind": kind, **({"rate": float(rate)} if rate else {})}
            except ValueError:
                raise InvalidArgumentError(f"failure rate {rate!r} in {item!r} must be a number in [0, 1]") from None
        value = out
    if not isinstance(value, Mapping):
        raise InvalidArgumentError(f"failures must be a dict or KIND:MODALITY[@RATE] text, got {value!r}")
    failures = {}
    for modality, options in value.items():
        check_choice("modality", modality, FUSION_MODALITIES)
        if isinstance(options, str):
            options = {"kind": options}
        if not isinstance(options, Mapping):
            raise InvalidArgumentError(f"failure of {modality!r} must be a dict like {{'kind': 'noise'}}, "
                                       f"got {options!r}")
        for key in options:
            check_choice(f"failure option for {modality!r}", key, ("kind", "rate", "std", "burst"))
        if "kind" not in options:
            raise InvalidArgumentError(f"failure of {modality!r} names no kind; kinds: {', '.join(FAILURE_KINDS)}")
        failures[modality] = FailureSpec(**options)
    return failures


@dataclass(frozen=True)
class PegInsertionSettings(TaskSettings):
    """Settings of :class:`PegInsertionEnv` (validated when the environment is made)."""

    peg: str = "round"
    reward: str = "shaped"
    clearance: float = world.DEFAULT_CLEARANCE
    image_size: int = 64
    max_translation: float = 0.01
    max_yaw: float = 0.05
    hole_range: float = 0.04
    hole_yaw_range: float = 0.3
    start_offset: float = 0.03
    start_height: tuple[float, float] = (0.06, 0.1)
    success_depth: float = 0.02
    failures: Any = field(default=None)

    def __post_init__(self) -> None:
        check_choice("peg shape", self.peg, world.PEG_SHAPES)
        check_choice("reward scheme", self.reward, tuple(INSERTION_REWARDS))
        self._check_positive("clearance", maximum=0.02)
        self._check_int("image_size", 16, 128)
        self._check_positive("max_translation", maximum=0.05)
        self._check_positive("max_yaw", maximum=0.5)
        self._check_non_negative("hole_range", "hole_yaw_range", "start_offset")
        low, high = self._check_range("start_height")
        if low < 0.02 or high > 0.3:
            raise InvalidArgumentError(f"start_height={self.start_height!r} must lie within [0.02, 0.3] m")
        self._check_positive("success_depth", maximum=world.BLOCK_HEIGHT - 0.005)
        object.__setattr__(self, "failures", parse_failures(self.failures))


class PegInsertionEnv(VantageEnv):
    """Insert a peg held by a Panda into a hole block placed at random on the table, from fused sensors.

    **Actions**: ``Box(-1, 1, (3,))`` for the round peg, ``(4,)`` for the others: end-effector position deltas
    ``(dx, dy, dz)`` in units of ``max_translation`` metres per step (world frame) and, for the non-round pegs,
    a yaw delta in units of ``max_yaw`` radians per step. 20 Hz. The deltas move a target pose that the
    compliant Cartesian controller (:class:`envs.robots.panda.CartesianController`) tracks with differential
    IK; the target never runs more than 1 cm ahead, so a blocked peg pushes with a bounded force. Values
    outside [-1, 1] or not finite raise :class:`~envs.errors.InvalidActionError`.

    **Observation**: a ``Dict`` with one key per modality (:data:`FUSION_MODALITIES`):

    * ``rgb``: ``(S, S, 3)`` uint8 from the fixed ``scene_camera`` (``S = image_size``);
    * ``depth``: ``(S, S, 1)`` float32, metres along the optical axis, clipped to 2 m;
    * ``wrench``: ``(32, 6)`` float32, the peg's force/torque sensor ``[fx fy fz tx ty tz]`` (N, N m, sensor
      frame, z down the peg) at every physics substep of the last control step (1.5625 ms apart), saturating at
      +-500;
    * ``proprio``: ``(15,)`` float32: peg-tip position (m, relative to ``(0.5, 0, 0)``), ``sin``/``cos`` of the
      tool yaw, tip velocity (m/s), the seven joint angles (rad).

    **Failures** (``failures=``, per modality, drawn from the episode's RNG; :func:`parse_failures`):
    ``missing`` (zeros), ``noise`` (Gaussian), ``frozen`` (the last good reading repeats), ``dropout`` (bursts of
    zeros), each on a step with probability ``rate``. ``info["corrupted"]`` lists the modalities corrupted this step.

    **Reward** (:class:`envs.rewards.InsertionReward`, ``reward="shaped" | "sparse"``): ``reward_distance``
    (TD on the tip's distance to its inserted position plus 0.02 m per radian of yaw misalignment),
    ``reward_success`` (+10 on insertion), ``reward_time`` (-0.01 per step).

    **Start**: the block's centre is drawn uniformly within ``hole_range`` of (0.5, 0) (and its yaw within
    ``hole_yaw_range`` for non-round pegs); the peg starts vertically, ``start_offset`` (at most, per axis)
    beside the hole and ``start_height`` above the block.

    **Termination**: the tip is ``success_depth`` below the block's top inside the hole. **Truncation**: the
    spec's step cap (a ``TimeLimit``).

    **Info**: ``success``, ``distance_error``, ``insertion_depth`` (m below the top), ``lateral_error`` (m),
    ``yaw_error`` (rad), ``contact`` (force beyond the peg's weight over 2 N), ``force`` (N), ``corrupted``,
    ``reward_<term>``.

    Version history: v0, first version.
    """

    settings_class = PegInsertionSettings
    camera, view_camera = world.CAMERA, world.OVERVIEW
    reset_options = ()

    def __init__(self, backend: str = "mujoco", render_mode: str | None = None, world_file: str | Path | None = None,
                 backend_kwargs: Mapping[str, Any] | None = None,
                 corruption: Mapping[str, Mapping[str, Any]] | None = None, **settings: Any) -> None:
        super().__init__(backend, render_mode, corruption, **settings)
        s = self.settings
        if world_file is not None:
            from envs.sim import make_backend

            self.sim = make_backend(backend, world_file, **dict(backend_kwargs or {}))
        else:
            self.sim = world.open_peg_world(backend, s.peg, s.clearance, s.image_size, **dict(backend_kwargs or {}))
        self.arm = Arm(world.JOINTS, world.ACTUATORS, world.PEG_TIP)
        self.controller = CartesianController(self.arm, world.HOME, ((0.3, -0.25, 0.0), (0.75, 0.25, 0.35)))
        self.reward_scheme = InsertionReward(**INSERTION_REWARDS[s.reward])
        self.turns = s.peg != "round"
        self.sides = {"round": 0, "square": 4, "triangle": 3}[s.peg]
        self.action_space = spaces.Box(-1.0, 1.0, (4 if self.turns else 3,), np.float32)
        size = self.sim.camera_shape(self.camera)
        self.observation_space = spaces.Dict({
            "rgb": spaces.Box(0, 255, (*size, 3), np.uint8),
            "depth": spaces.Box(0.0, DEPTH_FAR, (*size, 1), np.float32),
            "wrench": spaces.Box(-WRENCH_RANGE, WRENCH_RANGE, (WRENCH_WINDOW, 6), np.float32),
            "proprio": spaces.Box(-PROPRIO_RANGE, PROPRIO_RANGE, (PROPRIO_SIZE,), np.float32),
        })
        window = self.sim.read_force_torque(world.FT_SENSOR, substeps=True).shape[0] if self.sim.force_torque_names \
            else WRENCH_WINDOW
        if window != WRENCH_WINDOW:
            raise InvalidArgumentError(f"the world steps {window} physics substeps per control step; the force "
                                       f"window needs {WRENCH_WINDOW}")
        self._make_observables({
            "rgb": ("rgb", lambda: self.sim.render(self.camera)),
            "depth": ("depth", self._read_depth),
            "wrench": ("wrench", self._read_wrench),
            "proprio": ("joints", self._read_proprio),
        })
        self._hole = np.zeros(3)
        self._hole_yaw = 0.0
        self._held: dict[str, np.ndarray] = {}
        self._burst: dict[str, int] = {}
        self._last_tip = np.zeros(3)

    # -- sensors -------------------------------------------------------------------------------------------
    def _read_depth(self) -> np.ndarray:
        return np.clip(self.sim.render_depth(self.camera), 0.0, DEPTH_FAR)[..., None].astype(np.float32)

    def _read_wrench(self) -> np.ndarray:
        if not self.sim.force_torque_names:  # Webots R2023b has no torque sensor: the window stays empty
            return np.zeros((WRENCH_WINDOW, 6), np.float32)
        window = self.sim.read_force_torque(world.FT_SENSOR, substeps=True)
        return np.clip(window, -WRENCH_RANGE, WRENCH_RANGE).astype(np.float32)

    def _read_proprio(self) -> np.ndarray:
        tip, yaw = self.controller.tool_pose(self.sim)
        jacobian = self.sim.site_jacobian(world.PEG_TIP, world.JOINTS)
        velocity = jacobian[:3] @ self.arm.joint_velocities(self.sim)
        q = self.arm.joint_positions(self.sim)
        values = np.concatenate([tip - (0.5, 0.0, 0.0), [math.sin(yaw), math.cos(yaw)], velocity, q])
        return np.clip(values, -PROPRIO_RANGE, PROPRIO_RANGE).astype(np.float32)

    def _observation(self) -> tuple[dict[str, np.ndarray], list[str]]:
        clean = {name: self._observe(name) for name in FUSION_MODALITIES}
        obs, corrupted = {}, []
        for name in FUSION_MODALITIES:
            spec = self.settings.failures.get(name)
            value = clean[name]
            if spec is not None:
                value, hit = self._fail(name, spec, value)
                if hit:
                    corrupted.append(name)
                else:
                    self._held[name] = value
            obs[name] = value
        return obs, corrupted

    def _fail(self, name: str, spec: FailureSpec, value: np.ndarray) -> tuple[np.ndarray, bool]:
        rng = self.np_random
        if spec.kind == "dropout":
            if self._burst.get(name, 0) == 0 and rng.random() < spec.rate:
                self._burst[name] = spec.burst
            if self._burst.get(name, 0) > 0:
                self._burst[name] -= 1
                return np.zeros_like(value), True
            return value, False
        if not rng.random() < spec.rate:
            return value, False
        if spec.kind == "missing":
            return np.zeros_like(value), True
        if spec.kind == "frozen":
            held = self._held.setdefault(name, value.copy())  # frozen from the start: the first reading stays
            return held.copy(), True
        noisy = value.astype(np.float64) + rng.normal(0.0, spec.std * NOISE_SCALE[name], value.shape)
        space = self.observation_space[name]
        return np.clip(noisy, space.low, space.high).astype(value.dtype), True

    # -- geometry ------------------------------------------------------------------------------------------
    def _errors(self) -> dict[str, Any]:
        tip, yaw = self.controller.tool_pose(self.sim)
        top = world.BLOCK_HEIGHT
        lateral = float(np.linalg.norm(tip[:2] - self._hole[:2]))
        yaw_error = 0.0
        if self.sides:
            period = 2 * math.pi / self.sides
            yaw_error = abs(math.remainder(yaw - self._hole_yaw, period))
        depth = top - float(tip[2])
        goal = np.array([*self._hole[:2], top - self.settings.success_depth])
        inside = lateral < world.PEG_INRADIUS + self.settings.clearance
        success = bool(inside and depth >= self.settings.success_depth)
        force = self.sim.read_force_torque(world.FT_SENSOR)[:3] if self.sim.force_torque_names else np.zeros(3)
        load = float(np.linalg.norm(force + np.array([0.0, 0.0, world.PEG_MASS * 9.81])))
        return {"distance_error": float(np.linalg.norm(tip - goal)) + 0.02 * yaw_error, "success": success,
                "insertion_depth": depth, "lateral_error": lateral, "yaw_error": yaw_error,
                "contact": load > CONTACT_FORCE, "force": load}

    # -- gymnasium API -------------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        self._start_episode(seed, options)
        s, rng = self.settings, self.np_random
        self._hole = np.array([0.5 + rng.uniform(-s.hole_range, s.hole_range),
                               rng.uniform(-s.hole_range, s.hole_range), 0.0])
        self._hole_yaw = float(rng.uniform(-s.hole_yaw_range, s.hole_yaw_range)) if self.turns else 0.0
        self.sim.set_pose(world.HOLE_BLOCK, Pose.planar(self._hole[0], self._hole[1], self._hole_yaw))
        self.arm.reset_to(self.sim, world.HOME)
        self.controller.reset(self.sim)
        # Drive the tool to its start pose with the controller itself: the same IK that later moves it.
        start = np.array([*(self._hole[:2] + rng.uniform(-s.start_offset, s.start_offset, 2)),
                          world.BLOCK_HEIGHT + rng.uniform(*s.start_height)])
        start_yaw = self.controller.target_yaw + (rng.uniform(-0.2, 0.2) if self.turns else 0.0)
        for _ in range(60):
            tip, yaw = self.controller.tool_pose(self.sim)
            self.controller.target_position = tip
            self.controller.target_yaw = yaw
            self.controller.command(self.sim, np.clip(start - tip, -0.03, 0.03),
                                    float(np.clip(math.remainder(start_yaw - yaw, 2 * math.pi), -0.1, 0.1)))
            self.sim.step()
            if np.linalg.norm(start - tip) < 5e-4 and abs(math.remainder(start_yaw - yaw, 2 * math.pi)) < 0.005:
                break
        self.controller.reset(self.sim)
        self._held, self._burst = {}, {}
        obs, corrupted = self._observation()
        errors = self._errors()
        self.reward_scheme.reset(errors)
        return obs, {**errors, "corrupted": corrupted, "hole_position": [float(v) for v in self._hole],
                     "hole_yaw": self._hole_yaw}

    def _decode(self, action: Any) -> np.ndarray:
        try:
            array = np.asarray(action, dtype=np.float64)
        except (TypeError, ValueError):
            raise InvalidActionError(f"action must be {self.action_space.shape[0]} numbers in [-1, 1], got "
                                     f"{action!r}") from None
        if array.shape != self.action_space.shape:
            raise InvalidActionError(f"action must have shape {self.action_space.shape} (dx, dy, dz"
                                     f"{', dyaw' if self.turns else ''}), got {array.shape}")
        if not np.all(np.isfinite(array)):
            raise InvalidActionError(f"action {array.tolist()} is not finite")
        if np.any(np.abs(array) > 1.0 + 1e-6):
            raise InvalidActionError(f"action {array.tolist()} is outside [-1, 1] (units of max_translation="
                                     f"{self.settings.max_translation} m and max_yaw={self.settings.max_yaw} rad)")
        return np.clip(array, -1.0, 1.0)

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        a = self._decode(action)
        s = self.settings
        self.controller.command(self.sim, a[:3] * s.max_translation, float(a[3]) * s.max_yaw if self.turns else 0.0)
        self.sim.step()
        obs, corrupted = self._observation()
        errors = self._errors()
        reward, terms = self.reward_scheme(errors)
        info = {**errors, "corrupted": corrupted, **{f"reward_{k}": v for k, v in terms.items()}}
        return obs, reward, bool(errors["success"]), False, info


class PegInsertionEvaluator(EpisodeEvaluator):
    """Records success and time to insert (steps) per episode; the trace is the contact force."""

    trace_key = "force"

    def start(self, info: Mapping[str, Any]) -> None:
        self._success = False
        self._steps = 0
        self._insert_step: int | None = None

    def step(self, info: Mapping[str, Any]) -> None:
        self._steps += 1
        if info.get("success") and self._insert_step is None:
            self._success, self._insert_step = True, self._steps

    def finish(self) -> dict[str, Any]:
        return {"success": self._success, "time_to_insert": self._insert_step}

    def summarize(self, episodes: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        out = super().summarize(episodes)
        times = [e["time_to_insert"] for e in episodes if e.get("time_to_insert") is not None]
        out["success_rate"] = float(np.mean([bool(e["success"]) for e in episodes])) if episodes else 0.0
        out["time_to_insert_mean"] = float(np.mean(times)) if times else None
        return out

    def format_table(self, rows: Sequence[tuple[str, Mapping[str, Any]]]) -> str:
        lines = ["| policy | success | time to insert (steps) | return | episodes |", "|---|---|---|---|---|"]
        for label, s in rows:
            time = "-" if s.get("time_to_insert_mean") is None else f"{s['time_to_insert_mean']:.1f}"
            lines.append(f"| {label} | {100 * s['success_rate']:.1f} % | {time} | {s['return_mean']:.2f} | "
                         f"{s['episodes']} |")
        return "\n".join(lines)


def unknown_modalities(names: Sequence[str]) -> None:
    """Raise naming the first of ``names`` that is not a fusion modality."""
    for name in names:
        if name not in FUSION_MODALITIES:
            raise UnknownNameError("modality", name, FUSION_MODALITIES)
