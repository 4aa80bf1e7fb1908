"""``vantage bench perception``: latency and throughput of each perception model per runtime, and the pipeline.

The measurements live in :mod:`perception.benchmark`; this command parses options, renders the pipeline's
320 x 240 simulator frame and prints the result (JSON with ``--json``). It runs one thread per model by default,
as the documented figures were measured, and prints a progress line on stderr as each measurement starts and
ends (also when stderr is not a terminal), so that a slow run on a busy machine shows where it is.
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


def _log(line: str) -> None:
    click.echo(f"bench perception: {line}", err=True)


@click.command("perception")
@click.option("--detector", type=click.Path(path_type=Path, exists=True, file_okay=False),
              default=MODELS_DIR / "face_detector", show_default=True)
@click.option("--recognizer", type=click.Path(path_type=Path, exists=True, file_okay=False),
              default=MODELS_DIR / "face_recognizer", show_default=True)
@click.option("--iterations", type=int, default=200, show_default=True)
@click.option("--threads", type=int, default=1, show_default=True,
              help="ONNX Runtime / torch threads per model (0 = all cores; the documented figures use 1)")
@click.option("--json", "as_json", is_flag=True, help="print JSON only on stdout (progress still goes to stderr)")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="also write the JSON here")
@click.option("--overwrite", is_flag=True, help="replace an existing --out file")
def bench_perception(detector: Path, recognizer: Path, iterations: int, threads: int, as_json: bool,
                     out: Path | None, overwrite: bool) -> None:
    """Per-model, per-runtime latency and the detect+recognise pipeline FPS on a 320x240 frame."""
    from common.io import ARTEFACT_FILES, prepare_output
    from perception import benchmark
    from perception.errors import InvalidArgumentError, OutputExistsError
    from perception.faces.pipeline import FacePipeline

    # Checked before minutes of measuring: the options, the models' roles and the --out file.
    if iterations < 1:
        raise InvalidArgumentError(f"--iterations must be >= 1, got {iterations}")
    if threads < 0:
        raise InvalidArgumentError(f"--threads must be >= 0 (0 = all cores), got {threads}")
    FacePipeline.check_folders(detector, recognizer)
    if out is not None:
        if out.is_dir():
            raise OutputExistsError(f"--out {out} is a folder; give a file name (e.g. {out / 'bench.json'})")
        if out.name in ARTEFACT_FILES:
            raise OutputExistsError(f"--out {out}: {out.name} is the file that marks {ARTEFACT_FILES[out.name]}; "
                                    f"choose another file name")
        prepare_output(out.parent, [out.name], overwrite=overwrite)
    _log(f"{benchmark.device_description()}; {threads or 'all'} thread(s) per model, {iterations} iterations")
    result = benchmark.bench_perception(detector, recognizer, _pipeline_frame(), iterations, threads, log=_log)
    text = json.dumps(result, indent=2)
    if out is not None:
        from common.io import atomic_write_text

        atomic_write_text(out, text)
    if as_json:
        click.echo(text)
        return
    for line in benchmark.summary_lines(result):
        click.echo(line)
