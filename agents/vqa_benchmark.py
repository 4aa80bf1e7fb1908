"""``vantage bench active-vs-static vqa``: camera policies x answer rules, overall and on the far-small split.

Every policy answers the same held-out questions (a seeded sample of a CLEVR-format folder's questions, the
same indices for every policy). For each it records the four answer rules of the task (``last``,
``most_confident``, ``average`` — the paper's method — and ``oracle_frame``), plus the *oracle crop* (the VQA
model on one view of a ground-truth window around the question's referred objects: the upper bound of looking
in the right place). JSON shape: ``accuracy[policy][answer_rule][split]`` with splits ``all`` and
``far_small``; ``per_family[policy][family]`` (average rule); ``speed`` (VQA model alone, calls/s; whole
pipeline, environment steps/s, one thread); ``targets`` (the issue's comparisons, computed, with met/not met).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from common.errors import InvalidArgumentError
from common.io import atomic_path, atomic_write_json, atomic_write_text, prepare_output
from common.seeding import derive_seeds
from envs.tasks.vqa_camera import ANSWER_RULES

__all__ = ["BASELINES", "FILES", "VQABenchConfig", "format_tables", "run_vqa_benchmark"]

BASELINES = ("whole_image", "random", "rule")
AGENTS = ("rainbow", "ppo")
FILES = ("vqa_bench.json", "vqa_bench.md", "vqa_examples.png")
SPLITS = ("all", "far_small")


@dataclass
class VQABenchConfig:
    """What the benchmark runs (see ``vantage bench active-vs-static vqa --help``)."""

    dataset: Path
    out: Path
    episodes: int = 2000
    seed: int = 0
    policies: tuple[str, ...] = BASELINES
    agents: Mapping[str, Path] = field(default_factory=dict)
    vqa_dir: Path | None = None
    moves: str = "coarse"
    speed_steps: int = 2000
    threads: int = 1
    overwrite: bool = False

    def check(self) -> None:
        for name in self.policies:
            if name not in BASELINES:
                raise InvalidArgumentError(f"policy {name!r} is not a baseline; choose from {', '.join(BASELINES)} "
                                           f"(agents come with --rainbow / --ppo RUN_DIR)")
        for name, run in self.agents.items():
            if name not in AGENTS:
                raise InvalidArgumentError(f"agent {name!r} must be one of {', '.join(AGENTS)}")
            if not (Path(run) / "config.json").is_file():
                raise InvalidArgumentError(f"--{name} {run} is not a training run (no config.json)")
        if self.episodes < 1:
            raise InvalidArgumentError(f"--episodes {self.episodes} must be >= 1")


def _make_env(config: VQABenchConfig, vqa: Any) -> Any:
    from envs.tasks.vqa_camera import VQACameraEnv

    return VQACameraEnv(vqa=vqa, dataset=str(config.dataset), moves=config.moves)


def _policy(name: str, config: VQABenchConfig, env: Any) -> Callable[[Any], int]:
    if name in BASELINES:
        from envs.specs import get_task

        baseline = get_task("vqa").make_baseline(name, env)
        return lambda obs, start: int(baseline.predict(obs, episode_start=np.array([start]))[0])
    from agents.training import load_agent

    _, model = load_agent(Path(config.agents[name]))
    return lambda obs, start: int(model.predict(obs, deterministic=True)[0])


def _episode(env: Any, act: Callable[[Any, bool], int], index: int, seed: int) -> tuple[dict[str, Any], list]:
    obs, info = env.reset(seed=seed, options={"index": index})
    views, start, done = [obs["view"]], True, False
    while not done:
        obs, _, done, _, info = env.step(act(obs, start))
        start = False
        views.append(obs["view"])
    return info, views


def _accuracy(records: list[Mapping[str, Any]], key: str) -> dict[str, float | None]:
    far = [r for r in records if r["far_small"]]
    return {"all": round(float(np.mean([r[key] for r in records])), 4),
            "far_small": round(float(np.mean([r[key] for r in far])), 4) if far else None}


def run_vqa_benchmark(config: VQABenchConfig, progress: bool = True) -> dict[str, Any]:
    """Run every policy on the held-out episodes; write the JSON, the tables and the figure; return the summary."""
    import torch

    from envs.registration import DEFAULT_VQA
    from perception.learner import load_model
    from perception.vqa import VQALearner  # noqa: F401  (registers the model name)

    config.check()
    prepare_output(config.out, FILES, overwrite=config.overwrite)
    torch.set_num_threads(config.threads)
    vqa = load_model(config.vqa_dir or DEFAULT_VQA)
    env = _make_env(config, vqa)
    n = len(env.folder)
    if config.episodes > n:
        raise InvalidArgumentError(f"--episodes {config.episodes} is more than the {n} questions in {config.dataset}")
    indices = [int(i) for i in np.random.default_rng(config.seed).permutation(n)[: config.episodes]]
    seeds = derive_seeds(config.seed, config.episodes)
    policies = [*config.policies, *config.agents]
    accuracy: dict[str, Any] = {}
    per_family: dict[str, dict[str, float]] = {}
    examples: dict[str, list] = {}
    records_by: dict[str, list[dict[str, Any]]] = {}
    for name in policies:
        act = _policy(name, config, env)
        records: list[dict[str, Any]] = []
        start = time.time()
        for k, (index, seed) in enumerate(zip(indices, seeds)):
            info, views = _episode(env, act, index, seed)
            records.append({"far_small": info["far_small"], "family": info["family"],
                            **{r: info[f"correct_{r}"] for r in ANSWER_RULES}})
            if len(examples.get(name, [])) < 4 and info["far_small"]:
                examples.setdefault(name, []).append((info, views))
            if progress and (k + 1) % 500 == 0:
                print(f"{name}: {k + 1}/{config.episodes} episodes ({time.time() - start:.0f} s)", flush=True)
        records_by[name] = records
        accuracy[name] = {r: _accuracy(records, r) for r in ANSWER_RULES}
    # The oracle crop: one view of the ground-truth window around the referred objects.
    oracle: list[dict[str, Any]] = []
    for index, seed in zip(indices, seeds):
        _, info = env.reset(seed=seed, options={"index": index})
        view = env.view_of(info["oracle_window"])
        tokens, _ = vqa.tokenize(info["question"])
        answer = vqa.answers[int(np.argmax(vqa(view[None], [tokens])[0]))]
        ok = answer in info["answers"]
        oracle.append({"far_small": info["far_small"], "family": info["family"], **{r: ok for r in ANSWER_RULES}})
    records_by["oracle_crop"] = oracle
    accuracy["oracle_crop"] = {r: _accuracy(oracle, r) for r in ANSWER_RULES}
    for name, records in records_by.items():
        families = sorted({r["family"] for r in records})
        per_family[name] = {f: round(float(np.mean([r["average"] for r in records if r["family"] == f])), 4)
                            for f in families}
    summary = {"accuracy": accuracy, "per_family": per_family, "speed": _speed(config, vqa, env),
               "episodes": config.episodes, "far_small_episodes": int(sum(r["far_small"] for r in oracle)),
               "seed": config.seed, "dataset": str(config.dataset), "moves": config.moves,
               "vqa_model": str(config.vqa_dir or DEFAULT_VQA), "agents": {k: str(v) for k, v in config.agents.items()},
               "targets": _targets(accuracy)}
    env.close()
    tables = format_tables(summary)
    atomic_write_json(config.out / FILES[0], summary)
    atomic_write_text(config.out / FILES[1], tables + "\n")
    _figure(examples, config.out / FILES[2], policies)
    summary["tables"] = tables
    return summary


def _speed(config: VQABenchConfig, vqa: Any, env: Any) -> dict[str, float]:
    if config.speed_steps == 0:
        return {}
    rng = np.random.default_rng(config.seed)
    obs, info = env.reset(seed=0)
    tokens, _ = vqa.tokenize(info["question"])
    view = obs["view"][None]
    calls = max(200, config.speed_steps // 2)
    start = time.perf_counter()
    for _ in range(calls):
        vqa(view, [tokens])
    vqa_rate = calls / (time.perf_counter() - start)
    steps, start = 0, time.perf_counter()
    while steps < config.speed_steps:
        _, _, done, _, _ = env.step(int(rng.integers(7)))
        steps += 1
        if done:
            env.reset()
    env_rate = steps / (time.perf_counter() - start)
    return {"vqa_calls_per_s": round(vqa_rate, 1), "env_steps_per_s": round(env_rate, 1),
            "threads": config.threads, "note": "env steps include resets (PNG decode of a 1024x1024 image per "
                                               "episode) and one VQA call per step"}


def _targets(accuracy: Mapping[str, Any]) -> dict[str, Any]:
    whole = accuracy["whole_image"]["average"] if "whole_image" in accuracy else None
    oracle = accuracy["oracle_crop"]["average"]
    out: dict[str, Any] = {}
    if whole is None:
        return out
    headroom = oracle["far_small"] - whole["far_small"] if whole["far_small"] is not None else None
    out["headroom_far_small_points"] = None if headroom is None else round(100 * headroom, 1)
    out["headroom_met"] = headroom is not None and headroom >= 0.25
    for name in ("rainbow", "ppo", "rule", "random"):
        if name not in accuracy:
            continue
        mine = accuracy[name]["average"]
        gain_far = None if mine["far_small"] is None else mine["far_small"] - whole["far_small"]
        gain_all = mine["all"] - whole["all"]
        closed = gain_far / headroom if gain_far is not None and headroom else None
        out[name] = {"gain_all_points": round(100 * gain_all, 1),
                     "gain_far_small_points": None if gain_far is None else round(100 * gain_far, 1),
                     "gap_closed_far_small": None if closed is None else round(closed, 3),
                     "met_far_small_15": gain_far is not None and gain_far >= 0.15,
                     "met_all_5": gain_all >= 0.05, "met_gap_50": closed is not None and closed >= 0.5}
    return out


def format_tables(summary: Mapping[str, Any]) -> str:
    """Markdown: accuracy per policy x rule x split, then per question family (average rule), then speed."""
    lines = [f"VQA active vs static, {summary['episodes']} held-out episodes ({summary['far_small_episodes']} "
             f"far-small), accuracy %", "",
             "| policy | " + " | ".join(f"{r} (all / far-small)" for r in ANSWER_RULES) + " |",
             "|---|" + "---|" * len(ANSWER_RULES)]
    for name, rules in summary["accuracy"].items():
        cells = []
        for r in ANSWER_RULES:
            far = rules[r]["far_small"]
            cells.append(f"{100 * rules[r]['all']:.1f} / {'-' if far is None else f'{100 * far:.1f}'}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    families = sorted({f for fam in summary["per_family"].values() for f in fam})
    lines += ["", "| policy | " + " | ".join(families) + " |", "|---|" + "---|" * len(families)]
    for name, fam in summary["per_family"].items():
        lines.append(f"| {name} | " + " | ".join(f"{100 * fam.get(f, float('nan')):.1f}" for f in families) + " |")
    speed = summary.get("speed") or {}
    if speed:
        lines += ["", f"VQA model alone: {speed['vqa_calls_per_s']} calls/s; environment with the VQA model in the "
                      f"loop: {speed['env_steps_per_s']} steps/s ({speed['threads']} thread)"]
    return "\n".join(lines)


def _figure(examples: Mapping[str, list], path: Path, policies: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    name = next((p for p in ("rainbow", "ppo", "rule", "random") if examples.get(p)), None)
    rows = examples.get(name, []) if name else []
    fig, axes = plt.subplots(max(1, len(rows)), 6, figsize=(12, 2.4 * max(1, len(rows))), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for row, (info, views) in enumerate(rows):
        for col, view in enumerate(views[:6]):
            axes[row, col].imshow(view)
        axes[row, 0].set_title(f"{name}: {info['question']}", loc="left", fontsize=8)
        axes[row, 5].set_title(f"true {info['answers'][0]}; last {info['answer_last']}, conf "
                               f"{info['answer_most_confident']}, avg {info['answer_average']}", fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80)
    plt.close(fig)
