"""``vantage bench fusion``: insertion success under sensor failures, per policy and condition.

Policies: ``latent_ppo`` (PPO on the frozen fusion encoder, with run-time compensation and detection),
``end_to_end_ppo`` (the same network trained by PPO alone), ``scripted`` (depth localisation, force-guided
spiral search). Conditions:

* ``all``: every sensor works;
* ``missing:<m>``: modality ``m`` reads zeros on every step, the policy compensating (masking it out);
  ``missing:<m>:no_compensation``: the zeros go into the encoder as if they were readings;
* ``<corruption>:<m>`` for ``noise`` (every step), ``frozen`` (every step: the episode's first reading) and
  ``dropout`` (bursts of 5 zero readings starting with probability 0.2): detection on;
  ``<corruption>:<m>:no_detection``: detection off.

The scripted controller has no encoder: its ``:no_compensation`` / ``:no_detection`` cells are the same
episodes as the plain ones and are reported as such (``same_as``); so are the end-to-end policy's
``:no_detection`` cells (it has no detector).

JSON (``fusion.json``)::

    {"success_rate": {policy: {condition: rate}}, "time_to_insert": {policy: {condition: mean steps}},
     "detection": {"<corruption>:<m>": {"tpr": .., "fpr": ..}}, "latency_ms": {...}, "episodes": N, ...}

Detection rates are per step, measured with the fusion encoder run beside the scripted controller (its
episodes are the encoder's training distribution): true positives among the steps where the environment
corrupted ``m`` (``info["corrupted"]``; flagged, or found missing for zero readings), false positives among the
steps of the ``all`` condition. The same rates inside the latent policy's own episodes are
``detection_latent_ppo_closed_loop``.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

import envs  # noqa: F401  (registers the environments)
from agents.fusion_policies import DEFAULT_ENCODER, set_fusion_switches
from agents.fusion_scripted import ScriptedInsertion
from common.io import atomic_write_json, atomic_write_text, prepare_output
from common.seeding import EVAL_STREAM, derive_seeds
from envs.errors import InvalidArgumentError
from envs.tasks.peg_insertion import CORRUPTIONS, FUSION_MODALITIES
from perception.learner import load_model

__all__ = ["FUSION_FILES", "POLICIES", "conditions", "run_fusion_benchmark"]

POLICIES = ("latent_ppo", "end_to_end_ppo", "scripted")
FUSION_FILES = ("fusion.json", "fusion.md", "fusion.png", "fusion_insertion.mp4")
_RATES = {"noise": 1.0, "frozen": 1.0, "dropout": 0.2}


def conditions(modalities: Sequence[str] = FUSION_MODALITIES) -> dict[str, tuple[dict[str, Any], bool, bool]]:
    """Condition name -> (environment failures, compensation on, detection on)."""
    out: dict[str, tuple[dict[str, Any], bool, bool]] = {"all": ({}, True, True)}
    for m in modalities:
        out[f"missing:{m}"] = ({m: {"kind": "missing"}}, True, True)
        out[f"missing:{m}:no_compensation"] = ({m: {"kind": "missing"}}, False, True)
    for c in CORRUPTIONS:
        for m in modalities:
            out[f"{c}:{m}"] = ({m: {"kind": c, "rate": _RATES[c]}}, True, True)
            out[f"{c}:{m}:no_detection"] = ({m: {"kind": c, "rate": _RATES[c]}}, True, False)
    return out


def _same_as(policy: str, condition: str) -> str | None:
    """The condition whose episodes this cell repeats exactly (the switch does not exist for the policy)."""
    base, _, switch = condition.rpartition(":")
    if switch == "no_compensation" and policy == "scripted":
        return base
    if switch == "no_detection" and policy in ("scripted", "end_to_end_ppo"):
        return base
    return None


def _episode(policy: Any, env: gym.Env, seed: int, extractor: Any, frames: list | None = None,
             detector: Any = None) -> tuple[bool, int | None, list[tuple[list[str], np.ndarray | None]], list[float]]:
    """One episode; per step, the modalities the environment corrupted and those the encoder flagged or found
    missing: the policy's own extractor's, or, with ``detector``, a fusion encoder run beside the policy."""
    obs, info = env.reset(seed=seed)
    if hasattr(policy, "reset"):
        policy.reset()
    records, forces, steps = [], [float(info["force"])], 0
    if frames is not None:
        frames.append(env.render())
    while True:
        action, _ = policy.predict(obs, deterministic=True)
        if detector is not None:
            out = detector.encode({m: np.asarray(obs[m])[None] for m in detector.modalities})
            flags = out["flagged"][0] | out["missing"][0]
        elif extractor is not None and extractor.last_flags is not None:
            flags = (extractor.last_flags[0] | extractor.last_missing[0]).numpy().copy()
        else:
            flags = None
        records.append((list(info["corrupted"]), flags))
        obs, _, terminated, truncated, info = env.step(action)
        steps += 1
        forces.append(float(info["force"]))
        if frames is not None:
            frames.append(env.render())
        if terminated or truncated:
            return bool(info["success"]), (steps if info["success"] else None), records, forces


def _env_kwargs(policy: str, runs: Mapping[str, Path]) -> dict[str, Any]:
    """The environment settings a learned policy was trained with (the scripted one takes the defaults)."""
    if policy == "scripted":
        return {}
    from agents.training import load_config

    return {k: v for k, v in load_config(Path(runs[policy])).env_kwargs.items() if k != "failures"}


def _load_policy(name: str, runs: Mapping[str, Path], env: gym.Env) -> tuple[Any, Any]:
    if name == "scripted":
        return ScriptedInsertion(env), None
    from agents.training import load_agent

    _, model = load_agent(Path(runs[name]))
    return model, model.policy.features_extractor


def run_fusion_benchmark(out: str | Path, runs: Mapping[str, str | Path], episodes: int = 200, seed: int = 0,
                         policies: Sequence[str] = POLICIES, only: Sequence[str] | None = None,
                         overwrite: bool = False, video: bool = True, progress: bool = True,
                         encoder: str | Path | None = DEFAULT_ENCODER) -> dict[str, Any]:
    """Evaluate every policy under every condition on the same seeded episodes; write JSON, table, plot, video.

    Args:
        out: results folder.
        runs: ``latent_ppo`` / ``end_to_end_ppo`` -> training run folder (``vantage train fusion``).
        episodes: episodes per policy and condition.
        seed: seed of the episode seeds (the evaluation stream of :func:`common.seeding.derive_seeds`).
        policies: which policies to run.
        only: run only these conditions (default: all of :func:`conditions`).
        encoder: the fusion encoder whose detection is measured beside the scripted controller (its episodes
            are the encoder's training distribution; a learned policy that wanders outside it is measured too,
            as ``detection_latent_ppo_closed_loop``); ``None``: not measured.

    Raises:
        InvalidArgumentError: an unknown policy or condition, a learned policy without its run, ``episodes < 1``.
        OutputExistsError: ``out`` holds results and ``overwrite`` is false.
    """
    table = conditions()
    for policy in policies:
        if policy not in POLICIES:
            raise InvalidArgumentError(f"unknown policy {policy!r}; policies: {', '.join(POLICIES)}")
        if policy != "scripted" and policy not in runs:
            raise InvalidArgumentError(f"policy {policy} needs its training run (--run {policy}=RUN_DIR)")
    chosen = list(only) if only else list(table)
    for name in chosen:
        if name not in table:
            raise InvalidArgumentError(f"unknown condition {name!r}; conditions: {', '.join(table)}")
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise InvalidArgumentError(f"episodes={episodes!r} must be an integer >= 1")
    folder = prepare_output(out, FUSION_FILES, overwrite=overwrite)
    seeds = derive_seeds(seed, episodes, EVAL_STREAM)
    success: dict[str, dict[str, float]] = {p: {} for p in policies}
    timing: dict[str, dict[str, float | None]] = {p: {} for p in policies}
    same: dict[str, dict[str, str]] = {p: {} for p in policies}
    hits: dict[str, list[int]] = {}
    clean_flags = {m: [0, 0] for m in FUSION_MODALITIES}
    loop_hits: dict[str, list[int]] = {}
    loop_clean = {m: [0, 0] for m in FUSION_MODALITIES}
    detector = None
    if "scripted" in policies and encoder is not None:
        detector = load_model(encoder)
        detector.set_runtime("torch")
    latency: dict[str, float] = {}
    traces: dict[str, Any] = {}
    started = time.perf_counter()
    for policy in policies:
        for name in chosen:
            failures, compensate, detect = table[name]
            alias = _same_as(policy, name)
            if alias is not None and alias in success[policy]:
                success[policy][name], timing[policy][name] = success[policy][alias], timing[policy][alias]
                same[policy][name] = alias
                continue
            env = gym.make("vantage/PegInsertion-v0", **_env_kwargs(policy, runs), failures=failures,
                           render_mode="rgb_array" if video and name == "all" else None)
            model, extractor = _load_policy(policy, runs, env)
            if extractor is not None:
                set_fusion_switches(model.policy, compensate=compensate, detect=detect)
            wins, times, seconds, steps = [], [], 0.0, 0
            for i, episode_seed in enumerate(seeds):
                frames = [] if video and name == "all" and i == 0 and policy == policies[0] else None
                t0 = time.perf_counter()
                ok, when, records, forces = _episode(model, env, int(episode_seed), extractor, frames,
                                                     detector if policy == "scripted" else None)
                seconds += time.perf_counter() - t0
                steps += len(records)
                wins.append(ok)
                if when is not None:
                    times.append(when)
                if frames is not None:
                    traces["frames"], traces["forces"], traces["policy"] = frames, forces, policy
                if policy == "scripted" and detector is not None:
                    _count(name, records, hits, clean_flags)
                elif policy == "latent_ppo" and extractor is not None:
                    _count(name, records, loop_hits, loop_clean)
            env.close()
            success[policy][name] = float(np.mean(wins))
            timing[policy][name] = float(np.mean(times)) if times else None
            if name == "all":
                latency[f"{policy}_step_ms"] = 1000 * seconds / max(steps, 1)
            if progress:
                print(f"{policy:15s} {name:28s} success {100 * success[policy][name]:5.1f} %", flush=True)
    detection, closed_loop = _rates(hits, clean_flags), _rates(loop_hits, loop_clean)
    if "latent_ppo" in policies:
        latency.update(_latency(runs["latent_ppo"]))
    result = {"success_rate": success, "time_to_insert": timing, "same_as": same, "detection": detection,
              "detection_source": "the encoder run beside the scripted controller's episodes" if detection else None,
              "detection_latent_ppo_closed_loop": closed_loop,
              "latency_ms": latency, "episodes": episodes, "seed": seed, "conditions": chosen,
              "runs": {k: str(v) for k, v in runs.items()}, "seconds": round(time.perf_counter() - started, 1)}
    atomic_write_json(folder / "fusion.json", result)
    atomic_write_text(folder / "fusion.md", format_table(result))
    _plot(result, folder / "fusion.png")
    if traces:
        _video(traces, folder / "fusion_insertion.mp4")
    return result


def _rates(hits: Mapping[str, list[int]], clean: Mapping[str, list[int]]) -> dict[str, dict[str, Any]]:
    out = {}
    for key, (tp, n) in hits.items():
        fp, steps = clean[key.split(":")[1]]
        out[key] = {"tpr": tp / n if n else None, "fpr": fp / steps if steps else None, "corrupted_steps": n,
                    "clean_steps": steps}
    return out


def _count(name: str, records: list, hits: dict[str, list[int]], clean: dict[str, list[int]]) -> None:
    base = name.split(":")
    for corrupted, flags in records:
        if flags is None:
            continue
        if name == "all":
            for i, m in enumerate(FUSION_MODALITIES):
                clean[m][0] += int(flags[i])
                clean[m][1] += 1
        elif len(base) == 2 and base[0] in CORRUPTIONS and base[1] in corrupted:
            i = FUSION_MODALITIES.index(base[1])
            tally = hits.setdefault(name, [0, 0])
            tally[0] += int(flags[i])
            tally[1] += 1


def _latency(run: str | Path) -> dict[str, float]:
    """Median milliseconds of one encoder pass and one policy step (batch 1, this machine)."""
    import torch

    from agents.training import load_agent

    config, model = load_agent(Path(run))
    env = gym.make("vantage/PegInsertion-v0", **{k: v for k, v in config.env_kwargs.items() if k != "failures"})
    obs, _ = env.reset(seed=0)
    env.close()
    tensors, _ = model.policy.obs_to_tensor(obs)
    extractor = model.policy.features_extractor
    encoder, step = [], []
    with torch.no_grad():
        for _ in range(50):
            t0 = time.perf_counter()
            extractor(tensors)
            t1 = time.perf_counter()
            model.predict(obs, deterministic=True)
            step.append(time.perf_counter() - t1)
            encoder.append(t1 - t0)
    return {"encoder_ms": 1000 * float(np.median(encoder)), "policy_ms": 1000 * float(np.median(step)),
            "torch_threads": torch.get_num_threads()}


def format_table(result: Mapping[str, Any]) -> str:
    """Markdown: success (%) per condition (rows) and policy (columns), then detection rates."""
    policies = list(result["success_rate"])
    lines = [f"Success rate over {result['episodes']} seeded episodes per cell (mean time to insert, steps).", "",
             "| condition | " + " | ".join(policies) + " |", "|---|" + "---|" * len(policies)]
    for name in result["conditions"]:
        cells = []
        for p in policies:
            rate, t = result["success_rate"][p].get(name), result["time_to_insert"][p].get(name)
            mark = " (=)" if name in result["same_as"].get(p, {}) else ""
            cells.append("-" if rate is None else f"{100 * rate:.0f} %" + (f" ({t:.0f})" if t else "") + mark)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if result["detection"]:
        lines += ["", "| corruption | TPR | FPR |", "|---|---|---|"]
        for key, d in result["detection"].items():
            tpr = "-" if d["tpr"] is None else f"{100 * d['tpr']:.1f} %"
            fpr = "-" if d["fpr"] is None else f"{100 * d['fpr']:.1f} %"
            lines.append(f"| {key} | {tpr} | {fpr} |")
    if result["latency_ms"]:
        lines += ["", "Latency (ms): " + ", ".join(f"{k} {v:.2f}" for k, v in result["latency_ms"].items()
                                                  if isinstance(v, float))]
    return "\n".join(lines) + "\n"


def _plot(result: Mapping[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in result["conditions"] if not n.endswith(("no_compensation", "no_detection"))]
    policies = list(result["success_rate"])
    fig, ax = plt.subplots(figsize=(max(8, 0.5 * len(names) * len(policies)), 4))
    width = 0.8 / len(policies)
    for k, p in enumerate(policies):
        values = [100 * (result["success_rate"][p].get(n) or 0) for n in names]
        ax.bar(np.arange(len(names)) + k * width, values, width, label=p)
    ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2, names, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("success (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _video(traces: Mapping[str, Any], path: Path) -> None:
    """The overview and agent cameras with the force trace drawn beside them."""
    import cv2

    from agents.media import write_video

    frames, forces = traces["frames"], traces["forces"]
    height = frames[0].shape[0]
    top = max(max(forces), 1.0)
    out = []
    for i, frame in enumerate(frames):
        panel = np.full((height, 200, 3), 255, np.uint8)
        points = [(int(5 + 190 * j / max(len(forces) - 1, 1)), int(height - 10 - (height - 30) * f / top))
                  for j, f in enumerate(forces[:i + 1])]
        for a, b in itertools.pairwise(points):
            cv2.line(panel, a, b, (200, 30, 30), 1)
        cv2.putText(panel, f"force {forces[i]:.1f} N", (5, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
        out.append(np.concatenate([frame, panel], 1))
    write_video(path, out, fps=20)


def read_runs(pairs: Sequence[str]) -> dict[str, Path]:
    """``["latent_ppo=runs/x", ...]`` -> ``{"latent_ppo": Path("runs/x")}``."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in POLICIES[:2]:
            raise InvalidArgumentError(f"--run {pair!r} must be POLICY=RUN_DIR with POLICY one of {POLICIES[:2]}")
        out[key] = Path(value)
    return out


def summary_line(result: Mapping[str, Any]) -> str:
    """One line per policy: success with every sensor."""
    return json.dumps({p: r.get("all") for p, r in result["success_rate"].items()})
