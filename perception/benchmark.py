"""Latency and throughput of perception models per runtime, and of the face pipeline on one frame.

What ``vantage bench perception`` measures: for every saved model and every available runtime (torch,
onnxruntime, onnxruntime on the int8 Q/DQ graph when ``model.int8.onnx`` exists, tensorrt when TensorRT + CUDA
and an engine exist) batch-1 latency p50/p95 of the raw network and batch-8 throughput on random inputs of the
model's input specs; then the whole detect + recognise pipeline on a frame. Results are labelled with the
device and the thread count they were measured with (the documented figures use one thread per model: more
threads on a shared machine mostly measure the contention). A ``log`` callable, when given, receives one line
as each measurement starts and ends, so a long run shows where it is. Speed targets live here, not in timed unit
tests.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from perception.export import example_inputs
from perception.learner import load_model
from perception.manifest import INT8_ONNX_FILE
from perception.runtime import tensorrt_available

#: Receives one progress line.
Log = Callable[[str], None]


def device_description() -> str:
    """The CPU (core count, model) and GPU the numbers were measured on."""
    import torch

    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no GPU"
    return f"{os.cpu_count()}-core CPU ({platform.processor() or platform.machine()}){gpu}"


def time_call(fn: Callable[[], Any], iterations: int, warmup: int = 5) -> np.ndarray:
    """Wall time of ``iterations`` calls of ``fn`` in milliseconds, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = np.empty(iterations)
    for i in range(iterations):
        t = time.perf_counter()
        fn()
        times[i] = time.perf_counter() - t
    return times * 1000.0


def _threads(threads: int) -> str:
    return "all cores" if threads == 0 else f"{threads} thread{'s' if threads > 1 else ''}"


def bench_model(model_dir: str | Path, iterations: int, threads: int = 1, log: Log | None = None) -> dict[str, Any]:
    """Latency (ms) and throughput (samples/s) of one saved model on each available runtime.

    Args:
        model_dir: saved model folder.
        iterations: timed batch-1 calls per runtime (a quarter of them, at least 5, for throughput).
        threads: ONNX Runtime intra-op threads (0 = all cores).
        log: receives a progress line before and after each runtime.

    Returns:
        ``{"model", "input" (first input's shape without batch), "inputs" (name -> shape), <runtime>: {"p50_ms",
        "p95_ms", "throughput_per_s"}, ..., "ort_over_torch_latency"}``; ``onnxruntime-int8`` when the model
        has a quantized graph, and ``tensorrt`` (or why it was skipped).
    """
    model_dir = Path(model_dir)
    learner = load_model(model_dir)
    specs = learner.input_specs()
    rng = np.random.default_rng(0)
    x1 = example_inputs(specs, batch=1, rng=rng)
    # Graphs with a fixed batch (user ONNX files) run batch 1 for the throughput figure too.
    x8 = example_inputs(specs, batch=8 if all(s.shape[0] < 0 for s in specs) else 1, rng=rng)
    batch8 = len(next(iter(x8.values())))
    runs: list[tuple[str, str | None]] = [("torch", None)] if learner.net is not None else []
    runs.append(("onnxruntime", None))
    if (model_dir / INT8_ONNX_FILE).is_file():
        runs.append(("onnxruntime", "int8"))
    out: dict[str, Any] = {"model": learner.name, "input": list(specs[0].shape[1:]),
                           "inputs": {s.name: list(s.shape[1:]) for s in specs}}
    ok, reason = tensorrt_available()
    if ok and (model_dir / "model.fp16.engine").is_file():
        runs.append(("tensorrt", None))
    else:
        out["tensorrt"] = f"skipped: {reason or 'no engine; run vantage perception optimize'}"
    for name, precision in runs:
        learner.set_runtime(name, threads=threads, precision=precision)
        if log is not None:
            log(f"{learner.name} on {learner.runtime_name} ({_threads(threads)}, {iterations} iterations) ...")
        lat = time_call(lambda: learner.run_network(x1), iterations)
        thr = time_call(lambda: learner.run_network(x8), max(5, iterations // 4))
        out[learner.runtime_name] = {"p50_ms": float(np.percentile(lat, 50)), "p95_ms": float(np.percentile(lat, 95)),
                                     "throughput_per_s": float(batch8 * 1000.0 / np.median(thr))}
        if log is not None:
            log(f"{learner.name} on {learner.runtime_name}: p50 {out[learner.runtime_name]['p50_ms']:.2f} ms")
    if "torch" in out and "onnxruntime" in out:
        out["ort_over_torch_latency"] = out["onnxruntime"]["p50_ms"] / out["torch"]["p50_ms"]
    return out


def bench_pipeline(detector: str | Path, recognizer: str | Path, frame: np.ndarray, iterations: int,
                   threads: int = 1, log: Log | None = None) -> dict[str, Any]:
    """Detect + recognise on ``frame``: ONNX Runtime latency and FPS, then the same with torch.

    Returns:
        ``{"pipeline": {"runtime", "frame", "faces_found", "identities", "p50_ms", "p95_ms", "fps"},
        "pipeline_torch": {"p50_ms", "fps"}}``.
    """
    from perception.faces.pipeline import FacePipeline

    pipe = FacePipeline.load(detector, recognizer, runtime="onnxruntime", threads=threads)
    if log is not None:
        log(f"pipeline on onnxruntime ({_threads(threads)}, {iterations} iterations) ...")
    faces = pipe(frame)
    lat = time_call(lambda: pipe(frame), iterations)
    result: dict[str, Any] = {"pipeline": {
        "runtime": "onnxruntime", "frame": list(frame.shape), "faces_found": len(faces),
        "identities": [f.identity for f in faces], "p50_ms": float(np.percentile(lat, 50)),
        "p95_ms": float(np.percentile(lat, 95)), "fps": float(1000.0 / np.median(lat))}}
    pipe.set_runtime("torch", threads=threads)
    if log is not None:
        log(f"pipeline on torch ({_threads(threads)}, {max(20, iterations // 2)} iterations) ...")
    lat_t = time_call(lambda: pipe(frame), max(20, iterations // 2))
    result["pipeline_torch"] = {"p50_ms": float(np.percentile(lat_t, 50)), "fps": float(1000.0 / np.median(lat_t))}
    return result


def bench_perception(detector: str | Path, recognizer: str | Path, frame: np.ndarray, iterations: int = 200,
                     threads: int = 1, log: Log | None = None) -> dict[str, Any]:
    """The whole ``vantage bench perception`` result: device, per-model runtimes and the pipeline on ``frame``.

    Args:
        detector: saved detector directory.
        recognizer: saved recogniser directory.
        frame: an RGB ``uint8`` frame with a face (the pipeline's input).
        iterations: timed calls per measurement, >= 1.
        threads: ONNX Runtime and torch CPU threads per model (0 = all cores); the documented figures use 1.
        log: receives progress lines (which measurement runs, its p50).

    Raises:
        InvalidArgumentError: ``iterations`` < 1 or ``threads`` < 0.
        ModelRoleError: ``detector`` / ``recognizer`` do not hold a face detector / recogniser.
    """
    import torch

    from perception.errors import InvalidArgumentError
    from perception.faces.pipeline import FacePipeline

    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise InvalidArgumentError(f"iterations must be an integer >= 1, got {iterations!r}")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
        raise InvalidArgumentError(f"threads must be an integer >= 0 (0 = all cores), got {threads!r}")
    FacePipeline.check_folders(detector, recognizer)  # before minutes of timing the first model
    if threads > 0:
        torch.set_num_threads(threads)
    result: dict[str, Any] = {"device": device_description(), "threads": threads,
                              "torch_threads": torch.get_num_threads(),
                              "models": [bench_model(detector, iterations, threads, log),
                                         bench_model(recognizer, iterations, threads, log)]}
    result.update(bench_pipeline(detector, recognizer, frame, iterations, threads, log))
    return result


def summary_lines(result: dict[str, Any]) -> list[str]:
    """Human-readable lines of a :func:`bench_perception` result."""
    lines = [f"device: {result['device']}"]
    if "threads" in result:
        lines.append(f"threads: {_threads(result['threads'])} per model (torch: {result.get('torch_threads')})")
    for m in result["models"]:
        for rt, r in m.items():
            if isinstance(r, dict) and "p50_ms" in r:
                lines.append(f"{m['model']:>16} {rt:>16}: p50 {r['p50_ms']:.2f} ms  p95 {r['p95_ms']:.2f} ms  "
                             f"{r['throughput_per_s']:.0f}/s")
        if "ort_over_torch_latency" in m:
            lines.append(f"{m['model']:>16} ORT/torch latency ratio: {m['ort_over_torch_latency']:.2f}")
    p = result["pipeline"]
    lines.append(f"pipeline (onnxruntime, {p['frame'][1]}x{p['frame'][0]}): {p['fps']:.1f} FPS, "
                 f"p50 {p['p50_ms']:.2f} ms, faces {p['faces_found']}")
    return lines
