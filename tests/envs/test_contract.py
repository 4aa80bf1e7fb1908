"""The environment contract, for every registered id and each non-default choice of its spec's options.

A new task gets these for free from its spec entry: Gymnasium's checker without warnings, seeded
determinism, rewards equal to the sum of their ``reward_<term>`` infos, bad actions, settings and reset
options refused with named errors, a picklable spec and a safe double close.
"""

from __future__ import annotations

import math
import pickle
import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs  # noqa: F401  (registers the environments)
from envs.errors import InvalidActionError, UnknownNameError
from envs.registration import ENVIRONMENTS
from envs.specs import TASKS

CASES: list[tuple[str, dict[str, Any]]] = []
for _spec in TASKS.values():
    CASES.append((_spec.env_id, {}))
    CASES += [(_spec.env_id, {o.name: c}) for o in _spec.options for c in o.choices if c != o.default]
IDS = [f"{env_id.split('/')[1]}{''.join(f'-{v}' for v in kw.values())}" for env_id, kw in CASES]


@pytest.mark.parametrize("env_id", list(ENVIRONMENTS))
def test_every_task_spec_is_registered_with_its_episode_limit(env_id: str) -> None:
    (spec,) = [s for s in TASKS.values() if s.env_id == env_id]
    assert gym.spec(env_id).max_episode_steps == spec.max_episode_steps


@pytest.mark.parametrize(("env_id", "kwargs"), CASES, ids=IDS)
def test_check_env_without_warnings(env_id: str, kwargs: dict[str, Any]) -> None:
    env = gym.make(env_id, render_mode="rgb_array", **kwargs)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            check_env(env.unwrapped)
        env.reset(seed=0)
        frame = env.render()
        assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3
    finally:
        env.close()


@pytest.mark.parametrize(("env_id", "kwargs"), CASES, ids=IDS)
def test_same_seed_same_trajectory_and_reward_is_the_sum_of_its_terms(env_id: str, kwargs: dict[str, Any]) -> None:
    a, b = gym.make(env_id, **kwargs), gym.make(env_id, **kwargs)
    try:
        a.action_space.seed(5)
        actions = [a.action_space.sample() for _ in range(40)]
        obs_a, info_a = a.reset(seed=11)
        obs_b, info_b = b.reset(seed=11)
        _assert_same_obs(obs_a, obs_b)
        assert info_a == info_b
        for action in actions:
            out_a, out_b = a.step(action), b.step(action)
            _assert_same_obs(out_a[0], out_b[0])
            assert out_a[1:] == out_b[1:]
            reward, info = out_a[1], out_a[4]
            terms = [v for k, v in info.items() if k.startswith("reward_")]
            assert terms and math.isclose(reward, sum(terms), rel_tol=1e-9, abs_tol=1e-12)
            if out_a[2] or out_a[3]:
                obs_a, _ = a.reset()
                obs_b, _ = b.reset()
                _assert_same_obs(obs_a, obs_b)
        other, _ = a.reset(seed=12)
        first, _ = b.reset(seed=11)
        assert not _same_obs(other, first)
    finally:
        a.close()
        b.close()


def _same_obs(a: Any, b: Any) -> bool:
    """Observations equal, ``Dict`` ones key by key."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    return np.array_equal(a, b)


def _assert_same_obs(a: Any, b: Any) -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"observation {key!r}")
    else:
        np.testing.assert_array_equal(a, b)


def _bad_actions(space: gym.Space) -> list[Any]:
    if isinstance(space, gym.spaces.Discrete):
        return [int(space.n), -1, 1.5, np.array([0, 1]), True, None, "1"]
    low, high = space.low, space.high
    return [np.full(space.shape, np.nan), high + 1.0, low - 1.0, np.zeros(space.shape[0] + 1)]


@pytest.mark.parametrize("env_id", list(ENVIRONMENTS))
def test_bad_actions_raise_named_errors(env_id: str) -> None:
    env = gym.make(env_id)
    try:
        env.reset(seed=0)
        for action in _bad_actions(env.action_space):
            with pytest.raises(InvalidActionError):
                env.unwrapped.step(action)
    finally:
        env.close()


@pytest.mark.parametrize("env_id", list(ENVIRONMENTS))
def test_unknown_settings_and_reset_options_are_refused_by_name(env_id: str) -> None:
    with pytest.raises(UnknownNameError, match="no_such_setting"):
        gym.make(env_id, no_such_setting=1)
    with pytest.raises(UnknownNameError, match="backend 'gazebo'"):
        gym.make(env_id, backend="gazebo")
    env = gym.make(env_id)
    try:
        with pytest.raises(UnknownNameError, match="reset option 'no_such_option'"):
            env.reset(seed=0, options={"no_such_option": 1})
    finally:
        env.close()


@pytest.mark.parametrize("env_id", list(ENVIRONMENTS))
def test_spec_pickles_and_close_is_safe_twice(env_id: str) -> None:
    env = gym.make(env_id)
    assert pickle.loads(pickle.dumps(env.spec)).id == env_id
    env.reset(seed=0)
    env.close()
    env.close()
