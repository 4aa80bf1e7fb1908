"""Replay for Rainbow: n-step transition assembly, uniform sampling and proportional prioritised replay.

Two buffers share one storage layout:

* :class:`RainbowReplayBuffer` turns the per-step stream of a ``VecEnv`` into n-step transitions and samples
  them uniformly. With ``n_step=1`` it stores exactly what SB3's ``ReplayBuffer`` stores.
* :class:`PrioritizedReplayBuffer` adds a :class:`SumTree` and samples transition ``i`` with probability
  ``p_i^α / Σ_k p_k^α`` (Schaul et al. 2016, proportional variant), returning importance-sampling weights
  ``(N·P(i))^-β`` normalised by the batch maximum.

N-step transitions are assembled when they are added, not when they are sampled, so every stored item is a
complete ``(s_t, a_t, R_t^(m), s_{t+m}, terminal, γ^m)`` tuple with its own priority. Per environment a short
queue holds the last ``n`` steps:

* when the queue is full, its oldest step is written with the full n-step return and the queue slides;
* when an episode **terminates**, every queued step is written with the (shorter) return up to the end and
  ``terminal=True``, so nothing is bootstrapped past the end;
* when an episode is **truncated** (``infos[i]["TimeLimit.truncated"]``), the queued steps are written with
  ``terminal=False`` and bootstrap from the final observation (SB3 puts it in ``next_obs``) with ``γ^m``.

The storage is flat (one slot per transition, not ``[step, env]`` like SB3's buffers) because with several
environments the number of transitions completed per ``add`` varies.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any, NamedTuple

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.preprocessing import get_action_dim
from stable_baselines3.common.vec_env import VecNormalize

from envs.errors import InvalidArgumentError

ObsArray = np.ndarray | dict[str, np.ndarray]


class RainbowSamples(NamedTuple):
    """A sampled batch. ``target = rewards + (1 - dones) * discounts * Q(next_observations)``.

    Attributes:
        observations: ``s_t``, shape ``(B, *obs_shape)`` (a dict of tensors for ``Dict`` spaces).
        actions: ``a_t``, shape ``(B, 1)``.
        next_observations: ``s_{t+m}``, the state the return bootstraps from.
        dones: 1 where the episode terminated within the ``m`` steps (no bootstrap), shape ``(B, 1)``.
        rewards: discounted ``m``-step return ``Σ_k γ^k r_{t+k}``, shape ``(B, 1)``.
        discounts: ``γ^m`` with ``m <= n`` the number of steps actually summed, shape ``(B, 1)``.
        weights: importance-sampling weights, shape ``(B,)`` (all ones for uniform sampling).
        indices: the slots sampled, for :meth:`PrioritizedReplayBuffer.update_priorities`.
    """

    observations: th.Tensor | dict[str, th.Tensor]
    actions: th.Tensor
    next_observations: th.Tensor | dict[str, th.Tensor]
    dones: th.Tensor
    rewards: th.Tensor
    discounts: th.Tensor
    weights: th.Tensor
    indices: np.ndarray


class SumTree:
    """Binary tree whose leaves hold non-negative priorities and whose inner nodes hold subtree sums.

    The leaves live at ``[capacity_pow2, 2 * capacity_pow2)`` of one array (the root is index 1), so updates
    and prefix-sum searches are ``O(log capacity)`` and both are vectorised over batches of indices. Leaves are
    written at once; their ancestors are refreshed lazily, all pending leaves together, the next time a sum is
    read (:attr:`total`, :meth:`find`). Replay writes one leaf per environment step and reads once per update,
    so one vectorised refresh replaces several Python loops over the tree's height, with the same sums.

    Args:
        capacity: number of leaves (at least 1).

    Raises:
        InvalidArgumentError: if ``capacity < 1``.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise InvalidArgumentError(f"SumTree capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self._height = max(int(np.ceil(np.log2(self.capacity))), 0)
        self._first_leaf = 1 << self._height
        # float64 keeps the root consistent with its leaves over millions of updates.
        self._nodes = np.zeros(2 * self._first_leaf, dtype=np.float64)
        # Leaf node ids written since the inner sums were last refreshed: single ones, then batches.
        self._stale_leaves: list[int] = []
        self._stale_batches: list[np.ndarray] = []

    @property
    def total(self) -> float:
        """Sum of all leaf priorities."""
        self._refresh()
        return float(self._nodes[1])

    def __getitem__(self, indices: np.ndarray | int) -> np.ndarray:
        return self._nodes[np.asarray(indices) + self._first_leaf]

    def update(self, indices: np.ndarray | int, priorities: np.ndarray | float) -> None:
        """Set leaf priorities (their ancestors are refreshed before the next read of a sum).

        Args:
            indices: leaf indices in ``[0, capacity)``; repeats keep the last value.
            priorities: non-negative values, broadcast against ``indices``.

        Raises:
            InvalidArgumentError: on an out-of-range index or a negative or non-finite priority.
        """
        if isinstance(indices, (int, np.integer)) and isinstance(priorities, (float, int, np.floating, np.integer)):
            # One leaf per stored transition: scalar checks cost a fraction of the array ones.
            index, priority = int(indices), float(priorities)
            if not 0 <= index < self.capacity:
                raise InvalidArgumentError(f"SumTree index out of range [0, {self.capacity}): {index}")
            if not (math.isfinite(priority) and priority >= 0):
                raise InvalidArgumentError(f"priorities must be finite and >= 0, got {priority}")
            self._nodes[index + self._first_leaf] = priority
            self._stale_leaves.append(index + self._first_leaf)
        else:
            indices = np.atleast_1d(np.asarray(indices, dtype=np.int64))
            priorities = np.broadcast_to(np.asarray(priorities, dtype=np.float64), indices.shape)
            if indices.size == 0:
                return
            if indices.min() < 0 or indices.max() >= self.capacity:
                raise InvalidArgumentError(f"SumTree index out of range [0, {self.capacity}): {indices}")
            if not np.all(np.isfinite(priorities)) or priorities.min() < 0:
                raise InvalidArgumentError(f"priorities must be finite and >= 0, got {priorities}")
            leaves = indices + self._first_leaf
            self._nodes[leaves] = priorities
            self._stale_batches.append(leaves)
        if len(self._stale_leaves) >= 4096:  # bound the backlog when nothing is sampled for a long time
            self._refresh()

    def _refresh(self) -> None:
        """Recompute the ancestors of every leaf written since the last refresh, one tree level at a time.

        Parents are recomputed from their children rather than shifted by deltas, so rounding can never leave a
        parent out of step with its leaves, and repeated or shared ancestors just get the same sum twice.
        """
        if not (self._stale_leaves or self._stale_batches):
            return
        level = np.concatenate([np.asarray(self._stale_leaves, dtype=np.int64), *self._stale_batches])
        self._stale_leaves, self._stale_batches = [], []
        nodes = self._nodes
        for _ in range(self._height):
            level = level >> 1
            nodes[level] = nodes[2 * level] + nodes[2 * level + 1]

    def find(self, prefix_sums: np.ndarray) -> np.ndarray:
        """Return, for each value ``v`` in ``[0, total)``, the leaf ``i`` with ``cum(i-1) <= v < cum(i)``.

        Args:
            prefix_sums: values to look up.

        Returns:
            Leaf indices, same shape as ``prefix_sums``.
        """
        self._refresh()
        values = np.asarray(prefix_sums, dtype=np.float64).copy()
        nodes = np.ones(values.shape, dtype=np.int64)
        for _ in range(self._height):
            left = 2 * nodes
            left_sum = self._nodes[left]
            go_right = values >= left_sum
            values -= left_sum * go_right
            nodes = left + go_right
        return nodes - self._first_leaf


def _allocate(space: spaces.Space, shape: tuple[int, ...] | dict[str, tuple[int, ...]], size: int) -> ObsArray:
    if isinstance(space, spaces.Dict):
        assert isinstance(shape, dict)
        return {key: np.zeros((size, *shape[key]), dtype=space[key].dtype) for key in shape}
    assert isinstance(shape, tuple)
    return np.zeros((size, *shape), dtype=space.dtype)


def _row(obs: ObsArray, env_idx: int, shape: Any) -> ObsArray:
    """Copy environment ``env_idx``'s observation out of a batched one (reshaping Discrete scalars)."""
    if isinstance(obs, dict):
        return {key: np.array(value[env_idx]).reshape(shape[key]) for key, value in obs.items()}
    return np.array(obs[env_idx]).reshape(shape)


def _write(store: ObsArray, slot: int, obs: ObsArray) -> None:
    if isinstance(store, dict):
        assert isinstance(obs, dict)
        for key, array in store.items():
            array[slot] = obs[key]
    else:
        store[slot] = obs


def _gather(store: ObsArray, indices: np.ndarray) -> ObsArray:
    if isinstance(store, dict):
        return {key: array[indices] for key, array in store.items()}
    return store[indices]


class _Step(NamedTuple):
    obs: ObsArray
    action: np.ndarray
    reward: float


class RainbowReplayBuffer(ReplayBuffer):
    """Uniform replay of n-step transitions assembled per environment of a ``VecEnv``.

    Subclasses SB3's ``ReplayBuffer`` so ``OffPolicyAlgorithm`` can add to it, pickle it
    (``save_replay_buffer``) and load it back, but keeps its own flat storage (see the module docstring).

    Args:
        buffer_size: number of transitions kept (all environments together).
        observation_space: observation space (``Box``, ``Discrete``, ``MultiBinary``, ``MultiDiscrete`` or a
            ``Dict`` of those).
        action_space: ``Discrete`` action space.
        device: torch device for sampled batches.
        n_envs: number of environments whose steps arrive together in :meth:`add`.
        optimize_memory_usage: unsupported; must be ``False``.
        handle_timeout_termination: if ``True`` (default), a truncated episode (``TimeLimit.truncated``) still
            bootstraps from its final observation; if ``False``, truncation counts as termination.
        n_step: steps per return (``1`` stores plain one-step transitions).
        gamma: discount used to sum the n-step return.

    Raises:
        InvalidArgumentError: on ``n_step < 1``, ``gamma`` outside ``[0, 1]``, ``buffer_size < 1`` or
            ``optimize_memory_usage=True``.
    """

    observations: ObsArray  # type: ignore[assignment]
    next_observations: ObsArray  # type: ignore[assignment]

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        device: th.device | str = "auto",
        n_envs: int = 1,
        optimize_memory_usage: bool = False,
        handle_timeout_termination: bool = True,
        n_step: int = 1,
        gamma: float = 0.99,
    ) -> None:
        if buffer_size < 1:
            raise InvalidArgumentError(f"buffer_size must be >= 1, got {buffer_size}")
        if n_step < 1:
            raise InvalidArgumentError(f"n_step must be >= 1 (1 disables n-step returns), got {n_step}")
        if not 0.0 <= gamma <= 1.0:
            raise InvalidArgumentError(f"gamma must be in [0, 1], got {gamma}")
        if optimize_memory_usage:
            raise InvalidArgumentError(
                "optimize_memory_usage=True is not supported by RainbowReplayBuffer; allowed: False"
            )
        # Skip ReplayBuffer.__init__: it allocates [buffer_size // n_envs, n_envs] arrays we do not use.
        super(ReplayBuffer, self).__init__(buffer_size, observation_space, action_space, device, n_envs=n_envs)
        self.optimize_memory_usage = False
        self.handle_timeout_termination = handle_timeout_termination
        self.n_step = int(n_step)
        self.gamma = float(gamma)
        self._discount_powers = self.gamma ** np.arange(self.n_step + 1, dtype=np.float64)

        self.observations = _allocate(observation_space, self.obs_shape, buffer_size)
        self.next_observations = _allocate(observation_space, self.obs_shape, buffer_size)
        self.action_dim = get_action_dim(action_space)
        self.actions = np.zeros((buffer_size, self.action_dim), dtype=self._maybe_cast_dtype(action_space.dtype))
        self.rewards = np.zeros(buffer_size, dtype=np.float32)
        self.dones = np.zeros(buffer_size, dtype=np.float32)
        self.discounts = np.zeros(buffer_size, dtype=np.float32)
        # SB3's load_replay_buffer looks for this attribute; truncations are resolved at insertion here.
        self.timeouts = np.zeros(buffer_size, dtype=np.float32)

        self._pending: list[deque[_Step]] = [deque() for _ in range(n_envs)]
        self._last_next_obs: list[ObsArray | None] = [None] * n_envs

    # ------------------------------------------------------------------ adding
    def add(  # type: ignore[override]
        self,
        obs: ObsArray,
        next_obs: ObsArray,
        action: np.ndarray,
        reward: np.ndarray,
        done: np.ndarray,
        infos: list[dict[str, Any]],
    ) -> None:
        """Queue one step per environment and write every n-step transition it completes.

        Args:
            obs: observations the actions were taken in, batched over environments.
            next_obs: next observations; for environments whose episode ended, the final observation
                (SB3's ``_store_transition`` substitutes ``infos[i]["terminal_observation"]``).
            action: actions, shape ``(n_envs,)`` or ``(n_envs, 1)``.
            reward: rewards, shape ``(n_envs,)``.
            done: episode ended (terminated or truncated), shape ``(n_envs,)``.
            infos: per-environment info dicts; ``TimeLimit.truncated`` marks truncation.
        """
        action = np.asarray(action).reshape(self.n_envs, self.action_dim)
        reward = np.asarray(reward, dtype=np.float64).reshape(self.n_envs)
        done = np.asarray(done).reshape(self.n_envs)
        for env_idx in range(self.n_envs):
            queue = self._pending[env_idx]
            queue.append(_Step(_row(obs, env_idx, self.obs_shape), action[env_idx].copy(), float(reward[env_idx])))
            final_obs = _row(next_obs, env_idx, self.obs_shape)
            if done[env_idx]:
                truncated = self.handle_timeout_termination and bool(infos[env_idx].get("TimeLimit.truncated", False))
                while queue:
                    self._emit_oldest(queue, final_obs, terminal=not truncated)
                self._last_next_obs[env_idx] = None
            else:
                if len(queue) == self.n_step:
                    self._emit_oldest(queue, final_obs, terminal=False)
                self._last_next_obs[env_idx] = final_obs

    def flush_pending(self) -> None:
        """Write every queued step as a truncated transition bootstrapping from its latest next observation.

        Call this before the environments are reset without an episode end
        (``learn(reset_num_timesteps=True)`` does so), otherwise the queues would join two episodes.
        """
        for env_idx, queue in enumerate(self._pending):
            last = self._last_next_obs[env_idx]
            if last is not None:
                while queue:
                    self._emit_oldest(queue, last, terminal=False)
            queue.clear()
            self._last_next_obs[env_idx] = None

    def _emit_oldest(self, queue: deque[_Step], next_obs: ObsArray, terminal: bool) -> None:
        steps = len(queue)
        rewards = np.fromiter((step.reward for step in queue), dtype=np.float64, count=steps)
        first = queue.popleft()
        slot = self.pos
        _write(self.observations, slot, first.obs)
        _write(self.next_observations, slot, next_obs)
        self.actions[slot] = first.action
        self.rewards[slot] = float(rewards @ self._discount_powers[:steps])
        self.dones[slot] = float(terminal)
        self.discounts[slot] = self._discount_powers[steps]
        self._on_write(slot)
        self.pos += 1
        if self.pos == self.buffer_size:
            self.full = True
            self.pos = 0

    def _on_write(self, slot: int) -> None:
        """Hook for subclasses: called after a transition is written to ``slot``."""

    # ---------------------------------------------------------------- sampling
    def sample(  # type: ignore[override]
        self, batch_size: int, env: VecNormalize | None = None, beta: float = 1.0
    ) -> RainbowSamples:
        """Sample ``batch_size`` transitions uniformly (with replacement).

        Args:
            batch_size: number of transitions.
            env: a ``VecNormalize`` whose observation statistics are applied.
            beta: ignored (uniform sampling needs no importance correction); kept for a common signature.

        Returns:
            The batch, with unit weights.
        """
        del beta
        if self.size() == 0:
            raise InvalidArgumentError("cannot sample from an empty replay buffer (size 0)")
        indices = np.random.randint(0, self.size(), size=batch_size)
        return self._get_samples(indices, env=env)

    def _get_samples(  # type: ignore[override]
        self, batch_inds: np.ndarray, env: VecNormalize | None = None, weights: np.ndarray | None = None
    ) -> RainbowSamples:
        if weights is None:
            weights = np.ones(len(batch_inds), dtype=np.float32)
        # Every array below is a fresh copy gathered for this batch, so the tensors may share its memory.
        return RainbowSamples(
            observations=self._to_torch_obs(self._normalize_obs(_gather(self.observations, batch_inds), env)),
            actions=self.to_torch(self.actions[batch_inds], copy=False),
            next_observations=self._to_torch_obs(self._normalize_obs(_gather(self.next_observations, batch_inds), env)),
            dones=self.to_torch(self.dones[batch_inds].reshape(-1, 1), copy=False),
            rewards=self.to_torch(self.rewards[batch_inds].reshape(-1, 1), copy=False),
            discounts=self.to_torch(self.discounts[batch_inds].reshape(-1, 1), copy=False),
            weights=self.to_torch(weights.astype(np.float32), copy=False),
            indices=batch_inds,
        )

    def _to_torch_obs(self, obs: ObsArray) -> th.Tensor | dict[str, th.Tensor]:
        if isinstance(obs, dict):
            return {key: self.to_torch(value, copy=False) for key, value in obs.items()}
        return self.to_torch(obs, copy=False)


class PrioritizedReplayBuffer(RainbowReplayBuffer):
    """N-step replay with proportional prioritisation on a :class:`SumTree` (Schaul et al. 2016).

    New transitions get the largest priority seen so far, so each is replayed at least about once. Batches are
    stratified: the total priority is cut into ``batch_size`` equal segments and one value drawn per segment.

    Args:
        buffer_size: number of transitions kept.
        observation_space: observation space.
        action_space: ``Discrete`` action space.
        device: torch device for sampled batches.
        n_envs: number of environments.
        optimize_memory_usage: unsupported; must be ``False``.
        handle_timeout_termination: see :class:`RainbowReplayBuffer`.
        n_step: steps per return.
        gamma: discount.
        alpha: prioritisation exponent α (0 = uniform); Rainbow uses 0.5.
        priority_eps: added to ``|loss|`` so no transition gets zero probability.

    Raises:
        InvalidArgumentError: on ``alpha < 0`` or ``priority_eps <= 0`` (and as :class:`RainbowReplayBuffer`).
    """

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        device: th.device | str = "auto",
        n_envs: int = 1,
        optimize_memory_usage: bool = False,
        handle_timeout_termination: bool = True,
        n_step: int = 1,
        gamma: float = 0.99,
        alpha: float = 0.5,
        priority_eps: float = 1e-6,
    ) -> None:
        if alpha < 0:
            raise InvalidArgumentError(f"alpha must be >= 0, got {alpha}")
        if priority_eps <= 0:
            raise InvalidArgumentError(f"priority_eps must be > 0, got {priority_eps}")
        super().__init__(
            buffer_size,
            observation_space,
            action_space,
            device=device,
            n_envs=n_envs,
            optimize_memory_usage=optimize_memory_usage,
            handle_timeout_termination=handle_timeout_termination,
            n_step=n_step,
            gamma=gamma,
        )
        self.alpha = float(alpha)
        self.priority_eps = float(priority_eps)
        self.tree = SumTree(buffer_size)
        # Kept already raised to the power α, the form stored in the tree.
        self.max_priority = 1.0

    def _on_write(self, slot: int) -> None:
        self.tree.update(slot, self.max_priority)

    def sample(  # type: ignore[override]
        self, batch_size: int, env: VecNormalize | None = None, beta: float = 0.4
    ) -> RainbowSamples:
        """Sample proportionally to priority and return importance-sampling weights.

        Args:
            batch_size: number of transitions.
            env: a ``VecNormalize`` whose observation statistics are applied.
            beta: importance-sampling exponent β in ``[0, 1]`` (1 corrects the bias fully).

        Returns:
            The batch; ``weights = (N·P(i))^-β / max_batch``.

        Raises:
            InvalidArgumentError: if the buffer is empty or ``beta`` is outside ``[0, 1]``.
        """
        if not 0.0 <= beta <= 1.0:
            raise InvalidArgumentError(f"beta must be in [0, 1], got {beta}")
        size = self.size()
        if size == 0:
            raise InvalidArgumentError("cannot sample from an empty replay buffer (size 0)")
        total = self.tree.total
        segment = total / batch_size
        targets = (np.arange(batch_size) + np.random.random_sample(batch_size)) * segment
        # Rounding can push a search one leaf too far into the unfilled (zero-priority) tail; filled leaves
        # are [0, size) so clipping is enough.
        indices = np.minimum(self.tree.find(targets), size - 1)
        probabilities = self.tree[indices] / total
        weights = (size * probabilities) ** (-beta)
        weights /= weights.max()
        return self._get_samples(indices, env=env, weights=weights)

    def update_priorities(self, indices: np.ndarray, losses: np.ndarray | th.Tensor) -> None:
        """Set the priorities of sampled transitions from their losses: ``p = (|loss| + ε)^α``.

        Args:
            indices: the ``indices`` of a sampled batch.
            losses: per-sample loss (|TD error| or the distributional cross-entropy), same length.
        """
        if isinstance(losses, th.Tensor):
            losses = losses.detach().cpu().numpy()
        priorities = (np.abs(np.asarray(losses, dtype=np.float64)).reshape(-1) + self.priority_eps) ** self.alpha
        self.tree.update(indices, priorities)
        self.max_priority = max(self.max_priority, float(priorities.max()))
