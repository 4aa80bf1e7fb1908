"""Rainbow networks: the C51 projection, noisy layers and the dueling/distributional head."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.torch_layers import FlattenExtractor
from stable_baselines3.dqn.policies import QNetwork
from torch.nn import functional as F

from agents.rainbow.policies import NoisyLinear, RainbowQNetwork
from agents.rainbow.rainbow import project_distribution

SUPPORT = th.linspace(0.0, 4.0, 5)  # atoms 0, 1, 2, 3, 4 (Δz = 1)


def _project(probs: list[float], reward: float, discount: float, support: th.Tensor = SUPPORT) -> list[float]:
    as_tensor = lambda value: th.tensor(value, dtype=th.float32)  # noqa: E731
    out = project_distribution(as_tensor([probs]), as_tensor([[reward]]), as_tensor([[discount]]), support)
    return out[0].tolist()


# ---------------------------------------------------------------------------------------- C51 projection
def test_projection_splits_between_neighbours() -> None:
    # Atom 2 moves to 2.5: half to atom 2, half to atom 3.
    assert _project([0, 0, 1, 0, 0], reward=0.5, discount=1.0) == pytest.approx([0, 0, 0.5, 0.5, 0])
    # Atom 1 moves to 0.25 + 0.5 * 1 = 0.75: 0.25 to atom 0, 0.75 to atom 1.
    assert _project([0, 1, 0, 0, 0], reward=0.25, discount=0.5) == pytest.approx([0.25, 0.75, 0, 0, 0])


def test_projection_exact_hits_keep_all_mass() -> None:
    # r = 1, γ = 1 shifts every atom by exactly one; the top atom is clipped onto v_max.
    probs = [0.1, 0.2, 0.3, 0.25, 0.15]
    assert _project(probs, reward=1.0, discount=1.0) == pytest.approx([0, 0.1, 0.2, 0.3, 0.4])


def test_projection_clips_at_both_support_edges() -> None:
    probs = [0.1, 0.2, 0.3, 0.25, 0.15]
    assert _project(probs, reward=-10.0, discount=1.0) == pytest.approx([1, 0, 0, 0, 0])
    assert _project(probs, reward=10.0, discount=1.0) == pytest.approx([0, 0, 0, 0, 1])
    # Atoms 0 and 1 land below v_min (-1, -0.5 after r = -1, γ = 0.5) and pile up on atom 0; atom 2 hits 0.
    # Atoms 3 and 4 land on 0.5 and 1.0.
    expected = [0.1 + 0.2 + 0.3 + 0.25 * 0.5, 0.25 * 0.5 + 0.15, 0, 0, 0]
    assert _project(probs, reward=-1.0, discount=0.5) == pytest.approx(expected)


def test_projection_terminal_transition_collapses_to_reward() -> None:
    # discount 0 (terminal): the whole distribution becomes a point mass at r = 1.25.
    probs = [0.1, 0.2, 0.3, 0.25, 0.15]
    assert _project(probs, reward=1.25, discount=0.0) == pytest.approx([0, 0.75, 0.25, 0, 0])


def test_projection_preserves_mass_and_stays_in_range_on_paper_support() -> None:
    support = th.linspace(-10.0, 10.0, 51)
    probs = F.softmax(th.randn(64, 51, generator=th.Generator().manual_seed(0)), dim=-1)
    rewards = th.linspace(-25.0, 25.0, 64).unsqueeze(1)
    discounts = th.full((64, 1), 0.99**3)
    discounts[::5] = 0.0
    projected = project_distribution(probs, rewards, discounts, support)
    np.testing.assert_allclose(projected.sum(dim=1).numpy(), 1.0, rtol=1e-5)
    assert (projected >= 0).all()
    # Landing exactly on (or just past) v_max must put everything on the last atom, never index past it.
    for reward in (10.0, 10.0 + 1e-6, 9.99999):
        edge = project_distribution(probs[:1], th.tensor([[reward]]), th.tensor([[0.0]]), support)
        assert edge[0, -1].item() == pytest.approx(1.0, abs=1e-4)


# -------------------------------------------------------------------------------------------- noisy layer
def test_noisy_layer_initialisation() -> None:
    layer = NoisyLinear(16, 4, sigma0=0.5)
    assert th.all(layer.weight_sigma == 0.5 / math.sqrt(16)) and th.all(layer.bias_sigma == 0.5 / math.sqrt(16))
    assert th.all(layer.weight_mu.abs() <= 1 / math.sqrt(16))
    assert [p.shape for p in layer.parameters()] == [(4, 17), (4, 17)]  # bias packed as the last column


def test_noisy_layer_noise_is_factorised_and_resampled() -> None:
    th.manual_seed(0)
    layer = NoisyLinear(6, 3)
    x = th.randn(5, 6)
    first = layer(x)
    assert th.equal(first, layer(x))  # same noise sample, same output
    eps = layer.weight_epsilon.clone()
    assert th.linalg.matrix_rank(eps).item() == 1  # outer(f(ε_out), f(ε_in))
    th.testing.assert_close(eps[:, 0] / eps[0, 0], layer.bias_epsilon / layer.bias_epsilon[0])
    layer.reset_noise()
    assert not th.equal(eps, layer.weight_epsilon)
    assert not th.allclose(first, layer(x))


def test_noisy_layer_mean_mode_ignores_noise() -> None:
    layer = NoisyLinear(6, 3)
    x = th.randn(5, 6)
    mean = layer(x, use_noise=False)
    th.testing.assert_close(mean, F.linear(x, layer.weight_mu, layer.bias_mu))
    layer.reset_noise()
    th.testing.assert_close(layer(x, use_noise=False), mean)


def test_noisy_layer_learns_sigma() -> None:
    layer = NoisyLinear(3, 2)
    layer(th.randn(4, 3)).sum().backward()
    assert layer.sigma.grad is not None and layer.sigma.grad.abs().sum() > 0


# ---------------------------------------------------------------------------------------------- Q-network
OBS = spaces.Box(-1, 1, (4,), np.float32)
ACTIONS = spaces.Discrete(3)


def _q_net(**kwargs: object) -> RainbowQNetwork:
    return RainbowQNetwork(OBS, ACTIONS, FlattenExtractor(OBS), 4, net_arch=[8, 8], **kwargs)  # type: ignore[arg-type]


def test_plain_head_matches_sb3_dqn_network() -> None:
    th.manual_seed(1)
    ours = _q_net(dueling=False, distributional=False, noisy=False)
    th.manual_seed(1)
    sb3 = QNetwork(OBS, ACTIONS, FlattenExtractor(OBS), 4, net_arch=[8, 8])
    obs = th.randn(7, 4)
    th.testing.assert_close(ours(obs), sb3(obs))
    assert [p.shape for p in ours.parameters()] == [p.shape for p in sb3.parameters()]


def test_distributional_dueling_head_shapes_and_combination() -> None:
    net = _q_net(dueling=True, distributional=True, n_atoms=11, v_min=-5, v_max=5, noisy=False)
    obs = th.randn(6, 4)
    logits = net.head(obs)
    assert logits.shape == (6, 3, 11)
    value, advantage = net.q_head(net.trunk(obs)).split([11, 3 * 11], dim=1)  # one layer, value first
    value, advantage = value.view(-1, 1, 11), advantage.view(-1, 3, 11)
    th.testing.assert_close(logits, value + advantage - advantage.mean(dim=1, keepdim=True))
    expected_q = (F.softmax(logits, dim=-1) * th.linspace(-5, 5, 11)).sum(-1)
    th.testing.assert_close(net(obs), expected_q)


def test_scalar_dueling_head_has_zero_mean_advantage() -> None:
    net = _q_net(dueling=True, distributional=False, noisy=False)
    obs = th.randn(6, 4)
    q = net(obs)
    value = net.q_head(net.trunk(obs))[:, :1]
    th.testing.assert_close(q.mean(dim=1, keepdim=True), value)


def test_noisy_network_predicts_with_mean_weights_when_deterministic() -> None:
    th.manual_seed(0)
    net = _q_net(noisy=True, sigma0=5.0)  # large noise so noisy greedy actions really vary
    obs = th.randn(64, 4)
    greedy = net._predict(obs, deterministic=True)
    noisy_q = []
    for _ in range(3):
        net.reset_noise()
        assert th.equal(net._predict(obs, deterministic=True), greedy)
        noisy_q.append(net(obs))
    assert not th.allclose(noisy_q[0], noisy_q[1])


def test_head_arch_and_noisy_trunk() -> None:
    net = _q_net(dueling=True, noisy=True, head_arch=[5])
    assert [layer.out_features for layer in net.value_stream.layers] == [5, 51]
    assert [layer.out_features for layer in net.advantage_stream.layers] == [5, 3 * 51]
    assert all(isinstance(layer, NoisyLinear) for layer in net.advantage_stream.layers)
    assert not any(isinstance(layer, NoisyLinear) for layer in net.trunk.layers)  # plain trunk by default
    noisy_trunk = _q_net(dueling=False, noisy=True, noisy_trunk=True)
    assert not any(isinstance(module, th.nn.Linear) for module in noisy_trunk.modules())
    assert sum(isinstance(module, NoisyLinear) for module in noisy_trunk.modules()) == 3
