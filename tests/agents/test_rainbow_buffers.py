"""Rainbow replay: sum-tree, proportional prioritisation and n-step assembly at episode ends."""

from __future__ import annotations

import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer

from agents.rainbow.buffers import PrioritizedReplayBuffer, RainbowReplayBuffer, SumTree
from envs.errors import InvalidArgumentError

OBS_SPACE = spaces.Box(-1e6, 1e6, shape=(2,), dtype=np.float32)
ACTION_SPACE = spaces.Discrete(3)


def _obs(env: int, t: int) -> np.ndarray:
    """Observation that names its environment and step, so stored transitions can be traced back."""
    return np.array([env, t], dtype=np.float32)


def _stored(buffer: RainbowReplayBuffer) -> list[tuple[tuple[float, ...], tuple[float, ...], float, float, float]]:
    """(obs, next_obs, reward, done, discount) of every stored slot, in insertion order."""
    return [
        (
            tuple(buffer.observations[i].tolist()),
            tuple(buffer.next_observations[i].tolist()),
            float(buffer.rewards[i]),
            float(buffer.dones[i]),
            float(buffer.discounts[i]),
        )
        for i in range(buffer.size())
    ]


# ---------------------------------------------------------------------------------------------- sum-tree
def test_sum_tree_total_and_updates() -> None:
    tree = SumTree(5)  # not a power of two on purpose
    tree.update(np.arange(5), [1.0, 2.0, 3.0, 4.0, 5.0])
    assert tree.total == pytest.approx(15.0)
    tree.update(2, 10.0)
    assert tree.total == pytest.approx(22.0)
    assert tree[np.array([2])][0] == 10.0
    # A repeated index keeps its last value and the sums stay consistent.
    tree.update(np.array([0, 0]), np.array([7.0, 0.5]))
    assert tree[0] == 0.5
    assert tree.total == pytest.approx(0.5 + 2 + 10 + 4 + 5)


def test_sum_tree_lazy_refresh_matches_a_fresh_tree() -> None:
    """Single-leaf and batch writes interleaved (with repeats) leave the same sums as one batch write."""
    rng = np.random.default_rng(0)
    tree = SumTree(37)
    for _ in range(200):
        if rng.random() < 0.7:
            tree.update(int(rng.integers(37)), float(rng.random()))
        else:
            tree.update(rng.integers(37, size=5), rng.random(5))
        if rng.random() < 0.1:
            assert tree.total >= 0.0  # a read in between refreshes only part of the history
    fresh = SumTree(37)
    fresh.update(np.arange(37), tree[np.arange(37)])
    assert tree.total == pytest.approx(fresh.total, rel=1e-12)
    values = np.linspace(0, fresh.total, 101)[:-1]
    np.testing.assert_array_equal(tree.find(values), fresh.find(values))


def test_sum_tree_find_maps_prefix_sums_to_leaves() -> None:
    tree = SumTree(4)
    tree.update(np.arange(4), [1.0, 2.0, 3.0, 4.0])
    # Leaf i covers [cum(i-1), cum(i)): [0,1) [1,3) [3,6) [6,10).
    values = np.array([0.0, 0.999, 1.0, 2.5, 3.0, 5.99, 6.0, 9.999])
    assert tree.find(values).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]


def test_sum_tree_sampling_follows_priorities() -> None:
    rng = np.random.default_rng(0)
    priorities = np.array([1.0, 2.0, 3.0, 4.0, 0.0, 10.0])
    tree = SumTree(len(priorities))
    tree.update(np.arange(len(priorities)), priorities)
    draws = tree.find(rng.uniform(0, tree.total, size=200_000))
    frequencies = np.bincount(draws, minlength=len(priorities)) / draws.size
    np.testing.assert_allclose(frequencies, priorities / priorities.sum(), atol=0.005)
    assert frequencies[4] == 0.0  # zero priority is never drawn


@pytest.mark.parametrize(("index", "priority"), [(-1, 1.0), (4, 1.0), (0, -0.1), (0, float("nan"))])
def test_sum_tree_rejects_bad_updates(index: int, priority: float) -> None:
    with pytest.raises(InvalidArgumentError):
        SumTree(4).update(index, priority)


# -------------------------------------------------------------------------------- prioritised sampling
def _filled_per(n: int = 4, alpha: float = 1.0) -> PrioritizedReplayBuffer:
    buffer = PrioritizedReplayBuffer(8, OBS_SPACE, ACTION_SPACE, device="cpu", alpha=alpha, n_step=1)
    for t in range(n):
        buffer.add(_obs(0, t)[None], _obs(0, t + 1)[None], np.array([0]), np.array([0.0]), np.array([False]), [{}])
    return buffer


def test_per_new_transitions_get_max_priority() -> None:
    buffer = _filled_per()
    np.testing.assert_allclose(buffer.tree[np.arange(4)], 1.0)
    buffer.update_priorities(np.array([1]), np.array([3.0]))
    buffer.add(_obs(0, 9)[None], _obs(0, 10)[None], np.array([0]), np.array([0.0]), np.array([False]), [{}])
    assert buffer.tree[4] == pytest.approx(3.0 + buffer.priority_eps)


def test_per_priorities_use_alpha_and_eps() -> None:
    buffer = _filled_per(alpha=0.5)
    buffer.update_priorities(np.array([0, 2]), th.tensor([4.0, -9.0]))
    assert buffer.tree[0] == pytest.approx((4.0 + 1e-6) ** 0.5)
    assert buffer.tree[2] == pytest.approx((9.0 + 1e-6) ** 0.5)  # |loss|
    assert buffer.max_priority == pytest.approx((9.0 + 1e-6) ** 0.5)


def test_per_sampling_proportions_and_weights() -> None:
    np.random.seed(0)
    buffer = _filled_per(alpha=1.0)
    losses = np.array([1.0, 2.0, 3.0, 4.0])
    buffer.update_priorities(np.arange(4), losses)
    counts = np.zeros(4)
    for _ in range(400):
        batch = buffer.sample(50, beta=0.5)
        counts += np.bincount(batch.indices, minlength=4)
    p = (losses + 1e-6) / (losses + 1e-6).sum()
    np.testing.assert_allclose(counts / counts.sum(), p, atol=0.01)

    batch = buffer.sample(16, beta=0.5)
    expected = (4 * p[batch.indices]) ** -0.5
    np.testing.assert_allclose(batch.weights.numpy(), expected / expected.max(), rtol=1e-5)
    # Stored observations come back with their slots.
    np.testing.assert_array_equal(batch.observations[:, 1].numpy(), batch.indices)


def test_per_beta_one_fully_corrects_and_bad_beta_raises() -> None:
    buffer = _filled_per()
    buffer.update_priorities(np.arange(4), np.array([1.0, 1.0, 1.0, 5.0]))
    batch = buffer.sample(64, beta=1.0)
    p = buffer.tree[batch.indices] / buffer.tree.total
    np.testing.assert_allclose(batch.weights.numpy() * 4 * p, (4 * p).min() * 1.0, rtol=1e-4)
    with pytest.raises(InvalidArgumentError, match="beta"):
        buffer.sample(4, beta=1.5)


def test_empty_buffer_sample_raises() -> None:
    with pytest.raises(InvalidArgumentError, match="empty"):
        RainbowReplayBuffer(4, OBS_SPACE, ACTION_SPACE, device="cpu").sample(2)


# ----------------------------------------------------------------------------------------------- n-step
def _run_episode(buffer: RainbowReplayBuffer, rewards: list[float], end: str) -> None:
    """One environment, one episode of len(rewards) steps, ending by termination or truncation."""
    for t, reward in enumerate(rewards):
        last = t == len(rewards) - 1
        infos = [{"TimeLimit.truncated": True}] if last and end == "truncated" else [{}]
        buffer.add(
            _obs(0, t)[None], _obs(0, t + 1)[None], np.array([t % 3]), np.array([reward]), np.array([last]), infos
        )


def test_n_step_returns_at_termination() -> None:
    buffer = RainbowReplayBuffer(16, OBS_SPACE, ACTION_SPACE, device="cpu", n_step=3, gamma=0.5)
    _run_episode(buffer, [1.0, 2.0, 3.0, 4.0], end="terminated")
    assert _stored(buffer) == [
        ((0, 0), (0, 3), 1 + 0.5 * 2 + 0.25 * 3, 0.0, 0.125),  # full window, bootstraps from s3
        ((0, 1), (0, 4), 2 + 0.5 * 3 + 0.25 * 4, 1.0, 0.125),  # reaches the terminal state: no bootstrap
        ((0, 2), (0, 4), 3 + 0.5 * 4, 1.0, 0.25),
        ((0, 3), (0, 4), 4.0, 1.0, 0.5),
    ]
    assert buffer.actions[:4, 0].tolist() == [0, 1, 2, 0]


def test_n_step_returns_at_truncation_bootstrap_from_final_obs() -> None:
    buffer = RainbowReplayBuffer(16, OBS_SPACE, ACTION_SPACE, device="cpu", n_step=3, gamma=0.5)
    _run_episode(buffer, [1.0, 2.0, 3.0, 4.0], end="truncated")
    assert _stored(buffer) == [
        ((0, 0), (0, 3), 2.75, 0.0, 0.125),
        ((0, 1), (0, 4), 4.5, 0.0, 0.125),  # truncated: bootstrap from the final observation with γ^m
        ((0, 2), (0, 4), 5.0, 0.0, 0.25),
        ((0, 3), (0, 4), 4.0, 0.0, 0.5),
    ]


def test_truncation_counts_as_termination_without_timeout_handling() -> None:
    buffer = RainbowReplayBuffer(
        16, OBS_SPACE, ACTION_SPACE, device="cpu", n_step=2, gamma=0.5, handle_timeout_termination=False
    )
    _run_episode(buffer, [1.0, 1.0], end="truncated")
    assert [done for *_, done, _ in _stored(buffer)] == [1.0, 1.0]


def test_episode_shorter_than_n() -> None:
    buffer = RainbowReplayBuffer(16, OBS_SPACE, ACTION_SPACE, device="cpu", n_step=5, gamma=0.5)
    _run_episode(buffer, [1.0, 1.0], end="terminated")
    assert _stored(buffer) == [((0, 0), (0, 2), 1.5, 1.0, 0.25), ((0, 1), (0, 2), 1.0, 1.0, 0.5)]


def test_n_step_with_two_envs_keeps_episodes_apart() -> None:
    buffer = RainbowReplayBuffer(32, OBS_SPACE, ACTION_SPACE, device="cpu", n_envs=2, n_step=2, gamma=0.5)
    # env 0 terminates at t=1 and restarts; env 1 runs on and is truncated at t=2.
    ends = {(0, 1): "terminated", (1, 2): "truncated"}
    for t in range(3):
        obs = np.stack([_obs(e, 10 * e + t) for e in range(2)])
        next_obs = np.stack([_obs(e, 10 * e + t + 1) for e in range(2)])
        done = np.array([(e, t) in ends for e in range(2)])
        infos = [{"TimeLimit.truncated": ends.get((e, t)) == "truncated"} for e in range(2)]
        buffer.add(obs, next_obs, np.array([0, 1]), np.array([1.0 + e for e in range(2)]), done, infos)
    stored = _stored(buffer)
    by_env = {e: [item for item in stored if item[0][0] == e] for e in range(2)}
    assert by_env[0] == [
        ((0, 0), (0, 2), 1.5, 1.0, 0.25),
        ((0, 1), (0, 2), 1.0, 1.0, 0.5),
    ]  # (0, 2) is env 0's new episode: still queued
    assert by_env[1] == [
        ((1, 10), (1, 12), 2 + 0.5 * 2, 0.0, 0.25),
        ((1, 11), (1, 13), 3.0, 0.0, 0.25),
        ((1, 12), (1, 13), 2.0, 0.0, 0.5),
    ]
    # Every transition starts and bootstraps in the same environment.
    assert all(obs[0] == next_obs[0] for obs, next_obs, *_ in stored)
    buffer.flush_pending()
    assert _stored(buffer)[-1] == ((0, 2), (0, 3), 1.0, 0.0, 0.5)


def test_n_step_one_stores_what_sb3_replay_buffer_stores() -> None:
    ours = RainbowReplayBuffer(8, OBS_SPACE, ACTION_SPACE, device="cpu", n_step=1, gamma=0.9)
    sb3 = ReplayBuffer(8, OBS_SPACE, ACTION_SPACE, device="cpu")
    for t in range(5):
        args = (_obs(0, t)[None], _obs(0, t + 1)[None], np.array([t % 3]), np.array([float(t)]), np.array([t == 4]))
        ours.add(*args, [{}])
        sb3.add(*args, [{}])
    np.testing.assert_array_equal(ours.observations[:5], sb3.observations[:5, 0])
    np.testing.assert_array_equal(ours.next_observations[:5], sb3.next_observations[:5, 0])
    np.testing.assert_array_equal(ours.rewards[:5], sb3.rewards[:5, 0])
    np.testing.assert_array_equal(ours.dones[:5], sb3.dones[:5, 0])
    np.testing.assert_allclose(ours.discounts[:5], 0.9)


def test_dict_observations_are_stored_and_sampled() -> None:
    space = spaces.Dict({"pos": spaces.Box(-10, 10, (2,), np.float32), "mode": spaces.Discrete(4)})
    buffer = PrioritizedReplayBuffer(8, space, ACTION_SPACE, device="cpu", n_envs=2, n_step=2, gamma=0.5)
    for t in range(3):
        obs = {"pos": np.full((2, 2), t, np.float32), "mode": np.array([t, t + 1])}
        next_obs = {"pos": np.full((2, 2), t + 1, np.float32), "mode": np.array([t + 1, t + 2])}
        buffer.add(obs, next_obs, np.array([1, 2]), np.ones(2), np.array([False, t == 2]), [{}, {}])
    assert buffer.size() == 2 + 1 + 2  # a full window per env at t=1, env 0's at t=2, env 1's flush of 2
    batch = buffer.sample(4, beta=0.4)
    assert set(batch.observations) == {"pos", "mode"}
    assert batch.observations["mode"].shape == (4, 1)
    assert batch.next_observations["pos"].shape == (4, 2)


def test_wraparound_overwrites_oldest() -> None:
    buffer = RainbowReplayBuffer(3, OBS_SPACE, ACTION_SPACE, device="cpu", n_step=1)
    _run_episode(buffer, [0.0] * 5, end="terminated")
    assert buffer.full and buffer.size() == 3
    assert sorted(buffer.observations[:, 1].tolist()) == [2.0, 3.0, 4.0]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"n_step": 0}, "n_step"), ({"gamma": 1.5}, "gamma"), ({"optimize_memory_usage": True}, "optimize")],
)
def test_buffer_rejects_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(InvalidArgumentError, match=match):
        RainbowReplayBuffer(8, OBS_SPACE, ACTION_SPACE, device="cpu", **kwargs)


@pytest.mark.parametrize(("kwargs", "match"), [({"alpha": -1.0}, "alpha"), ({"priority_eps": 0.0}, "priority_eps")])
def test_prioritized_buffer_rejects_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(InvalidArgumentError, match=match):
        PrioritizedReplayBuffer(8, OBS_SPACE, ACTION_SPACE, device="cpu", **kwargs)
