"""``vantage deploy``: a bundle driven by frames, with per-stage latency, as it runs on a robot.

:func:`open_deployment` loads and checks a bundle and opens its sessions; :func:`run_stream` feeds it a video,
a camera or a GStreamer pipeline and sends every decision to a sink; :func:`run_sim` closes the loop in the
simulator exactly as a robot would (frames in, decoded actions out; the task's perception models are the
bundle's own, passed to the environment as its perception pipeline) on the episode seeds ``vantage eval``
uses, and summarises the episodes the task's way, so the two can be compared figure for figure.

Only this module's :func:`run_sim` imports Gymnasium and the environments (MuJoCo, and through the shipped
environments torch), and only when it runs; frames from a video or a camera need NumPy, OpenCV and ONNX
Runtime (or TensorRT) alone.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from common.errors import InvalidArgumentError, UnknownNameError
from deploy.bundle import Bundle, check_precision, load_bundle
from deploy.inference import make_session
from deploy.io import FrameSource, Sink, Source, warn
from deploy.latency import LatencyStats
from deploy.policy import ACTION_MODES, FrameError, PolicyRunner

__all__ = ["Deployment", "open_deployment", "run_sim", "run_stream"]


@dataclass
class Deployment:
    """A loaded bundle: the policy, the perception chain (if the task has one) and the latency record."""

    bundle: Bundle
    policy: PolicyRunner
    chain: Any | None
    stats: LatencyStats
    precision: str
    backend: str
    settings: dict[str, Any] = field(default_factory=dict)

    def triggered(self, name: str) -> bool:
        """Whether the perception chain runs after action ``name`` (on the frame the robot sees then)."""
        trigger = (self.bundle.perception or {}).get("trigger", {})
        return self.chain is not None and (bool(trigger.get("every_step")) or name in trigger.get("actions", ()))


def _engine_or_onnx(bundle: Bundle, onnx: Path, backend: str) -> Path:
    if backend == "onnxruntime":
        return onnx
    from deploy.tensorrt import engine_path

    return engine_path(bundle, onnx)


def open_deployment(path: str | Path, *, precision: str | None = None, backend: str = "onnxruntime",
                    threads: int = 1, actions: str | None = None, on_mismatch: str | None = None,
                    record_perception: bool = False, check_hashes: bool = True) -> Deployment:
    """Load a bundle (hashes and schema checked) and open its models.

    Args:
        path: the bundle folder.
        precision: ``fp32``, ``fp16`` or ``int8`` (default: the bundle's).
        backend: ``onnxruntime`` or ``tensorrt`` (engines from ``vantage deploy build``).
        threads: CPU threads per ONNX Runtime session.
        actions: ``argmax`` or ``sample`` (default: how the task's agent is meant to run, from the manifest).
        on_mismatch: ``resize`` or ``reject`` frames of another size (default: the manifest's).
        record_perception: keep the perception models' inputs (calibration at export).
    """
    bundle = load_bundle(path, check_hashes=check_hashes)
    precision = check_precision(bundle, precision)
    mode = actions or bundle.actions.get("default_mode", "argmax")
    if mode not in ACTION_MODES:
        raise UnknownNameError("action mode", mode, ACTION_MODES)
    stats = LatencyStats()
    session = make_session(_engine_or_onnx(bundle, bundle.model_file(bundle.policy, precision), backend), backend,
                           threads)
    policy = PolicyRunner(session, bundle.policy, bundle.actions, mode, on_mismatch)
    chain = None
    if bundle.perception:
        reference = bundle.perception["chain"]
        module, _, attribute = reference.partition(":")
        if not module.startswith("deploy."):
            raise InvalidArgumentError(f"perception chain {reference!r} must be a class of the deploy package")
        sessions = {m["name"]: make_session(_engine_or_onnx(bundle, bundle.model_file(m, precision), backend),
                                            backend, threads) for m in bundle.perception["models"]}
        chain = getattr(importlib.import_module(module), attribute)(sessions, bundle.perception["models"], stats,
                                                                    record=record_perception)
    return Deployment(bundle, policy, chain, stats, precision, backend,
                      {"precision": precision, "backend": backend, "action_mode": mode, "threads": threads})


def _record(frame_index: int, decision: Any, faces: list[Any] | None) -> dict[str, Any]:
    record = {"frame": frame_index, "time": round(time.time(), 4), **decision.record()}
    if faces is not None:
        record["faces"] = [f.record() for f in faces]
    return record


def run_stream(deployment: Deployment, source: Source, sink: Sink, max_frames: int | None = None,
               seed: int = 0) -> dict[str, Any]:
    """Run the bundle on every frame of ``source`` until it ends, ``max_frames``, or Ctrl-C.

    A frame the policy cannot take (another channel count; another size when the bundle rejects those) is
    reported on stderr, counted, and skipped; the stream goes on.

    Returns:
        The summary: frames, rejected frames, how the stream stopped, action counts and latency per stage.
    """
    dep, stats = deployment, deployment.stats
    dep.policy.seed(seed)
    try:
        frames = FrameSource(source)
    except BaseException:
        sink.close()
        raise
    counts: dict[str, int] = {}
    rejected, stopped, index = 0, "end of stream", 0
    try:
        iterator = iter(frames)
        while max_frames is None or index < max_frames:
            start = time.perf_counter()
            with stats.stage("capture"):
                frame = next(iterator, None)
            if frame is None:
                break
            index += 1
            try:
                decision = dep.policy.act(frame, stats)
            except FrameError as exc:
                rejected += 1
                warn(f"frame {index} rejected: {exc}")
                continue
            faces = None
            if dep.triggered(decision.name):
                faces = dep.chain(np.ascontiguousarray(frame))
            with stats.stage("sink"):
                sink(_record(index, decision, faces))
            counts[decision.name] = counts.get(decision.name, 0) + 1
            stats.frame_done(time.perf_counter() - start)
        else:
            stopped = f"max frames ({max_frames})"
    except KeyboardInterrupt:
        stopped = "interrupted (Ctrl-C)"
    finally:
        frames.close()
        sink.close()
    return {"bundle": str(dep.bundle.root), "task": dep.bundle.task["name"], "source": f"{source.kind}:"
            f"{source.target}", "sink": sink.name, **dep.settings, "frames": stats.frames, "rejected_frames": rejected,
            "stopped": stopped, "actions": counts, "latency": stats.summary()}


def run_sim(deployment: Deployment, env_id: str, episodes: int = 20, seed: int = 0, max_steps: int | None = None,
            overrides: Mapping[str, Any] | None = None, sink: Sink | None = None) -> dict[str, Any]:
    """Close the loop in the simulator: ``vantage eval``'s episodes, driven through the bundle.

    The environment is built with the settings the agent was trained with (from the manifest), and, when the task
    has perception, with the bundle's perception chain as its pipeline. Episode seeds are derived from ``seed``
    as ``vantage eval`` derives them (:func:`common.seeding.derive_seeds`, evaluation stream), the step cap is
    the task's evaluation cap, and the task's evaluator summarises the episodes: with argmax actions the
    trajectories are those of ``vantage eval RUN --seed SEED`` (same actions from the same frames).

    Returns:
        ``vantage eval``'s JSON layout (``policy``, the task's summary figures, ``episodes``, ``settings``,
        ``per_episode``) plus ``latency`` (runner stages; ``simulator`` is the environment's own step).
    """
    import gymnasium as gym

    import envs  # noqa: F401  (registers the environments)
    from common.seeding import EVAL_STREAM, derive_seeds
    from envs.specs import task_of_env

    dep, stats = deployment, deployment.stats
    if env_id != dep.bundle.task["env_id"]:
        raise InvalidArgumentError(f"--source sim:{env_id}: the bundle {dep.bundle.root} is an agent of "
                                   f"{dep.bundle.task['env_id']}; use --source sim:{dep.bundle.task['env_id']}")
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise InvalidArgumentError(f"episodes={episodes!r} must be an integer >= 1")
    spec = task_of_env(env_id)
    env_kwargs = {**dep.bundle.task["env_kwargs"], **dict(overrides or {})}
    make_kwargs = dict(env_kwargs)
    if dep.chain is not None:
        make_kwargs[dep.bundle.perception["sim_argument"]] = dep.chain
    env = gym.make(env_id, **make_kwargs)
    evaluator = spec.make_evaluator()
    max_steps = max_steps or spec.eval_max_steps
    records: list[dict[str, Any]] = []
    stopped = "done"
    try:
        for episode_seed in derive_seeds(seed, episodes, EVAL_STREAM):
            dep.policy.seed(episode_seed)
            obs, info = env.reset(seed=episode_seed)
            evaluator.start(info)
            total, steps, done = 0.0, 0, False
            while not done and (max_steps is None or steps < max_steps):
                perception_before = _perception_seconds(stats)
                start = time.perf_counter()
                decision = dep.policy.act(obs, stats)
                acted = time.perf_counter()
                with stats.stage("simulator"):
                    obs, reward, terminated, truncated, info = env.step(decision.action)
                stats.frame_done(acted - start + _perception_seconds(stats) - perception_before)
                steps += 1
                total += float(reward)
                evaluator.step(info)
                done = terminated or truncated
                if sink is not None:
                    faces = dep.chain.last_faces if dep.chain is not None and info.get("recognized") else None
                    sink({"episode": len(records), "step": steps, **decision.record(),
                          **({"faces": [f.record() for f in faces]} if faces is not None else {})})
            records.append({"seed": episode_seed, "steps": steps, "return_": total, **evaluator.finish()})
    except KeyboardInterrupt:
        stopped = "interrupted (Ctrl-C)"
    finally:
        env.close()
        if sink is not None:
            sink.close()
    if not records:
        raise KeyboardInterrupt  # nothing finished: nothing to summarise
    return {"policy": "bundle", **evaluator.summarize(records), "episodes": len(records),
            "settings": {"task": spec.name, "seed": seed, "env_kwargs": env_kwargs,
                         "actions": "sampled" if dep.policy.mode == "sample" else "most likely",
                         "bundle": str(dep.bundle.root), **dep.settings},
            "per_episode": records, "stopped": stopped, "latency": stats.summary()}


def _perception_seconds(stats: LatencyStats) -> float:
    return sum(v for k, v in stats.totals.items() if k.startswith("perception:"))
