"""``vantage bench perception``: latency and throughput of each perception model per runtime, and the pipeline.

For every model (shipped detector and recogniser by default) and every available runtime (torch,
onnxruntime, tensorrt when TensorRT + CUDA exist): batch-1 latency p50/p95 of the raw network, batch-8
throughput, and the ONNX Runtime / torch latency ratio; then the whole pipeline (detect + recognise) on a
320 x 240 simulator frame with ONNX Runtime. Results are labelled with the device they were measured on.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import click
import numpy as np

MODELS_DIR = Path(__file__).resolve().parents[1] / "assets" / "models"


def _device() -> str:
    import torch

    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no GPU"
    return f"{os.cpu_count()}-core CPU ({platform.processor() or platform.machine()}){gpu}"


def _time(fn, iterations: int, warmup: int = 5) -> np.ndarray:
    for _ in range(warmup):
        fn()
    times = np.empty(iterations)
    for i in range(iterations):
        t = time.perf_counter()
        fn()
        times[i] = time.perf_counter() - t
    return times * 1000.0


def bench_model(model_dir: Path, iterations: int, threads: int) -> dict[str, Any]:
    """Latency (ms) and throughput (samples/s) of one saved model on each available runtime."""
    from perception.learner import load_model
    from perception.runtime import tensorrt_available

    learner = load_model(model_dir)
    shape = [d for d in learner.input_spec().shape[1:]]
    rng = np.random.default_rng(0)
    x1 = rng.normal(size=(1, *shape)).astype(np.float32)
    x8 = rng.normal(size=(8, *shape)).astype(np.float32)
    runtimes = ["torch", "onnxruntime"] if learner.net is not None else ["onnxruntime"]
    ok, reason = tensorrt_available()
    out: dict[str, Any] = {"model": learner.name, "input": shape}
    if ok and (model_dir / "model.fp16.engine").is_file():
        runtimes.append("tensorrt")
    else:
        out["tensorrt"] = f"skipped: {reason or 'no engine; run vantage perception optimize'}"
    for name in runtimes:
        learner.set_runtime(name, threads=threads)
        lat = _time(lambda: learner.run_network(x1), iterations)
        thr = _time(lambda: learner.run_network(x8), max(5, iterations // 4))
        out[name] = {"p50_ms": float(np.percentile(lat, 50)), "p95_ms": float(np.percentile(lat, 95)),
                     "throughput_per_s": float(8000.0 / np.median(thr))}
    if "torch" in out and "onnxruntime" in out:
        out["ort_over_torch_latency"] = out["onnxruntime"]["p50_ms"] / out["torch"]["p50_ms"]
    return out


def _pipeline_frame() -> np.ndarray:
    """A 320 x 240 simulator frame with one person about 2 m away, facing the camera."""
    import tempfile

    from perception.faces.dataset import FaceSceneConfig, render_gallery

    with tempfile.TemporaryDirectory() as tmp:
        config = FaceSceneConfig(n_identities=3, n_heldout=1)
        return render_gallery(config, tmp, [0], distance=2.0)[0][1]


@click.command("perception")
@click.option("--detector", type=click.Path(path_type=Path, exists=True, file_okay=False),
              default=MODELS_DIR / "face_detector", show_default=True)
@click.option("--recognizer", type=click.Path(path_type=Path, exists=True, file_okay=False),
              default=MODELS_DIR / "face_recognizer", show_default=True)
@click.option("--iterations", type=int, default=200, show_default=True)
@click.option("--threads", type=int, default=0, show_default=True, help="ONNX Runtime / torch threads (0 = all)")
@click.option("--json", "as_json", is_flag=True, help="print JSON only")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="also write the JSON here")
def bench_perception(detector: Path, recognizer: Path, iterations: int, threads: int, as_json: bool,
                     out: Path | None) -> None:
    """Per-model, per-runtime latency and the detect+recognise pipeline FPS on a 320x240 frame."""
    import torch

    from perception.faces.pipeline import FacePipeline

    if threads > 0:
        torch.set_num_threads(threads)
    result: dict[str, Any] = {"device": _device(), "torch_threads": torch.get_num_threads(),
                              "models": [bench_model(detector, iterations, threads),
                                         bench_model(recognizer, iterations, threads)]}
    frame = _pipeline_frame()
    pipe = FacePipeline.load(detector, recognizer, runtime="onnxruntime", threads=threads)
    faces = pipe(frame)
    lat = _time(lambda: pipe(frame), iterations)
    result["pipeline"] = {"runtime": "onnxruntime", "frame": list(frame.shape), "faces_found": len(faces),
                          "identities": [f.identity for f in faces], "p50_ms": float(np.percentile(lat, 50)),
                          "p95_ms": float(np.percentile(lat, 95)), "fps": float(1000.0 / np.median(lat))}
    pipe.set_runtime("torch", threads=threads)
    lat_t = _time(lambda: pipe(frame), max(20, iterations // 2))
    result["pipeline_torch"] = {"p50_ms": float(np.percentile(lat_t, 50)), "fps": float(1000.0 / np.median(lat_t))}
    text = json.dumps(result, indent=2)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
    if as_json:
        click.echo(text)
        return
    click.echo(f"device: {result['device']}")
    for m in result["models"]:
        for rt in ("torch", "onnxruntime", "tensorrt"):
            if isinstance(m.get(rt), dict):
                click.echo(f"{m['model']:>16} {rt:>12}: p50 {m[rt]['p50_ms']:.2f} ms  p95 {m[rt]['p95_ms']:.2f} ms  "
                           f"{m[rt]['throughput_per_s']:.0f}/s")
        if "ort_over_torch_latency" in m:
            click.echo(f"{m['model']:>16} ORT/torch latency ratio: {m['ort_over_torch_latency']:.2f}")
    p = result["pipeline"]
    click.echo(f"pipeline (onnxruntime, 320x240): {p['fps']:.1f} FPS, p50 {p['p50_ms']:.2f} ms, "
               f"faces {p['faces_found']}")
