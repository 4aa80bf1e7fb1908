"""Hand-written baseline policies with the SB3 ``predict`` signature, for the active-vs-static comparisons."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from envs.errors import UnknownNameError


class StaticPolicy:
    """A tracker that never moves: both wheels at zero (the "static perception" baseline).

    Works with any action space whose "do nothing" action is known: the centre action of the tracking task's
    discrete grid (``k*(2k+1)+k``) or the zero vector of a continuous space.
    """

    def __init__(self, action_space: gym.Space) -> None:
        if isinstance(action_space, gym.spaces.Discrete):
            side = round(np.sqrt(action_space.n))
            if side * side != action_space.n or side % 2 == 0:
                raise UnknownNameError("static action for Discrete space of size", action_space.n, ["(2k+1)**2"])
            self._action: Any = np.int64((side // 2) * side + side // 2)
        elif isinstance(action_space, gym.spaces.Box):
            self._action = np.zeros(action_space.shape, dtype=action_space.dtype)
        else:
            raise UnknownNameError("action space for StaticPolicy", type(action_space).__name__, ["Discrete", "Box"])

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = True) -> tuple[Any, None]:
        return self._action, None


#: Baseline name -> factory from an action space.
BASELINES = {"static": StaticPolicy}
