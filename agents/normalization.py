"""Per-episode min-max reward normalisation for PPO, as in the TD-reward tracking paper.

The paper min-max normalises each episode's negative or TD rewards before the PPO update. A per-step reward
cannot see the episode's end, so this happens in the rollout buffer, just before returns and advantages are
computed: each episode segment of every environment's column is rescaled to ``[0, 1]`` with
:func:`envs.rewards.minmax_normalize`. An episode cut by a rollout boundary is normalised over the part of it
inside the rollout (documented limitation: the part in the next rollout gets its own min and max).
"""

from __future__ import annotations

import itertools

import numpy as np
import torch as th
from stable_baselines3.common.buffers import RolloutBuffer

from envs.rewards import minmax_normalize


def episode_segments(episode_starts: np.ndarray) -> list[tuple[int, int]]:
    """``[start, stop)`` index ranges of the episodes in one environment's column of a rollout."""
    n = len(episode_starts)
    cuts = [0, *[i for i in range(1, n) if episode_starts[i]], n]
    return [(a, b) for a, b in itertools.pairwise(cuts) if b > a]


class EpisodeMinMaxRolloutBuffer(RolloutBuffer):
    """A :class:`RolloutBuffer` that min-max normalises rewards per episode segment before computing returns."""

    def compute_returns_and_advantage(self, last_values: th.Tensor, dones: np.ndarray) -> None:
        for env in range(self.n_envs):
            for start, stop in episode_segments(self.episode_starts[:, env]):
                self.rewards[start:stop, env] = minmax_normalize(self.rewards[start:stop, env])
        super().compute_returns_and_advantage(last_values, dones)
