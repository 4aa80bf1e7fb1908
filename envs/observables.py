"""Modality-tagged sensors: what a task observes, with optional corruption drawn from the task's RNG.

An :class:`Observable` wraps one reading function (a camera render, a force/torque read, joint positions)
with the modality it belongs to (``rgb``, ``depth``, ``wrench``, ``joints``, ``touch``, ...) and the ways a
real sensor fails, each off by default:

* ``noise_std`` — additive Gaussian noise (in the reading's units; images are clipped back to ``uint8``);
* ``dropout`` — each reading is lost with this probability and replaced by zeros (``dropout_value``
  ``"zeros"``) or by the last delivered reading (``"hold"``, a frozen frame);
* ``delay`` — readings arrive this many steps late (the first ones repeat the episode's first reading).

Every random draw uses the generator passed in, which tasks give as ``self.np_random``, so corruption is
reproducible from the reset seed; with every option off an observable draws nothing and returns the reading
unchanged. Unknown modality or option names, rates outside ``[0, 1]`` and negative noise or delay raise
errors that name the value and what is allowed.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from envs.errors import InvalidArgumentError, UnknownNameError, check_choice

__all__ = ["DROPOUT_VALUES", "MODALITIES", "Observable", "make_observables"]

#: Known modality tags.
MODALITIES = ("rgb", "depth", "wrench", "joints", "touch", "pose", "vector")
#: What a dropped reading becomes.
DROPOUT_VALUES = ("zeros", "hold")
_OPTIONS = ("noise_std", "dropout", "dropout_value", "delay")


@dataclass
class Observable:
    """One sensor reading, tagged with its modality, optionally corrupted.

    Args:
        name: observation key.
        modality: one of :data:`MODALITIES`.
        read: returns the clean reading (a NumPy array) each time it is called.
        noise_std: standard deviation of additive Gaussian noise.
        dropout: probability that a reading is lost.
        dropout_value: ``"zeros"`` or ``"hold"`` (repeat the last delivered reading).
        delay: steps by which readings arrive late.
    """

    name: str
    modality: str
    read: Callable[[], np.ndarray]
    noise_std: float = 0.0
    dropout: float = 0.0
    dropout_value: str = "zeros"
    delay: int = 0
    _queue: collections.deque = field(default_factory=collections.deque, init=False, repr=False)
    _last: np.ndarray | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        check_choice(f"modality of observable {self.name!r}", self.modality, MODALITIES)
        check_choice("dropout_value", self.dropout_value, DROPOUT_VALUES)
        for key in ("noise_std", "dropout"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
                raise InvalidArgumentError(f"{self.name}: {key}={value!r} must be a number")
        if not (math.isfinite(self.noise_std) and self.noise_std >= 0):
            raise InvalidArgumentError(f"{self.name}: noise_std={self.noise_std!r} must be a finite number >= 0")
        if not (math.isfinite(self.dropout) and 0.0 <= self.dropout <= 1.0):
            raise InvalidArgumentError(f"{self.name}: dropout={self.dropout!r} must be in [0, 1]")
        if isinstance(self.delay, bool) or not isinstance(self.delay, int) or self.delay < 0:
            raise InvalidArgumentError(f"{self.name}: delay={self.delay!r} must be an integer >= 0")

    @property
    def corrupted(self) -> bool:
        """Whether any corruption is switched on."""
        return self.noise_std > 0 or self.dropout > 0 or self.delay > 0

    def reset(self) -> None:
        """Forget queued and held readings (call at every episode start)."""
        self._queue.clear()
        self._last = None

    def __call__(self, rng: np.random.Generator) -> np.ndarray:
        """The reading the agent gets now."""
        value = self.read()
        if not self.corrupted:
            return value
        if self.delay:
            if not self._queue:
                self._queue.extend([value] * self.delay)
            self._queue.append(value)
            value = self._queue.popleft()
        if self.noise_std > 0:
            noisy = value.astype(np.float64) + rng.normal(0.0, self.noise_std, size=value.shape)
            value = (np.clip(np.rint(noisy), 0, 255).astype(np.uint8) if value.dtype == np.uint8
                     else noisy.astype(value.dtype))
        if self.dropout > 0 and rng.random() < self.dropout:
            value = np.zeros_like(value) if self.dropout_value == "zeros" or self._last is None else self._last
        self._last = value
        return value


def make_observables(readers: Mapping[str, tuple[str, Callable[[], np.ndarray]]],
                     corruption: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Observable]:
    """Observables from ``{name: (modality, read)}``, with per-name corruption options.

    Args:
        readers: observation key -> (modality, reading function).
        corruption: observation key -> options (``noise_std``, ``dropout``, ``dropout_value``, ``delay``).

    Raises:
        UnknownNameError: a corruption names an unknown observation or option.
    """
    corruption = dict(corruption or {})
    for name, options in corruption.items():
        if name not in readers:
            raise UnknownNameError("observation", name, readers)
        if not isinstance(options, Mapping):
            raise InvalidArgumentError(f"corruption of {name!r} must be a dict of options, got {options!r}")
        for key in options:
            check_choice(f"corruption option for {name!r}", key, _OPTIONS)
    return {name: Observable(name, modality, read, **dict(corruption.get(name, {})))
            for name, (modality, read) in readers.items()}
