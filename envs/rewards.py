"""Every task's reward schemes, as small objects over named signals.

A scheme turns a mapping of signals (``{"distance_error": 0.03, "angle_error": 0.1}``) into a total reward
and one term per signal. The terms are summed, optionally weighted, so ``total == sum(terms.values())``
always holds; tasks report each term as ``info["reward_<term>"]``. Stateful schemes compare with the previous
step; call :meth:`RewardScheme.reset` with the episode's first signals.

Signals are *errors* (smaller is better, each ``>= 0``) unless a scheme is built with ``signed=True``
(any finite value), as :class:`GainReward` is for quantities where larger is better (a recognition
confidence).

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

For one signal ``x`` where larger is better:

=============  =====================================================================================
``gain``       ``r(t) = x(t) - x(t-1)`` (signed signals; e.g. the gain in recognition confidence)
=============  =====================================================================================

Active face recognition (OpenDR D3.2 Sec. 2.2 and the toolkit's learner) combines approach terms with a
recognition event; its two schemes are in :data:`RECOGNITION_REWARDS`:

* :class:`ShapedRecognitionReward` (``"shaped"``, the toolkit's): TD terms on the angle to the person, the
  frontal angle and the distance and height errors to the target zone, weighted 2, 2, 1, 1; ``recognition =
  bonus * c`` when recognising inside the target zone (``c``: the confidence of a correct answer, else 0),
  ``-recognize_penalty`` outside it; ``collision = -collision_penalty``.
* :class:`PaperRecognitionReward` (``"paper"``): ``recognition = 1 - ||y - y_k|| / a`` when the answer is
  the correct identity ``k`` and the embedding distance ``||y - y_k|| = sqrt(2 - 2 cos) < a``, else 0.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Mapping, Sequence
from typing import ClassVar

import numpy as np

from envs.errors import InvalidArgumentError, UnknownNameError

__all__ = [
    "INSERTION_REWARDS",
    "RECOGNITION_REWARDS",
    "REWARD_SCHEMES",
    "GainReward",
    "HintReward",
    "InsertionReward",
    "NegativeReward",
    "PaperRecognitionReward",
    "RewardScheme",
    "ShapedRecognitionReward",
    "TDReward",
    "make_reward",
    "minmax_normalize",
]


def _number(name: str, value: object) -> float:
    """``value`` as a finite float, or :class:`InvalidArgumentError` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating) or not math.isfinite(
            value):
        raise InvalidArgumentError(f"{name}={value!r} must be a finite number")
    return float(value)


class RewardScheme(abc.ABC):
    """Maps named error signals to a reward total and per-signal terms.

    Args:
        signals: names of the signals this scheme reads, in order.
        weights: optional per-signal multipliers (default 1 for each).
        signed: accept any finite signal value; otherwise signals are errors and must be ``>= 0``.
    """

    name: ClassVar[str]
    signed_by_default: ClassVar[bool] = False

    def __init__(self, signals: Sequence[str], weights: Mapping[str, float] | None = None,
                 signed: bool | None = None) -> None:
        if isinstance(signals, str) or not signals:
            raise InvalidArgumentError(f"signals must be a non-empty sequence of names, got {signals!r}")
        self.signals = tuple(signals)
        if weights is not None and not isinstance(weights, Mapping):
            raise InvalidArgumentError(f"weights={weights!r} must be a dict of signal -> multiplier")
        weights = dict(weights or {})
        unknown = set(weights) - set(self.signals)
        if unknown:
            raise UnknownNameError("weighted signal", sorted(unknown)[0], self.signals)
        self.weights = {s: _number(f"weight of {s!r}", weights.get(s, 1.0)) for s in self.signals}
        self.signed = self.signed_by_default if signed is None else bool(signed)
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
            if not math.isfinite(value) or (value < 0 and not self.signed):
                raise InvalidArgumentError(f"error signal {s!r} must be finite and >= 0, got {value}"
                                           if not self.signed else f"signal {s!r} must be finite, got {value}")
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


class GainReward(RewardScheme):
    """``r = x(t) - x(t-1)``: the gain of a signal where larger is better; signed by default."""

    name = "gain"
    signed_by_default = True

    def _term(self, signal: str, error: float, previous: float) -> float:
        return error - previous


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
        signed: bool | None = None,
    ) -> None:
        super().__init__(signals, weights, signed)
        self.c_g, self.c_m, self.c_p = (_number(name, value) for name, value in (("c_g", c_g), ("c_m", c_m),
                                                                                 ("c_p", c_p)))
        margins = dict(margin) if isinstance(margin, Mapping) else {s: margin for s in self.signals}
        missing = set(self.signals) - set(margins)
        if missing:
            raise InvalidArgumentError(f"hint margin is missing signals {sorted(missing)}; got {margins}")
        for s, m in margins.items():
            if not (_number(f"hint margin for {s!r}", m) > 0):
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
    cls.name: cls for cls in (TDReward, NegativeReward, HintReward, GainReward)
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


class ShapedRecognitionReward:
    """The OpenDR toolkit's shaped reward for active face recognition.

    Reads the signals ``angle``, ``frontal``, ``distance``, ``height`` (errors: the angle to the person, the
    frontal angle, ``|d - d*|``, ``|h - h*|``) and the step's events ``collision``, ``recognized``,
    ``in_zone`` (booleans) and ``confidence_correct`` (the answer's confidence if correct, else 0).

    Terms (in this order): ``angle``, ``frontal``, ``distance``, ``height`` — TD terms of the errors weighted
    2, 2, 1, 1, zero on a collision step; ``recognition`` — ``bonus * confidence_correct`` when recognising
    inside the target zone, ``-recognize_penalty`` when recognising outside it; ``collision`` —
    ``-collision_penalty`` on a collision.

    Args:
        bonus: scale of the in-zone recognition reward (toolkit: 20).
        recognize_penalty: cost of recognising outside the zone (toolkit: 0.05).
        collision_penalty: cost of a collision (toolkit: 1).
    """

    name: ClassVar[str] = "shaped"
    APPROACH: ClassVar[dict[str, float]] = {"angle": 2.0, "frontal": 2.0, "distance": 1.0, "height": 1.0}
    TERMS: ClassVar[tuple[str, ...]] = (*APPROACH, "recognition", "collision")

    def __init__(self, bonus: float = 20.0, recognize_penalty: float = 0.05, collision_penalty: float = 1.0) -> None:
        for key, value in (("recognition_bonus", bonus), ("recognize_penalty", recognize_penalty),
                           ("collision_penalty", collision_penalty)):
            if not _number(key, value) >= 0:
                raise InvalidArgumentError(f"{key}={value!r} must be a finite number >= 0")
        self.bonus, self.recognize_penalty = float(bonus), float(recognize_penalty)
        self.collision_penalty = float(collision_penalty)
        self.approach = TDReward(tuple(self.APPROACH), weights=self.APPROACH)

    def reset(self, signals: Mapping[str, float]) -> None:
        """Start an episode whose first geometry is ``signals``."""
        self.approach.reset(signals)

    def __call__(self, signals: Mapping[str, float]) -> tuple[float, dict[str, float]]:
        terms = dict.fromkeys(self.TERMS, 0.0)
        if signals["collision"]:
            terms["collision"] = -self.collision_penalty
        else:
            terms.update(self.approach(signals)[1])
            if signals["recognized"]:
                terms["recognition"] = (self.bonus * float(signals["confidence_correct"]) if signals["in_zone"]
                                        else -self.recognize_penalty)
        return float(sum(terms.values())), terms


class PaperRecognitionReward:
    """The drone face-recognition paper's reward: how close the embedding is to the correct identity's.

    Reads ``recognized``, ``correct`` and ``similarity`` (cosine between the face embedding and the gallery
    entry of the answer). One term, ``recognition = 1 - sqrt(2 - 2 similarity) / cutoff`` when the answer is
    correct and the embedding distance is below ``cutoff``, else 0.

    Args:
        cutoff: ``a``, the largest embedding distance that still earns reward, in ``(0, 2]``.
    """

    name: ClassVar[str] = "paper"
    TERMS: ClassVar[tuple[str, ...]] = ("recognition",)

    def __init__(self, cutoff: float = 1.0) -> None:
        if not 0 < _number("distance_cutoff", cutoff) <= 2:
            raise InvalidArgumentError(f"distance_cutoff={cutoff!r} must be in (0, 2] (unit embeddings)")
        self.cutoff = float(cutoff)

    def reset(self, signals: Mapping[str, float]) -> None:
        """Stateless: nothing to reset."""

    def __call__(self, signals: Mapping[str, float]) -> tuple[float, dict[str, float]]:
        value = 0.0
        if signals["recognized"] and signals["correct"]:
            distance = math.sqrt(max(2.0 - 2.0 * float(signals["similarity"]), 0.0))
            if distance < self.cutoff:
                value = 1.0 - distance / self.cutoff
        return value, {"recognition": value}


#: Active face-recognition scheme name -> class.
RECOGNITION_REWARDS: dict[str, type[ShapedRecognitionReward] | type[PaperRecognitionReward]] = {
    "shaped": ShapedRecognitionReward, "paper": PaperRecognitionReward,
}


class InsertionReward:
    """Peg-in-hole reward (the manipulation task): distance shaping plus a sparse success bonus.

    Reads ``distance_error`` (metres from the peg tip to the point the tip reaches when inserted, plus the yaw
    misalignment weighted in metres per radian by the task) and ``success``. Terms:

    * ``distance = scale * (e(t-1) - e(t))`` (TD shaping; 0 in the ``sparse`` scheme);
    * ``success = bonus`` on the step the peg is inserted, else 0;
    * ``time = -time_penalty`` every step.

    Args:
        shaped: ``False`` drops the distance term (the ``sparse`` scheme).
        scale: weight of the distance shaping (per metre).
        bonus: success reward.
        time_penalty: per-step cost.
    """

    TERMS: ClassVar[tuple[str, ...]] = ("distance", "success", "time")

    def __init__(self, shaped: bool = True, scale: float = 10.0, bonus: float = 10.0, time_penalty: float = 0.01
                 ) -> None:
        self.shaped = bool(shaped)
        self.scale, self.bonus = _number("scale", scale), _number("bonus", bonus)
        self.time_penalty = _number("time_penalty", time_penalty)
        self._previous = 0.0

    def reset(self, signals: Mapping[str, float]) -> None:
        """Start an episode whose first distance error is ``signals["distance_error"]``."""
        self._previous = _number("distance_error", signals["distance_error"])

    def __call__(self, signals: Mapping[str, float]) -> tuple[float, dict[str, float]]:
        error = _number("distance_error", signals["distance_error"])
        terms = {"distance": self.scale * (self._previous - error) if self.shaped else 0.0,
                 "success": self.bonus if signals["success"] else 0.0,
                 "time": -self.time_penalty}
        self._previous = error
        return float(sum(terms.values())), terms


#: Peg-insertion scheme name -> constructor keyword arguments of :class:`InsertionReward`.
INSERTION_REWARDS: dict[str, dict[str, bool]] = {"shaped": {"shaped": True}, "sparse": {"shaped": False}}


def minmax_normalize(rewards: np.ndarray) -> np.ndarray:
    """Min-max normalise one episode's rewards to ``[0, 1]``; a constant episode maps to zeros."""
    rewards = np.asarray(rewards, dtype=np.float64)
    if rewards.size == 0:
        return rewards.copy()
    low, high = float(rewards.min()), float(rewards.max())
    if high - low < 1e-12:
        return np.zeros_like(rewards)
    return (rewards - low) / (high - low)
