"""``vantage bench perception``: latency and throughput of each perception model per runtime, and the pipeline.

The measurements live in :mod:`perception.benchmark`; this command parses options, renders the pipeline's
320 x 240 simulator frame and prints the result (JSON with ``--json``).
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

MODELS_DIR = Path(__file__).resolve().parents[1] / "assets" / "models"


def _pipeline_frame() -> np.ndarray:
    """A 320 x 240 simulator frame with one person about 2 m away, facing the camera."""
    import tempfile

    from envs.worlds.face_scenes import render_gallery
    from perception.faces.dataset import FaceSceneConfig

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
    from perception import benchmark

    result = benchmark.bench_perception(detector, recognizer, _pipeline_frame(), iterations, threads)
    text = json.dumps(result, indent=2)
    if out is not None:
        from common.io import atomic_write_text

        atomic_write_text(out, text)
    if as_json:
        click.echo(text)
        return
    for line in benchmark.summary_lines(result):
        click.echo(line)
