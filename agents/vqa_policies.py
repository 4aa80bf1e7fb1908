"""Agents and baselines of the VQA virtual-camera task (``vantage/VQAVirtualCamera-v0``).

* :class:`VQAFusionExtractor`: the paper's agent input, the fused map ``u_ij = x~_ij * (W q)`` of the frozen VQA
  model's image features ``x~`` (its question-independent stem, 64 x 8 x 8) and question embedding ``q`` (128),
  with ``W`` learned by the agent; flattened (4096) for Rainbow's dueling streams (512 units, the paper's) or
  PPO's heads.
* Baselines: :class:`WholeImagePolicy` (never moves: the static VQA model on the whole image),
  :class:`RandomMovesPolicy` (uniform moves, seeded), :class:`RulePolicy` (zoom towards the horizon band where
  far objects stand, then look left and right).
* :data:`VQA_PPO_PRESETS`, :data:`VQA_RAINBOW_PRESETS`: the agent presets (``vqa``), registered with the PPO and
  Rainbow preset tables.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from envs.tasks.vqa_camera import ACTIONS

__all__ = ["VQA_PPO_PRESETS", "VQA_RAINBOW_PRESETS", "RandomMovesPolicy", "RulePolicy", "VQAFusionExtractor",
           "WholeImagePolicy"]

DEFAULT_VQA = Path(__file__).resolve().parents[1] / "assets" / "models" / "vqa_film"


class VQAFusionExtractor(BaseFeaturesExtractor):
    """``u = x~ * (W q)`` from the frozen VQA model (see the module docstring).

    Args:
        observation_space: the task's ``Dict(view, question)`` space.
        vqa_dir: saved VQA model whose stem and question encoder are used, frozen (default: the shipped one).
        fused_channels: channels of ``u`` (the stem's 64).
    """

    def __init__(self, observation_space: gym.spaces.Dict, vqa_dir: str | None = None) -> None:
        from perception.learner import load_model
        from perception.vqa import VQALearner  # noqa: F401  (registers the model name)

        learner = load_model(vqa_dir or DEFAULT_VQA)
        camera = observation_space.spaces["camera"].shape[0] if "camera" in observation_space.spaces else 0
        super().__init__(observation_space, features_dim=64 * 8 * 8 + camera)
        self.vqa_dir = str(vqa_dir or DEFAULT_VQA)
        net = learner.net
        self.stem, self.pool, self.embed, self.gru = net.stem, net.pool, net.embed, net.gru
        for module in (self.stem, self.embed, self.gru):
            for p in module.parameters():
                p.requires_grad_(False)
        self.w = nn.Linear(128, 64)
        self._encode = net.encode_question

    def train(self, mode: bool = True) -> VQAFusionExtractor:
        super().train(mode)
        for module in (self.stem, self.embed, self.gru):
            module.eval()  # frozen: the VQA model stays as it was trained
        return self

    def forward(self, observations: dict[str, th.Tensor]) -> th.Tensor:
        view = observations["view"].float()
        if view.shape[1] != 3:  # channel-last (no VecTransposeImage)
            view = view.permute(0, 3, 1, 2)
        if view.max() > 1.5:  # raw 0-255 values (SB3 normalises image spaces to [0, 1])
            view = view / 255.0
        tokens = observations["question"].long()
        with th.no_grad():
            x = self.pool(self.stem((view - 0.5) / 0.5))
            out, _ = self.gru(self.embed(tokens))
            last = (tokens != 0).sum(1).clamp(min=1) - 1
            q = out.gather(1, last.view(-1, 1, 1).expand(-1, 1, out.shape[2])).squeeze(1)
        fused = (x * self.w(q)[:, :, None, None]).flatten(1)
        if "camera" in observations:  # where the window is and how many moves are left
            fused = th.cat([fused, observations["camera"].float()], 1)
        return fused


class _Baseline(ABC):
    def __init__(self, env: gym.Env | None = None, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.t = 0

    def reset(self) -> None:
        self.t = 0

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = True) -> tuple[Any, None]:
        if episode_start is not None and bool(np.any(episode_start)):
            self.t = 0
        action = self.act(self.t)
        self.t += 1
        return np.int64(action), None

    @abstractmethod
    def act(self, t: int) -> int:
        """The action at move ``t`` of the episode."""


class WholeImagePolicy(_Baseline):
    """Never moves (``null``): every view is the whole image."""

    def act(self, t: int) -> int:
        return ACTIONS.index("null")


class RandomMovesPolicy(_Baseline):
    """Uniformly random moves (seeded at construction)."""

    def act(self, t: int) -> int:
        return int(self.rng.integers(len(ACTIONS)))


class RulePolicy(_Baseline):
    """Zoom in, look up towards the far band, zoom in again, then look left and right (then stay)."""

    SEQUENCE = ("zoom_in", "up", "zoom_in", "left", "right", "right", "null")

    def act(self, t: int) -> int:
        return ACTIONS.index(self.SEQUENCE[min(t, len(self.SEQUENCE) - 1)])


#: PPO on the fused map (single environment steps are cheap: short rollouts, small heads).
VQA_PPO_PRESETS: dict[str, dict[str, Any]] = {
    "vqa": {
        "policy": "MultiInputPolicy",
        "learning_rate": 3e-4,
        "n_steps": 256,
        "batch_size": 64,
        "n_epochs": 4,
        "gamma": 0.99,
        "gae_lambda": 0.95,
        "clip_range": 0.2,
        "ent_coef": 0.01,
        "vf_coef": 0.5,
        "max_grad_norm": 0.5,
        "policy_kwargs": {"features_extractor_class": VQAFusionExtractor, "net_arch": {"pi": [256], "vf": [256]}},
    },
}

#: Rainbow as the paper: dueling streams with a 512-unit hidden layer, gamma 0.99, Adam lr 5e-5 (raised to
#: 2.5e-4 for the short budgets here), replay 100k; the other parts (n-step 3, C51, noisy nets, priorities)
#: are the library's defaults.
VQA_RAINBOW_PRESETS: dict[str, dict[str, Any]] = {
    "vqa": {
        "policy": "MultiInputPolicy",
        "learning_rate": 2.5e-4,
        "adam_eps": 1.5e-4,
        "buffer_size": 100_000,
        "learning_starts": 1_000,
        "batch_size": 32,
        "gamma": 0.99,
        "train_freq": 4,
        "gradient_steps": 1,
        "target_update_interval": 1_000,
        "n_step": 3,
        "n_atoms": 51,
        "v_min": -1.0,
        "v_max": 1.0,
        "sigma0": 0.5,
        "alpha": 0.5,
        "beta": 0.4,
        "max_grad_norm": 10.0,
        "policy_kwargs": {"features_extractor_class": VQAFusionExtractor, "net_arch": [512]},
    },
}
