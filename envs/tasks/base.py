"""What every Vantage task shares: settings, backend checks, action checks, rendering, closing, evaluation.

A task is one small class on :class:`VantageEnv` (Gymnasium's ``Env``), with its tunable settings in a
frozen dataclass on :class:`TaskSettings`, validated once when the environment is made, and optionally an
:class:`EpisodeEvaluator` that says what an evaluation records from its episodes. ``docs/adding-a-task.md``
walks through writing one.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Self

import gymnasium as gym
import numpy as np

from envs.errors import InvalidActionError, InvalidArgumentError, UnknownNameError, check_choice
from envs.observables import Observable, make_observables
from envs.sim import BACKENDS, SimBackend

__all__ = ["EpisodeEvaluator", "TaskSettings", "VantageEnv", "side_by_side"]


@dataclasses.dataclass(frozen=True)
class TaskSettings:
    """Base of a task's settings: a frozen dataclass whose ``__post_init__`` validates every field.

    Subclasses declare fields with defaults and call the ``_check_*`` helpers in ``__post_init__``; bad
    values raise :class:`~envs.errors.InvalidArgumentError` or :class:`~envs.errors.UnknownNameError` naming
    the value and what is allowed.
    """

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, Any]) -> Self:
        """Settings from keyword arguments; an unknown name lists the known ones."""
        known = {f.name for f in dataclasses.fields(cls)}
        for key in kwargs:
            if key not in known:
                raise UnknownNameError(f"{cls.__name__} setting", key, known)
        return cls(**kwargs)

    def _check_positive(self, *names: str, maximum: float | None = None) -> None:
        for name in names:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not (math.isfinite(value)
                                                                                     and value > 0):
                raise InvalidArgumentError(f"{name}={value!r} must be a positive finite number")
            if maximum is not None and value > maximum:
                raise InvalidArgumentError(f"{name}={value!r} must be at most {maximum}")

    def _check_non_negative(self, *names: str) -> None:
        for name in names:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not (math.isfinite(value)
                                                                                     and value >= 0):
                raise InvalidArgumentError(f"{name}={value!r} must be a finite number >= 0")

    def _check_range(self, name: str) -> tuple[float, float]:
        """A ``(low, high)`` pair of finite numbers with ``low <= high``; raises naming the setting."""
        value = getattr(self, name)
        if not (isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2
                and all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in value)
                and value[0] <= value[1]):
            raise InvalidArgumentError(f"{name}={value!r} must be a pair (low, high) of finite numbers, low <= high")
        return float(value[0]), float(value[1])

    def _check_int(self, name: str, low: int, high: int | None = None) -> None:
        value = getattr(self, name)
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low or (
                high is not None and value > high):
            bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
            raise InvalidArgumentError(f"{name}={value!r} must be an integer {bound}")


class VantageEnv(gym.Env):
    """Base of every Vantage task.

    It checks the ``backend`` and ``render_mode`` arguments and the task's settings, decodes discrete actions
    strictly, renders the ``rgb_array`` frame (the task's :attr:`view_camera` beside what the agent sees,
    :attr:`camera`), and closes the simulator. Subclasses open their world in ``__init__`` after calling
    this one, set ``self.sim``, and implement ``reset`` and ``step``.

    Args:
        backend: ``"mujoco"`` (embedded) or ``"webots"``.
        render_mode: ``None`` or ``"rgb_array"``.
        corruption: observation name -> corruption options (see :mod:`envs.observables`).
        **settings: the task's settings (fields of :attr:`settings_class`).
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 20}
    #: The task's settings dataclass.
    settings_class: ClassVar[type[TaskSettings]] = TaskSettings
    #: Reset options the task accepts (anything else is refused).
    reset_options: ClassVar[tuple[str, ...]] = ()
    #: The agent's camera, and the camera of the overview frame ``render()`` shows beside it.
    camera: str = ""
    view_camera: str = ""

    def __init__(self, /, backend: str = "mujoco", render_mode: str | None = None,
                 corruption: Mapping[str, Mapping[str, Any]] | None = None, **settings: Any) -> None:
        check_choice("backend", backend, BACKENDS)
        if render_mode is not None:
            check_choice("render_mode", render_mode, self.metadata["render_modes"])
        self.settings = self.settings_class.from_kwargs(settings)
        self.backend_name = backend
        self.render_mode = render_mode
        if corruption is not None and not (isinstance(corruption, Mapping)
                                           and all(isinstance(v, Mapping) for v in corruption.values())):
            raise InvalidArgumentError(f"corruption must map observation names to option dicts, e.g. "
                                       f"{{'rgb': {{'noise_std': 5.0}}}}; got {corruption!r}")
        self._corruption = dict(corruption or {})
        self.observables: dict[str, Observable] = {}
        self.sim: SimBackend | None = None

    # -- helpers for subclasses --------------------------------------------------------------------------
    def _make_observables(self, readers: Mapping[str, tuple[str, Any]]) -> None:
        """Build :attr:`observables` from ``{name: (modality, read)}`` and the ``corruption`` argument."""
        self.observables = make_observables(readers, self._corruption)

    def _observe(self, name: str) -> np.ndarray:
        """The (possibly corrupted) reading of observable ``name``, drawn from the episode's RNG."""
        return self.observables[name](self.np_random)

    def _start_episode(self, seed: int | None, options: Mapping[str, Any] | None) -> dict[str, Any]:
        """Seed the episode, reset the simulator and the observables; returns the checked ``options``."""
        if options is not None and not isinstance(options, Mapping):
            allowed = ", ".join(self.reset_options) or "none"
            raise InvalidArgumentError(f"reset options must be a dict (keys: {allowed}), got {options!r}")
        super().reset(seed=seed)
        options = dict(options or {})
        for key in options:
            check_choice("reset option", key, self.reset_options)
        self.sim.reset(seed=seed)
        for observable in self.observables.values():
            observable.reset()
        return options

    def decode_discrete(self, action: Any, names: Sequence[str] | None = None) -> int:
        """The index of a discrete ``action``; anything but one integer in range raises.

        Raises:
            InvalidActionError: a float, a bool, several values, or an index outside the action space (the
                message lists the allowed names when ``names`` are given).
        """
        n = int(self.action_space.n)
        allowed = f"; allowed: {', '.join(f'{i}={name}' for i, name in enumerate(names))}" if names else ""
        try:
            arr = np.asarray(action)
        except (ValueError, TypeError):  # a ragged list or an object NumPy cannot hold
            raise InvalidActionError(f"discrete action must be one integer in [0, {n}), got {action!r}{allowed}"
                                     ) from None
        if arr.shape not in ((), (1,)) or not np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_:
            raise InvalidActionError(f"discrete action must be one integer in [0, {n}), got {action!r}{allowed}")
        index = int(arr.reshape(()))
        if not 0 <= index < n:
            raise InvalidActionError(f"discrete action {index} is outside [0, {n}){allowed}")
        return index

    # -- gymnasium API -----------------------------------------------------------------------------------
    def render(self) -> np.ndarray | None:
        """The overview camera's frame with the agent's own frame, scaled to the same height, on its right."""
        if self.render_mode is None:
            gym.logger.warn("render() called without render_mode; pass render_mode='rgb_array' to make()")
            return None
        return side_by_side(self.sim.render(self.view_camera), self.sim.render(self.camera))

    def close(self) -> None:
        sim = getattr(self, "sim", None)
        if sim is not None:
            sim.close()


def side_by_side(view: np.ndarray, own: np.ndarray) -> np.ndarray:
    """``own`` scaled (nearest neighbour) to ``view``'s height and placed on its right.

    Side by side rather than inset: an inset in the chase view hid the robots it was meant to show.
    """
    rows = np.linspace(0, own.shape[0] - 1, view.shape[0]).round().astype(int)
    width = round(own.shape[1] * view.shape[0] / own.shape[0])
    cols = np.linspace(0, own.shape[1] - 1, width).round().astype(int)
    return np.concatenate([view, own[rows][:, cols]], axis=1)


class EpisodeEvaluator:
    """What an evaluation records from a task's episodes (the generic runner is :mod:`agents.evaluation`).

    The runner calls :meth:`start` after each reset and :meth:`step` after each step, then :meth:`finish`
    for the episode's record; :meth:`summarize` turns the records of many episodes into the summary that
    ``vantage eval`` prints, and :meth:`format_table` lays summaries out for people. This default records
    only steps and returns.
    """

    #: The ``info`` key whose per-step values are kept for the first episode (for plots); ``None``: none.
    trace_key: str | None = None

    def start(self, info: Mapping[str, Any]) -> None:
        """A new episode begins with ``info``."""

    def step(self, info: Mapping[str, Any]) -> None:
        """One step's ``info``."""

    def finish(self) -> dict[str, Any]:
        """The task's figures of the episode just run (added to its record beside seed, steps and return)."""
        return {}

    def done_when_finished(self, info: Mapping[str, Any]) -> bool:
        """Whether a policy that has nothing more to do (``policy.finished``) ends the episode at this step."""
        return True

    def summarize(self, episodes: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Figures over episode records (each with ``steps`` and ``return_`` and this task's keys)."""
        return {"steps_mean": float(np.mean([e["steps"] for e in episodes])),
                "return_mean": float(np.mean([e["return_"] for e in episodes]))}

    def format_table(self, rows: Sequence[tuple[str, Mapping[str, Any]]]) -> str:
        """A Markdown table of ``(policy label, summary)`` rows."""
        lines = ["| policy | steps/episode | return | episodes |", "|---|---|---|---|"]
        lines += [f"| {label} | {s['steps_mean']:.0f} | {s['return_mean']:.3f} | {s['episodes']} |"
                  for label, s in rows]
        return "\n".join(lines)
