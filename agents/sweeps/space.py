"""What a sweep trains: axis names resolved to training settings, grids, YAML files and sampled searches.

A sweep is a list of :class:`Trial` s, each an ordinary training run (:class:`agents.training.TrainConfig`)
with a name and the axis values that made it. Axis names are resolved against the task, so one vocabulary
covers everything a trial can vary:

=====================  =============================================  ==========================================
axis                   example                                        goes to
=====================  =============================================  ==========================================
``seed``               ``--seeds 0,1,2``                              ``TrainConfig.seed``
run settings           ``normalize_rewards``, ``preset``, ``n_envs``  the ``TrainConfig`` field
task options           ``reward``, ``action_mode``, ``motion``        ``env_kwargs`` (checked against choices)
reward parameters      ``c_g``, ``c_m``, ``c_p``, ``margin``,          ``env_kwargs["reward_params"]`` (tasks whose
                       ``weights``, ``margin.distance_error``          settings take ``reward_params``)
environment settings   ``env.safe_distance`` (or bare)                ``env_kwargs``
agent hyperparameters  ``gamma``, ``agent.learning_rate``             ``agent_overrides``
=====================  =============================================  ==========================================

A search samples ``samples`` points from ranges (``uniform``, ``loguniform``, ``int``, ``choice``) with a
seeded random or quasi-random (Halton) sequence, so the same file gives the same trials on every call and
``--resume`` finds them again.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import itertools
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agents.training import TrainConfig, algo_class
from common.errors import InvalidArgumentError
from envs.specs import TaskSpec, get_task, resolve

__all__ = ["RUN_FIELDS", "SAMPLERS", "Axis", "SearchRange", "SweepSpace", "Trial", "axis_names", "load_yaml",
           "resolve_axis", "trial_name"]

#: ``TrainConfig`` fields a sweep may vary (the rest are the run's own business or fixed by the sweep).
RUN_FIELDS = ("normalize_rewards", "preset", "n_envs", "checkpoint_every")
SAMPLERS = ("random", "quasi")
_DISTRIBUTIONS = ("uniform", "loguniform", "int", "choice")
#: Constructor arguments of a reward scheme that are not parameters of its shape.
_NOT_REWARD_PARAMS = {"self", "signals", "signed"}
#: Agent constructor arguments the run sets itself (see ``agents.training._RUN_MANAGED``).
_NOT_AGENT_PARAMS = {"self", "env", "kwargs", "policy", "seed", "tensorboard_log", "device", "verbose",
                     "_init_setup_model"}


@dataclass(frozen=True)
class Trial:
    """One run of a sweep.

    Attributes:
        name: the run folder's name under ``OUT/runs/``.
        params: axis name -> value, ``seed`` included (the summary groups over everything else).
        config: the training run.
    """

    name: str
    params: dict[str, Any]
    config: TrainConfig


@dataclass(frozen=True)
class Axis:
    """An axis name and the config path it sets (``seed``, ``normalize_rewards``, ``env_kwargs.reward``,
    ``env_kwargs.reward_params.margin.distance_error``, ``agent_overrides.gamma``)."""

    name: str
    path: str
    choices: tuple[str, ...] | None = None


@functools.cache
def _settings_of(task: str) -> dict[str, dataclasses.Field]:
    spec = get_task(task)
    settings = getattr(resolve(spec.entry_point), "settings_class", None)
    if settings is None:
        # A factory entry point (the face task builds its perception first): ask the environment it makes.
        import gymnasium as gym

        import envs  # noqa: F401  (registers the environments)

        env = gym.make(spec.env_id)
        try:
            settings = env.unwrapped.settings_class
        finally:
            env.close()
    return {f.name: f for f in dataclasses.fields(settings)}


def _settings_fields(spec: TaskSpec) -> dict[str, dataclasses.Field]:
    """The task's environment settings (the fields of its ``TaskSettings`` class)."""
    return _settings_of(spec.name)


def _reward_params() -> tuple[str, ...]:
    from envs.rewards import REWARD_SCHEMES

    names: list[str] = []
    for cls in REWARD_SCHEMES.values():
        for name in inspect.signature(cls.__init__).parameters:
            if name not in _NOT_REWARD_PARAMS and name not in names:
                names.append(name)
    return tuple(names)


def _agent_params(algo: str) -> tuple[str, ...]:
    return tuple(n for n in inspect.signature(algo_class(algo).__init__).parameters if n not in _NOT_AGENT_PARAMS)


def axis_names(task: str, algo: str = "ppo") -> dict[str, tuple[str, ...]]:
    """The axis names of ``task`` by group, for messages and ``--help``."""
    spec = get_task(task)
    settings = _settings_fields(spec)
    groups = {"seed": ("seed",), "run settings": RUN_FIELDS,
              "task options": tuple(spec.defaults()),
              "environment settings (env.NAME)": tuple(n for n in settings if n not in spec.defaults()
                                                       and n != "reward_params")}
    if "reward_params" in settings:
        groups["reward parameters (reward_params.NAME)"] = _reward_params()
    groups[f"{algo} hyperparameters (agent.NAME)"] = _agent_params(algo)
    return groups


def resolve_axis(task: str, algo: str, name: str) -> Axis:
    """Resolve an axis name for ``task`` trained with ``algo``.

    Raises:
        InvalidArgumentError: an unknown name (the message lists every allowed one by group).
    """
    spec = get_task(task)
    head, _, rest = name.partition(".")
    options = {o.name: o for o in spec.options}
    if name == "seed":
        return Axis(name, "seed")
    if name in RUN_FIELDS:
        return Axis(name, name)
    if name in options:
        return Axis(name, f"env_kwargs.{name}", options[name].choices)
    settings = _settings_fields(spec)
    if head == "env" and rest in settings and rest not in options:
        return Axis(name, f"env_kwargs.{rest}")
    if head == "agent" and rest in _agent_params(algo):
        return Axis(name, f"agent_overrides.{rest}")
    if "reward_params" in settings:
        params = _reward_params()
        if head == "reward_params" and rest.partition(".")[0] in params:
            return Axis(name, f"env_kwargs.reward_params.{rest}")
        if head in params:  # c_g, margin, margin.distance_error, weights.angle_error
            return Axis(name, f"env_kwargs.reward_params.{name}")
    if not rest and name in settings and name != "reward_params":
        return Axis(name, f"env_kwargs.{name}")
    if not rest and name in _agent_params(algo):
        return Axis(name, f"agent_overrides.{name}")
    allowed = "; ".join(f"{group}: {', '.join(names)}" for group, names in axis_names(task, algo).items())
    raise InvalidArgumentError(f"unknown sweep axis {name!r} for task {task!r} ({algo}); allowed: {allowed}")


def _set_path(config: dict[str, Any], path: str, value: Any) -> None:
    keys = path.split(".")
    node = config
    for key in keys[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[keys[-1]] = value


def _check_value(axis: Axis, value: Any) -> Any:
    if axis.choices is not None and value not in axis.choices:
        raise InvalidArgumentError(f"sweep axis {axis.name}={value!r} is not allowed; choose from "
                                   f"{', '.join(axis.choices)}")
    if axis.path == "seed" and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise InvalidArgumentError(f"seed {value!r} must be an integer >= 0")
    return value


def trial_name(values: Sequence[Any], seed: int, prefix: str = "") -> str:
    """``("td", "discrete"), 0`` -> ``td_discrete_s0``; characters a folder name should not hold become ``~``."""
    parts = [prefix] if prefix else []
    for value in values:
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, separators=(",", ":"))
        parts.append(re.sub(r"[^A-Za-z0-9.+=-]+", "~", text) or "~")
    return "_".join([*parts, f"s{seed}"])


@dataclass(frozen=True)
class SearchRange:
    """One sampled axis: ``uniform`` / ``loguniform`` / ``int`` over ``[low, high]``, or ``choice`` of values."""

    axis: Axis
    kind: str
    values: tuple[Any, ...]

    @classmethod
    def parse(cls, axis: Axis, raw: Any) -> SearchRange:
        if not isinstance(raw, Mapping) or len(raw) != 1:
            raise InvalidArgumentError(f"search range of {axis.name} must be one of {{uniform: [low, high]}}, "
                                       f"{{loguniform: [low, high]}}, {{int: [low, high]}}, {{choice: [...]}}; got "
                                       f"{raw!r}")
        kind, values = next(iter(raw.items()))
        if kind not in _DISTRIBUTIONS:
            raise InvalidArgumentError(f"search range kind {kind!r} of {axis.name} is unknown; allowed: "
                                       f"{', '.join(_DISTRIBUTIONS)}")
        if not isinstance(values, list) or not values:
            raise InvalidArgumentError(f"search range {kind} of {axis.name} needs a non-empty list, got {values!r}")
        if kind == "choice":
            return cls(axis, kind, tuple(_check_value(axis, v) for v in values))
        if axis.choices is not None:
            raise InvalidArgumentError(f"{axis.name} takes one of {', '.join(axis.choices)}: use choice, not {kind}")
        numbers = len(values) == 2 and all(isinstance(v, int | float) and not isinstance(v, bool)
                                           and math.isfinite(v) for v in values)
        if not numbers or values[0] > values[1] or (kind == "loguniform" and values[0] <= 0) or (
                kind == "int" and not all(isinstance(v, int) for v in values)):
            raise InvalidArgumentError(f"search range {kind} of {axis.name} must be [low, high] with low <= high"
                                       f"{' > 0' if kind == 'loguniform' else ''}"
                                       f"{' (integers)' if kind == 'int' else ''}; got {values!r}")
        return cls(axis, kind, tuple(values))

    def sample(self, u: float) -> Any:
        """The value at quantile ``u`` in ``[0, 1)``."""
        if self.kind == "choice":
            return self.values[min(int(u * len(self.values)), len(self.values) - 1)]
        low, high = self.values
        if self.kind == "uniform":
            return round(float(low + u * (high - low)), 6)
        if self.kind == "loguniform":
            return round(float(math.exp(math.log(low) + u * (math.log(high) - math.log(low)))), 6)
        return int(min(low + math.floor(u * (high - low + 1)), high))


def _halton(n: int, dims: int, skip: int = 1) -> np.ndarray:
    """The first ``n`` points of the ``dims``-dimensional Halton sequence (after ``skip``), in ``[0, 1)``."""
    primes: list[int] = []
    candidate = 2
    while len(primes) < dims:
        if all(candidate % p for p in primes):
            primes.append(candidate)
        candidate += 1
    points = np.zeros((n, dims))
    for d, base in enumerate(primes):
        for i in range(n):
            k, f, x = i + skip, 1.0, 0.0
            while k > 0:
                f /= base
                x += f * (k % base)
                k //= base
            points[i, d] = x
    return points


@dataclass
class SweepSpace:
    """A task's sweep: fixed settings, grid axes, sampled ranges and seeds, turned into trials.

    Attributes:
        task: task name.
        algo: ``ppo`` or ``rainbow``.
        steps: training steps per trial.
        seeds: training seeds (an axis of every sweep).
        fixed: axis name -> value every trial takes (``--set``).
        grid: axis name -> values; every combination is a trial (``--grid``).
        search: axis name -> range (a YAML file's ``search:``); ``samples`` points are drawn.
        samples: points drawn from ``search`` (each crossed with the grid and the seeds).
        sampler: ``random`` or ``quasi`` (Halton).
        sample_seed: seed of the sampler.
        base: ``TrainConfig`` fields every trial starts from (``n_envs``, ``checkpoint_every``, ...).
    """

    task: str
    algo: str = "ppo"
    steps: int = 100_000
    seeds: tuple[int, ...] = (0,)
    fixed: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, list[Any]] = field(default_factory=dict)
    search: dict[str, Any] = field(default_factory=dict)
    samples: int = 0
    sampler: str = "random"
    sample_seed: int = 0
    base: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self), default=str))

    def trials(self) -> list[Trial]:
        """Every trial, in a fixed order (points, then grid combinations, then seeds).

        Raises:
            InvalidArgumentError: an unknown axis or value, an empty grid or seed list, an axis given twice, a
                bad range or sample count, or a setting the agent or environment refuses (checked per trial).
        """
        get_task(self.task)
        if not self.seeds:
            raise InvalidArgumentError("the sweep has no seeds; give at least one (--seeds 0)")
        for seed in self.seeds:
            _check_value(Axis("seed", "seed"), seed)
        if len(set(self.seeds)) != len(self.seeds):
            raise InvalidArgumentError(f"seeds {list(self.seeds)} repeat a seed")
        if self.sampler not in SAMPLERS:
            raise InvalidArgumentError(f"sampler {self.sampler!r} is unknown; allowed: {', '.join(SAMPLERS)}")
        named = [*self.fixed, *self.grid, *self.search]
        repeated = sorted({n for n in named if named.count(n) > 1})
        if repeated:
            raise InvalidArgumentError(f"sweep axis {repeated[0]!r} is given more than once (fixed, grid or search)")
        if "seed" in named:
            raise InvalidArgumentError("seeds are their own axis: use --seeds (YAML: seeds), not an axis named seed")
        axes = {n: resolve_axis(self.task, self.algo, n) for n in named}
        for name, values in self.grid.items():
            if not isinstance(values, list | tuple) or not values:
                raise InvalidArgumentError(f"grid axis {name!r} has no values; give at least one ({name}=A,B)")
            for value in values:
                _check_value(axes[name], value)
            if len({json.dumps(v, sort_keys=True) for v in values}) != len(values):
                raise InvalidArgumentError(f"grid axis {name!r} repeats a value: {list(values)}")
        for name, value in self.fixed.items():
            _check_value(axes[name], value)
        ranges = [SearchRange.parse(axes[n], raw) for n, raw in self.search.items()]
        if ranges and (isinstance(self.samples, bool) or not isinstance(self.samples, int) or self.samples < 1):
            raise InvalidArgumentError(f"a search needs samples >= 1 (--samples), got {self.samples!r}")
        if not ranges and self.samples:
            raise InvalidArgumentError("--samples needs ranges to sample (a YAML file's search: section)")
        points = self._points(ranges)
        combos = list(itertools.product(*self.grid.values()))
        trials: list[Trial] = []
        for index, point in enumerate(points):
            for combo in combos:
                for seed in self.seeds:
                    params = {**point, **dict(zip(self.grid, combo, strict=True)), "seed": seed}
                    prefix = f"p{index:03d}" if ranges else ""
                    name = trial_name(list(combo), seed, prefix)
                    trials.append(Trial(name, params, self._config({**self.fixed, **params}, axes)))
        if not trials:
            raise InvalidArgumentError("the sweep is empty: give --grid axes, --seeds or a search")
        names = [t.name for t in trials]
        clash = sorted({n for n in names if names.count(n) > 1})
        if clash:
            raise InvalidArgumentError(f"two trials would share the run folder {clash[0]!r}: give values that differ "
                                       "in letters, digits, '.', '+', '=' or '-'")
        checked: set[str] = set()
        for trial in trials:
            key = json.dumps(trial.config.env_kwargs, sort_keys=True, default=str)
            if key not in checked:
                checked.add(key)
                _check_env(trial)
        return trials

    def _points(self, ranges: list[SearchRange]) -> list[dict[str, Any]]:
        if not ranges:
            return [{}]
        if self.sampler == "quasi":
            # A random shift keeps different sample seeds apart while the points stay evenly spread.
            shift = np.random.default_rng(self.sample_seed).random(len(ranges))
            unit = (_halton(self.samples, len(ranges)) + shift) % 1.0
        else:
            unit = np.random.default_rng(self.sample_seed).random((self.samples, len(ranges)))
        return [{r.axis.name: r.sample(float(u)) for r, u in zip(ranges, row, strict=True)} for row in unit]

    def _config(self, values: Mapping[str, Any], axes: Mapping[str, Axis]) -> TrainConfig:
        payload: dict[str, Any] = {"task": self.task, "algo": self.algo, "steps": self.steps, "env_kwargs": {},
                                   "agent_overrides": {}, **json.loads(json.dumps(self.base))}
        for name, value in values.items():
            _set_path(payload, "seed" if name == "seed" else axes[name].path, value)
        config = TrainConfig(**payload)
        config.validate()
        return config


def _check_env(trial: Trial) -> None:
    """Build the trial's environment once: a setting or reward parameter it refuses fails the sweep up front,
    not in a worker minutes later."""
    import gymnasium as gym

    import envs  # noqa: F401  (registers the environments)
    from common.errors import VantageError

    try:
        gym.make(trial.config.env_id, **trial.config.env_kwargs).close()
    except (VantageError, TypeError) as exc:
        shown = ", ".join(f"{k}={v!r}" for k, v in trial.params.items() if k != "seed")
        raise InvalidArgumentError(f"trial {trial.name} ({shown or 'fixed settings'}): {exc}") from None


def load_yaml(path: Path) -> dict[str, Any]:
    """A sweep file: ``task``, ``algo``, ``steps``, ``seeds``, ``set``, ``grid``, ``search``, ``samples``,
    ``sampler``, ``sample_seed``, ``eval``, ``episodes``, ``metric``, ``scheduler``, ``report_every``,
    ``report_episodes``, ``grace_steps``, ``reduction_factor``, ``base``.

    Raises:
        InvalidArgumentError: not YAML, not a mapping, or an unknown key (the known ones listed).
    """
    import yaml

    try:
        payload = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as exc:
        raise InvalidArgumentError(f"{path} is not valid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(payload, dict):
        raise InvalidArgumentError(f"{path} must hold a mapping of sweep settings, got {type(payload).__name__}")
    unknown = sorted(set(payload) - set(YAML_KEYS))
    if unknown:
        raise InvalidArgumentError(f"{path}: unknown key {unknown[0]!r}; known: {', '.join(YAML_KEYS)}")
    for key in ("set", "grid", "search", "eval", "base"):
        if key in payload and not isinstance(payload[key], dict):
            raise InvalidArgumentError(f"{path}: {key} must be a mapping, got {payload[key]!r}")
    return payload


YAML_KEYS = ("task", "algo", "steps", "seeds", "set", "grid", "search", "samples", "sampler", "sample_seed", "eval",
             "episodes", "metric", "scheduler", "report_every", "report_episodes", "grace_steps", "reduction_factor",
             "base")
