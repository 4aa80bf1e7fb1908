"""``vantage bench rainbow``: Rainbow ablation (each part removed) against SB3 DQN, with curves and a table.

Every run trains one agent for ``--steps`` environment steps and evaluates it greedily (``--eval-episodes``
episodes, noisy layers in mean mode) every ``--eval-every`` steps, including step 0. The outputs, under
``--out/<env>/``:

* ``runs.jsonl``: one line per (variant, seed) with its evaluation curve and timings; runs already there with
  the same settings are reused, so an interrupted benchmark resumes where it stopped;
* ``curves.png``: mean evaluation return (tracking: episode length) vs steps per variant (band: min-max over
  seeds);
* ``table.md`` and ``summary.json``: final and best returns, steps to the threshold and throughput.

``--no-train`` rebuilds those from the stored runs only (so variants run on different seed sets share one
table). ``--throughput`` trains nothing to completion: it times ``--steps`` training steps after the replay
warm-up, variants interleaved, best of ``--repeats``, and writes ``throughput.json``.

Throughput is environment steps per second of training *including* gradient updates and *excluding*
evaluation. It is measured in process CPU time as well as wall time: on a shared machine wall time mostly
measures the neighbours, CPU time what the algorithm costs. The slowdown vs DQN uses CPU time.
"""

from __future__ import annotations

import copy
import json
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import click
import numpy as np

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
    preset: str
    threshold: float | None
    eval_envs: int
    metric: str = "return"
    """what the curves plot and the threshold judges: "return", or "length" (episode length, e.g. steps before
    a tracker loses its target, where the telescoping TD return says little)"""

    @property
    def column(self) -> int:
        """Index of the metric in a stored curve point ``(step, mean return, sd, mean length)``."""
        return 3 if self.metric == "length" else 1


ENV_SPECS: dict[str, EnvSpec] = {
    "cartpole": EnvSpec(_make_cartpole, "cartpole", 475.0, eval_envs=20),
    # Tracking is solved when the target is kept for >= 950 of the 1000 steps (the tracking issue's bar).
    "tracking": EnvSpec(_make_tracking, "tracking", 950.0, eval_envs=4, metric="length"),
}


@dataclass(frozen=True)
class AblationConfig:
    """Settings of one ablation benchmark."""

    env: str = "cartpole"
    """benchmark environment, a key of ENV_SPECS"""
    steps: int = 50_000
    """training environment steps per run"""
    seeds: tuple[int, ...] = (0, 1, 2)
    """training seeds (evaluation environments use seed + 10_000)"""
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

    @property
    def solved_at(self) -> float | None:
        return self.threshold if self.threshold is not None else ENV_SPECS[self.env].threshold

    def model_kwargs(self, variant: str) -> dict[str, Any]:
        """Constructor keywords of ``variant``: Rainbow's preset plus the variant's overrides, or for ``dqn``
        the preset entries SB3's DQN shares (``policy`` included)."""
        from agents.rainbow import PRESETS

        preset = copy.deepcopy({**PRESETS[ENV_SPECS[self.env].preset], **self.overrides})
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
            "hyperparameters": json.loads(json.dumps(self.model_kwargs(variant), sort_keys=True, default=str)),
        }


def _make_eval_callback(eval_env: Any, every: int, episodes: int) -> Any:
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.evaluation import evaluate_policy

    class TimedEvalCallback(BaseCallback):
        """Greedy evaluation every ``every`` steps; its time is kept apart from training time."""

        def __init__(self) -> None:
            super().__init__()
            self.curve: list[tuple[int, float, float, float]] = []
            self.eval_wall = 0.0
            self.eval_cpu = 0.0
            self._next = 0

        def _evaluate(self) -> None:
            wall, cpu = time.perf_counter(), time.process_time()
            returns, lengths = evaluate_policy(
                self.model, eval_env, n_eval_episodes=episodes, deterministic=True, return_episode_rewards=True
            )
            point = (int(self.num_timesteps), float(np.mean(returns)), float(np.std(returns)), float(np.mean(lengths)))
            self.curve.append(point)
            self.eval_wall += time.perf_counter() - wall
            self.eval_cpu += time.process_time() - cpu
            self._next = self.num_timesteps + every

        def _on_training_start(self) -> None:
            self._evaluate()

        def _on_step(self) -> bool:
            if self.num_timesteps >= self._next:
                self._evaluate()
            return True

        def _on_training_end(self) -> None:
            if not self.curve or self.curve[-1][0] != self.num_timesteps:
                self._evaluate()

    return TimedEvalCallback()


def build_model(config: AblationConfig, variant: str, env: Any, seed: int) -> Any:
    """The Rainbow variant (preset + overrides) or the SB3 DQN baseline sharing the preset's settings."""
    from stable_baselines3 import DQN

    from agents.rainbow import Rainbow

    kwargs = config.model_kwargs(variant)
    algo = DQN if variant == "dqn" else Rainbow
    return algo(kwargs.pop("policy"), env, seed=seed, **kwargs)


def run_one(config: AblationConfig, variant: str, seed: int) -> dict[str, Any]:
    """Train and evaluate one (variant, seed); return its record for ``runs.jsonl``."""
    import torch as th
    from stable_baselines3.common.env_util import make_vec_env

    th.set_num_threads(config.threads)
    spec = ENV_SPECS[config.env]
    env = make_vec_env(spec.make, n_envs=1, seed=seed)
    eval_env = make_vec_env(spec.make, n_envs=min(spec.eval_envs, config.eval_episodes), seed=10_000 + seed)
    model = build_model(config, variant, env, seed)
    callback = _make_eval_callback(eval_env, config.eval_every, config.eval_episodes)
    wall, cpu = time.perf_counter(), time.process_time()
    model.learn(config.steps, callback=callback)
    wall = time.perf_counter() - wall - callback.eval_wall
    cpu = time.process_time() - cpu - callback.eval_cpu
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
        "n_parameters": int(sum(p.numel() for p in model.q_net.parameters())),
    }


def _matches(record: dict[str, Any], key: dict[str, Any]) -> bool:
    return all(record.get(name) == value for name, value in key.items())


def _load_runs(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def steps_to_threshold(curve: list[list[float]], threshold: float | None, column: int = 1) -> int | None:
    """First evaluated step whose metric (``column`` of the curve point) reaches ``threshold``.

    ``None``: never, no threshold, or a stored curve without that column.
    """
    if threshold is None:
        return None
    return next((int(point[0]) for point in curve if len(point) > column and point[column] >= threshold), None)


def summarise(config: AblationConfig, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Aggregate runs per variant over seeds, with throughput relative to DQN."""
    threshold = config.solved_at
    column = ENV_SPECS[config.env].column
    rows: dict[str, dict[str, Any]] = {}
    for variant in config.variants:
        mine = sorted((r for r in runs if r["variant"] == variant), key=lambda r: r["seed"])
        if not mine:
            continue
        finals = [r["curve"][-1][1] for r in mine]
        reached = [steps_to_threshold(r["curve"], threshold, column) for r in mine]
        final_metric = [r["curve"][-1][column] if len(r["curve"][-1]) > column else float("nan") for r in mine]
        # A seed that never reaches the threshold counts as the full budget (a lower bound on its true cost).
        censored = [config.steps if s is None else s for s in reached]
        rows[variant] = {
            "seeds": [r["seed"] for r in mine],
            "final_mean": float(np.mean(finals)),
            "final_std": float(np.std(finals)),
            "final_per_seed": finals,
            "best_mean": float(np.mean([max(c[1] for c in r["curve"]) for r in mine])),
            # Runs stored before episode lengths were recorded have 3-element curve points.
            "final_length_mean": _mean_or_none([r["curve"][-1][3] for r in mine if len(r["curve"][-1]) > 3]),
            "steps_to_threshold": reached,
            "steps_to_threshold_mean": float(np.mean(censored)),
            "seeds_reaching_threshold": sum(s is not None for s in reached),
            "seeds_final_above_threshold": sum(threshold is not None and f >= threshold for f in final_metric),
            "steps_per_s_cpu": float(np.mean([r["steps_per_s_cpu"] for r in mine])),
            "steps_per_s_wall": float(np.mean([r["steps_per_s_wall"] for r in mine])),
            "n_parameters": mine[0]["n_parameters"],
        }
    if "dqn" in rows:
        for row in rows.values():
            row["slowdown_vs_dqn_cpu"] = rows["dqn"]["steps_per_s_cpu"] / row["steps_per_s_cpu"]
            row["slowdown_vs_dqn_wall"] = rows["dqn"]["steps_per_s_wall"] / row["steps_per_s_wall"]
    return {
        "config": {**asdict(config), "out": str(config.out), "threshold": threshold,
                   "threshold_metric": ENV_SPECS[config.env].metric},
        "command": _command_line(),
        "machine": _machine(),
        "variants": rows,
    }


def _command_line() -> str:
    """The command that produced a result, as typed (``vantage bench rainbow ...``)."""
    return " ".join(["vantage", *sys.argv[1:]]) if sys.argv else ""


def _mean_or_none(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _machine() -> dict[str, Any]:
    import os

    import stable_baselines3
    import torch as th

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": th.__version__,
        "stable_baselines3": stable_baselines3.__version__,
        "cuda": bool(th.cuda.is_available()),
    }


def format_table(summary: dict[str, Any]) -> str:
    """Markdown table of a :func:`summarise` result."""
    threshold = summary["config"]["threshold"]
    metric = summary["config"].get("threshold_metric", "return")
    thr = "—" if threshold is None else f"{metric} {threshold:g}"
    lines = [
        f"| variant | final return (mean ± sd) | best eval | seeds reaching {thr} | steps to {thr} (per seed) "
        "| final episode length | env steps/s (CPU) | slowdown vs DQN (CPU) | parameters |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in summary["variants"].items():
        steps = ", ".join("never" if s is None else f"{s / 1000:g}k" for s in row["steps_to_threshold"])
        slowdown = row.get("slowdown_vs_dqn_cpu")
        length = "—" if row["final_length_mean"] is None else f"{row['final_length_mean']:.0f}"
        lines.append(
            f"| {name} | {row['final_mean']:.1f} ± {row['final_std']:.1f} | {row['best_mean']:.1f} "
            f"| {row['seeds_reaching_threshold']}/{len(row['seeds'])} | {steps if threshold is not None else '—'} "
            f"| {length} "
            f"| {row['steps_per_s_cpu']:.0f} | {'—' if slowdown is None else f'{slowdown:.2f}x'} "
            f"| {row['n_parameters']} |"
        )
    return "\n".join(lines) + "\n"


def plot_curves(config: AblationConfig, runs: list[dict[str, Any]], path: Path) -> None:
    """Mean evaluation return vs steps per variant, min-max band over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric, column = ENV_SPECS[config.env].metric, ENV_SPECS[config.env].column
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    for variant in config.variants:
        mine = [r for r in runs if r["variant"] == variant and len(r["curve"][0]) > column]
        if not mine:
            continue
        length = min(len(r["curve"]) for r in mine)
        steps = np.array([c[0] for c in mine[0]["curve"][:length]])
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
    fig.savefig(path)
    plt.close(fig)


def run_ablation(config: AblationConfig, progress: bool = True, train: bool = True) -> dict[str, Any]:
    """Run (or reuse) every (variant, seed), then write curves, table and summary; return the summary.

    With ``train=False`` nothing is trained: the outputs summarise the stored runs among ``config.seeds``, so
    variants run with different seed sets (e.g. Rainbow and DQN on 3 seeds, the ablations on 1) share a table.
    """
    folder = config.out / config.env
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "runs.jsonl"
    runs = _load_runs(log)
    done = {json.dumps(config.run_key(r["variant"], r["seed"]), sort_keys=True) for r in runs}
    for variant in config.variants:
        for seed in config.seeds:
            key = config.run_key(variant, seed)
            if not train or json.dumps(key, sort_keys=True) in done:
                continue
            if progress:
                click.echo(f"[{time.strftime('%H:%M:%S')}] {config.env} {variant} seed {seed} ...", err=True)
            record = run_one(config, variant, seed)
            with log.open("a") as handle:
                handle.write(json.dumps(record) + "\n")
            runs.append(record)
            if progress:
                final = record["curve"][-1][1]
                click.echo(
                    f"    final {final:.1f}, {record['steps_per_s_cpu']:.0f} steps/s CPU "
                    f"({record['train_cpu_s']:.0f} s CPU, {record['train_wall_s']:.0f} s wall)",
                    err=True,
                )
    selected = [r for r in runs if r["seed"] in config.seeds and _matches(r, config.run_key(r["variant"], r["seed"]))]
    if not selected:
        raise click.ClickException(f"no stored runs in {log} match these settings; run without --no-train first")
    summary = summarise(config, selected)
    (folder / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (folder / "table.md").write_text(format_table(summary))
    plot_curves(config, selected, folder / "curves.png")
    return summary


def measure_throughput(config: AblationConfig, repeats: int = 3) -> dict[str, Any]:
    """Training throughput (env steps/s, gradient updates included) per variant, after replay warm-up.

    Each model first collects ``learning_starts`` steps untimed, then trains ``config.steps`` more timed steps.
    Variants run round-robin ``repeats`` times and each keeps its best (lowest CPU time) repeat: on a shared
    machine the neighbours' load then falls on every variant alike instead of on whichever ran at a busy moment.
    """
    import torch as th
    from stable_baselines3.common.env_util import make_vec_env

    th.set_num_threads(config.threads)
    spec = ENV_SPECS[config.env]
    best: dict[str, dict[str, Any]] = {}
    for _ in range(repeats):
        for variant in config.variants:
            env = make_vec_env(spec.make, n_envs=1, seed=0)
            model = build_model(config, variant, env, seed=0)
            model.learn(model.learning_starts)
            updates = model._n_updates
            wall, cpu = time.perf_counter(), time.process_time()
            start = model.num_timesteps
            model.learn(config.steps, reset_num_timesteps=False)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            steps = model.num_timesteps - start
            env.close()
            record = {
                "steps": steps,
                "updates": int(model._n_updates - updates),
                "cpu_s": cpu,
                "wall_s": wall,
                "steps_per_s_cpu": steps / cpu,
                "steps_per_s_wall": steps / wall,
                "n_parameters": int(sum(p.numel() for p in model.q_net.parameters())),
            }
            if variant not in best or record["cpu_s"] / steps < best[variant]["cpu_s"] / best[variant]["steps"]:
                best[variant] = record
    if "dqn" in best:
        for row in best.values():
            row["slowdown_vs_dqn_cpu"] = best["dqn"]["steps_per_s_cpu"] / row["steps_per_s_cpu"]
    return {
        "env": config.env,
        "steps": config.steps,
        "repeats": repeats,
        "threads": config.threads,
        "command": _command_line(),
        "machine": _machine(),
        "variants": best,
    }


def format_throughput(result: dict[str, Any]) -> str:
    """Markdown table of a :func:`measure_throughput` result."""
    lines = [
        "| variant | env steps/s (CPU) | updates | slowdown vs DQN (CPU) | parameters |",
        "|---|---|---|---|---|",
    ]
    for name, row in result["variants"].items():
        slowdown = row.get("slowdown_vs_dqn_cpu")
        lines.append(
            f"| {name} | {row['steps_per_s_cpu']:.0f} | {row['updates']} "
            f"| {'—' if slowdown is None else f'{slowdown:.2f}x'} | {row['n_parameters']} |"
        )
    return "\n".join(lines) + "\n"


def _parse_list(text: str, allowed: tuple[str, ...], kind: str) -> tuple[str, ...]:
    from envs.errors import check_choice

    return tuple(check_choice(kind, item.strip(), allowed) for item in text.split(",") if item.strip())


@click.command("rainbow")
@click.option("--env", "env_name", type=click.Choice(list(ENV_SPECS)), default="cartpole", show_default=True)
@click.option("--steps", type=click.IntRange(min=1), default=50_000, show_default=True, help="Steps per run.")
@click.option("--seeds", default="0,1,2", show_default=True, help="Comma-separated training seeds.")
@click.option("--variants", default=",".join(VARIANTS), show_default=True, help="Comma-separated variants.")
@click.option("--eval-every", type=click.IntRange(min=1), default=2_500, show_default=True)
@click.option("--eval-episodes", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--threshold", type=float, default=None, help="Solved return (default: 475 on CartPole).")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True, help="Torch threads.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/bench_rainbow"), show_default=True)
@click.option(
    "--throughput",
    is_flag=True,
    help="Only measure training speed: --steps timed steps after replay warm-up, variants interleaved.",
)
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True, help="Throughput repeats.")
@click.option("--no-train", is_flag=True, help="Train nothing: summarise the runs already stored under --out.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Replace a preset entry (JSON value), e.g. learning_rate=2.5e-4; DQN gets the shared ones.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def rainbow(
    env_name: str,
    steps: int,
    seeds: str,
    variants: str,
    eval_every: int,
    eval_episodes: int,
    threshold: float | None,
    threads: int,
    out: Path,
    throughput: bool,
    repeats: int,
    no_train: bool,
    overrides: tuple[str, ...],
    as_json: bool,
) -> None:
    """Rainbow vs each component removed vs SB3 DQN: return curves (PNG), table, steps-to-threshold, speed."""
    try:
        seed_list = tuple(int(s) for s in seeds.split(",") if s.strip())
    except ValueError as error:
        raise click.BadParameter(f"{seeds!r} must be comma-separated integers", param_hint="--seeds") from error
    import inspect

    from agents.rainbow import Rainbow
    from scripts.options import parse_key_values

    preset_overrides = parse_key_values(overrides, "--set")
    known = set(inspect.signature(Rainbow.__init__).parameters) - {"self", "env"}
    unknown = sorted(set(preset_overrides) - known)
    if unknown:
        raise click.BadParameter(f"unknown Rainbow setting(s) {unknown}; known: {sorted(known)}", param_hint="--set")
    config = AblationConfig(
        env=env_name,
        steps=steps,
        seeds=seed_list,
        variants=_parse_list(variants, tuple(VARIANTS), "variant"),
        eval_every=eval_every,
        eval_episodes=eval_episodes,
        threshold=threshold,
        threads=threads,
        out=out,
        overrides=preset_overrides,
    )
    if throughput:
        result = measure_throughput(config, repeats)
        (out / env_name).mkdir(parents=True, exist_ok=True)
        (out / env_name / "throughput.json").write_text(json.dumps(result, indent=2) + "\n")
        click.echo(json.dumps(result, indent=2) if as_json else format_throughput(result))
        return
    summary = run_ablation(config, progress=not as_json, train=not no_train)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        click.echo(format_table(summary))
        click.echo(f"curves, table and JSON in {out / env_name}")
