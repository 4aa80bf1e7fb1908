"""The TD-reward paper's comparison, a preset of ``vantage sweep``: reward scheme x action mode, trained on
constant motion, evaluated on constant, switching and obstacle motion, over several seeds.

Each (reward, action mode, seed) is a sweep trial, an ordinary training run ``OUT/runs/{reward}_{mode}_s{seed}``
run by the sweep engine (Ray Tune; :mod:`agents.sweeps`); finished runs are reused, so an interrupted study
resumes where it stopped (a finished run trained with other settings is refused, never mixed in), and the
folders the study wrote before it became a sweep are adopted as they are. Results: ``OUT/reward_study.json``,
``OUT/reward_study.md`` and ``OUT/reward_study.png``, a summary of the runs the call selects: they are rewritten
on every call (nothing is lost, the runs they summarise are kept), all three together or none of them.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agents.sweeps import EngineOptions, EvalSettings, Sweep, SweepSpace, Trial, run_sweep
from common.io import atomic_path

REWARDS = ("td", "negative", "hint")
ACTION_MODES = ("discrete", "continuous")
SETUPS = ("constant", "switching", "obstacles")
#: The study's summary files, in ``out``.
STUDY_FILES = ("reward_study.json", "reward_study.md", "reward_study.png")


@dataclass
class RewardStudyConfig:
    """Settings of the reward comparison."""

    out: Path
    """Study directory."""
    steps: int = 100_000
    """Training steps per run (the paper: 100 episodes, at most 100k steps)."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """Training seeds; each run is evaluated on its own unseen episode seeds."""
    episodes: int = 10
    """Evaluation episodes per run and setup."""
    rewards: tuple[str, ...] = REWARDS
    action_modes: tuple[str, ...] = ACTION_MODES
    setups: tuple[str, ...] = SETUPS
    jobs: int = 1
    """Runs trained at once (concurrent sweep trials)."""
    normalize_rewards: bool = False
    """Min-max normalise negative and TD rewards per episode (the paper's option)."""
    agent_overrides: dict[str, Any] = field(default_factory=dict)
    base: dict[str, Any] = field(default_factory=dict)
    """Other ``TrainConfig`` fields of every run (``n_envs``, ``checkpoint_every``; tests use tiny ones)."""


def study_trials(study: RewardStudyConfig) -> list[Trial]:
    """The study's trials: ``{reward}_{mode}_s{seed}``, PPO on constant motion, in the paper's order."""
    space = SweepSpace(task="tracking", algo="ppo", steps=study.steps, seeds=tuple(study.seeds),
                       fixed={"motion": "constant"},
                       grid={"reward": list(study.rewards), "action_mode": list(study.action_modes)},
                       base={**study.base, "agent_overrides": dict(study.agent_overrides)})
    trials = []
    for trial in space.trials():
        # The paper normalises the negative and TD rewards only (hint's are bounded already).
        normalize = study.normalize_rewards and trial.params["reward"] in ("td", "negative")
        trials.append(dataclasses.replace(trial, config=dataclasses.replace(trial.config,
                                                                            normalize_rewards=normalize)))
    return trials


def study_sweep(study: RewardStudyConfig) -> Sweep:
    """The study as a sweep: its trials, evaluated on every motion, summarised in the paper's layout."""
    settings = EvalSettings(setups={s: {"motion": s} for s in study.setups}, episodes=study.episodes,
                            metric="distance_error", mode="min")
    spec = {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(study).items() if k != "jobs"}
    return Sweep(task="tracking", out=Path(study.out), trials=study_trials(study), settings=settings, spec=spec,
                 group_by=["reward", "action_mode"], stem="reward_study", adopt=True,
                 table=lambda rows, _: format_study(rows, study),
                 plot=lambda rows, _, path: plot_study(rows, study, path))


def run_reward_study(study: RewardStudyConfig, progress: bool = True,
                     options: EngineOptions | None = None) -> dict[str, Any]:
    """Train and evaluate every combination as a sweep; write JSON, Markdown and a plot; return the summary.

    Finished runs under ``out/runs`` are reused and interrupted ones resumed; the summary files are rewritten,
    together, once every run is done.

    Raises:
        OutputExistsError: ``out`` is a file or another kind of artefact (a training run, a model, a dataset).
        InvalidArgumentError: a finished run in ``out/runs`` was trained with other settings.
    """
    options = options or EngineOptions(max_concurrent=study.jobs)
    return run_sweep(study_sweep(study), options, resume=True, log=print if progress else (lambda line: None))


def format_study(rows: list[dict[str, Any]], study: RewardStudyConfig) -> str:
    """Markdown table in the paper's layout: distance error (m) / steps per episode, mean ± std over seeds."""
    lines = [f"| setup | {' | '.join(study.rewards)} | lowest error |",
             "|---" * (len(study.rewards) + 2) + "|"]
    for setup, mode in itertools.product(study.setups, study.action_modes):
        cells, best = [], None
        for reward in study.rewards:
            row = next((r for r in rows if (r["setup"], r["action_mode"], r["reward"]) == (setup, mode, reward)), None)
            if row is None:
                cells.append("–")
                continue
            cells.append(f"{row['distance_error_mean']:.3f} ± {row['distance_error_std']:.3f} / "
                         f"{row['steps_mean']:.0f}")
            if best is None or row["distance_error_mean"] < best[1]:
                best = (reward, row["distance_error_mean"])
        lines.append(f"| {setup}, {mode} | {' | '.join(cells)} | {best[0] if best else '–'} |")
    return "\n".join(lines)


def plot_study(rows: list[dict[str, Any]], study: RewardStudyConfig, path: Path) -> None:
    """Grouped bar chart of distance error per setup and action mode, one bar per reward scheme."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = list(itertools.product(study.setups, study.action_modes))
    width = 0.8 / max(1, len(study.rewards))
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(groups)), 4))
    for i, reward in enumerate(study.rewards):
        means, stds = [], []
        for setup, mode in groups:
            row = next((r for r in rows if (r["setup"], r["action_mode"], r["reward"]) == (setup, mode, reward)), None)
            means.append(row["distance_error_mean"] if row else np.nan)
            stds.append(row["distance_error_std"] if row else 0.0)
        ax.bar(np.arange(len(groups)) + i * width, means, width, yerr=stds, capsize=3, label=reward)
    ax.set_xticks(np.arange(len(groups)) + width * (len(study.rewards) - 1) / 2)
    ax.set_xticklabels([f"{s}\n{m}" for s, m in groups])
    ax.set_ylabel("mean distance error (m)")
    ax.set_title(f"Reward schemes, PPO, {study.steps} training steps, {len(study.seeds)} seeds")
    ax.legend(title="reward")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
