"""PPO for Vantage tasks: named presets kept as data and a PPO whose optimiser groups keep their LR ratio."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch as th
from stable_baselines3 import PPO
from stable_baselines3.common.utils import update_learning_rate

from agents.face_policies import FacePaperCNN
from agents.fusion_policies import FUSION_PPO_PRESETS
from agents.normalization import EpisodeMinMaxRolloutBuffer
from agents.policies import SplitLRActorCriticCnnPolicy, TrackingCNN
from envs.errors import InvalidArgumentError, lookup


class VantagePPO(PPO):
    """SB3 PPO that scales the scheduled learning rate per optimiser group by the group's ``lr_scale``."""

    policy_aliases = {**PPO.policy_aliases, "SplitLRCnnPolicy": SplitLRActorCriticCnnPolicy}  # noqa: RUF012

    def _update_learning_rate(self, optimizers: list[th.optim.Optimizer] | th.optim.Optimizer) -> None:
        lr = self.lr_schedule(self._current_progress_remaining)
        self.logger.record("train/learning_rate", lr)
        if not isinstance(optimizers, list):
            optimizers = [optimizers]
        for optimizer in optimizers:
            update_learning_rate(optimizer, lr)
            for group in optimizer.param_groups:
                group["lr"] = lr * group.get("lr_scale", 1.0)


#: Named PPO settings, each tuned for a kind of task (a task's spec names its default, ``envs.specs``).
#: ``tracking-paper`` follows Tiritiris et al. 2021 (clip 0.2, 10 epochs, batch 64, max grad norm 0.5, actor
#: lr 1e-4 / critic lr 3e-4, separate actor and critic CNNs).
PPO_PRESETS: dict[str, dict[str, Any]] = {
    "tracking-paper": {
        "policy": "SplitLRCnnPolicy",
        "learning_rate": 1e-4,
        "n_steps": 1024,
        "batch_size": 64,
        "n_epochs": 10,
        "gamma": 0.75,
        "gae_lambda": 0.95,
        "clip_range": 0.2,
        "ent_coef": 0.0,
        "vf_coef": 0.5,
        "max_grad_norm": 0.5,
        "policy_kwargs": {
            "features_extractor_class": TrackingCNN,
            "features_extractor_kwargs": {"features_dim": 256},
            "net_arch": {"pi": [128, 64], "vf": [128, 64]},
            "share_features_extractor": False,
            "critic_lr_scale": 3.0,
        },
    },
}


# Drone face recognition. ``face-toolkit`` is the OpenDR toolkit's learner (SB3 CnnPolicy, lr 3e-4, n_steps
# 6400, batch 64, gamma 0.9, clip 0.1, target_kl 0.1; 5M steps); ``face-paper`` the same settings with the
# paper's CNN (conv 16@8x8, conv 32@4x4, FC 256; 10M steps). ``face-cpu`` is sized for a few hundred thousand
# steps on a small CPU: shorter rollouts, fewer epochs, small heads. It keeps the paper's CNN: fitted to tell
# which way a person faces from 96x128 navigation frames (3000 frames at 1-3 m), it reached a 27 deg median
# error where the small tracking CNN stayed at 57 deg, and seeing that is what decides which way to arc.
# n_steps is per environment.
_FACE_TOOLKIT: dict[str, Any] = {
    "policy": "CnnPolicy",
    "learning_rate": 3e-4,
    "n_steps": 6400,
    "batch_size": 64,
    "n_epochs": 10,
    "gamma": 0.9,
    "gae_lambda": 0.95,
    "clip_range": 0.1,
    "target_kl": 0.1,
    "ent_coef": 0.0,
    "vf_coef": 0.5,
    "max_grad_norm": 0.5,
}
PPO_PRESETS.update({
    "face-toolkit": _FACE_TOOLKIT,
    "face-paper": {
        **_FACE_TOOLKIT,
        "policy_kwargs": {"features_extractor_class": FacePaperCNN, "features_extractor_kwargs": {"features_dim": 256},
                          "net_arch": []},
    },
    "face-cpu": {
        **_FACE_TOOLKIT,
        "n_steps": 256,
        "n_epochs": 4,
        "ent_coef": 0.01,
        "policy_kwargs": {"features_extractor_class": FacePaperCNN, "features_extractor_kwargs": {"features_dim": 256},
                          "net_arch": {"pi": [64], "vf": [64]}},
    },
})


# Sensor-fused peg insertion (agents/fusion_policies.py): PPO on the fusion encoder's latent, and end to end.
PPO_PRESETS.update(FUSION_PPO_PRESETS)


def ppo_kwargs(preset: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Constructor keyword arguments for :class:`VantagePPO` from a named preset plus overrides."""
    kwargs = {k: (dict(v) if isinstance(v, dict) else v) for k, v in lookup("PPO preset", PPO_PRESETS, preset).items()}
    for key, value in (overrides or {}).items():
        if key == "policy_kwargs":
            kwargs["policy_kwargs"] = {**kwargs.get("policy_kwargs", {}), **value}
        else:
            kwargs[key] = value
    return kwargs


#: Ranges of the PPO settings SB3 accepts without checking (name -> (test, what is allowed)).
_PPO_RANGES: dict[str, tuple[Any, str]] = {
    "learning_rate": (lambda v: callable(v) or v > 0, "> 0 (or a schedule)"),
    "gamma": (lambda v: 0 <= v <= 1, "in [0, 1]"),
    "gae_lambda": (lambda v: 0 <= v <= 1, "in [0, 1]"),
    "clip_range": (lambda v: callable(v) or v > 0, "> 0 (or a schedule)"),
    "clip_range_vf": (lambda v: v is None or callable(v) or v > 0, "> 0, a schedule or null"),
    "n_steps": (lambda v: isinstance(v, int) and v >= 1, "an integer >= 1"),
    "batch_size": (lambda v: isinstance(v, int) and v >= 2, "an integer >= 2"),
    "n_epochs": (lambda v: isinstance(v, int) and v >= 1, "an integer >= 1"),
    "ent_coef": (lambda v: v >= 0, ">= 0"),
    "vf_coef": (lambda v: v >= 0, ">= 0"),
    "max_grad_norm": (lambda v: v > 0, "> 0"),
    "target_kl": (lambda v: v is None or v > 0, "> 0 or null"),
}


def check_ppo_settings(kwargs: Mapping[str, Any]) -> None:
    """Check the PPO settings SB3 takes unchecked (a negative discount, a zero clip range...).

    Raises:
        InvalidArgumentError: naming the first setting outside its range and the range.
    """
    for name, (ok, allowed) in _PPO_RANGES.items():
        if name not in kwargs:
            continue
        value = kwargs[name]
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if callable(value) or value is None or (number and math.isfinite(value)):
            try:
                if ok(value):
                    continue
            except TypeError:
                pass
        raise InvalidArgumentError(f"PPO setting {name}={value!r} must be {allowed}")


def make_ppo(env: Any, preset: str, normalize_rewards: bool = False, overrides: Mapping[str, Any] | None = None,
             **sb3_kwargs: Any) -> VantagePPO:
    """Build a PPO agent on ``env`` (a VecEnv) from a preset.

    Args:
        env: a vectorised environment.
        preset: a name in :data:`PPO_PRESETS`, e.g. ``"tracking-paper"``.
        normalize_rewards: min-max normalise rewards per episode before each update (the paper's option).
        overrides: preset entries to replace (``policy_kwargs`` is merged).
        **sb3_kwargs: passed to the SB3 constructor (``seed``, ``tensorboard_log``, ``device``, ``verbose``).

    Raises:
        UnknownNameError: an unknown preset.
        InvalidArgumentError: a setting outside its range (:func:`check_ppo_settings`).
    """
    kwargs = ppo_kwargs(preset, overrides)
    check_ppo_settings(kwargs)
    policy = kwargs.pop("policy")
    if normalize_rewards:
        kwargs["rollout_buffer_class"] = EpisodeMinMaxRolloutBuffer
    return VantagePPO(policy, env, **{**kwargs, **sb3_kwargs})


# The VQA task's preset lives beside its fused-map extractor (agents/vqa_policies.py).
from agents.vqa_policies import VQA_PPO_PRESETS  # noqa: E402

PPO_PRESETS.update(VQA_PPO_PRESETS)
