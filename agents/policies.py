"""Policy networks for PPO: the tracking paper's small CNN and an actor-critic with separate learning rates."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import torch as th
from stable_baselines3.common.policies import ActorCriticCnnPolicy
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from envs.errors import InvalidArgumentError


class TrackingCNN(BaseFeaturesExtractor):
    """Three conv layers with ReLU and average pooling, then one fully connected layer.

    With the policy's two hidden layers this gives the paper's "3 conv + 3 FC" actor and critic
    (Tiritiris et al. 2021; the paper leaves the sizes open, these are ours).

    Args:
        observation_space: an image space, channels-first after SB3's transpose (``(3, H, W)``).
        features_dim: width of the fully connected layer.
        channels: output channels of the three conv layers.
    """

    def __init__(
        self,
        observation_space: gym.spaces.Box,
        features_dim: int = 256,
        channels: tuple[int, int, int] = (8, 16, 32),
    ) -> None:
        if not is_image_space(observation_space, check_channels=False, normalized_image=False):
            raise InvalidArgumentError(f"TrackingCNN needs a uint8 image observation space, got {observation_space}")
        super().__init__(observation_space, features_dim)
        in_channels = observation_space.shape[0]
        c1, c2, c3 = channels
        self.cnn = nn.Sequential(
            # Stride 2 first: full-resolution 5x5 convs made each PPO epoch ~9x slower on a CPU.
            nn.Conv2d(in_channels, c1, kernel_size=5, stride=2, padding=2), nn.ReLU(), nn.AvgPool2d(2),
            nn.Conv2d(c1, c2, kernel_size=3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
            nn.Conv2d(c2, c3, kernel_size=3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
            nn.Flatten(),
        )
        with th.no_grad():
            n_flat = self.cnn(th.zeros(1, *observation_space.shape)).shape[1]
        self.linear = nn.Sequential(nn.Linear(n_flat, features_dim), nn.ReLU())

    def forward(self, observations: th.Tensor) -> th.Tensor:
        return self.linear(self.cnn(observations))


class SplitLRActorCriticCnnPolicy(ActorCriticCnnPolicy):
    """Actor-critic CNN policy whose critic learns ``critic_lr_scale`` times faster than the actor.

    The paper trains the actor at 1e-4 and the critic at 3e-4. One Adam optimiser with two parameter groups
    keeps SB3's learning-rate schedule: each group stores ``lr_scale`` and :class:`agents.ppo.VantagePPO`
    multiplies the scheduled rate by it.
    """

    def __init__(self, *args: Any, critic_lr_scale: float = 1.0, **kwargs: Any) -> None:
        if not critic_lr_scale > 0:
            raise InvalidArgumentError(f"critic_lr_scale={critic_lr_scale!r} must be > 0")
        self.critic_lr_scale = float(critic_lr_scale)
        super().__init__(*args, **kwargs)

    def _build(self, lr_schedule: Any) -> None:
        super()._build(lr_schedule)
        critic_modules = [self.value_net, self.mlp_extractor.value_net]
        if not self.share_features_extractor:
            critic_modules.append(self.vf_features_extractor)
        critic_ids = {id(p) for m in critic_modules for p in m.parameters()}
        actor = [p for p in self.parameters() if id(p) not in critic_ids]
        critic = [p for p in self.parameters() if id(p) in critic_ids]
        lr = lr_schedule(1)
        self.optimizer = self.optimizer_class(
            [
                {"params": actor, "lr": lr, "lr_scale": 1.0},
                {"params": critic, "lr": lr * self.critic_lr_scale, "lr_scale": self.critic_lr_scale},
            ],
            **self.optimizer_kwargs,
        )

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data["critic_lr_scale"] = self.critic_lr_scale
        return data
