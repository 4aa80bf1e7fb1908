"""Rainbow ablation benchmark: Rainbow, Rainbow with each part removed, and SB3's DQN on the same preset.

Every run trains one agent for ``steps`` environment steps and evaluates it greedily (``eval_episodes``
episodes, noisy layers in mean mode) every ``eval_every`` steps, including step 0. Outputs, under
``out/<env>/``:

* ``runs.jsonl``: one line per (variant, seed) with its evaluation curve and timings; a stored run whose
  :meth:`AblationConfig.run_key` matches is reused, so an interrupted benchmark resumes where it stopped
  (each line is appended whole in one write; a line torn by a crash is skipped with a warning, its run
  trained again);
* ``curves.png``: the judged metric (return, or episode length on tracking) vs steps per variant, with a
  min-max band over seeds;
* ``table.md`` and ``summary.json``: final and best returns, steps to the threshold and throughput;
* ``throughput.json`` (:func:`measure_throughput`): training speed after the replay warm-up.

``curves.png``, ``table.md`` and ``summary.json`` summarise the stored runs a call selects and are rewritten
together on every call (the runs stay in ``runs.jsonl``, so nothing is lost); ``throughput.json`` is a
measurement of its own and is replaced only with ``overwrite``.

Throughput is environment steps per second of training *including* gradient updates and *excluding*
evaluation, in process CPU time as well as wall time: on a shared machine wall time mostly measures the
neighbours, CPU time what the algorithm costs. The slowdown vs DQN uses CPU time.

>>> config = AblationConfig(env="cartpole", steps=50_000, seeds=(0, 1, 2), variants=("rainbow", "dqn"))
>>> summary = run_ablation(config)  # doctest: +SKIP
>>> print(format_table(summary))  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import json
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import stable_baselines3
import torch as th
from stable_baselines3 import DQN
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecEnv

from agents.rainbow.rainbow import PRESETS, Rainbow
from common.errors import InvalidArgumentError, VantageError, check_choice
from common.io import atomic_path, atomic_write_json, atomic_write_text, prepare_output

__all__ = [
    "CURVES_FILE",
    "CURVE_COLUMNS",
    "DQN_SHARED_KEYS",
    "ENV_SPECS",
    "EVAL_SEED_OFFSET",
    "RUNS_FILE",
    "SUMMARY_FILE",
    "TABLE_FILE",
    "THROUGHPUT_FILE",
    "VARIANTS",
    "AblationConfig",
    "EnvSpec",
    "NoStoredRunsError",
    "TimedEvalCallback",
    "UnknownSettingError",
    "build_model",
    "find_run",
    "format_table",
    "format_throughput",
    "load_runs",
    "measure_throughput",
    "plot_curves",
    "rainbow_settings",
    "run_ablation",
    "run_one",
    "steps_to_threshold",
    "summarise",
]

#: Variant name -> Rainbow keyword overrides on top of the env's preset ("dqn" is SB3's DQN).
VARIANTS: dict[str, dict[str, Any]] = {
    "rainbow": {},
    "no_double": {"double_q": False},
    "no_per": {"prioritized_replay": False},
    "no_dueling": {"dueling": False},
    "no_nstep": {"n_step": 1},
    "no_distributional": {"distributional": False},
    "no_noisy": {"noisy": False},
    "dqn": {},
}
#: Preset keys SB3's DQN shares with Rainbow, so the baseline trains on the same schedule and network.
DQN_SHARED_KEYS = (
    "learning_rate",
    "buffer_size",
    "learning_starts",
    "batch_size",
    "gamma",
    "train_freq",
    "gradient_steps",
    "target_update_interval",
    "exploration_fraction",
    "exploration_initial_eps",
    "exploration_final_eps",
    "max_grad_norm",
    "policy_kwargs",
)
#: What each entry of a stored curve point holds. Runs stored before episode lengths were recorded have
#: 3-element points (no "length").
CURVE_COLUMNS = ("step", "return", "return_sd", "length")
_STEP, _RETURN, _LENGTH = (CURVE_COLUMNS.index(name) for name in ("step", "return", "length"))
#: Evaluation environments of training seed ``s`` use seed ``s + EVAL_SEED_OFFSET``, apart from training's.
#: Not :func:`common.seeding.derive_seeds`: every stored curve was evaluated on these seeds, and the run key
#: does not record them, so new seeds would silently mix two evaluations in one table.
EVAL_SEED_OFFSET = 10_000
RUNS_FILE = "runs.jsonl"
SUMMARY_FILE = "summary.json"
TABLE_FILE = "table.md"
CURVES_FILE = "curves.png"
THROUGHPUT_FILE = "throughput.json"


class NoStoredRunsError(VantageError):
    """A summary-only benchmark (``train=False``) found no stored run matching its settings."""


class UnknownSettingError(InvalidArgumentError):
    """A preset override names no argument of Rainbow's constructor."""


def _make_cartpole() -> Any:
    import gymnasium as gym

    return gym.make("CartPole-v1")


def _make_tracking() -> Any:
    import gymnasium as gym

    import envs  # noqa: F401  (registers vantage/ActiveTracking-v0)

    return gym.make("vantage/ActiveTracking-v0", action_mode="discrete")


@dataclass(frozen=True)
class EnvSpec:
    """How to build and judge one benchmark environment."""

    make: Callable[[], Any]
    """builds one environment (no arguments)"""
    preset: str
    """key of ``agents.rainbow.PRESETS``"""
    threshold: float | None
    """value of ``metric`` that counts as solved (``None``: no threshold)"""
    eval_envs: int
    """parallel evaluation environments (at most ``eval_episodes``)"""
    metric: str = "return"
    """what the curves plot and the threshold judges: "return", or "length" (episode length, e.g. steps before
    a tracker loses its target, where the telescoping TD return says little)"""

    @property
    def column(self) -> int:
        """Index of the metric in a stored curve point (see :data:`CURVE_COLUMNS`)."""
        return CURVE_COLUMNS.index(self.metric)


ENV_SPECS: dict[str, EnvSpec] = {
    "cartpole": EnvSpec(_make_cartpole, "cartpole", 475.0, eval_envs=20),
    # Tracking is solved when the target is kept for >= 950 of the 1000 steps (the tracking issue's bar).
    "tracking": EnvSpec(_make_tracking, "tracking", 950.0, eval_envs=4, metric="length"),
}


def rainbow_settings() -> frozenset[str]:
    """Names a preset override may replace: the arguments of Rainbow's constructor (but ``env``)."""
    return frozenset(inspect.signature(Rainbow.__init__).parameters) - {"self", "env"}


@dataclass(frozen=True)
class AblationConfig:
    """Settings of one ablation benchmark.

    Raises:
        UnknownNameError: ``env`` is not a key of :data:`ENV_SPECS` or a variant not one of :data:`VARIANTS`.
        UnknownSettingError: an ``overrides`` key is not a Rainbow constructor argument.
    """

    env: str = "cartpole"
    """benchmark environment, a key of ENV_SPECS"""
    steps: int = 50_000
    """training environment steps per run"""
    seeds: tuple[int, ...] = (0, 1, 2)
    """training seeds (evaluation environments use seed + EVAL_SEED_OFFSET)"""
    variants: tuple[str, ...] = tuple(VARIANTS)
    """variants to run, keys of VARIANTS"""
    eval_every: int = 2_500
    """environment steps between evaluations"""
    eval_episodes: int = 20
    """greedy episodes per evaluation"""
    threshold: float | None = None
    """return that counts as solved (default: the env's)"""
    threads: int = 1
    """torch threads per run"""
    out: Path = field(default=Path("runs/bench_rainbow"))
    """output folder; results go to out/<env>/"""
    overrides: dict[str, Any] = field(default_factory=dict)
    """preset entries to replace (``{"learning_rate": 2.5e-4}``); shared ones reach the DQN baseline too"""

    def __post_init__(self) -> None:
        known = rainbow_settings()
        unknown = sorted(set(self.overrides) - known)
        if unknown:
            raise UnknownSettingError(f"unknown Rainbow setting(s) {unknown}; known: {sorted(known)}")
        check_choice("benchmark environment", self.env, ENV_SPECS)
        for variant in self.variants:
            check_choice("variant", variant, VARIANTS)

    @property
    def spec(self) -> EnvSpec:
        """The benchmark environment's :class:`EnvSpec`."""
        return ENV_SPECS[self.env]

    @property
    def folder(self) -> Path:
        """Where this environment's results go: ``out/<env>``."""
        return self.out / self.env

    @property
    def solved_at(self) -> float | None:
        """The threshold in force: ``threshold``, else the environment's."""
        return self.threshold if self.threshold is not None else self.spec.threshold

    def model_kwargs(self, variant: str) -> dict[str, Any]:
        """Constructor keywords of ``variant``: Rainbow's preset plus the variant's overrides, or for ``dqn``
        the preset entries SB3's DQN shares (``policy`` included)."""
        preset = copy.deepcopy({**PRESETS[self.spec.preset], **self.overrides})
        if variant == "dqn":
            return {"policy": preset["policy"], **{key: preset[key] for key in DQN_SHARED_KEYS if key in preset}}
        return {**preset, **copy.deepcopy(VARIANTS[variant])}

    def run_key(self, variant: str, seed: int) -> dict[str, Any]:
        """The settings a stored run must match to be reused, hyperparameters included: a run trained before a
        preset changed is not mistaken for one of the new preset."""
        return {
            "env": self.env,
            "variant": variant,
            "seed": seed,
            "steps": self.steps,
            "eval_every": self.eval_every,
            "eval_episodes": self.eval_episodes,
            # Through JSON so the key compares equal to its stored copy (tuples become lists, classes names).
            # default=str, not common.io.json_default: stored keys name classes by str(), and must still match.
            "hyperparameters": json.loads(json.dumps(self.model_kwargs(variant), sort_keys=True, default=str)),
        }


class _Stopwatch:
    """Wall and process-CPU seconds spent in a ``with`` block."""

    wall: float = 0.0
    cpu: float = 0.0

    def __enter__(self) -> _Stopwatch:
        self._start = (time.perf_counter(), time.process_time())
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.wall = time.perf_counter() - self._start[0]
        self.cpu = time.process_time() - self._start[1]


class TimedEvalCallback(BaseCallback):
    """Greedy evaluation at the start, every ``every`` steps and at the end; its time is kept apart from
    training time so that throughput measures training alone.

    Args:
        eval_env: environments to evaluate on (seeded apart from training).
        every: environment steps between evaluations.
        episodes: greedy episodes per evaluation.
    """

    def __init__(self, eval_env: VecEnv, every: int, episodes: int) -> None:
        super().__init__()
        self.eval_env = eval_env
        self.every = every
        self.episodes = episodes
        self.curve: list[tuple[int, float, float, float]] = []  # one point per evaluation, see CURVE_COLUMNS
        self.eval_wall = 0.0
        self.eval_cpu = 0.0
        self._next = 0

    def _evaluate(self) -> None:
        with _Stopwatch() as clock:
            returns, lengths = evaluate_policy(
                self.model, self.eval_env, n_eval_episodes=self.episodes, deterministic=True,
                return_episode_rewards=True,
            )
            point = (int(self.num_timesteps), float(np.mean(returns)), float(np.std(returns)), float(np.mean(lengths)))
            self.curve.append(point)
        self.eval_wall += clock.wall
        self.eval_cpu += clock.cpu
        self._next = self.num_timesteps + self.every

    def _on_training_start(self) -> None:
        self._evaluate()

    def _on_step(self) -> bool:
        if self.num_timesteps >= self._next:
            self._evaluate()
        return True

    def _on_training_end(self) -> None:
        if not self.curve or self.curve[-1][_STEP] != self.num_timesteps:
            self._evaluate()


def build_model(config: AblationConfig, variant: str, env: Any, seed: int) -> DQN | Rainbow:
    """The Rainbow variant (preset + overrides) or the SB3 DQN baseline sharing the preset's settings.

    Args:
        config: the benchmark settings (environment preset and overrides).
        variant: a key of :data:`VARIANTS`.
        env: the training environment.
        seed: the model's seed.

    Returns:
        An untrained :class:`~agents.rainbow.Rainbow`, or :class:`stable_baselines3.DQN` for ``"dqn"``.
    """
    kwargs = config.model_kwargs(variant)
    algo = DQN if variant == "dqn" else Rainbow
    return algo(kwargs.pop("policy"), env, seed=seed, **kwargs)


def _training_env(config: AblationConfig, seed: int) -> VecEnv:
    # Thread count first: torch reads it when the model's tensors are created.
    th.set_num_threads(config.threads)
    return make_vec_env(config.spec.make, n_envs=1, seed=seed)


def _n_parameters(model: DQN | Rainbow) -> int:
    return int(sum(p.numel() for p in model.q_net.parameters()))


def run_one(config: AblationConfig, variant: str, seed: int) -> dict[str, Any]:
    """Train and evaluate one (variant, seed).

    Args:
        config: the benchmark settings.
        variant: a key of :data:`VARIANTS`.
        seed: the training seed.

    Returns:
        The record for ``runs.jsonl``: the run key, the evaluation curve, training time (evaluation excluded)
        and speed, the number of updates and of Q-network parameters.
    """
    env = _training_env(config, seed)
    n_eval_envs = min(config.spec.eval_envs, config.eval_episodes)
    eval_env = make_vec_env(config.spec.make, n_envs=n_eval_envs, seed=EVAL_SEED_OFFSET + seed)
    model = build_model(config, variant, env, seed)
    callback = TimedEvalCallback(eval_env, config.eval_every, config.eval_episodes)
    with _Stopwatch() as clock:
        model.learn(config.steps, callback=callback)
    wall = clock.wall - callback.eval_wall
    cpu = clock.cpu - callback.eval_cpu
    env.close()
    eval_env.close()
    return {
        **config.run_key(variant, seed),
        "curve": callback.curve,
        "train_wall_s": wall,
        "train_cpu_s": cpu,
        "steps_per_s_wall": model.num_timesteps / wall,
        "steps_per_s_cpu": model.num_timesteps / cpu,
        "n_updates": int(model._n_updates),
        "n_parameters": _n_parameters(model),
    }


def load_runs(path: Path) -> list[dict[str, Any]]:
    """The records stored in a ``runs.jsonl`` (none if it does not exist).

    A line that does not parse as a JSON object (torn by a crash or a full disk while it was appended) is
    skipped with a warning: its run counts as not stored and is trained again.
    """
    if not path.exists():
        return []
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if not isinstance(record, dict):
            warnings.warn(f"{path}:{number}: skipped a line that is not a whole run record (cut off while it was "
                          "written?); that run will be trained again", stacklevel=2)
            continue
        records.append(record)
    return records


def find_run(runs: Sequence[dict[str, Any]], key: dict[str, Any]) -> dict[str, Any] | None:
    """The first stored record whose entries equal every entry of ``key`` (an :meth:`AblationConfig.run_key`).

    Records keep more fields than the key (curve, timings), so the key's fields are compared, not the record.
    """
    return next((record for record in runs if all(record.get(k) == v for k, v in key.items())), None)


def _append_run(path: Path, record: dict[str, Any]) -> None:
    # Appended, not rewritten through common.io: several benchmarks (e.g. the ablation and the seeds of
    # Rainbow vs DQN) may share one log, and a rewrite would drop another's concurrent line. One O_APPEND
    # write of the whole line (a regular file's write is not cut short by Ctrl-C), then fsync: the line is
    # stored whole, or not at all unless the disk fills up or the machine stops mid-write (load_runs skips it).
    data = (json.dumps(record) + "\n").encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            data = b"\n" + data  # after a torn line, start on a line of its own
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def _value(point: Sequence[float], column: int) -> float | None:
    """``point[column]``, or ``None`` where a run stored by an earlier version lacks that column."""
    return point[column] if len(point) > column else None


def steps_to_threshold(curve: list[list[float]], threshold: float | None, column: int = 1) -> int | None:
    """First evaluated step whose metric (``column`` of the curve point) reaches ``threshold``.

    Args:
        curve: evaluation points laid out as :data:`CURVE_COLUMNS`.
        threshold: the solved value (``None``: no threshold).
        column: the judged entry of a point (1: return, 3: episode length).

    Returns:
        The step, or ``None``: never, no threshold, or a stored curve without that column.
    """
    if threshold is None:
        return None
    return next((int(p[_STEP]) for p in curve if (v := _value(p, column)) is not None and v >= threshold), None)


def _mean_or_none(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _runs_of(runs: Sequence[dict[str, Any]], variant: str) -> list[dict[str, Any]]:
    return sorted((r for r in runs if r["variant"] == variant), key=lambda r: r["seed"])


def _add_slowdowns(rows: dict[str, dict[str, Any]], clocks: tuple[str, ...]) -> None:
    """Add ``slowdown_vs_dqn_<clock>`` (DQN's speed / the row's) to every row, if DQN is among them."""
    if "dqn" not in rows:
        return
    for row in rows.values():
        for clock in clocks:
            row[f"slowdown_vs_dqn_{clock}"] = rows["dqn"][f"steps_per_s_{clock}"] / row[f"steps_per_s_{clock}"]


def summarise(config: AblationConfig, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Aggregate runs per variant over seeds, with throughput relative to DQN.

    Args:
        config: the benchmark settings (variants, threshold, metric).
        runs: stored records (:func:`run_one`) of this benchmark's settings.

    Returns:
        The ``summary.json`` payload: config, command, machine and one row per variant with runs.
    """
    threshold = config.solved_at
    column = config.spec.column
    rows: dict[str, dict[str, Any]] = {}
    for variant in config.variants:
        mine = _runs_of(runs, variant)
        if not mine:
            continue
        finals = [r["curve"][-1][_RETURN] for r in mine]
        reached = [steps_to_threshold(r["curve"], threshold, column) for r in mine]
        final_metric = [_value(r["curve"][-1], column) for r in mine]
        final_lengths = [v for r in mine if (v := _value(r["curve"][-1], _LENGTH)) is not None]
        # A seed that never reaches the threshold counts as the full budget (a lower bound on its true cost).
        censored = [config.steps if s is None else s for s in reached]
        rows[variant] = {
            "seeds": [r["seed"] for r in mine],
            "final_mean": float(np.mean(finals)),
            "final_std": float(np.std(finals)),
            "final_per_seed": finals,
            "best_mean": float(np.mean([max(c[_RETURN] for c in r["curve"]) for r in mine])),
            "final_length_mean": _mean_or_none(final_lengths),
            "steps_to_threshold": reached,
            "steps_to_threshold_mean": float(np.mean(censored)),
            "seeds_reaching_threshold": sum(s is not None for s in reached),
            "seeds_final_above_threshold": sum(
                threshold is not None and v is not None and v >= threshold for v in final_metric
            ),
            "steps_per_s_cpu": float(np.mean([r["steps_per_s_cpu"] for r in mine])),
            "steps_per_s_wall": float(np.mean([r["steps_per_s_wall"] for r in mine])),
            "n_parameters": mine[0]["n_parameters"],
        }
    _add_slowdowns(rows, ("cpu", "wall"))
    return {
        "config": {**asdict(config), "out": str(config.out), "threshold": threshold,
                   "threshold_metric": config.spec.metric},
        **_provenance(),
        "variants": rows,
    }


def _provenance() -> dict[str, Any]:
    """The command that produced a result, as typed (``vantage bench rainbow ...``), and the machine."""
    return {
        "command": " ".join(["vantage", *sys.argv[1:]]) if sys.argv else "",
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch": th.__version__,
            "stable_baselines3": stable_baselines3.__version__,
            "cuda": bool(th.cuda.is_available()),
        },
    }


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _slowdown_cell(row: dict[str, Any]) -> str:
    slowdown = row.get("slowdown_vs_dqn_cpu")
    return "—" if slowdown is None else f"{slowdown:.2f}x"


def format_table(summary: dict[str, Any]) -> str:
    """Markdown table of a :func:`summarise` result."""
    threshold = summary["config"]["threshold"]
    metric = summary["config"].get("threshold_metric", "return")
    thr = "—" if threshold is None else f"{metric} {threshold:g}"
    header = ("variant", "final return (mean ± sd)", "best eval", f"seeds reaching {thr}", f"steps to {thr} (per seed)",
              "final episode length", "env steps/s (CPU)", "slowdown vs DQN (CPU)", "parameters")
    rows = []
    for name, row in summary["variants"].items():
        steps = ", ".join("never" if s is None else f"{s / 1000:g}k" for s in row["steps_to_threshold"])
        length = row["final_length_mean"]
        rows.append((
            name,
            f"{row['final_mean']:.1f} ± {row['final_std']:.1f}",
            f"{row['best_mean']:.1f}",
            f"{row['seeds_reaching_threshold']}/{len(row['seeds'])}",
            steps if threshold is not None else "—",
            "—" if length is None else f"{length:.0f}",
            f"{row['steps_per_s_cpu']:.0f}",
            _slowdown_cell(row),
            f"{row['n_parameters']}",
        ))
    return _markdown_table(header, rows)


def plot_curves(config: AblationConfig, runs: list[dict[str, Any]], path: Path) -> None:
    """Plot the judged metric's mean over seeds vs steps per variant, with a min-max band over seeds.

    Args:
        config: the benchmark settings (variants, metric, threshold).
        runs: stored records of this benchmark's settings.
        path: the image to write (format from its suffix).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric, column = config.spec.metric, config.spec.column
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    for variant in config.variants:
        mine = [r for r in _runs_of(runs, variant) if _value(r["curve"][0], column) is not None]
        if not mine:
            continue
        length = min(len(r["curve"]) for r in mine)
        steps = np.array([c[_STEP] for c in mine[0]["curve"][:length]])
        means = np.array([[c[column] for c in r["curve"][:length]] for r in mine])
        emphasis = {"linewidth": 2.6} if variant in ("rainbow", "dqn") else {"linewidth": 1.2, "alpha": 0.85}
        style = "--" if variant == "dqn" else "-"
        seeds = f"{len(mine)} seed" + ("" if len(mine) == 1 else "s")
        (line,) = ax.plot(steps, means.mean(axis=0), style, label=f"{variant} ({seeds})", **emphasis)
        ax.fill_between(steps, means.min(axis=0), means.max(axis=0), color=line.get_color(), alpha=0.08)
    if config.solved_at is not None:  # the threshold judges the plotted metric
        ax.axhline(config.solved_at, color="grey", linestyle=":", linewidth=1, label=f"threshold {config.solved_at:g}")
    ax.set_xlabel("environment steps")
    ax.set_ylabel(f"greedy episode {metric} (mean of {config.eval_episodes} episodes)")
    ax.set_title(f"Rainbow ablation on {config.env}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)


def _say(progress: bool, message: str) -> None:
    # Progress goes to stderr so that stdout stays the table or JSON.
    if progress:
        print(message, file=sys.stderr, flush=True)


def run_ablation(config: AblationConfig, progress: bool = True, train: bool = True) -> dict[str, Any]:
    """Run (or reuse) every (variant, seed), then write curves, table and summary.

    Args:
        config: the benchmark settings.
        progress: report each run on stderr.
        train: train the runs not stored yet. With ``False`` nothing is trained: the outputs summarise the
            stored runs among ``config.seeds``, so variants run with different seed sets (e.g. Rainbow and DQN
            on 3 seeds, the ablations on 1) share a table.

    Returns:
        The summary (:func:`summarise`), as written to ``summary.json``.

    Raises:
        NoStoredRunsError: no run of these settings is stored (or trained).
        OutputExistsError: ``out/<env>`` is a file, or holds a training run, a model or a dataset.
    """
    prepare_output(config.folder)  # refuses a file, or a folder holding a training run, model or dataset
    log = config.folder / RUNS_FILE
    runs = load_runs(log)
    selected = []
    for variant in config.variants:
        for seed in config.seeds:
            record = find_run(runs, config.run_key(variant, seed))
            if record is None and train:
                _say(progress, f"[{time.strftime('%H:%M:%S')}] {config.env} {variant} seed {seed} ...")
                record = run_one(config, variant, seed)
                _append_run(log, record)
                runs.append(record)
                _say(progress, f"    final {record['curve'][-1][_RETURN]:.1f}, {record['steps_per_s_cpu']:.0f} "
                               f"steps/s CPU ({record['train_cpu_s']:.0f} s CPU, {record['train_wall_s']:.0f} s wall)")
            if record is not None:
                selected.append(record)
    if not selected:
        raise NoStoredRunsError(f"no stored runs in {log} match these settings")
    summary = summarise(config, selected)
    # All three files or none: each goes to a temporary file, renamed over the old one once all are written.
    with contextlib.ExitStack() as stack:
        staged = {name: stack.enter_context(atomic_path(config.folder / name))
                  for name in (SUMMARY_FILE, TABLE_FILE, CURVES_FILE)}
        atomic_write_json(staged[SUMMARY_FILE], summary, sort_keys=False)
        atomic_write_text(staged[TABLE_FILE], format_table(summary))
        plot_curves(config, selected, staged[CURVES_FILE])
    return summary


def measure_throughput(config: AblationConfig, repeats: int = 3, overwrite: bool = False) -> dict[str, Any]:
    """Training throughput (env steps/s, gradient updates included) per variant, after replay warm-up.

    Each model first collects ``learning_starts`` steps untimed, then trains ``config.steps`` more timed steps.
    Variants run round-robin ``repeats`` times and each keeps its best (lowest CPU time) repeat: on a shared
    machine the neighbours' load then falls on every variant alike instead of on whichever ran at a busy moment.

    Args:
        config: the benchmark settings (``steps`` is the number of timed steps; seeds are not used: seed 0).
        repeats: round-robin repeats.
        overwrite: replace an existing ``throughput.json`` (checked before anything is timed).

    Returns:
        The result, also written to ``out/<env>/throughput.json``.

    Raises:
        OutputExistsError: ``throughput.json`` exists and ``overwrite`` is false.
    """
    prepare_output(config.folder, [THROUGHPUT_FILE], overwrite=overwrite)
    best: dict[str, dict[str, Any]] = {}
    for _ in range(repeats):
        for variant in config.variants:
            env = _training_env(config, seed=0)
            model = build_model(config, variant, env, seed=0)
            model.learn(model.learning_starts)
            updates, start = model._n_updates, model.num_timesteps
            with _Stopwatch() as clock:
                model.learn(config.steps, reset_num_timesteps=False)
            steps = model.num_timesteps - start
            env.close()
            record = {
                "steps": steps,
                "updates": int(model._n_updates - updates),
                "cpu_s": clock.cpu,
                "wall_s": clock.wall,
                "steps_per_s_cpu": steps / clock.cpu,
                "steps_per_s_wall": steps / clock.wall,
                "n_parameters": _n_parameters(model),
            }
            if variant not in best or record["cpu_s"] / steps < best[variant]["cpu_s"] / best[variant]["steps"]:
                best[variant] = record
    _add_slowdowns(best, ("cpu",))
    result = {
        "env": config.env,
        "steps": config.steps,
        "repeats": repeats,
        "threads": config.threads,
        **_provenance(),
        "variants": best,
    }
    atomic_write_json(config.folder / THROUGHPUT_FILE, result, sort_keys=False)
    return result


def format_throughput(result: dict[str, Any]) -> str:
    """Markdown table of a :func:`measure_throughput` result."""
    header = ("variant", "env steps/s (CPU)", "updates", "slowdown vs DQN (CPU)", "parameters")
    rows = [(name, f"{row['steps_per_s_cpu']:.0f}", f"{row['updates']}", _slowdown_cell(row), f"{row['n_parameters']}")
            for name, row in result["variants"].items()]
    return _markdown_table(header, rows)
