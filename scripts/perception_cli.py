"""``vantage perception fit|eval|export|quantize|optimize|import-onnx``: train, evaluate and deploy perception models.

MODEL is a model name (``face_detector``, ``face_recognizer``) for ``fit`` and a saved model directory for
the other commands. Every command prints a JSON summary; ``--json-out`` also writes it to a file. The commands
only parse options: the work is done by :mod:`perception` (training, export, quantization).

Every command checks its options, inputs and outputs before it writes anything, and writes each file
atomically. An existing output file is replaced only with ``--overwrite``, except the files that depend on a
model's weights alone (``model.onnx``), which ``export``/``fit`` rewrite in the model's own folder; a folder that
holds a dataset, a training run or another model never receives a model's files (see
:meth:`perception.learner.Learner.check_output`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import numpy as np

from perception.errors import InvalidArgumentError
from scripts.options import ErrorReportingGroup, parse_key_values


def _emit(summary: dict[str, Any], json_out: Path | None) -> None:
    text = json.dumps(summary, indent=2, default=lambda v: v.tolist() if isinstance(v, np.ndarray) else str(v))
    click.echo(text)
    if json_out is not None:
        from common.io import atomic_write_text

        atomic_write_text(json_out, text)


def _check_json_out(json_out: Path | None, overwrite: bool) -> None:
    """Refuse a ``--json-out`` file that exists (without ``--overwrite``) or would replace an artefact's file."""
    if json_out is None:
        return
    from common.io import ARTEFACT_FILES
    from perception.errors import OutputExistsError

    if json_out.name in ARTEFACT_FILES:
        raise OutputExistsError(f"--json-out {json_out}: {json_out.name} is the file that marks "
                                f"{ARTEFACT_FILES[json_out.name]}; choose another file name")
    if json_out.is_dir():
        raise OutputExistsError(f"--json-out {json_out} is a folder; give a file name")
    if json_out.exists() and not overwrite:
        raise OutputExistsError(f"--json-out {json_out} exists; pass --overwrite to replace it, or choose another file")


def _at_least(option: str, value: int | None, low: int) -> None:
    if value is not None and value < low:
        raise InvalidArgumentError(f"{option} must be >= {low}, got {value}")


def _bank_only_for_recognizer(model: str, data: list[tuple[Any, str]]) -> None:
    """Refuse a face bank (face crops, no frames) for a model other than ``face_recognizer``."""
    from perception.faces.bank import FaceBank

    for dataset, option in data:
        if isinstance(dataset, FaceBank) and model != "face_recognizer":
            raise InvalidArgumentError(f"{option} {dataset.root} is a face bank (face crops, no frames): only "
                                       f"face_recognizer trains and evaluates on it, not {model}; give a frame "
                                       f"dataset (vantage data faces)")


@click.group(cls=ErrorReportingGroup)
def perception() -> None:
    """Perception models: fit, eval, export (ONNX), quantize (int8 Q/DQ), optimize (TensorRT), import ONNX models."""


@perception.command("fit")
@click.argument("model")
@click.option("--data", "data", type=click.Path(path_type=Path, exists=True, file_okay=False), required=True,
              help="face dataset folder (vantage data faces)")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="saved model directory")
@click.option("--epochs", type=int, default=20, show_default=True)
@click.option("--batch-size", type=int, default=None, help="default: 32 (detector) / 64 (recogniser)")
@click.option("--lr", type=float, default=3e-3, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--max-frames", type=int, default=None, help="use only the first frames of the dataset")
@click.option("--threads", type=int, default=1, show_default=True, help="torch CPU threads")
@click.option("--config", "config", multiple=True, help="constructor argument KEY=VALUE (JSON value)")
@click.option("--eval-data", type=click.Path(path_type=Path, exists=True, file_okay=False), default=None,
              help="evaluate on this dataset after training and store the metrics in the manifest")
@click.option("--init", "init", type=click.Path(path_type=Path, exists=True, file_okay=False), default=None,
              help="start from this saved model's weights and config (fine-tuning) instead of random weights")
@click.option("--option", "options", multiple=True,
              help="extra fit() argument KEY=VALUE (JSON value), e.g. crop=[96,128] or min_height=4")
@click.option("--overwrite", is_flag=True, help="replace an existing model at --out (and --json-out)")
@click.option("--json-out", type=click.Path(path_type=Path), default=None)
def fit_cmd(model: str, data: Path, out: Path, epochs: int, batch_size: int | None, lr: float, seed: int,
            max_frames: int | None, threads: int, config: tuple[str, ...], eval_data: Path | None,
            init: Path | None, options: tuple[str, ...], overwrite: bool, json_out: Path | None) -> None:
    """Train MODEL (face_detector | face_recognizer) on a face dataset and save it to --out.

    Each epoch is checkpointed beside --out; re-running the same command after an interruption resumes.
    Options, --out, the datasets, --init and --config are all checked before anything is written. Progress
    goes to stderr: a bar on a terminal, a line per epoch (and every 30 s) elsewhere.
    """
    from perception.faces.bank import open_face_data
    from perception.manifest import check_save_dir
    from perception.training import check_fit_settings, fit_options, prepare_learner

    # Everything is checked before --out (or the checkpoint beside it) is created.
    _at_least("--threads", threads, 1)
    check_fit_settings(epochs, 2 if batch_size is None else batch_size, lr, max_frames)
    check_save_dir(out, overwrite)
    _check_json_out(json_out, overwrite)
    dataset = open_face_data(data)  # a frame dataset, or a face bank (recogniser)
    evaluation = open_face_data(eval_data) if eval_data is not None else None
    _bank_only_for_recognizer(model, [(dataset, "--data"), (evaluation, "--eval-data")])
    learner = prepare_learner(model, parse_key_values(config, "--config"), init)
    # The checkpoint lives beside --out (not inside) so an interrupted run never looks like a saved model.
    checkpoint = out.parent / f".{out.name}.fit-checkpoint.pt"
    fixed: dict[str, Any] = {"epochs": epochs, "lr": lr, "seed": seed, "max_frames": max_frames,
                             "checkpoint": checkpoint}
    if batch_size is not None:
        fixed["batch_size"] = batch_size
    try:
        kwargs = fit_options(learner, parse_key_values(options, "--option"), fixed)
    except InvalidArgumentError as exc:
        raise click.BadParameter(str(exc), param_hint="--option") from exc
    import torch  # imported here so that `vantage --help` stays fast

    torch.set_num_threads(threads)
    summary: dict[str, Any] = {"model": model, "fit": learner.fit(dataset, **kwargs)}
    if evaluation is not None:
        learner.metrics = learner.eval(evaluation, out_dir=out / "eval") if model == "face_recognizer" else \
            learner.eval(evaluation)
        summary["eval"] = learner.metrics
    learner.save(out, overwrite=True)  # --out was checked above; the eval curves may have created it since
    learner.export(out)
    summary["saved"] = str(out)
    _emit(summary, json_out)


@perception.command("eval")
@click.argument("model_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--data", type=click.Path(path_type=Path, exists=True, file_okay=False), required=True)
@click.option("--runtime", type=click.Choice(["torch", "onnxruntime", "tensorrt"]), default="torch",
              show_default=True)
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]), default=None,
              help="onnxruntime: fp32 (model.onnx) or int8 (model.int8.onnx, see quantize); tensorrt: the engine's "
                   "precision (default fp16)")
@click.option("--model-file", type=click.Path(path_type=Path, exists=True, dir_okay=False), default=None,
              help="ONNX file or TensorRT engine to run instead of the one in MODEL_DIR")
@click.option("--max-frames", type=int, default=None)
@click.option("--out", type=click.Path(path_type=Path), default=None, help="folder for plots (recogniser curves)")
@click.option("--overwrite", is_flag=True, help="replace existing plots in --out and an existing --json-out")
@click.option("--json-out", type=click.Path(path_type=Path), default=None)
def eval_cmd(model_dir: Path, data: Path, runtime: str, precision: str | None, model_file: Path | None,
             max_frames: int | None, out: Path | None, overwrite: bool, json_out: Path | None) -> None:
    """Evaluate a saved model on a face dataset (AP@0.5 or identification curves)."""
    from common.io import prepare_output
    from perception.faces.bank import open_face_data
    from perception.learner import load_model

    _at_least("--max-frames", max_frames, 1)
    _check_json_out(json_out, overwrite)
    learner = load_model(model_dir)
    learner.set_runtime(runtime, path=model_file, precision=precision)
    dataset = open_face_data(data)  # a frame dataset, or a face bank (recogniser: TAR@FAR, open set by bins)
    _bank_only_for_recognizer(learner.name, [(dataset, "--data")])
    kwargs: dict[str, Any] = {"max_frames": max_frames}
    if learner.name in ("face_recognizer", "sface") and out is not None:
        kwargs["out_dir"] = prepare_output(out, ["recognition_curves.png"], overwrite=overwrite)
    _emit({"model": str(model_dir), "metrics": learner.eval(dataset, **kwargs)}, json_out)


@perception.command("export")
@click.argument("model_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--out", type=click.Path(path_type=Path), default=None, help="ONNX file or folder (default: MODEL_DIR)")
@click.option("--format", "fmt", type=click.Choice(["onnx"]), default="onnx", show_default=True)
@click.option("--check/--no-check", default=True, show_default=True,
              help="compare torch and onnxruntime outputs on 100 random inputs")
@click.option("--overwrite", is_flag=True,
              help="replace an existing file (not needed for model.onnx in the model's own folder)")
@click.option("--json-out", type=click.Path(path_type=Path), default=None)
def export_cmd(model_dir: Path, out: Path | None, fmt: str, check: bool, overwrite: bool,
               json_out: Path | None) -> None:
    """Export a saved model to ONNX and check parity with torch.

    In MODEL_DIR (the default) model.onnx is rewritten from the saved weights without --overwrite. A folder
    holding another model, a dataset or a training run is refused; elsewhere an existing file needs --overwrite.
    """
    from perception.export import check_export_parity
    from perception.learner import load_model

    _check_json_out(json_out, overwrite)
    learner = load_model(model_dir)
    path = learner.export(out or model_dir, format=fmt, overwrite=overwrite)
    summary: dict[str, Any] = {"model": str(model_dir), "onnx": str(path)}
    if check and learner.net is not None:
        summary.update(check_export_parity(learner, path, samples=100))
    _emit(summary, json_out)


@perception.command("quantize")
@click.argument("model_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--calib-data", type=click.Path(path_type=Path, exists=True, file_okay=False), required=True,
              help="face dataset whose frames (or face crops) calibrate the int8 ranges")
@click.option("--samples", type=int, default=64, show_default=True, help="calibration samples")
@click.option("--check-samples", type=int, default=16, show_default=True,
              help="further samples, unseen by calibration, on which int8 is compared with fp32")
@click.option("--method", type=click.Choice(["minmax", "percentile", "entropy"]), default="minmax",
              show_default=True, help="how activation ranges are taken from the calibration outputs")
@click.option("--overwrite", is_flag=True, help="replace an existing model.int8.onnx (and --json-out)")
@click.option("--json-out", type=click.Path(path_type=Path), default=None)
def quantize_cmd(model_dir: Path, calib_data: Path, samples: int, check_samples: int, method: str,
                 overwrite: bool, json_out: Path | None) -> None:
    """Write MODEL_DIR/model.int8.onnx (explicit int8 Q/DQ graph, on the CPU) and print its parity with fp32.

    The Q/DQ graph runs on ONNX Runtime (eval --runtime onnxruntime --precision int8) and is what
    optimize --precision int8 builds TensorRT engines from. It depends on the calibration data, so an existing
    one is replaced only with --overwrite.
    """
    from perception.faces.dataset import FaceDataset
    from perception.learner import load_model
    from perception.quantization import quantize_learner

    _at_least("--samples", samples, 1)
    _at_least("--check-samples", check_samples, 0)
    _check_json_out(json_out, overwrite)
    learner = load_model(model_dir)
    dataset = FaceDataset(calib_data)
    summary = quantize_learner(learner, dataset, samples=samples, check_samples=check_samples, path=model_dir,
                               method=method, overwrite=overwrite)
    _emit({"model": str(model_dir), **summary}, json_out)


@perception.command("optimize")
@click.argument("model_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--target", type=click.Choice(["tensorrt"]), default="tensorrt", show_default=True)
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]), default="fp16", show_default=True)
@click.option("--calib-data", type=click.Path(path_type=Path, exists=True, file_okay=False), default=None,
              help="int8: face dataset to quantize from when MODEL_DIR has no model.int8.onnx yet")
@click.option("--samples", type=int, default=64, show_default=True, help="int8 calibration samples")
@click.option("--overwrite", is_flag=True, help="replace an existing engine of this precision (and --json-out)")
@click.option("--json-out", type=click.Path(path_type=Path), default=None)
def optimize_cmd(model_dir: Path, target: str, precision: str, calib_data: Path | None, samples: int,
                 overwrite: bool, json_out: Path | None) -> None:
    """Build a TensorRT engine next to the model (needs TensorRT and a CUDA GPU).

    int8 engines are built from the Q/DQ graph model.int8.onnx (vantage perception quantize), which is written
    first from --calib-data when it is missing. An existing engine is replaced only with --overwrite.
    """
    from perception.learner import load_model
    from perception.manifest import INT8_ONNX_FILE
    from perception.runtime import tensorrt_available

    _at_least("--samples", samples, 1)
    _check_json_out(json_out, overwrite)
    learner = load_model(model_dir)
    learner.check_output(model_dir, [f"model.{precision}.engine"], overwrite, "TensorRT engine")
    summary: dict[str, Any] = {"model": str(model_dir)}
    if precision == "int8" and not (model_dir / INT8_ONNX_FILE).is_file():
        if calib_data is None:
            raise click.BadParameter(f"int8 needs {INT8_ONNX_FILE}: run vantage perception quantize first or "
                                     f"pass --calib-data", param_hint="--calib-data")
        if tensorrt_available()[0]:  # quantizing takes a while; without TensorRT, optimize() below says why at once
            from perception.faces.dataset import FaceDataset
            from perception.quantization import quantize_learner

            summary["quantization"] = quantize_learner(learner, FaceDataset(calib_data), samples=samples,
                                                       path=model_dir)
    engine = learner.optimize(model_dir, target=target, precision=precision, overwrite=overwrite)
    _emit({**summary, "engine": str(engine), "precision": precision}, json_out)


@perception.command("import-onnx")
@click.argument("kind", type=click.Choice(["yunet", "sface"]))
@click.argument("onnx_file", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--out", type=click.Path(path_type=Path), required=True)
@click.option("--config", "config", multiple=True, help="constructor argument KEY=VALUE (JSON value)")
@click.option("--overwrite", is_flag=True, help="replace an existing model at --out")
def import_cmd(kind: str, onnx_file: Path, out: Path, config: tuple[str, ...], overwrite: bool) -> None:
    """Wrap a user ONNX model (YuNet detector or SFace recogniser) as a saved Vantage model.

    The ONNX file is checked (valid ONNX, the format's inputs and outputs) and --out too before anything is
    written; the saved manifest records the file's SHA-256, which loading checks.
    """
    from perception.learner import make_model
    from perception.manifest import check_save_dir

    settings = parse_key_values(config, "--config")
    if "onnx_path" in settings:
        raise click.BadParameter("the ONNX file is the ONNX_FILE argument, not a --config value", param_hint="--config")
    check_save_dir(out, overwrite)
    learner = make_model(kind, onnx_path=str(onnx_file), **settings)
    learner.save(out, overwrite=overwrite)
    _emit({"model": kind, "saved": str(out)}, None)
