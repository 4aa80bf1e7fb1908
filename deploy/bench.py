"""``vantage bench deploy``: how fast a bundle's policy and runner are on this machine.

Policy: inferences per second at batch 1 on one ONNX Runtime thread (the frame's preprocessing inside the
graph included), for every precision the bundle holds, on observations of the bundle's own input shapes (the
first calibration frame where there is one, else a fixed random frame: timing does not depend on the values).
Closed loop (``episodes > 0``): the runner's FPS in the simulator (policy, decode and the perception models on
the frames that need them; the simulator's own step excluded), with the task's figures beside it.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from deploy.bundle import load_bundle
from deploy.inference import OnnxSession

__all__ = ["bench_bundle"]


def _example(bundle: Any) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    feeds = {}
    for spec in bundle.policy["inputs"]:
        shape = [1, *spec["shape"][1:]]
        if spec["dtype"] == "uint8":
            feeds[spec["name"]] = rng.integers(0, 256, shape, dtype=np.uint8)
        elif spec["dtype"] == "int64":
            feeds[spec["name"]] = np.zeros(shape, np.int64)
        else:
            feeds[spec["name"]] = rng.standard_normal(shape).astype(np.float32)
    return feeds


def _time(session: Any, feeds: dict[str, np.ndarray], iterations: int) -> dict[str, float]:
    for _ in range(50):
        session.run(feeds)
    times = np.empty(iterations)
    for i in range(iterations):
        start = time.perf_counter()
        session.run(feeds)
        times[i] = time.perf_counter() - start
    return {"inferences_per_s": round(float(iterations / times.sum()), 1),
            "p50_ms": round(float(np.median(times) * 1e3), 4),
            "p95_ms": round(float(np.percentile(times, 95) * 1e3), 4)}


def bench_bundle(path: str | Path, iterations: int = 2000, episodes: int = 0, seed: int = 1,
                 tensorrt: bool = False, log: Callable[[str], None] = lambda line: None) -> dict[str, Any]:
    """Timings of one bundle (see the module doc); ``tensorrt`` also times the engines ``vantage deploy build``
    made on this device, beside ONNX Runtime on the same inputs (CUDA provider where installed)."""
    bundle = load_bundle(path)
    feeds = _example(bundle)
    result: dict[str, Any] = {"bundle": str(path), "task": bundle.task["name"], "iterations": iterations,
                              "machine": f"{platform.machine()}, {os.cpu_count()} logical CPUs, one ONNX Runtime "
                                         f"thread", "policy": {}}
    for precision in bundle.policy["files"]:
        onnx = bundle.model_file(bundle.policy, precision)
        result["policy"][precision] = _time(OnnxSession(onnx, threads=1), feeds, iterations)
        log(f"bench deploy: {path} policy {precision}: {result['policy'][precision]}")
        if tensorrt:
            from deploy.inference import TensorRTSession
            from deploy.tensorrt import engine_path

            result.setdefault("tensorrt", {})[precision] = _time(TensorRTSession(engine_path(bundle, onnx)), feeds,
                                                                 iterations)
            log(f"bench deploy: {path} TensorRT {precision}: {result['tensorrt'][precision]}")
    if episodes:
        from deploy.runner import open_deployment, run_sim

        deployment = open_deployment(path)
        run = run_sim(deployment, bundle.task["env_id"], episodes, seed)
        figures = {k: v for k, v in run.items() if isinstance(v, float | int) and not isinstance(v, bool)}
        result["closed_loop"] = {"episodes": run["episodes"], "runner_fps": run["latency"]["fps"],
                                 "action_mode": deployment.policy.mode, "figures": figures,
                                 "latency": run["latency"]}
        log(f"bench deploy: {path} closed loop: {result['closed_loop']['runner_fps']} FPS")
    return result
