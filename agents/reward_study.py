"""The TD-reward paper's comparison: reward scheme x action mode, trained on constant motion, evaluated on
constant, switching and obstacle motion, over several seeds.

Each (reward, action mode, seed) is an ordinary training run under ``OUT/runs/``; finished runs are reused, so
an interrupted study resumes where it stopped (a finished run trained with other settings is refused, never
mixed in). Results: ``OUT/reward_study.json``, ``OUT/reward_study.md`` and ``OUT/reward_study.png``, a summary
of the runs the call selects: they are rewritten on every call (nothing is lost, the runs they summarise are
kept), all three together or none of them.
"""

from __future__ import annotations

import contextlib
import itertools
import json
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agents.evaluation import evaluate
from agents.training import MODEL_FILE, TrainConfig, load_agent, load_config, make_eval_env, seeds_for, train
from common.errors import InvalidArgumentError
from common.io import atomic_path, atomic_write_json, atomic_write_text, json_default, prepare_output

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
    """Runs trained in parallel processes."""
    normalize_rewards: bool = False
    """Min-max normalise negative and TD rewards per episode (the paper's option)."""
    agent_overrides: dict[str, Any] = field(default_factory=dict)


def _run_one(study: RewardStudyConfig, reward: str, mode: str, seed: int) -> dict[str, Any]:
    run_dir = Path(study.out) / "runs" / f"{reward}_{mode}_s{seed}"
    config = TrainConfig(
        task="tracking", algo="ppo", steps=study.steps, seed=seed,
        normalize_rewards=study.normalize_rewards and reward in ("td", "negative"),
        env_kwargs={"reward": reward, "action_mode": mode, "motion": "constant"},
        agent_overrides=dict(study.agent_overrides),
    )
    finished = (run_dir / MODEL_FILE).is_file()
    # A started run (its config.json is written) resumes, from step 0 when it stopped before its first checkpoint.
    resume = not finished and (run_dir / "config.json").is_file()
    if finished or resume:
        _check_stored_run(run_dir, config)
    if not finished:
        train(config, run_dir, resume=resume, progress_bar=False)
    summary = json.loads((run_dir / "train_summary.json").read_text())
    cached = run_dir / "study_eval.json"
    wanted = {"setups": list(study.setups), "episodes": study.episodes}
    if cached.is_file():
        previous = json.loads(cached.read_text())
        if previous.get("settings") == wanted:
            return previous["result"]
    _, agent = load_agent(run_dir)
    evals = {}
    for setup in study.setups:
        env = make_eval_env(config, motion=setup)
        try:
            figures = evaluate(agent, env, seeds_for(1000 + seed, study.episodes), config.spec.make_evaluator(),
                               name=f"{reward}/{mode}").summary
        finally:
            env.close()
        evals[setup] = {"distance_error": figures["distance_error_mean"], "steps": figures["steps_mean"],
                        "angle_error": figures["angle_error_mean"], "lost_fraction": figures["lost_fraction"]}
    result = {"reward": reward, "action_mode": mode, "seed": seed, "train_wall_s": summary["wall_time_s"],
              "eval": evals}
    atomic_write_json(cached, {"settings": wanted, "result": result})
    return result


def _check_stored_run(run_dir: Path, config: TrainConfig) -> None:
    """Refuse a finished run trained with other settings than ``config``: reusing it would mix two studies."""
    stored = load_config(run_dir)
    wanted = {"steps": config.steps, "seed": config.seed, "normalize_rewards": config.normalize_rewards,
              "agent_overrides": config.agent_overrides,
              **{f"env_kwargs.{k}": v for k, v in config.env_kwargs.items()}}
    found = {"steps": stored.steps, "seed": stored.seed, "normalize_rewards": stored.normalize_rewards,
             "agent_overrides": stored.agent_overrides,
             **{f"env_kwargs.{k}": stored.env_kwargs.get(k) for k in config.env_kwargs}}
    # Through JSON, as the stored side went: tuples compare equal to the lists they became.
    canonical = lambda d: json.loads(json.dumps(d, sort_keys=True, default=json_default))  # noqa: E731
    differ = [k for k in wanted if canonical(wanted[k]) != canonical(found[k])]
    if differ:
        details = ", ".join(f"{k}={found[k]!r} (this study: {wanted[k]!r})" for k in differ)
        raise InvalidArgumentError(f"{run_dir} was trained with {details}; choose another --out for a study with "
                                   "other settings (its runs are kept)")


def run_reward_study(study: RewardStudyConfig, progress: bool = True) -> dict[str, Any]:
    """Train and evaluate every combination; write JSON, Markdown and a plot; return the summary.

    Finished runs under ``out/runs`` are reused and interrupted ones resumed; the summary files are rewritten,
    together, once every run is done.

    Raises:
        OutputExistsError: ``out`` is a file or another kind of artefact (a training run, a model, a dataset).
        InvalidArgumentError: a finished run in ``out/runs`` was trained with other settings.
    """
    out = prepare_output(study.out)
    combos = list(itertools.product(study.rewards, study.action_modes, study.seeds))
    runs: list[dict[str, Any]] = []
    if study.jobs > 1:
        with ProcessPoolExecutor(max_workers=study.jobs) as pool:
            futures = [pool.submit(_run_one, study, *c) for c in combos]
            try:
                for i, f in enumerate(futures):
                    runs.append(f.result())
                    if progress:
                        print(f"[{i + 1}/{len(combos)}] {combos[i]} done", flush=True)
            except BaseException:
                # Start no queued run after an error or Ctrl-C; those running stop or finish their checkpoint.
                pool.shutdown(wait=False, cancel_futures=True)
                raise
    else:
        for i, combo in enumerate(combos):
            runs.append(_run_one(study, *combo))
            if progress:
                print(f"[{i + 1}/{len(combos)}] {combo} done", flush=True)
    table = summarize(runs, study)
    payload = {"settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in study.__dict__.items()},
               "summary": table, "runs": runs}
    # All three files or none: each goes to a temporary file, renamed over the old one once all are written.
    with contextlib.ExitStack() as stack:
        staged = {name: stack.enter_context(atomic_path(out / name)) for name in STUDY_FILES}
        atomic_write_json(staged["reward_study.json"], payload)
        atomic_write_text(staged["reward_study.md"], format_study(table, study) + "\n")
        plot_study(table, study, staged["reward_study.png"])
    return payload


def summarize(runs: list[dict[str, Any]], study: RewardStudyConfig) -> list[dict[str, Any]]:
    """Mean and std across seeds per (setup, action mode, reward)."""
    rows = []
    for setup, mode, reward in itertools.product(study.setups, study.action_modes, study.rewards):
        picked = [r["eval"][setup] for r in runs if r["reward"] == reward and r["action_mode"] == mode]
        if not picked:
            continue
        err = np.array([p["distance_error"] for p in picked])
        steps = np.array([p["steps"] for p in picked])
        rows.append({"setup": setup, "action_mode": mode, "reward": reward, "seeds": len(picked),
                     "distance_error_mean": float(err.mean()), "distance_error_std": float(err.std()),
                     "steps_mean": float(steps.mean()), "steps_std": float(steps.std())})
    return rows


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
