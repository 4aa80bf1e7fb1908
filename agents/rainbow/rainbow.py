"""Rainbow DQN (Hessel et al. 2018) as a Stable-Baselines3 off-policy algorithm, every part switchable.

The six parts are constructor flags so ablations are one argument each:

==========================  =====================================================  ==========================
flag                        part                                                   paper
==========================  =====================================================  ==========================
``double_q``                online net picks the next action, target evaluates it  van Hasselt et al. 2016
``prioritized_replay``      proportional prioritised replay on a sum-tree          Schaul et al. 2016
``dueling``                 value and advantage streams                            Wang et al. 2016
``n_step`` (1 disables)     n-step returns                                         Sutton 1988
``distributional``          C51 categorical return distribution                    Bellemare et al. 2017
``noisy``                   factorised Gaussian noisy layers instead of ε-greedy   Fortunato et al. 2018
==========================  =====================================================  ==========================

With every part off (``n_step=1``) the update is SB3's ``DQN`` update: Huber loss on the one-step TD error,
greedy target from the target network, ε-greedy exploration, same network, same buffer sampling.
"""

from __future__ import annotations

import io
import json
import math
import pathlib
import warnings
import zipfile
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch as th
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.utils import LinearSchedule, get_parameters_by_name, polyak_update
from torch.nn import functional as F

from agents.rainbow.buffers import PrioritizedReplayBuffer, RainbowReplayBuffer, RainbowSamples
from agents.rainbow.policies import (
    CnnPolicy,
    MlpPolicy,
    MultiInputPolicy,
    RainbowPolicy,
    RainbowQNetwork,
    check_action_space,
    check_head_arguments,
)
from envs.errors import InvalidArgumentError, ManifestError, check_choice

SelfRainbow = TypeVar("SelfRainbow", bound="Rainbow")

#: Name of the JSON manifest stored next to SB3's ``data`` inside a saved model's zip file.
MANIFEST_NAME = "rainbow_manifest.json"
MANIFEST_FORMAT = "vantage.rainbow"
MANIFEST_VERSION = 1
_COMPONENTS = ("double_q", "prioritized_replay", "dueling", "n_step", "distributional", "noisy")
_HEAD_KEYS = ("dueling", "distributional", "n_atoms", "v_min", "v_max", "noisy", "sigma0")

#: Named settings, as ``Rainbow`` keyword arguments plus ``policy``. ``atari`` is the paper's table 1 (frames
#: converted to agent steps at frame skip 4). ``cartpole`` is tuned here for CartPole-v1 (see docs/rainbow.md)
#: and shares the training schedule and layer sizes of RL-Zoo's tuned SB3 DQN so the two compare fairly.
#: ``tracking`` scales the Atari values down for ``vantage/ActiveTracking-v0`` (64x64 RGB, discrete wheels),
#: with the learning rate raised 6.25x from 1e-4 after a scan over 1e-4, 2.5e-4 and 6.25e-4 (docs/rainbow.md).
PRESETS: dict[str, dict[str, Any]] = {
    "atari": {
        "policy": "CnnPolicy",
        "learning_rate": 6.25e-5,
        "adam_eps": 1.5e-4,
        "buffer_size": 1_000_000,
        "learning_starts": 20_000,
        "batch_size": 32,
        "gamma": 0.99,
        "train_freq": 4,
        "gradient_steps": 1,
        "target_update_interval": 8_000,
        "n_step": 3,
        "n_atoms": 51,
        "v_min": -10.0,
        "v_max": 10.0,
        "sigma0": 0.5,
        "alpha": 0.5,
        "beta": 0.4,
        "max_grad_norm": 10.0,
    },
    "cartpole": {
        "policy": "MlpPolicy",
        "learning_rate": 2.3e-3,
        "adam_eps": 1.5e-4,
        "buffer_size": 100_000,
        "learning_starts": 1_000,
        "batch_size": 64,
        "gamma": 0.99,
        "train_freq": 256,
        "gradient_steps": 128,
        "target_update_interval": 10,
        "n_step": 3,
        "n_atoms": 51,
        "v_min": 0.0,
        "v_max": 100.0,
        "sigma0": 0.5,
        "alpha": 0.5,
        "beta": 0.4,
        "exploration_fraction": 0.16,
        "exploration_final_eps": 0.04,
        "max_grad_norm": 10.0,
        "policy_kwargs": {"net_arch": [256, 256]},
    },
    "tracking": {
        "policy": "CnnPolicy",
        "learning_rate": 6.25e-4,
        "adam_eps": 1.5e-4,
        "buffer_size": 100_000,
        "learning_starts": 5_000,
        "batch_size": 32,
        "gamma": 0.95,
        "train_freq": 4,
        "gradient_steps": 1,
        "target_update_interval": 2_000,
        "n_step": 3,
        "n_atoms": 51,
        "v_min": -10.0,
        "v_max": 10.0,
        "sigma0": 0.5,
        "alpha": 0.5,
        "beta": 0.4,
        "max_grad_norm": 10.0,
    },
}


def project_distribution(
    next_probs: th.Tensor, rewards: th.Tensor, discounts: th.Tensor, support: th.Tensor
) -> th.Tensor:
    """Project the shifted distribution ``r + γ^m z`` back onto the fixed support (C51's ``Φ T̂ Z``).

    Each atom ``z_j`` moves to ``Tz_j = clip(r + γ^m z_j, v_min, v_max)``; its probability is split between
    the two neighbouring atoms in proportion to closeness, and lands whole on an atom it hits exactly.

    Args:
        next_probs: probabilities of the bootstrap distribution, shape ``(B, N)``.
        rewards: n-step returns, shape ``(B, 1)``.
        discounts: ``γ^m``, or 0 where the episode terminated, shape ``(B, 1)``.
        support: atoms ``z``, evenly spaced, shape ``(N,)``.

    Returns:
        The projected probabilities, shape ``(B, N)``; each row sums to the row sum of ``next_probs``.
    """
    n_atoms = support.numel()
    v_min, v_max = support[0].item(), support[-1].item()
    delta_z = (v_max - v_min) / (n_atoms - 1)
    shifted = th.addcmul(rewards, discounts, support.unsqueeze(0)).clamp_(v_min, v_max)
    # Clamp again after the division: rounding can put an edge atom a hair outside [0, N-1].
    position = shifted.sub_(v_min).div_(delta_z).clamp_(0, n_atoms - 1)
    lower, upper = position.floor(), position.ceil()
    # On an exact hit lower == upper and both distances are 0; the indicator gives that atom all the mass.
    lower_weight = (upper - position).add_(lower == upper)
    upper_weight = position - lower
    projected = th.zeros_like(next_probs)
    projected.scatter_add_(1, lower.long(), next_probs * lower_weight)
    projected.scatter_add_(1, upper.long(), next_probs * upper_weight)
    return projected


class Rainbow(OffPolicyAlgorithm):
    """Rainbow DQN with double Q-learning, prioritised replay, dueling, n-step, C51 and noisy nets.

    Paper: https://arxiv.org/abs/1710.02298. Defaults are the paper's Atari settings (learning rate
    6.25e-5, Adam ε 1.5e-4, n = 3, 51 atoms on [-10, 10], σ₀ = 0.5, α = 0.5, β 0.4 → 1, target update every
    8,000 steps, replay 1M, learning starts at 20k steps); use :meth:`from_preset` for smaller tasks.

    Args:
        policy: ``"MlpPolicy"``, ``"CnnPolicy"``, ``"MultiInputPolicy"`` or a :class:`RainbowPolicy` subclass.
        env: environment, ``VecEnv`` (several environments allowed) or registered id.
        learning_rate: Adam learning rate, or a schedule of the remaining progress.
        buffer_size: transitions kept in replay.
        learning_starts: environment steps of uniform random actions before learning.
        batch_size: transitions per gradient step.
        tau: target update coefficient (1 = hard copy).
        gamma: discount factor.
        train_freq: update every ``train_freq`` steps, or ``(n, "step" | "episode")``.
        gradient_steps: gradient steps per update (-1: as many as environment steps collected).
        target_update_interval: environment steps between target network updates.
        max_grad_norm: gradient norm clip.
        double_q: select the bootstrap action with the online network.
        prioritized_replay: proportional prioritised replay.
        dueling: dueling value/advantage streams.
        n_step: return length ``n``; 1 disables n-step returns.
        distributional: C51 distributional loss.
        n_atoms: number of atoms of the return distribution.
        v_min: lowest atom.
        v_max: highest atom.
        noisy: noisy linear layers; when on, exploration is by the noise only (no ε-greedy).
        sigma0: σ₀, initial noise scale of noisy layers.
        alpha: priority exponent α.
        beta: initial importance-sampling exponent β, annealed linearly to 1 over each ``learn`` call.
        priority_eps: added to ``|loss|`` before raising to α.
        adam_eps: Adam's ε (used unless ``policy_kwargs["optimizer_kwargs"]`` sets ``eps``). Adam and AdamW run
            fused (``fused=True``) unless ``optimizer_kwargs`` says otherwise.
        exploration_fraction: fraction of training over which ε decays (ignored when ``noisy``).
        exploration_initial_eps: initial ε (ignored when ``noisy``).
        exploration_final_eps: final ε (ignored when ``noisy``).
        replay_buffer_class: a :class:`RainbowReplayBuffer` subclass (default: chosen from the flags).
        replay_buffer_kwargs: extra keyword arguments for the buffer.
        stats_window_size: episodes averaged for rollout logging.
        tensorboard_log: TensorBoard log directory.
        policy_kwargs: policy keyword arguments (``net_arch``, ``features_extractor_class``, ...); the head
            flags (``dueling``, ``distributional``, ``n_atoms``, ``v_min``, ``v_max``, ``noisy``, ``sigma0``)
            are constructor arguments and must not appear here.
        verbose: 0 silent, 1 info, 2 debug.
        seed: random seed.
        device: torch device.
        _init_setup_model: build networks and buffer now (``False`` when loading).

    Raises:
        InvalidArgumentError: on an argument outside its allowed range, a non-``Discrete`` action space, head
            flags inside ``policy_kwargs`` or a replay buffer class that does not match the flags.
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpPolicy": MlpPolicy,
        "CnnPolicy": CnnPolicy,
        "MultiInputPolicy": MultiInputPolicy,
    }
    exploration_schedule: Schedule
    q_net: RainbowQNetwork
    q_net_target: RainbowQNetwork
    policy: RainbowPolicy
    replay_buffer: RainbowReplayBuffer  # type: ignore[assignment]

    def __init__(
        self,
        policy: str | type[RainbowPolicy],
        env: GymEnv | str | None,
        learning_rate: float | Schedule = 6.25e-5,
        buffer_size: int = 1_000_000,
        learning_starts: int = 20_000,
        batch_size: int = 32,
        tau: float = 1.0,
        gamma: float = 0.99,
        train_freq: int | tuple[int, str] = 4,
        gradient_steps: int = 1,
        target_update_interval: int = 8_000,
        max_grad_norm: float = 10.0,
        double_q: bool = True,
        prioritized_replay: bool = True,
        dueling: bool = True,
        n_step: int = 3,
        distributional: bool = True,
        n_atoms: int = 51,
        v_min: float = -10.0,
        v_max: float = 10.0,
        noisy: bool = True,
        sigma0: float = 0.5,
        alpha: float = 0.5,
        beta: float = 0.4,
        priority_eps: float = 1e-6,
        adam_eps: float = 1.5e-4,
        exploration_fraction: float = 0.1,
        exploration_initial_eps: float = 1.0,
        exploration_final_eps: float = 0.01,
        replay_buffer_class: type[RainbowReplayBuffer] | None = None,
        replay_buffer_kwargs: dict[str, Any] | None = None,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
    ) -> None:
        if not callable(learning_rate) and (
            isinstance(learning_rate, bool)
            or not isinstance(learning_rate, int | float)
            or not (math.isfinite(learning_rate) and learning_rate > 0)
        ):
            raise InvalidArgumentError(f"learning_rate must be a number > 0 or a schedule, got {learning_rate!r}")
        _check_arguments(
            n_step=n_step,
            gamma=gamma,
            alpha=alpha,
            beta=beta,
            priority_eps=priority_eps,
            adam_eps=adam_eps,
            target_update_interval=target_update_interval,
            max_grad_norm=max_grad_norm,
            batch_size=batch_size,
            buffer_size=buffer_size,
            tau=tau,
            exploration=(exploration_fraction, exploration_initial_eps, exploration_final_eps),
        )
        check_head_arguments(distributional, n_atoms, v_min, v_max, noisy, sigma0)
        policy_kwargs = dict(policy_kwargs or {})
        clashes = sorted(set(policy_kwargs) & set(_HEAD_KEYS))
        if clashes:
            raise InvalidArgumentError(
                f"policy_kwargs must not set {clashes}; pass them to Rainbow(...) directly "
                f"(head arguments: {', '.join(_HEAD_KEYS)})"
            )
        optimizer_kwargs = dict(policy_kwargs.get("optimizer_kwargs") or {})
        optimizer_kwargs.setdefault("eps", adam_eps)
        if policy_kwargs.get("optimizer_class", th.optim.Adam) in (th.optim.Adam, th.optim.AdamW):
            # The same update rule in one kernel over all parameters: the noisy distributional head has 2-3x
            # the parameters of a DQN head on the same trunk, and the per-tensor loop of PyTorch's default
            # CPU Adam made the optimiser step the largest cost of an update (docs/rainbow.md, throughput).
            optimizer_kwargs.setdefault("fused", True)
        policy_kwargs["optimizer_kwargs"] = optimizer_kwargs
        policy_kwargs.update(
            dueling=dueling,
            distributional=distributional,
            n_atoms=int(n_atoms),
            v_min=float(v_min),
            v_max=float(v_max),
            noisy=noisy,
            sigma0=float(sigma0),
        )

        super().__init__(
            policy,
            env,  # type: ignore[arg-type]
            learning_rate,
            buffer_size,
            learning_starts,
            batch_size,
            tau,
            gamma,
            train_freq,
            gradient_steps,
            action_noise=None,
            replay_buffer_class=replay_buffer_class,
            replay_buffer_kwargs=replay_buffer_kwargs,
            optimize_memory_usage=False,
            # SB3's own n-step buffer stays off; Rainbow's buffers assemble n-step transitions themselves.
            n_steps=1,
            policy_kwargs=policy_kwargs,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            verbose=verbose,
            device=device,
            seed=seed,
            sde_support=False,
            # Checked below with a ValueError instead of SB3's assert.
            supported_action_spaces=None,
            support_multi_env=True,
        )
        # Without an env (as in load) the spaces arrive later, from the saved data.
        if getattr(self, "action_space", None) is not None:
            check_action_space(self.action_space)

        self.double_q = double_q
        self.prioritized_replay = prioritized_replay
        self.dueling = dueling
        self.n_step = int(n_step)
        self.distributional = distributional
        self.n_atoms = int(n_atoms)
        self.v_min, self.v_max = float(v_min), float(v_max)
        self.noisy = noisy
        self.sigma0 = float(sigma0)
        self.alpha = alpha
        self.beta = beta
        self.priority_eps = priority_eps
        self.target_update_interval = target_update_interval
        self.max_grad_norm = max_grad_norm
        self.exploration_initial_eps = exploration_initial_eps
        self.exploration_final_eps = exploration_final_eps
        self.exploration_fraction = exploration_fraction
        # Calls to env.step(); with n_envs environments each counts n_envs steps.
        self._n_calls = 0
        self.exploration_rate = 0.0

        if _init_setup_model:
            self._setup_model()

    # ------------------------------------------------------------------ set-up
    @classmethod
    def from_preset(cls, name: str, env: GymEnv | str, **overrides: Any) -> Rainbow:
        """Build a Rainbow from a named entry of :data:`PRESETS`, with keyword overrides.

        Args:
            name: preset name (``atari``, ``cartpole``, ``tracking``).
            env: environment.
            **overrides: keyword arguments replacing preset values (``policy`` included).

        Raises:
            UnknownNameError: if ``name`` is not a preset.
        """
        check_choice("Rainbow preset", name, PRESETS)
        kwargs = {**_deep_copy(PRESETS[name]), **overrides}
        policy = kwargs.pop("policy")
        return cls(policy, env, **kwargs)

    def _setup_model(self) -> None:
        self._setup_replay_buffer()
        super()._setup_model()
        self._create_aliases()
        # Batch-norm running statistics are copied to the target like SB3's DQN (GH issue #996 there).
        self.batch_norm_stats = get_parameters_by_name(self.q_net, ["running_"])
        self.batch_norm_stats_target = get_parameters_by_name(self.q_net_target, ["running_"])
        self.exploration_schedule = LinearSchedule(
            self.exploration_initial_eps, self.exploration_final_eps, self.exploration_fraction
        )
        if self.n_envs > self.target_update_interval:
            warnings.warn(
                f"n_envs ({self.n_envs}) > target_update_interval ({self.target_update_interval}): the "
                f"target network is updated after every env.step() call, i.e. every {self.n_envs} steps",
                stacklevel=2,
            )

    def _setup_replay_buffer(self) -> None:
        expected = PrioritizedReplayBuffer if self.prioritized_replay else RainbowReplayBuffer
        if self.replay_buffer_class is None:
            self.replay_buffer_class = expected
        buffer_class = self.replay_buffer_class
        if not (isinstance(buffer_class, type) and issubclass(buffer_class, expected)) or (
            not self.prioritized_replay and issubclass(buffer_class, PrioritizedReplayBuffer)
        ):
            raise InvalidArgumentError(
                f"replay_buffer_class {buffer_class!r} does not match "
                f"prioritized_replay={self.prioritized_replay}; allowed: subclasses of {expected.__name__}"
                + ("" if self.prioritized_replay else " that are not PrioritizedReplayBuffer")
            )
        if self.replay_buffer is not None:
            return
        kwargs: dict[str, Any] = {**self.replay_buffer_kwargs, "n_step": self.n_step, "gamma": self.gamma}
        if self.prioritized_replay:
            kwargs.setdefault("alpha", self.alpha)
            kwargs.setdefault("priority_eps", self.priority_eps)
        self.replay_buffer = buffer_class(
            self.buffer_size,
            self.observation_space,
            self.action_space,
            device=self.device,
            n_envs=self.n_envs,
            **kwargs,
        )

    def _create_aliases(self) -> None:
        self.q_net = self.policy.q_net
        self.q_net_target = self.policy.q_net_target
        # Gradient clipping walks this list every update; ``parameters()`` would rebuild it from the module
        # tree each time (a measurable share of an update on small networks). Loading copies weights in place,
        # so the list stays valid.
        self._trained_parameters = list(self.q_net.parameters())

    def _setup_learn(
        self,
        total_timesteps: int,
        callback: MaybeCallback = None,
        reset_num_timesteps: bool = True,
        tb_log_name: str = "run",
        progress_bar: bool = False,
    ) -> Any:
        # The environments are about to be reset without an episode end: close the open n-step windows first.
        if (reset_num_timesteps or self._last_obs is None) and isinstance(self.replay_buffer, RainbowReplayBuffer):
            self.replay_buffer.flush_pending()
        if self._vec_normalize_env is not None and self._vec_normalize_env.norm_reward:
            warnings.warn(
                "VecNormalize reward normalisation is not applied by Rainbow: replay stores and learns from "
                "the original rewards (n-step returns are summed at insertion)",
                stacklevel=2,
            )
        return super()._setup_learn(total_timesteps, callback, reset_num_timesteps, tb_log_name, progress_bar)

    # ---------------------------------------------------------------- stepping
    def _on_step(self) -> None:
        """Update the target network and ε after each ``env.step()`` (called by ``collect_rollouts``)."""
        self._n_calls += 1
        if self._n_calls % max(self.target_update_interval // self.n_envs, 1) == 0:
            polyak_update(self.q_net.parameters(), self.q_net_target.parameters(), self.tau)
            polyak_update(self.batch_norm_stats, self.batch_norm_stats_target, 1.0)
        self.exploration_rate = 0.0 if self.noisy else self.exploration_schedule(self._current_progress_remaining)
        self.logger.record("rollout/exploration_rate", self.exploration_rate)

    @property
    def current_beta(self) -> float:
        """Importance-sampling exponent now: ``beta`` at the start of ``learn``, 1 at its end."""
        progress = 1.0 - self._current_progress_remaining
        return float(min(1.0, self.beta + (1.0 - self.beta) * progress))

    def predict(
        self,
        observation: np.ndarray | dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """Act: noisy nets draw new noise, otherwise ε-greedy; deterministic acting is greedy and noise-free.

        Args:
            observation: observation (single or batched).
            state: unused (no recurrent state).
            episode_start: unused.
            deterministic: greedy action with mean weights (evaluation).

        Returns:
            Actions and ``state``.
        """
        if not deterministic:
            if self.noisy:
                # Noise is resampled for every acting step, all environments of the step sharing one sample.
                self.policy.reset_noise()
            elif np.random.rand() < self.exploration_rate:
                if self.policy.is_vectorized_observation(observation):
                    first = next(iter(observation.values())) if isinstance(observation, dict) else observation
                    action = np.array([self.action_space.sample() for _ in range(first.shape[0])])
                else:
                    action = np.array(self.action_space.sample())
                return action, state
        return self.policy.predict(observation, state, episode_start, deterministic)

    # ------------------------------------------------------------------ update
    def train(self, gradient_steps: int, batch_size: int = 32) -> None:
        """Run ``gradient_steps`` updates: sample, target under ``no_grad``, loss, step, priorities."""
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        beta = self.current_beta
        losses = []
        for _ in range(gradient_steps):
            batch = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env, beta=beta)
            if self.noisy:
                # Independent noise for the online and the target network at every update.
                self.q_net.reset_noise()
                self.q_net_target.reset_noise()

            if self.distributional:
                per_sample, priorities = self._distributional_loss(batch)
            else:
                per_sample, priorities = self._scalar_loss(batch)
            # Uniform replay skips the unit weights so the all-off configuration is DQN's update exactly.
            loss = (batch.weights * per_sample).mean() if self.prioritized_replay else per_sample.mean()
            losses.append(loss.item())

            self.policy.optimizer.zero_grad()
            loss.backward()
            th.nn.utils.clip_grad_norm_(self._trained_parameters, self.max_grad_norm)
            self.policy.optimizer.step()

            if self.prioritized_replay:
                assert isinstance(self.replay_buffer, PrioritizedReplayBuffer), "prioritized replay needs its buffer"
                self.replay_buffer.update_priorities(batch.indices, priorities)

        self._n_updates += gradient_steps
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/loss", float(np.mean(losses)))
        if self.prioritized_replay:
            self.logger.record("train/beta", beta)

    def _online_head(self, batch: RainbowSamples) -> tuple[th.Tensor, th.Tensor | None]:
        """Online head output at ``s_t`` (with gradient) and, with double Q, its greedy actions at ``s_{t+m}``.

        The two are separate passes: one pass over ``2B`` rows would save a call but pay the backward pass for
        the ``B`` rows that need no gradient, which costs more on CPU (measured on CartPole's 256x256 MLP).
        """
        current = self.q_net.head(batch.observations)
        if not self.double_q:
            return current, None
        with th.no_grad():
            return current, self.q_net(batch.next_observations).argmax(dim=1)

    def _scalar_loss(self, batch: RainbowSamples) -> tuple[th.Tensor, th.Tensor]:
        """Huber loss on the n-step TD error; priorities are ``|TD error|``."""
        head, next_actions = self._online_head(batch)
        q_values = self.q_net.q_values(head)
        with th.no_grad():
            next_q_target = self.q_net_target(batch.next_observations)
            if next_actions is None:
                next_actions = next_q_target.argmax(dim=1)
            next_q = next_q_target.gather(1, next_actions.unsqueeze(1))
            target_q = batch.rewards + (1 - batch.dones) * batch.discounts * next_q

        current_q = q_values.gather(1, batch.actions.long())
        per_sample = F.smooth_l1_loss(current_q, target_q, reduction="none").squeeze(1)
        return per_sample, (current_q - target_q).detach().abs().squeeze(1)

    def _distributional_loss(self, batch: RainbowSamples) -> tuple[th.Tensor, th.Tensor]:
        """Cross-entropy to the projected target distribution; priorities are the KL divergence.

        The KL divergence is the cross-entropy minus the target's entropy: the same gradient, but a priority
        that does not grow with how spread out the target is (Hessel et al. prioritise by the KL loss).
        """
        rows = th.arange(batch.actions.shape[0], device=self.device)
        support = self.q_net.support
        logits, next_actions = self._online_head(batch)
        with th.no_grad():
            next_probs = F.softmax(self.q_net_target.head(batch.next_observations), dim=-1)
            if next_actions is None:
                next_actions = (next_probs * support).sum(-1).argmax(dim=1)
            target_probs = project_distribution(
                next_probs[rows, next_actions], batch.rewards, (1 - batch.dones) * batch.discounts, support
            )

        log_probs = F.log_softmax(logits, dim=-1)
        chosen_log_probs = log_probs[rows, batch.actions.long().squeeze(1)]
        per_sample = -(target_probs * chosen_log_probs).sum(dim=-1)
        if not self.prioritized_replay:
            return per_sample, per_sample.detach()
        with th.no_grad():
            kl = per_sample + th.special.xlogy(target_probs, target_probs).sum(dim=-1)
        return per_sample, kl

    def learn(
        self: SelfRainbow,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 4,
        tb_log_name: str = "Rainbow",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfRainbow:
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )

    # -------------------------------------------------------------- save/load
    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "q_net", "q_net_target", "_trained_parameters"]

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        return ["policy", "policy.optimizer"], []

    def manifest(self) -> dict[str, Any]:
        """The JSON manifest saved with the model: format, components and head settings."""
        return {
            "format": MANIFEST_FORMAT,
            "version": MANIFEST_VERSION,
            "algorithm": type(self).__name__,
            "policy_class": self.policy_class.__name__,
            "components": {name: getattr(self, name) for name in _COMPONENTS},
            "n_atoms": self.n_atoms,
            "v_min": self.v_min,
            "v_max": self.v_max,
            "sigma0": self.sigma0,
            "gamma": self.gamma,
            "n_actions": int(self.action_space.n),  # type: ignore[union-attr]
        }

    def save(
        self,
        path: str | pathlib.Path | io.BufferedIOBase,
        exclude: Any = None,
        include: Any = None,
    ) -> None:
        """Save like SB3 (constructor data + weights in a zip) and add :data:`MANIFEST_NAME` to it."""
        manifest = json.dumps(self.manifest(), indent=2)
        if isinstance(path, str | pathlib.Path):
            path = pathlib.Path(path)
            # SB3 appends ".zip" to a suffix-less path; mirror it so the manifest lands in the same file.
            if path.suffix == "":
                path = pathlib.Path(f"{path}.zip")
            super().save(path, exclude=exclude, include=include)
            with zipfile.ZipFile(path, "a") as archive:
                archive.writestr(MANIFEST_NAME, manifest)
            return
        # A file object may be write-only, so assemble the archive in memory and write it out once.
        staging = io.BytesIO()
        super().save(staging, exclude=exclude, include=include)
        with zipfile.ZipFile(staging, "a") as archive:
            archive.writestr(MANIFEST_NAME, manifest)
        path.write(staging.getvalue())

    @classmethod
    def load(  # type: ignore[override]
        cls: type[SelfRainbow],
        path: str | pathlib.Path | io.BufferedIOBase,
        env: GymEnv | None = None,
        device: th.device | str = "auto",
        custom_objects: dict[str, Any] | None = None,
        print_system_info: bool = False,
        force_reset: bool = True,
        **kwargs: Any,
    ) -> SelfRainbow:
        """Load a model saved by :meth:`save`; its manifest is checked against the restored model.

        Raises:
            ManifestError: if the manifest is missing, malformed, or disagrees with the saved settings.
        """
        manifest = read_manifest(path)
        model = super().load(
            path,
            env=env,
            device=device,
            custom_objects=custom_objects,
            print_system_info=print_system_info,
            force_reset=force_reset,
            **kwargs,
        )
        restored = {name: getattr(model, name) for name in _COMPONENTS}
        if restored != manifest["components"]:
            raise ManifestError(
                f"manifest components {manifest['components']} do not match the saved model's {restored}"
            )
        return model


def read_manifest(path: str | pathlib.Path | io.BufferedIOBase) -> dict[str, Any]:
    """Read and validate the manifest of a saved Rainbow model.

    Args:
        path: the zip file (``.zip`` is appended if the bare path does not exist) or a binary file object.

    Returns:
        The manifest dict.

    Raises:
        ManifestError: if the file is not a zip, has no manifest, or the manifest is malformed.
    """
    source: Any = path
    if isinstance(path, str | pathlib.Path):
        source = pathlib.Path(path)
        if not source.exists() and pathlib.Path(f"{source}.zip").exists():
            source = pathlib.Path(f"{source}.zip")
    else:
        path.seek(0)
    try:
        with zipfile.ZipFile(source) as archive:
            if MANIFEST_NAME not in archive.namelist():
                raise ManifestError(f"{path!r} has no {MANIFEST_NAME}; was it saved by Rainbow.save?")
            raw = archive.read(MANIFEST_NAME)
    except zipfile.BadZipFile as error:
        raise ManifestError(f"{path!r} is not a zip archive saved by Rainbow.save: {error}") from error
    finally:
        if not isinstance(path, str | pathlib.Path):
            path.seek(0)
    try:
        manifest = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ManifestError(f"{MANIFEST_NAME} in {path!r} is not valid JSON: {error}") from error
    if not isinstance(manifest, dict):
        raise ManifestError(f"{MANIFEST_NAME} must hold a JSON object, got {type(manifest).__name__}")
    if manifest.get("format") != MANIFEST_FORMAT or manifest.get("version") != MANIFEST_VERSION:
        raise ManifestError(
            f"unsupported manifest format {manifest.get('format')!r} version {manifest.get('version')!r}; "
            f"allowed: {MANIFEST_FORMAT!r} version {MANIFEST_VERSION}"
        )
    components = manifest.get("components")
    if not isinstance(components, dict) or sorted(components) != sorted(_COMPONENTS):
        raise ManifestError(f"manifest components must have exactly the keys {list(_COMPONENTS)}, got {components!r}")
    return manifest


def _check_arguments(
    *,
    n_step: int,
    gamma: float,
    alpha: float,
    beta: float,
    priority_eps: float,
    adam_eps: float,
    target_update_interval: int,
    max_grad_norm: float,
    batch_size: int,
    buffer_size: int,
    tau: float,
    exploration: tuple[float, float, float],
) -> None:
    """Raise :class:`InvalidArgumentError` for the first algorithm argument outside its range."""
    if isinstance(n_step, bool) or int(n_step) != n_step or n_step < 1:
        raise InvalidArgumentError(f"n_step must be an integer >= 1 (1 disables n-step returns), got {n_step!r}")
    checks: list[tuple[str, float, bool, str]] = [
        ("gamma", gamma, 0.0 <= gamma <= 1.0, "[0, 1]"),
        ("alpha", alpha, alpha >= 0.0, ">= 0"),
        ("beta", beta, 0.0 <= beta <= 1.0, "[0, 1]"),
        ("priority_eps", priority_eps, priority_eps > 0.0, "> 0"),
        ("adam_eps", adam_eps, adam_eps > 0.0, "> 0"),
        ("target_update_interval", target_update_interval, target_update_interval >= 1, ">= 1"),
        ("max_grad_norm", max_grad_norm, max_grad_norm > 0.0, "> 0"),
        ("batch_size", batch_size, batch_size >= 1, ">= 1"),
        ("buffer_size", buffer_size, buffer_size >= 1, ">= 1"),
        ("tau", tau, 0.0 < tau <= 1.0, "(0, 1]"),
        ("exploration_fraction", exploration[0], 0.0 <= exploration[0] <= 1.0, "[0, 1]"),
        ("exploration_initial_eps", exploration[1], 0.0 <= exploration[1] <= 1.0, "[0, 1]"),
        ("exploration_final_eps", exploration[2], 0.0 <= exploration[2] <= 1.0, "[0, 1]"),
    ]
    for name, value, ok, allowed in checks:
        if not ok or (isinstance(value, float) and math.isnan(value)):
            where = f"in {allowed}" if allowed[0] in "[(" else allowed
            raise InvalidArgumentError(f"{name} must be {where}, got {value!r}")


def _deep_copy(value: Any) -> Any:
    """Copy nested dicts and lists of a preset so callers cannot mutate :data:`PRESETS`."""
    if isinstance(value, dict):
        return {key: _deep_copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_deep_copy(item) for item in value]
    return value


# The VQA task's preset lives beside its fused-map extractor (agents/vqa_policies.py).
from agents.vqa_policies import VQA_RAINBOW_PRESETS  # noqa: E402

PRESETS.update(VQA_RAINBOW_PRESETS)
