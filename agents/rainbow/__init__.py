"""Rainbow DQN for Stable-Baselines3 with every component switchable (see ``docs/rainbow.md``).

>>> from agents.rainbow import Rainbow
>>> model = Rainbow.from_preset("cartpole", "CartPole-v1", seed=0)  # doctest: +SKIP
>>> model.learn(50_000)  # doctest: +SKIP

The ablation benchmark (``vantage bench rainbow``) lives in :mod:`agents.rainbow.ablation`; its entry points are
exported here too.
"""

from agents.rainbow.ablation import AblationConfig, measure_throughput, run_ablation
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
    "AblationConfig",
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
    "measure_throughput",
    "project_distribution",
    "read_manifest",
    "run_ablation",
]
