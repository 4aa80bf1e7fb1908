"""Q-networks for Rainbow: optional dueling streams, C51 distributional outputs and noisy linear layers.

A network is a *trunk* (SB3's features extractor, then the ``net_arch`` layers) and a *head* (one output
stream, or a value and an advantage stream when dueling, each with optional ``head_arch`` hidden layers). With
``noisy=True`` the head is built from :class:`NoisyLinear` layers. This mirrors the paper's Atari network,
whose convolutional torso is deterministic and whose fully connected streams are noisy; ``noisy_trunk=True``
makes the ``net_arch`` layers noisy as well. Keeping the trunk plain matters on small tasks: a noisy layer has
twice the parameters (μ and σ), and the trunk holds most of them. With ``dueling``, ``distributional`` and
``noisy`` all off the network is layer for layer SB3's ``DQN`` network (same layers, created in the same order).

Noise: a noisy network draws new factorised noise only when :meth:`RainbowQNetwork.reset_noise` is called (the
algorithm does so before each acting step and each gradient step). ``use_noise=False`` evaluates the mean
weights; ``predict(..., deterministic=True)`` does that, so evaluation is noise-free.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.torch_layers import (
    BaseFeaturesExtractor,
    CombinedExtractor,
    FlattenExtractor,
    NatureCNN,
)
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from torch import nn
from torch.nn import functional as F

from envs.errors import InvalidArgumentError


class NoisyLinear(nn.Module):
    """Linear layer with learnable factorised Gaussian noise (Fortunato et al. 2018, NoisyNet).

    ``y = (μ_w + σ_w ⊙ ε_w) x + μ_b + σ_b ⊙ ε_b`` with ``ε_w = f(ε_out) f(ε_in)ᵀ``, ``ε_b = f(ε_out)``,
    ``f(x) = sign(x) √|x|`` and ``ε_in, ε_out ~ N(0, 1)``. Initialisation: ``μ ~ U(±1/√in)``,
    ``σ = σ₀/√in``.

    Weight and bias are stored side by side, the bias as the last column of ``mu``, ``sigma`` and ``epsilon``
    (``ε`` is then ``f(ε_out) [f(ε_in); 1]ᵀ``), so a noisy forward pass is one ``addcmul`` and the optimiser
    sees two tensors per layer instead of four. ``weight_mu``, ``bias_sigma`` etc. are views into them.

    Args:
        in_features: input size.
        out_features: output size.
        sigma0: σ₀, the initial noise scale (0.5 in the paper).

    Raises:
        InvalidArgumentError: if ``sigma0 < 0``.
    """

    epsilon: th.Tensor

    def __init__(self, in_features: int, out_features: int, sigma0: float = 0.5) -> None:
        super().__init__()
        if sigma0 < 0:
            raise InvalidArgumentError(f"sigma0 must be >= 0, got {sigma0}")
        self.in_features = in_features
        self.out_features = out_features
        self.sigma0 = sigma0
        self.mu = nn.Parameter(th.empty(out_features, in_features + 1))
        self.sigma = nn.Parameter(th.empty(out_features, in_features + 1))
        # A buffer, not a parameter: saved with the weights so a loaded network reproduces noisy outputs too.
        self.register_buffer("epsilon", th.zeros(out_features, in_features + 1))
        self.reset_parameters()
        self.reset_noise()

    weight_mu = property(lambda self: self.mu[:, :-1], doc="μ of the weight (a view).")
    bias_mu = property(lambda self: self.mu[:, -1], doc="μ of the bias (a view).")
    weight_sigma = property(lambda self: self.sigma[:, :-1], doc="σ of the weight (a view).")
    bias_sigma = property(lambda self: self.sigma[:, -1], doc="σ of the bias (a view).")
    weight_epsilon = property(lambda self: self.epsilon[:, :-1], doc="Current weight noise (a view).")
    bias_epsilon = property(lambda self: self.epsilon[:, -1], doc="Current bias noise (a view).")

    @th.no_grad()
    def reset_parameters(self) -> None:
        """Draw ``μ`` uniformly and set ``σ`` to ``σ₀/√in``."""
        bound = 1.0 / math.sqrt(self.in_features)
        self.mu.uniform_(-bound, bound)
        self.sigma.fill_(self.sigma0 * bound)

    @th.no_grad()
    def reset_noise(self) -> None:
        """Draw new factorised noise (``in + out`` normal samples instead of ``in × out``)."""
        self.set_noise(scaled_noise(self.in_features + self.out_features, self.mu.device))

    @th.no_grad()
    def set_noise(self, scaled: th.Tensor) -> None:
        """Set the noise from ``f(ε)`` values: ``in`` values of ``f(ε_in)``, then ``out`` of ``f(ε_out)``."""
        eps_in = th.cat([scaled[: self.in_features], scaled.new_ones(1)])
        th.outer(scaled[self.in_features :], eps_in, out=self.epsilon)

    def forward(self, x: th.Tensor, use_noise: bool = True) -> th.Tensor:
        """Apply the layer with the current noise sample, or with the mean weights if ``use_noise=False``."""
        params = th.addcmul(self.mu, self.sigma, self.epsilon) if use_noise else self.mu
        return F.linear(x, params[:, :-1], params[:, -1])

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, sigma0={self.sigma0}"


def scaled_noise(size: int, device: th.device | str = "cpu") -> th.Tensor:
    """Draw ``f(ε) = sign(ε) √|ε|`` for ``size`` standard normal samples ``ε``."""
    noise = th.randn(size, device=device)
    return noise.sign_().mul_(noise.abs().sqrt_())


class _MLP(nn.Module):
    """Fully connected stack whose layers are all noisy or all plain, with an activation between layers.

    The activation follows every hidden layer; the optional output layer (``out_dim``) has none.
    """

    def __init__(
        self,
        in_dim: int,
        hidden: list[int],
        out_dim: int | None,
        activation_fn: type[nn.Module],
        noisy: bool,
        sigma0: float,
    ) -> None:
        super().__init__()
        sizes = [in_dim, *hidden] + ([out_dim] if out_dim is not None else [])
        self.layers = nn.ModuleList(
            NoisyLinear(a, b, sigma0) if noisy else nn.Linear(a, b) for a, b in itertools.pairwise(sizes)
        )
        self.activation = activation_fn()
        self.n_activated = len(hidden)
        self.out_dim = sizes[-1]
        self.noisy = noisy
        # Sublayers are run through ``forward`` rather than ``__call__``: nn.Module's hook dispatch costs about
        # as much as the maths of a small layer, and Rainbow makes three passes per update and one per step.
        self._activate = F.relu if type(self.activation) is nn.ReLU else self.activation.forward

    def forward(self, x: th.Tensor, use_noise: bool = True) -> th.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer.forward(x, use_noise) if self.noisy else layer.forward(x)
            if i < self.n_activated:
                x = self._activate(x)
        return x


class RainbowQNetwork(BasePolicy):
    """Q-network with switchable dueling, distributional (C51) and noisy parts.

    Layout for ``net_arch = [h_1, ..., h_k]`` and ``head_arch = [s_1, ...]`` (empty by default):

    * trunk: ``features → h_1 → … → h_k`` (plain layers unless ``noisy_trunk``);
    * head, not dueling: ``→ s_1 → … → |A|·atoms``;
    * head, dueling: a value stream ``→ s_1 → … → atoms`` and an advantage stream ``→ s_1 → … → |A|·atoms``,
      combined as ``V + A - mean_a A`` (on logits when distributional). Without ``head_arch`` the two streams
      are single layers on the same input, so they are stored as one layer of ``(1 + |A|)·atoms`` outputs
      (value first): the same function in half the kernel launches (with noise, the two share ``ε_in``).

    Args:
        observation_space: observation space.
        action_space: ``Discrete`` action space.
        features_extractor: SB3 features extractor.
        features_dim: its output size.
        net_arch: hidden sizes of the trunk after the features extractor.
        activation_fn: activation between layers.
        normalize_images: divide image observations by 255.
        dueling: split the head into value and advantage streams (Wang et al. 2016).
        head_arch: hidden sizes inside the head (each stream when dueling); the paper's Atari streams have
            one 512-unit layer.
        distributional: output a categorical return distribution over ``n_atoms`` atoms (Bellemare et al.
            2017).
        n_atoms: number of atoms.
        v_min: lowest atom.
        v_max: highest atom.
        noisy: use :class:`NoisyLinear` layers in the head.
        sigma0: initial noise scale of noisy layers.
        noisy_trunk: make the ``net_arch`` layers noisy too (only with ``noisy``).
    """

    action_space: spaces.Discrete
    support: th.Tensor

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Discrete,
        features_extractor: BaseFeaturesExtractor,
        features_dim: int,
        net_arch: list[int] | None = None,
        activation_fn: type[nn.Module] = nn.ReLU,
        normalize_images: bool = True,
        dueling: bool = True,
        distributional: bool = True,
        n_atoms: int = 51,
        v_min: float = -10.0,
        v_max: float = 10.0,
        noisy: bool = True,
        sigma0: float = 0.5,
        head_arch: list[int] | None = None,
        noisy_trunk: bool = False,
    ) -> None:
        super().__init__(
            observation_space,
            action_space,
            features_extractor=features_extractor,
            normalize_images=normalize_images,
        )
        self.net_arch = [64, 64] if net_arch is None else list(net_arch)
        self.activation_fn = activation_fn
        self.features_dim = features_dim
        self.dueling = dueling
        self.head_arch = list(head_arch or [])
        self.noisy_trunk = noisy_trunk
        self.distributional = distributional
        self.n_atoms = n_atoms if distributional else 1
        self.v_min, self.v_max = float(v_min), float(v_max)
        self.noisy = noisy
        self.sigma0 = sigma0
        self.n_actions = int(action_space.n)
        self.register_buffer(
            "support",
            th.linspace(self.v_min, self.v_max, self.n_atoms) if distributional else th.zeros(1),
        )

        out = self.n_actions * self.n_atoms
        self.trunk = _MLP(features_dim, self.net_arch, None, activation_fn, noisy and noisy_trunk, sigma0)
        hidden = self.trunk.out_dim
        if dueling and self.head_arch:
            self.value_stream = _MLP(hidden, self.head_arch, self.n_atoms, activation_fn, noisy, sigma0)
            self.advantage_stream = _MLP(hidden, self.head_arch, out, activation_fn, noisy, sigma0)
        else:
            width = out + self.n_atoms if dueling else out
            self.q_head = _MLP(hidden, self.head_arch, width, activation_fn, noisy, sigma0)
        # A plain list (not registered as submodules) so reset_noise need not walk the module tree each step.
        self._noisy_layers = [module for module in self.modules() if isinstance(module, NoisyLinear)]
        self._noise_sizes = [layer.in_features + layer.out_features for layer in self._noisy_layers]

    def head(self, obs: PyTorchObs, use_noise: bool = True) -> th.Tensor:
        """Raw head output: logits of shape ``(B, |A|, atoms)`` if distributional, else Q-values ``(B, |A|)``.

        Args:
            obs: preprocessed-able observation batch.
            use_noise: use the current noise sample (``False``: mean weights).
        """
        # The _MLP parts are called through ``forward`` (see _MLP): no hooks are registered on them.
        hidden = self.trunk.forward(self.extract_features(obs, self.features_extractor), use_noise)
        if self.dueling:
            if self.head_arch:
                value = self.value_stream.forward(hidden, use_noise)
                advantage = self.advantage_stream.forward(hidden, use_noise)
            else:
                value, advantage = self.q_head.forward(hidden, use_noise).split(
                    [self.n_atoms, self.n_actions * self.n_atoms], 1
                )
            advantage = advantage.view(-1, self.n_actions, self.n_atoms)
            out = (advantage - advantage.mean(dim=1, keepdim=True)).add_(value.view(-1, 1, self.n_atoms))
        else:
            out = self.q_head.forward(hidden, use_noise).view(-1, self.n_actions, self.n_atoms)
        return out if self.distributional else out.squeeze(-1)

    def q_values(self, head_output: th.Tensor) -> th.Tensor:
        """Expected Q-values ``(B, |A|)`` from a :meth:`head` output."""
        if self.distributional:
            return (F.softmax(head_output, dim=-1) * self.support).sum(dim=-1)
        return head_output

    def forward(self, obs: PyTorchObs, use_noise: bool = True) -> th.Tensor:
        """Return the (expected) Q-value of every action, shape ``(B, |A|)``."""
        return self.q_values(self.head(obs, use_noise))

    def _predict(self, observation: PyTorchObs, deterministic: bool = True) -> th.Tensor:
        # Deterministic prediction is evaluation: noisy layers use their mean weights.
        return self(observation, use_noise=not deterministic).argmax(dim=1).reshape(-1)

    def reset_noise(self) -> None:
        """Draw new noise in every noisy layer (no-op without noisy layers)."""
        if not self._noisy_layers:
            return
        # One random draw for the whole network: per-layer draws cost more in call overhead than in maths.
        chunks = scaled_noise(sum(self._noise_sizes), self.support.device).split(self._noise_sizes)
        for layer, chunk in zip(self._noisy_layers, chunks):
            layer.set_noise(chunk)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(
            net_arch=self.net_arch,
            features_dim=self.features_dim,
            activation_fn=self.activation_fn,
            features_extractor=self.features_extractor,
            dueling=self.dueling,
            head_arch=self.head_arch,
            noisy_trunk=self.noisy_trunk,
            distributional=self.distributional,
            n_atoms=self.n_atoms,
            v_min=self.v_min,
            v_max=self.v_max,
            noisy=self.noisy,
            sigma0=self.sigma0,
        )
        return data


class RainbowPolicy(BasePolicy):
    """Online and target :class:`RainbowQNetwork` with their optimiser (Rainbow's ``DQNPolicy``).

    Args:
        observation_space: observation space.
        action_space: ``Discrete`` action space.
        lr_schedule: learning-rate schedule (``lr_schedule(1)`` is the initial rate).
        net_arch: hidden sizes of the head (default ``[64, 64]``; ``[]`` with ``NatureCNN``, whose last layer
            is already a 512-unit linear layer).
        activation_fn: activation between head layers.
        features_extractor_class: SB3 features extractor.
        features_extractor_kwargs: its keyword arguments.
        normalize_images: divide image observations by 255.
        optimizer_class: optimiser (Adam).
        optimizer_kwargs: optimiser keyword arguments besides the learning rate (Rainbow: ``eps=1.5e-4``).
        dueling: dueling streams.
        head_arch: hidden sizes inside the head (each stream when dueling); default none.
        noisy_trunk: make the ``net_arch`` layers noisy too.
        distributional: C51 outputs.
        n_atoms: atoms of the distribution.
        v_min: lowest atom.
        v_max: highest atom.
        noisy: noisy linear layers.
        sigma0: initial noise scale.

    Raises:
        InvalidArgumentError: if the action space is not ``Discrete``, ``v_min >= v_max``, ``n_atoms < 2``
            or ``sigma0 < 0``.
    """

    q_net: RainbowQNetwork
    q_net_target: RainbowQNetwork

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Discrete,
        lr_schedule: Schedule,
        net_arch: list[int] | None = None,
        activation_fn: type[nn.Module] = nn.ReLU,
        features_extractor_class: type[BaseFeaturesExtractor] = FlattenExtractor,
        features_extractor_kwargs: dict[str, Any] | None = None,
        normalize_images: bool = True,
        optimizer_class: type[th.optim.Optimizer] = th.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
        dueling: bool = True,
        distributional: bool = True,
        n_atoms: int = 51,
        v_min: float = -10.0,
        v_max: float = 10.0,
        noisy: bool = True,
        sigma0: float = 0.5,
        head_arch: list[int] | None = None,
        noisy_trunk: bool = False,
    ) -> None:
        check_action_space(action_space)
        check_head_arguments(distributional, n_atoms, v_min, v_max, noisy, sigma0)
        super().__init__(
            observation_space,
            action_space,
            features_extractor_class,
            features_extractor_kwargs,
            optimizer_class=optimizer_class,
            optimizer_kwargs=optimizer_kwargs,
            normalize_images=normalize_images,
        )
        if net_arch is None:
            net_arch = [] if features_extractor_class == NatureCNN else [64, 64]
        self.net_arch = net_arch
        self.activation_fn = activation_fn
        self.head_args: dict[str, Any] = {
            "dueling": dueling,
            "head_arch": list(head_arch or []),
            "noisy_trunk": noisy_trunk,
            "distributional": distributional,
            "n_atoms": n_atoms,
            "v_min": v_min,
            "v_max": v_max,
            "noisy": noisy,
            "sigma0": sigma0,
        }
        self.net_args: dict[str, Any] = {
            "observation_space": self.observation_space,
            "action_space": self.action_space,
            "net_arch": self.net_arch,
            "activation_fn": self.activation_fn,
            "normalize_images": normalize_images,
            **self.head_args,
        }
        self._build(lr_schedule)

    def _build(self, lr_schedule: Schedule) -> None:
        self.q_net = self.make_q_net()
        self.q_net_target = self.make_q_net()
        self.q_net_target.load_state_dict(self.q_net.state_dict())
        self.q_net_target.set_training_mode(False)
        self.optimizer = self.optimizer_class(  # type: ignore[call-arg]
            self.q_net.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs
        )

    def make_q_net(self) -> RainbowQNetwork:
        """Build a Q-network with its own features extractor."""
        net_args = self._update_features_extractor(self.net_args, features_extractor=None)
        return RainbowQNetwork(**net_args).to(self.device)

    def forward(self, obs: PyTorchObs, deterministic: bool = True) -> th.Tensor:
        return self._predict(obs, deterministic=deterministic)

    def _predict(self, obs: PyTorchObs, deterministic: bool = True) -> th.Tensor:
        return self.q_net._predict(obs, deterministic=deterministic)

    def reset_noise(self) -> None:
        """Draw new noise for the online network (the target draws its own in training)."""
        self.q_net.reset_noise()

    def set_training_mode(self, mode: bool) -> None:
        # SB3 calls this on every predict(); walking the module tree each acting step is measurable on small
        # networks, so skip it when nothing changes.
        if self.training == mode and self.q_net.training == mode:
            return
        self.q_net.set_training_mode(mode)
        self.training = mode

    @property
    def device(self) -> th.device:
        # SB3 finds the device by iterating over the parameters on every call (several times per step).
        q_net = self._modules.get("q_net")
        return q_net.support.device if q_net is not None else super().device

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(
            net_arch=self.net_args["net_arch"],
            activation_fn=self.net_args["activation_fn"],
            lr_schedule=self._dummy_schedule,
            optimizer_class=self.optimizer_class,
            optimizer_kwargs=self.optimizer_kwargs,
            features_extractor_class=self.features_extractor_class,
            features_extractor_kwargs=self.features_extractor_kwargs,
            **self.head_args,
        )
        return data


def check_action_space(action_space: spaces.Space) -> None:
    """Raise :class:`InvalidArgumentError` unless ``action_space`` is ``Discrete``."""
    if not isinstance(action_space, spaces.Discrete):
        raise InvalidArgumentError(
            f"Rainbow needs a Discrete action space, got {action_space!r}; allowed: gymnasium.spaces.Discrete"
        )


def check_head_arguments(
    distributional: bool, n_atoms: int, v_min: float, v_max: float, noisy: bool, sigma0: float
) -> None:
    """Validate the arguments that shape a Rainbow head (checked whether or not their part is switched on).

    Raises:
        InvalidArgumentError: naming the bad value and what is allowed.
    """
    del distributional, noisy  # A bad value is a mistake even while its part is off.
    if isinstance(n_atoms, bool) or int(n_atoms) != n_atoms or n_atoms < 2:
        raise InvalidArgumentError(f"n_atoms must be an integer >= 2, got {n_atoms!r}")
    if not (math.isfinite(v_min) and math.isfinite(v_max)) or v_min >= v_max:
        raise InvalidArgumentError(f"need finite v_min < v_max, got v_min={v_min!r}, v_max={v_max!r}")
    if not (math.isfinite(sigma0) and sigma0 >= 0):
        raise InvalidArgumentError(f"sigma0 must be finite and >= 0, got {sigma0!r}")


MlpPolicy = RainbowPolicy


class CnnPolicy(RainbowPolicy):
    """:class:`RainbowPolicy` with SB3's ``NatureCNN`` features extractor, for image observations."""

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Discrete,
        lr_schedule: Schedule,
        net_arch: list[int] | None = None,
        activation_fn: type[nn.Module] = nn.ReLU,
        features_extractor_class: type[BaseFeaturesExtractor] = NatureCNN,
        features_extractor_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            observation_space,
            action_space,
            lr_schedule,
            net_arch,
            activation_fn,
            features_extractor_class,
            features_extractor_kwargs,
            **kwargs,
        )


class MultiInputPolicy(RainbowPolicy):
    """:class:`RainbowPolicy` with SB3's ``CombinedExtractor``, for ``Dict`` observations."""

    def __init__(
        self,
        observation_space: spaces.Dict,
        action_space: spaces.Discrete,
        lr_schedule: Schedule,
        net_arch: list[int] | None = None,
        activation_fn: type[nn.Module] = nn.ReLU,
        features_extractor_class: type[BaseFeaturesExtractor] = CombinedExtractor,
        features_extractor_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            observation_space,
            action_space,
            lr_schedule,
            net_arch,
            activation_fn,
            features_extractor_class,
            features_extractor_kwargs,
            **kwargs,
        )
