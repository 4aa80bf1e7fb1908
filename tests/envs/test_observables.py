"""Modality-tagged observables: corruption drawn from the given generator, nothing drawn when clean."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from envs.errors import InvalidArgumentError, UnknownNameError
from envs.observables import Observable, make_observables


def _counter() -> tuple[Callable[[], np.ndarray], list[int]]:
    state = [0]

    def read() -> np.ndarray:
        state[0] += 1
        return np.full((2, 2, 3), state[0] * 10, np.int64)

    return read, state


def test_a_clean_observable_draws_nothing_and_returns_the_reading() -> None:
    read, _ = _counter()
    obs = Observable("rgb", "rgb", read)
    rng = np.random.default_rng(0)
    before = rng.bit_generator.state
    assert obs(rng)[0, 0, 0] == 10
    assert rng.bit_generator.state == before


def test_delay_noise_and_dropout_statistics_at_a_fixed_seed() -> None:
    read, _ = _counter()
    delayed = Observable("rgb", "rgb", read, delay=2)
    rng = np.random.default_rng(0)
    assert [int(delayed(rng)[0, 0, 0]) for _ in range(4)] == [10, 10, 10, 20]
    noisy = Observable("f", "wrench", lambda: np.zeros(10000), noise_std=0.5)
    sample = noisy(np.random.default_rng(1))
    assert abs(sample.std() - 0.5) < 0.02 and abs(sample.mean()) < 0.02
    dropped = Observable("f", "wrench", lambda: np.ones(3), dropout=0.3)
    rng = np.random.default_rng(2)
    zeros = sum(not dropped(rng).any() for _ in range(2000))
    assert 0.27 < zeros / 2000 < 0.33
    a = [dropped(np.random.default_rng(7)) for _ in range(1)]
    b = [dropped(np.random.default_rng(7)) for _ in range(1)]
    np.testing.assert_array_equal(a, b)


def test_hold_repeats_the_last_delivered_reading() -> None:
    read, _ = _counter()
    frozen = Observable("rgb", "rgb", read, dropout=1.0, dropout_value="hold")
    rng = np.random.default_rng(0)
    first = frozen(rng)
    assert not first.any()  # nothing delivered yet: zeros
    read, _ = _counter()
    held = Observable("rgb", "rgb", read, dropout=0.5, dropout_value="hold")
    values = [int(held(rng)[0, 0, 0]) for _ in range(40)]
    fresh = [v == 10 * (i + 1) for i, v in enumerate(values)]
    # Every reading is either this step's or a repeat of the one before (zeros before the first delivery).
    previous = [0, *values[:-1]]
    assert all(f or v == p for f, v, p in zip(fresh, values, previous)), values
    assert 5 < sum(fresh) < 35


def test_bad_names_and_rates_are_named() -> None:
    with pytest.raises(UnknownNameError, match="modality"):
        Observable("x", "smell", lambda: np.zeros(1))
    with pytest.raises(InvalidArgumentError, match=r"dropout=1\.5"):
        Observable("x", "rgb", lambda: np.zeros(1), dropout=1.5)
    with pytest.raises(InvalidArgumentError, match="delay=-1"):
        Observable("x", "rgb", lambda: np.zeros(1), delay=-1)
    with pytest.raises(UnknownNameError, match="observation 'depth'"):
        make_observables({"rgb": ("rgb", lambda: np.zeros(1))}, {"depth": {"noise_std": 1.0}})
    with pytest.raises(UnknownNameError, match="corruption option"):
        make_observables({"rgb": ("rgb", lambda: np.zeros(1))}, {"rgb": {"blur": 1.0}})


def test_environments_take_corruption_from_their_episode_rng() -> None:
    import gymnasium as gym

    import envs  # noqa: F401

    def frames(seed: int) -> list[np.ndarray]:
        env = gym.make("vantage/ActiveTracking-v0", corruption={"rgb": {"noise_std": 8.0, "dropout": 0.2}})
        obs, _ = env.reset(seed=seed)
        out = [obs] + [env.step(12)[0] for _ in range(5)]
        env.close()
        return out

    clean = gym.make("vantage/ActiveTracking-v0")
    reference, _ = clean.reset(seed=3)
    clean.close()
    noisy_a, noisy_b = frames(3), frames(3)
    for a, b in zip(noisy_a, noisy_b):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(noisy_a[0], reference)
