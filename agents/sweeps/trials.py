"""One trial of a sweep: an ordinary training run, its evaluation, and the reports a scheduler ranks it by.

A trial's folder is a plain ``vantage train`` run (``config.json``, ``tb/``, ``checkpoints/``, ``model.zip``,
``train_summary.json``) plus ``study_eval.json``, its evaluation on the sweep's setups (cached: an
interrupted sweep neither trains nor evaluates a finished trial again). :class:`TuneReportCallback` evaluates
the policy every ``report_every`` steps while it trains and hands the figures to the scheduler (Ray Tune's
``report``), which is what ASHA stops trials on. Nothing here imports Ray: the engine passes ``report`` in.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stable_baselines3.common.callbacks import BaseCallback

from agents.evaluation import evaluate
from agents.sweeps.space import Trial
from agents.training import MODEL_FILE, SUMMARY_FILE, TrainConfig, load_agent, make_eval_env, seeds_for, train
from common.errors import InvalidArgumentError
from common.io import atomic_write_json

__all__ = ["EVAL_FILE", "STATUS_FILE", "EvalSettings", "TuneReportCallback", "cached_result", "figures_of",
           "run_trial"]

#: A trial's evaluation, in its run folder (the name the reward study has always used: its runs are adopted).
EVAL_FILE = "study_eval.json"
#: What the sweep recorded about a trial that did not finish: stopped early by the scheduler, or failed.
STATUS_FILE = "sweep_trial.json"
#: Seeds of the final evaluation episodes start here (apart from training seeds and the intermediate reports).
_EVAL_BASE, _REPORT_BASE = 1000, 2000


@dataclass(frozen=True)
class EvalSettings:
    """How every trial of a sweep is evaluated and reported.

    Attributes:
        setups: setup name -> environment overrides each trained agent is evaluated with (``{"default": {}}``:
            the settings it trained with).
        episodes: evaluation episodes per setup, on seeds derived from the trial's seed.
        metric: the figure trials are ranked by (a summary key of the task's evaluator without ``_mean``).
        mode: ``min`` or ``max``.
        report_every: steps between the evaluations reported while training (``None``: only the final one).
        report_episodes: episodes of each of those.
        max_steps: step cap of an evaluation episode (``None``: the registered limit).
    """

    setups: dict[str, dict[str, Any]] = field(default_factory=lambda: {"default": {}})
    episodes: int = 5
    metric: str = "return"
    mode: str = "max"
    report_every: int | None = None
    report_episodes: int = 2
    max_steps: int | None = None

    def key(self) -> dict[str, Any]:
        """What a cached evaluation must have been made with to be reused."""
        return {"setups": list(self.setups), "episodes": self.episodes, "overrides": self.setups}


def figures_of(summary: Mapping[str, Any]) -> dict[str, float]:
    """An evaluator summary as per-run figures: numbers only, ``_mean`` dropped, per-episode spreads left out."""
    return {key.removesuffix("_mean"): float(value) for key, value in summary.items()
            if isinstance(value, int | float) and not isinstance(value, bool) and not key.endswith("_std")}


def _score(figures: Mapping[str, float], metric: str) -> float:
    if metric not in figures:
        raise InvalidArgumentError(f"metric {metric!r} is not a figure of this task's evaluation; its figures: "
                                   f"{', '.join(sorted(figures))}")
    return figures[metric]


def _evaluate(agent: Any, config: TrainConfig, overrides: Mapping[str, Any], seeds: list[int], name: str,
              max_steps: int | None) -> dict[str, float]:
    env = make_eval_env(config, **overrides)
    try:
        return figures_of(evaluate(agent, env, seeds, config.spec.make_evaluator(), name=name,
                                   max_steps=max_steps).summary)
    finally:
        env.close()


class TuneReportCallback(BaseCallback):
    """Every ``every`` steps, evaluate the policy on the trial's own settings and ``report`` the figures.

    ``report`` receives ``{<figure>: value, ..., "timesteps": num_timesteps, "score": <metric>}`` (Ray Tune's
    ``tune.report``; ASHA compares trials on ``score`` at ``timesteps`` milestones). The episodes use seeds of
    their own, so reporting leaves training and the final evaluation exactly as they are without it.
    """

    def __init__(self, config: TrainConfig, settings: EvalSettings, report: Callable[[dict[str, Any]], None],
                 every: int) -> None:
        super().__init__(verbose=0)
        if every < 1:
            raise InvalidArgumentError(f"report_every={every!r} must be >= 1")
        self.config, self.settings, self.report, self.every = config, settings, report, int(every)
        self._next = self.every
        self.reports: list[dict[str, Any]] = []

    def _on_training_start(self) -> None:
        # A resumed run reports from its next milestone on.
        self._next = (self.num_timesteps // self.every + 1) * self.every

    def _on_step(self) -> bool:
        # At the step target the final report (every setup, after training) takes over: a scheduler told of
        # the last step here would stop the trial before its evaluation.
        if self._next <= self.num_timesteps < self.config.steps:
            self._next = (self.num_timesteps // self.every + 1) * self.every
            seeds = seeds_for(_REPORT_BASE + self.config.seed + self.num_timesteps, self.settings.report_episodes)
            figures = _evaluate(self.model, self.config, {}, seeds, "report", self.settings.max_steps)
            # "timesteps", not "steps": the figures have a "steps" of their own (the episodes' length).
            payload = {**figures, "timesteps": int(self.num_timesteps), "score": _score(figures, self.settings.metric)}
            self.reports.append(payload)
            self.report(payload)
        return True


def cached_result(run_dir: Path, trial: Trial, settings: EvalSettings) -> dict[str, Any] | None:
    """The trial's stored result when its evaluation was made with ``settings``, else ``None``."""
    path = Path(run_dir) / EVAL_FILE
    if not (Path(run_dir) / MODEL_FILE).is_file() or not path.is_file():
        return None
    try:
        stored = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None  # a damaged cache is only a cache: evaluate again
    if not isinstance(stored, dict) or not _same_settings(stored.get("settings"), settings):
        return None
    result = stored.get("result")
    if not isinstance(result, dict) or not isinstance(result.get("eval"), dict):
        return None
    return {"trial": trial.name, "params": trial.params, **result}


def _same_settings(stored: Any, settings: EvalSettings) -> bool:
    if not isinstance(stored, dict):
        return False
    if "overrides" not in stored:
        # Written by the reward study before sweeps existed: its setups were motions, by name.
        stored = {**stored, "overrides": {name: {"motion": name} for name in stored.get("setups", [])}}
    canonical = lambda d: json.loads(json.dumps(d, sort_keys=True))  # noqa: E731
    return canonical(stored) == canonical(settings.key())


def run_trial(trial: Trial, run_dir: Path, settings: EvalSettings,
              report: Callable[[dict[str, Any]], None] | None = None,
              log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train (or resume, or reuse) the trial's run in ``run_dir``, evaluate it on every setup, return its result.

    A finished run (``model.zip``) is not trained again and a cached evaluation is reused. With ``report``,
    the evaluation figures go to it every ``settings.report_every`` steps and once at the end (as ``score``,
    the metric averaged over the setups).

    Returns:
        ``{"trial", "params", "seed", <params>, "steps", "train_wall_s", "trial_wall_s", "eval": {setup:
        figures}}``, also written to ``run_dir/study_eval.json`` with the settings it was made with.
    """
    started = time.perf_counter()
    run_dir = Path(run_dir)
    cached = cached_result(run_dir, trial, settings)
    if cached is not None:
        return cached
    if not (run_dir / MODEL_FILE).is_file():
        callbacks = []
        if report is not None and settings.report_every:
            callbacks.append(TuneReportCallback(trial.config, settings, report, settings.report_every))
        # A started run (its config.json is written) resumes, from step 0 when it stopped before its first
        # checkpoint; train() refuses one whose settings differ from the trial's.
        resume = (run_dir / "config.json").is_file()
        train(trial.config, run_dir, resume=resume, progress_bar=False, log=log, callbacks=callbacks)
    summary = json.loads((run_dir / SUMMARY_FILE).read_text())
    _, agent = load_agent(run_dir)
    seeds = seeds_for(_EVAL_BASE + trial.config.seed, settings.episodes)
    evals = {name: _evaluate(agent, trial.config, overrides, seeds, f"{trial.name}/{name}", settings.max_steps)
             for name, overrides in settings.setups.items()}
    result = {**trial.params, "seed": trial.config.seed, "steps": int(summary["num_timesteps"]),
              "train_wall_s": summary["wall_time_s"], "trial_wall_s": round(time.perf_counter() - started, 3),
              "eval": evals}
    atomic_write_json(run_dir / EVAL_FILE, {"settings": settings.key(), "result": result})
    if report is not None:
        score = sum(_score(e, settings.metric) for e in evals.values()) / len(evals)
        report({"timesteps": result["steps"], "score": score, "final": True})
    return {"trial": trial.name, "params": trial.params, **result}
