"""Rainbow DQN for Stable-Baselines3 with every component switchable (see ``docs/rainbow.md``).

>>> from agents.rainbow import Rainbow
>>> model = Rainbow.from_preset("cartpole", "CartPole-v1", seed=0)  # doctest: +SKIP
>>> model.learn(50_000)  # doctest: +SKIP
"""

from agents.rainbow.buffers import PrioritizedReplayBuffer, RainbowReplayBuffer, RainbowSamples, SumTree
from agents.rainbow.policies import (
    CnnPolicy,
    MlpPolicy,
    MultiInputPolicy,
    NoisyLinear,
    RainbowPolicy,
    RainbowQNetwork,
)
from agents.rainbow.rainbow import PRESETS, Rainbow, project_distribution, read_manifest

__all__ = [
    "PRESETS",
    "CnnPolicy",
    "MlpPolicy",
    "MultiInputPolicy",
    "NoisyLinear",
    "PrioritizedReplayBuffer",
    "Rainbow",
    "RainbowPolicy",
    "RainbowQNetwork",
    "RainbowReplayBuffer",
    "RainbowSamples",
    "SumTree",
    "project_distribution",
    "read_manifest",
]
