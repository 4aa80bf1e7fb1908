"""``docs/adding-a-task.md`` followed for a third task: what the tooling gives a task from its spec entry alone.

The task below is the walkthrough's shape on the smallest articulated world (``worlds/*/arm2.*``): move the
two-link arm's wrist onto a goal, from the arm camera's pixels. It is one settings dataclass, one
``VantageEnv`` class and an evaluator, plus one ``TaskSpec``; the tests then run the contract suite, evaluation,
a baseline and a tiny PPO training on it without touching ``envs``, ``agents`` or ``scripts``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.envs.registration import register, registry

import envs.specs
from envs.errors import check_choice
from envs.rewards import make_reward
from envs.robots.arm import Arm
from envs.sim import make_backend
from envs.specs import TaskOption, TaskSpec
from envs.tasks.base import EpisodeEvaluator, TaskSettings, VantageEnv
from tests.envs import test_contract as contract

MOVES = ((0.0, 0.0), (0.02, 0.0), (-0.02, 0.0), (0.0, 0.02), (0.0, -0.02))
MOVE_NAMES = ("stay", "+x", "-x", "+y", "-y")


@dataclass(frozen=True)
class ReachSettings(TaskSettings):
    """Settings of :class:`ReachEnv`."""

    reward: str = "td"
    tolerance: float = 0.02
    control_period: float = 0.05

    def __post_init__(self) -> None:
        check_choice("reward scheme", self.reward, ("td", "negative"))
        self._check_positive("tolerance", "control_period")


class ReachEnv(VantageEnv):
    """Move the wrist of a two-link arm to within ``tolerance`` of a goal on its plane, from pixels.

    Actions: ``Discrete(5)``, 0 stay, 1-4 a 2 cm end-effector move along +x, -x, +y, -y (differential IK).
    Observation: the 64x64 ``arm_camera`` frame. Reward: the scheme ``reward`` on ``distance_error`` (wrist to
    goal, m), reported as ``reward_distance``. Terminates within the tolerance.
    """

    settings_class = ReachSettings
    camera = view_camera = "arm_camera"

    def __init__(self, backend: str = "mujoco", render_mode: str | None = None, world: str | Path = "arm2",
                 backend_kwargs: Mapping[str, Any] | None = None,
                 corruption: Mapping[str, Mapping[str, Any]] | None = None, **settings: Any) -> None:
        super().__init__(backend, render_mode, corruption, **settings)
        self.sim = make_backend(backend, world, control_period=self.settings.control_period,
                                **dict(backend_kwargs or {}))
        self.arm = Arm(("shoulder", "elbow"), ("shoulder_motor", "elbow_motor"), "wrist")
        self.reward_scheme = make_reward(self.settings.reward, ("distance_error",))
        self.action_space = spaces.Discrete(len(MOVES))
        height, width = self.sim.camera_shape(self.camera)
        self.observation_space = spaces.Box(0, 255, (height, width, 3), np.uint8)
        self._make_observables({"rgb": ("rgb", lambda: self.sim.render(self.camera))})
        self._goal = np.zeros(2)

    def _error(self) -> dict[str, float]:
        wrist = self.arm.end_effector_pose(self.sim).position[:2]
        return {"distance_error": float(np.linalg.norm(wrist - self._goal))}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        self._start_episode(seed, options)
        radius, angle = self.np_random.uniform(0.15, 0.3), self.np_random.uniform(-math.pi / 2, math.pi / 2)
        self._goal = radius * np.array([math.cos(angle), math.sin(angle)])
        # Start bent, away from the straight arm's singularity.
        self.arm.reset_to(self.sim, [self.np_random.uniform(-0.5, 0.5), self.np_random.uniform(1.0, 1.5)])
        errors = self._error()
        self.reward_scheme.reset(errors)
        return self._observe("rgb"), {**errors, "reward_distance": 0.0, "goal": self._goal.tolist()}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        dx, dy = MOVES[self.decode_discrete(action, MOVE_NAMES)]
        self.arm.move_end_effector(self.sim, (dx, dy, 0.0))
        self.sim.step()
        errors = self._error()
        reward, terms = self.reward_scheme(errors)
        done = errors["distance_error"] < self.settings.tolerance
        return self._observe("rgb"), reward, done, False, {**errors, "reward_distance": terms["distance_error"],
                                                           "goal": self._goal.tolist()}


class ReachEvaluator(EpisodeEvaluator):
    """The wrist's final distance to the goal, and whether it got there."""

    trace_key = "distance_error"

    def start(self, info: Mapping[str, Any]) -> None:
        self._last = info

    def step(self, info: Mapping[str, Any]) -> None:
        self._last = info

    def finish(self) -> dict[str, Any]:
        return {"final_error": float(self._last["distance_error"])}

    def summarize(self, episodes: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        return {**super().summarize(episodes),
                "final_error_mean": float(np.mean([e["final_error"] for e in episodes]))}


class StayPolicy:
    """The static baseline: never move."""

    def __init__(self, env: gym.Env) -> None:
        pass

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = True) -> tuple[np.int64, None]:
        return np.int64(0), None


SPEC = TaskSpec(
    name="reach-test",
    env_id="vantage/ReachTest-v0",
    entry_point="tests.envs.test_adding_a_task:ReachEnv",
    max_episode_steps=40,
    summary="move a two-link arm's wrist onto a goal (docs/adding-a-task.md, followed in a test)",
    options=(TaskOption("reward", ("td", "negative"), "td", "reward scheme"),),
    presets={"ppo": "tracking-paper"},
    evaluator="tests.envs.test_adding_a_task:ReachEvaluator",
    baselines={"static": "tests.envs.test_adding_a_task:StayPolicy"},
)


@pytest.fixture(scope="module")
def third_task() -> Any:
    """The spec entry added to the table (and registered), as a third task in ``envs/specs.py`` would be."""
    envs.specs.TASKS[SPEC.name] = SPEC
    register(id=SPEC.env_id, entry_point=SPEC.entry_point, max_episode_steps=SPEC.max_episode_steps)
    yield SPEC
    del envs.specs.TASKS[SPEC.name]
    del registry[SPEC.env_id]


def test_the_contract_suite_holds_for_the_new_task(third_task: TaskSpec) -> None:
    contract.test_check_env_without_warnings(third_task.env_id, {})
    contract.test_same_seed_same_trajectory_and_reward_is_the_sum_of_its_terms(third_task.env_id, {})
    contract.test_same_seed_same_trajectory_and_reward_is_the_sum_of_its_terms(third_task.env_id,
                                                                               {"reward": "negative"})
    contract.test_bad_actions_raise_named_errors(third_task.env_id)
    contract.test_unknown_settings_and_reset_options_are_refused_by_name(third_task.env_id)
    contract.test_spec_pickles_and_close_is_safe_twice(third_task.env_id)


def test_the_arm_reaches_its_goal_with_the_moves(third_task: TaskSpec) -> None:
    env = gym.make(third_task.env_id)
    _, info = env.reset(seed=3)
    inner = env.unwrapped
    start = info["distance_error"]
    for _ in range(40):  # greedy moves towards the goal
        wrist = inner.arm.end_effector_pose(inner.sim).position[:2]
        direction = inner._goal - wrist
        axis = int(np.argmax(np.abs(direction)))
        action = 1 + 2 * axis + (0 if direction[axis] > 0 else 1)
        _, _, terminated, _, info = env.step(action)
        if terminated:
            break
    env.close()
    assert terminated and info["distance_error"] < 0.02 < start


def test_tooling_from_the_spec_alone(third_task: TaskSpec, tmp_path: Path) -> None:
    from agents.evaluation import evaluate_target
    from agents.training import TrainConfig, task_env_kwargs, train

    assert task_env_kwargs("reach-test", reward="negative") == {"reward": "negative", "backend": "mujoco"}
    result, _, path = evaluate_target("reach-test", "static", episodes=2, out=tmp_path / "eval")
    assert result.summary["steps_mean"] == 40 and "final_error_mean" in result.summary and path.is_file()
    tiny = {"n_steps": 16, "batch_size": 16, "n_epochs": 1,
            "policy_kwargs": {"features_extractor_kwargs": {"features_dim": 16}, "net_arch": {"pi": [8], "vf": [8]}}}
    summary = train(TrainConfig(task="reach-test", steps=16, n_envs=1, agent_overrides=tiny,
                                env_kwargs=task_env_kwargs("reach-test")), tmp_path / "run", progress_bar=False)
    assert summary["num_timesteps"] == 16
    result, _, _ = evaluate_target(tmp_path / "run", episodes=1, out=tmp_path / "eval")
    assert result.policy == "agent" and result.summary["steps_mean"] >= 1
