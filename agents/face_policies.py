"""The drone face-recognition paper's policy CNN (OpenDR D3.2 Sec. 2.2)."""

from __future__ import annotations

import gymnasium as gym
import torch as th
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from envs.errors import InvalidArgumentError


class FacePaperCNN(BaseFeaturesExtractor):
    """conv 16@8x8 (stride 4), conv 32@4x4 (stride 2), then one fully connected layer of 256 units.

    The paper gives the layer sizes; the strides are those of the DQN network it follows (Mnih et al., 2015),
    which its 8x8 and 4x4 kernels come from. Policy and critic heads are SB3's linear heads on top.

    Args:
        observation_space: an image space, channels-first after SB3's transpose (``(3, H, W)``).
        features_dim: width of the fully connected layer.
    """

    def __init__(self, observation_space: gym.spaces.Box, features_dim: int = 256) -> None:
        if not is_image_space(observation_space, check_channels=False, normalized_image=False):
            raise InvalidArgumentError(f"FacePaperCNN needs a uint8 image observation space, got {observation_space}")
        super().__init__(observation_space, features_dim)
        self.cnn = nn.Sequential(
            nn.Conv2d(observation_space.shape[0], 16, kernel_size=8, stride=4), nn.ReLU(),
            nn.Conv2d(16, 32, kernel_size=4, stride=2), nn.ReLU(),
            nn.Flatten(),
        )
        with th.no_grad():
            n_flat = self.cnn(th.zeros(1, *observation_space.shape)).shape[1]
        self.linear = nn.Sequential(nn.Linear(n_flat, features_dim), nn.ReLU())

    def forward(self, observations: th.Tensor) -> th.Tensor:
        return self.linear(self.cnn(observations))
