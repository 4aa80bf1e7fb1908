"""Reward schemes over named error signals, reusable by every environment.

A scheme turns a mapping of error signals (``{"distance_error": 0.03, "angle_error": 0.1}``; smaller is
better, each ``>= 0``) into a total reward and one term per signal. The terms are summed, optionally
weighted, so ``total == sum(terms.values())`` always holds. Stateful schemes compare with the previous step;
call :meth:`RewardScheme.reset` with the episode's first errors.

Schemes (Tiritiris, Passalis, Tefas 2021, "Temporal Difference Rewards for End-to-end Vision-based Active
Robot Tracking using Deep RL"), for one signal ``e``:

=============  =====================================================================================
``negative``   ``r(t) = -e(t)``
``hint``       ``c_g`` if ``e(t) < margin``; else ``c_m`` if ``e(t) < e(t-1)``; else ``c_p``
               (paper: ``c_g = 1``, ``c_m = 0.5``, ``c_p = -1.2``, ``margin = 0.05``)
``td``         ``r(t) = e(t-1) - e(t)`` (the paper's proposal: reward the *reduction* of the error)
=============  =====================================================================================

The paper also min-max normalises negative and TD rewards per episode before each PPO update; since a
per-step reward cannot see the episode's end, that lives on the training side
(:class:`agents.normalization.EpisodeMinMaxRolloutBuffer`), built on :func:`minmax_normalize` here.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Mapping, Sequence
from typing import ClassVar

import numpy as np

from envs.errors import InvalidArgumentError, UnknownNameError

__all__ = [
    "REWARD_SCHEMES",
    "HintReward",
    "NegativeReward",
    "RewardScheme",
    "TDReward",
    "make_reward",
    "minmax_normalize",
]


class RewardScheme(abc.ABC):
    """Maps named error signals to a reward total and per-signal terms.

    Args:
        signals: names of the error signals this scheme reads, in order.
        weights: optional per-signal multipliers (default 1 for each).
    """

    name: ClassVar[str]

    def __init__(self, signals: Sequence[str], weights: Mapping[str, float] | None = None) -> None:
        if isinstance(signals, str) or not signals:
            raise InvalidArgumentError(f"signals must be a non-empty sequence of names, got {signals!r}")
        self.signals = tuple(signals)
        weights = dict(weights or {})
        unknown = set(weights) - set(self.signals)
        if unknown:
            raise UnknownNameError("weighted signal", sorted(unknown)[0], self.signals)
        self.weights = {s: float(weights.get(s, 1.0)) for s in self.signals}
        self._previous: dict[str, float] | None = None

    def reset(self, errors: Mapping[str, float]) -> None:
        """Start an episode whose initial errors are ``errors``."""
        self._previous = self._read(errors)

    def __call__(self, errors: Mapping[str, float]) -> tuple[float, dict[str, float]]:
        """Reward for the step that produced ``errors``.

        Returns:
            ``(total, terms)`` where ``terms`` maps each signal to its weighted contribution.
        """
        current = self._read(errors)
        if self._previous is None:
            raise InvalidArgumentError(f"{type(self).__name__}.reset(errors) must be called before stepping")
        terms = {
            s: self.weights[s] * self._term(s, current[s], self._previous[s]) for s in self.signals
        }
        self._previous = current
        return float(sum(terms.values())), terms

    @abc.abstractmethod
    def _term(self, signal: str, error: float, previous: float) -> float:
        """Unweighted reward for one signal."""

    def _read(self, errors: Mapping[str, float]) -> dict[str, float]:
        values: dict[str, float] = {}
        for s in self.signals:
            if s not in errors:
                raise UnknownNameError("error signal (missing from the step's errors)", s, errors)
            value = float(errors[s])
            if not math.isfinite(value) or value < 0:
                raise InvalidArgumentError(f"error signal {s!r} must be finite and >= 0, got {value}")
            values[s] = value
        return values


class NegativeReward(RewardScheme):
    """``r = -e(t)``: the plain negative error."""

    name = "negative"

    def _term(self, signal: str, error: float, previous: float) -> float:
        return -error


class TDReward(RewardScheme):
    """``r = e(t-1) - e(t)``: positive when the error shrinks, telescoping over an episode."""

    name = "td"

    def _term(self, signal: str, error: float, previous: float) -> float:
        return previous - error


class HintReward(RewardScheme):
    """Piecewise "hint" reward: a goal bonus inside the margin, a smaller one for improving, else a penalty.

    Args:
        signals: error signal names.
        c_g: reward when ``e(t) < margin``.
        c_m: reward when outside the margin but ``e(t) < e(t-1)``.
        c_p: reward otherwise (a penalty).
        margin: goal margin, a number for all signals or a mapping per signal (units of each signal).
        weights: optional per-signal multipliers.
    """

    name = "hint"

    def __init__(
        self,
        signals: Sequence[str],
        c_g: float = 1.0,
        c_m: float = 0.5,
        c_p: float = -1.2,
        margin: float | Mapping[str, float] = 0.05,
        weights: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__(signals, weights)
        self.c_g, self.c_m, self.c_p = float(c_g), float(c_m), float(c_p)
        margins = dict(margin) if isinstance(margin, Mapping) else {s: margin for s in self.signals}
        missing = set(self.signals) - set(margins)
        if missing:
            raise InvalidArgumentError(f"hint margin is missing signals {sorted(missing)}; got {margins}")
        for s, m in margins.items():
            if not (math.isfinite(float(m)) and float(m) > 0):
                raise InvalidArgumentError(f"hint margin for {s!r} must be a positive number, got {m!r}")
        self.margin = {s: float(margins[s]) for s in self.signals}

    def _term(self, signal: str, error: float, previous: float) -> float:
        if error < self.margin[signal]:
            return self.c_g
        if error < previous:
            return self.c_m
        return self.c_p


#: Scheme name -> class.
REWARD_SCHEMES: dict[str, type[RewardScheme]] = {
    cls.name: cls for cls in (TDReward, NegativeReward, HintReward)
}


def make_reward(name: str, signals: Sequence[str], **params: float | Mapping[str, float]) -> RewardScheme:
    """Build reward scheme ``name`` over ``signals``; extra keyword arguments go to its constructor."""
    try:
        cls = REWARD_SCHEMES[name]
    except KeyError:
        raise UnknownNameError("reward scheme", name, REWARD_SCHEMES) from None
    try:
        return cls(signals, **params)
    except TypeError as exc:
        raise InvalidArgumentError(f"bad parameters for reward scheme {name!r}: {exc}") from exc


def minmax_normalize(rewards: np.ndarray) -> np.ndarray:
    """Min-max normalise one episode's rewards to ``[0, 1]``; a constant episode maps to zeros."""
    rewards = np.asarray(rewards, dtype=np.float64)
    if rewards.size == 0:
        return rewards.copy()
    low, high = float(rewards.min()), float(rewards.max())
    if high - low < 1e-12:
        return np.zeros_like(rewards)
    return (rewards - low) / (high - low)
