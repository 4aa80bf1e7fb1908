"""``vantage perception fit|eval|export|optimize|import-onnx``: train, evaluate and deploy perception models.

MODEL is a model name (``face_detector``, ``face_recognizer``) for ``fit`` and a saved model directory for
the other commands. Every command prints a JSON summary; ``--json-out`` also writes it to a file.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import click
import numpy as np

from envs.errors import VantageError
from perception.errors import InvalidArgumentError, ModelExistsError
from scripts.options import parse_key_values


class ErrorReportingGroup(click.Group):
    """A click group that shows Vantage errors as one-line messages (exit code 1) instead of tracebacks."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except VantageError as exc:
            raise click.ClickException(f"{type(exc).__name__}: {exc}") from exc


def _emit(summary: dict[str, Any], json_out: Path | None) -> None:
    text = json.dumps(summary, indent=2, default=lambda v: v.tolist() if isinstance(v, np.ndarray) else str(v))
    click.echo(text)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(text)


@click.group(cls=ErrorReportingGroup)
def perception() -> None:
    """Perception models: fit, eval, export (ONNX), optimize (TensorRT), import user ONNX models."""


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
              help="extra fit() argument KEY=VALUE (JSON value), e.g. crop=[96,128] or scale_jitter=0.3")
@click.option("--overwrite", is_flag=True, help="replace an existing model at --out")
@click.option("--json-out", type=click.Path(path_type=Path), default=None)
def fit_cmd(model: str, data: Path, out: Path, epochs: int, batch_size: int | None, lr: float, seed: int,
            max_frames: int | None, threads: int, config: tuple[str, ...], eval_data: Path | None,
            init: Path | None, options: tuple[str, ...], overwrite: bool, json_out: Path | None) -> None:
    """Train MODEL (face_detector | face_recognizer) on a face dataset and save it to --out.

    Each epoch is checkpointed beside --out; re-running the same command after an interruption resumes.
    """
    from perception.learner import load_model, make_model

    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ModelExistsError(f"{out} already holds a model; pass --overwrite to replace it")
    import torch  # imported here so that `vantage --help` stays fast

    torch.set_num_threads(threads)
    settings = parse_key_values(config, "--config")
    base = None
    if init is not None:
        base = load_model(init)
        if base.name != model:
            raise InvalidArgumentError(f"--init {init} holds a {base.name!r} model, not a {model!r}")
        settings = {**base.config, **settings}
    learner = make_model(model, **settings)
    if base is not None:
        try:
            learner.net.load_state_dict(base.net.state_dict(), strict=True)
        except RuntimeError as exc:
            raise InvalidArgumentError(f"--config changes the network of --init {init}: "
                                       f"{str(exc).splitlines()[0]}") from exc
    # The checkpoint lives beside --out (not inside) so an interrupted run never looks like a saved model.
    checkpoint = out.parent / f".{out.name}.fit-checkpoint.pt"
    kwargs: dict[str, Any] = {"epochs": epochs, "lr": lr, "seed": seed, "max_frames": max_frames,
                              "checkpoint": checkpoint}
    if batch_size is not None:
        kwargs["batch_size"] = batch_size
    extra = parse_key_values(options, "--option")
    clash = sorted(set(extra) & set(kwargs))
    if clash:
        raise click.BadParameter(f"{clash} have their own options", param_hint="--option")
    allowed = set(inspect.signature(learner.fit).parameters) - {"dataset", "kwargs"}
    unknown = sorted(set(extra) - allowed)
    if unknown:
        raise click.BadParameter(f"unknown fit options {unknown}; {model} takes {sorted(allowed)}",
                                 param_hint="--option")
    kwargs.update(extra)
    summary: dict[str, Any] = {"model": model, "fit": learner.fit(data, **kwargs)}
    if eval_data is not None:
        learner.metrics = learner.eval(eval_data, out_dir=out / "eval") if model == "face_recognizer" else \
            learner.eval(eval_data)
        summary["eval"] = learner.metrics
    learner.save(out, overwrite=True)
    learner.export(out)
    summary["saved"] = str(out)
    _emit(summary, json_out)


@perception.command("eval")
@click.argument("model_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--data", type=click.Path(path_type=Path, exists=True, file_okay=False), required=True)
@click.option("--runtime", type=click.Choice(["torch", "onnxruntime", "tensorrt"]), default="torch",
              show_default=True)
@click.option("--max-frames", type=int, default=None)
@click.option("--out", type=click.Path(path_type=Path), default=None, help="folder for plots (recogniser curves)")
@click.option("--json-out", type=click.Path(path_type=Path), default=None)
def eval_cmd(model_dir: Path, data: Path, runtime: str, max_frames: int | None, out: Path | None,
             json_out: Path | None) -> None:
    """Evaluate a saved model on a face dataset (AP@0.5 or identification curves)."""
    from perception.learner import load_model

    learner = load_model(model_dir)
    learner.set_runtime(runtime)
    kwargs: dict[str, Any] = {"max_frames": max_frames}
    if learner.name in ("face_recognizer", "sface") and out is not None:
        kwargs["out_dir"] = out
    _emit({"model": str(model_dir), "metrics": learner.eval(data, **kwargs)}, json_out)


@perception.command("export")
@click.argument("model_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--out", type=click.Path(path_type=Path), default=None, help="ONNX file or folder (default: MODEL_DIR)")
@click.option("--format", "fmt", type=click.Choice(["onnx"]), default="onnx", show_default=True)
@click.option("--check/--no-check", default=True, show_default=True,
              help="compare torch and onnxruntime outputs on 100 random inputs")
@click.option("--json-out", type=click.Path(path_type=Path), default=None)
def export_cmd(model_dir: Path, out: Path | None, fmt: str, check: bool, json_out: Path | None) -> None:
    """Export a saved model to ONNX and check parity with torch."""
    from perception.learner import load_model
    from perception.runtime import TOLERANCES, OnnxRuntime

    learner = load_model(model_dir)
    path = learner.export(out or model_dir, format=fmt)
    summary: dict[str, Any] = {"model": str(model_dir), "onnx": str(path)}
    if check and learner.net is not None:
        shape = [1 if d < 0 else d for d in learner.input_spec().shape]
        x = np.random.default_rng(0).normal(size=(100, *shape[1:])).astype(np.float32)
        ref = learner.run_network(x)
        got = OnnxRuntime(path).run(x)
        diff = max(float(np.abs(a - b).max()) for a, b in zip(ref, got))
        summary.update(max_abs_diff=diff, tolerance=TOLERANCES["onnxruntime"], parity=diff <= TOLERANCES["onnxruntime"])
    _emit(summary, json_out)


@perception.command("optimize")
@click.argument("model_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--target", type=click.Choice(["tensorrt"]), default="tensorrt", show_default=True)
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]), default="fp16", show_default=True)
@click.option("--calib-data", type=click.Path(path_type=Path, exists=True, file_okay=False), default=None,
              help="face dataset whose frames calibrate int8")
@click.option("--json-out", type=click.Path(path_type=Path), default=None)
def optimize_cmd(model_dir: Path, target: str, precision: str, calib_data: Path | None, json_out: Path | None) -> None:
    """Build a TensorRT engine next to the model (needs TensorRT and a CUDA GPU)."""
    from perception.learner import load_model

    learner = load_model(model_dir)
    calibration = None
    if precision == "int8":
        if calib_data is None:
            raise click.BadParameter("int8 needs --calib-data", param_hint="--calib-data")
        from perception.faces.dataset import FaceDataset

        frames = [img for _, (img, _) in zip(range(64), FaceDataset(calib_data))]
        calibration = learner.preprocessing(frames)
    engine = learner.optimize(model_dir, target=target, precision=precision, calibration=calibration)
    _emit({"model": str(model_dir), "engine": str(engine), "precision": precision}, json_out)


@perception.command("import-onnx")
@click.argument("kind", type=click.Choice(["yunet", "sface"]))
@click.argument("onnx_file", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--out", type=click.Path(path_type=Path), required=True)
@click.option("--config", "config", multiple=True, help="constructor argument KEY=VALUE (JSON value)")
@click.option("--overwrite", is_flag=True)
def import_cmd(kind: str, onnx_file: Path, out: Path, config: tuple[str, ...], overwrite: bool) -> None:
    """Wrap a user ONNX model (YuNet detector or SFace recogniser) as a saved Vantage model."""
    from perception.learner import make_model

    learner = make_model(kind, onnx_path=str(onnx_file), **parse_key_values(config, "--config"))
    learner.save(out, overwrite=overwrite)
    _emit({"model": kind, "saved": str(out)}, None)
