"""The learner interface every perception model follows, with its saved-model format.

A learner owns a small torch network whose input is one float32 NCHW tensor; pre- and post-processing are
NumPy code around it, so the same :meth:`Learner.infer` runs on any :mod:`perception.runtime` runtime.

Saved model (a directory)::

    manifest.json   name, class version, constructor config, input/output spec, preprocessing,
                    training-data hash, weights file + SHA-256, extra state (gallery, calibration), metrics
    weights.pt      torch ``state_dict`` (absent for ONNX-only models)
    model.onnx      written by :meth:`Learner.export` (ONNX-only models keep their user file here)
    model.<precision>.engine   written by :meth:`Learner.optimize` (TensorRT)

``Learner.load`` rebuilds the network from the manifest's config, checks the weights' hash and loads them
strictly, so a manifest that does not match its weights is a :class:`ManifestError`, not a silent mismatch.
"""

from __future__ import annotations

import abc
import hashlib
import importlib
import json
import os
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import torch

from common.errors import UnknownNameError
from perception.errors import (
    CheckpointError,
    InvalidArgumentError,
    InvalidImageError,
    ManifestError,
    ModelExistsError,
    OnnxModelError,
)
from perception.runtime import RUNTIMES, Runtime, build_tensorrt_engine, make_runtime

MANIFEST = "manifest.json"
WEIGHTS = "weights.pt"
ONNX_FILE = "model.onnx"
MANIFEST_FORMAT = "vantage-perception-model"
MANIFEST_VERSION = 1

#: Model name -> "module:Class"; entries are strings so listing models imports nothing heavy.
MODEL_REGISTRY: dict[str, str] = {
    "face_detector": "perception.faces.detector:FaceDetectorLearner",
    "face_recognizer": "perception.faces.recognizer:FaceRecognizerLearner",
    "yunet": "perception.faces.external:YuNetDetector",
    "sface": "perception.faces.external:SFaceRecognizer",
}


@dataclass
class TensorSpec:
    """Shape (``-1`` = dynamic), dtype and meaning of a network input or output."""

    name: str
    shape: list[int]
    dtype: str = "float32"
    description: str = ""


@dataclass
class Preprocessing:
    """How an RGB ``uint8`` image becomes the network input: resize, ``(x/255 - mean) / std``, NCHW."""

    size: tuple[int, int]  # (height, width)
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    channels: str = "RGB"
    scale: float = 1.0 / 255.0
    extra: dict[str, Any] = field(default_factory=dict)

    def __call__(self, images: list[np.ndarray] | np.ndarray) -> np.ndarray:
        """Resize and normalise a list of RGB images into a float32 ``(N, 3, H, W)`` batch."""
        import cv2

        h, w = self.size
        batch = np.empty((len(images), 3, h, w), np.float32)
        mean = np.asarray(self.mean, np.float32)
        std = np.asarray(self.std, np.float32)
        for i, img in enumerate(images):
            if img.shape[:2] != (h, w):
                img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if img.shape[0] > h else cv2.INTER_LINEAR)
            if self.channels == "BGR":
                img = img[..., ::-1]
            batch[i] = ((img.astype(np.float32) * self.scale - mean) / std).transpose(2, 0, 1)
        return batch


def check_image(image: Any, what: str = "image") -> np.ndarray:
    """Return ``image`` if it is a non-empty ``uint8 (H, W, 3)`` RGB array; raise :class:`InvalidImageError`."""
    if not isinstance(image, np.ndarray):
        raise InvalidImageError(f"{what} must be a numpy uint8 array (H, W, 3) RGB, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise InvalidImageError(f"{what} must have dtype uint8 (0..255, RGB), got {image.dtype}; "
                                f"convert with (x * 255).astype(np.uint8) if it is float in [0, 1]")
    if image.ndim != 3 or image.shape[2] != 3:
        raise InvalidImageError(f"{what} must have shape (H, W, 3) with 3 RGB channels (HWC), got {image.shape}"
                                + ("; it looks channel-first (CHW): transpose to HWC" if image.ndim == 3 and
                                   image.shape[0] == 3 else ""))
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise InvalidImageError(f"{what} is empty: shape {image.shape}")
    return image


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _prepare_dir(path: Path, overwrite: bool) -> None:
    if path.exists() and any(path.iterdir()) and not overwrite:
        raise ModelExistsError(f"{path} already holds files; pass overwrite=True (--overwrite) to replace it")
    path.mkdir(parents=True, exist_ok=True)


class Learner(abc.ABC):
    """Base class of perception models: ``fit``, ``eval``, ``infer``, ``save``, ``load``, ``export``, ``optimize``.

    Subclasses set :attr:`name`, :attr:`version`, build their network from ``self.config`` in
    :meth:`build_network`, describe it in :meth:`input_spec` / :meth:`output_spec` and :attr:`preprocessing`,
    and implement the task methods. Constructor keyword arguments are the ``config`` saved in the manifest.
    """

    name: ClassVar[str]
    version: ClassVar[str] = "1"

    def __init__(self, **config: Any) -> None:
        self.config: dict[str, Any] = dict(config)
        self.net: torch.nn.Module | None = self.build_network()
        self.training_data_hash: str | None = None
        self.metrics: dict[str, Any] = {}
        self.model_dir: Path | None = None
        self._runtime: Runtime | None = None
        self.runtime_name = "torch"

    # -- to implement ------------------------------------------------------------------------------
    @abc.abstractmethod
    def build_network(self) -> torch.nn.Module | None:
        """The torch network for ``self.config`` (``None`` for ONNX-only models)."""

    @property
    @abc.abstractmethod
    def preprocessing(self) -> Preprocessing:
        """Image -> network input transform."""

    @abc.abstractmethod
    def output_spec(self) -> list[TensorSpec]:
        """The network outputs, in order."""

    @abc.abstractmethod
    def fit(self, dataset: Any, **kwargs: Any) -> dict[str, Any]:
        """Train on ``dataset``; returns a summary (e.g. loss history)."""

    @abc.abstractmethod
    def eval(self, dataset: Any, **kwargs: Any) -> dict[str, Any]:
        """Metrics on ``dataset``."""

    @abc.abstractmethod
    def infer(self, inputs: Any) -> Any:
        """Typed results for one image or a list of images."""

    def extra_state(self) -> dict[str, Any]:
        """JSON-serialisable state beyond the weights (galleries, thresholds)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`extra_state`."""

    # -- spec --------------------------------------------------------------------------------------
    def input_spec(self) -> TensorSpec:
        h, w = self.preprocessing.size
        return TensorSpec("input", [-1, 3, h, w], "float32",
                          f"{self.preprocessing.channels} image, (x*{self.preprocessing.scale:.6g} - mean) / std, NCHW")

    def manifest(self) -> dict[str, Any]:
        """The JSON manifest describing this model."""
        pre = self.preprocessing
        return {
            "format": MANIFEST_FORMAT,
            "manifest_version": MANIFEST_VERSION,
            "name": self.name,
            "class": f"{type(self).__module__}:{type(self).__qualname__}",
            "version": self.version,
            "config": self.config,
            "input": vars(self.input_spec()),
            "outputs": [vars(o) for o in self.output_spec()],
            "preprocessing": {"size": list(pre.size), "mean": list(pre.mean), "std": list(pre.std),
                              "channels": pre.channels, "scale": pre.scale, **pre.extra},
            "training_data_hash": self.training_data_hash,
            "metrics": self.metrics,
            "extra": self.extra_state(),
        }

    # -- runtimes ----------------------------------------------------------------------------------
    def set_runtime(self, name: str, path: str | Path | None = None, threads: int = 0) -> Self:
        """Select the inference runtime: ``torch``, ``onnxruntime`` or ``tensorrt``.

        Args:
            name: runtime name.
            path: ONNX file or TensorRT engine; defaults to the files in :attr:`model_dir`
                (``model.onnx``; ``model.fp16.engine`` for TensorRT), exporting ONNX to a temporary folder
                when the model was never saved.
            threads: ONNX Runtime intra-op threads (0 = all cores).
        """
        if name not in RUNTIMES:
            raise UnknownNameError("runtime", name, RUNTIMES)
        if name == "onnxruntime" and path is None:
            path = self._default_onnx()
        elif name == "tensorrt" and path is None:
            if self.model_dir is None:
                raise InvalidArgumentError("no TensorRT engine: call optimize() first or pass path=")
            path = self.model_dir / "model.fp16.engine"
        self._runtime = make_runtime(name, module=self.net, path=path, threads=threads)
        self.runtime_name = name
        return self

    def _default_onnx(self) -> Path:
        if self.model_dir is not None and (self.model_dir / ONNX_FILE).is_file():
            return self.model_dir / ONNX_FILE
        import tempfile

        folder = Path(tempfile.mkdtemp(prefix=f"vantage_{self.name}_"))
        return self.export(folder / ONNX_FILE)

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            self._runtime = make_runtime("torch", module=self.net)
        return self._runtime

    def run_network(self, x: np.ndarray) -> list[np.ndarray]:
        """Raw network outputs for a preprocessed batch on the selected runtime."""
        if self.net is not None:
            self.net.eval()
        return self.runtime.run(x)

    # -- persistence -------------------------------------------------------------------------------
    @staticmethod
    def _optimizer_step(loss: torch.Tensor, opt: torch.optim.Optimizer, sched: Any, losses: list[float],
                        bar: Any) -> None:
        """One training step of ``fit``: backward, optimiser and schedule step, running mean loss on the bar."""
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean(losses):.3f}")

    def _finish_fit(self, net: torch.nn.Module, ckpt: TrainingCheckpoint, bar: Any, dataset: Any) -> None:
        """After ``fit``'s last epoch: drop the resume checkpoint, and forget any runtime built on the old weights."""
        bar.close()
        ckpt.remove()
        net.eval()
        self._runtime = None
        self.training_data_hash = dataset.content_hash

    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write weights + manifest into directory ``path``.

        Raises:
            ModelExistsError: ``path`` holds files and ``overwrite`` is false.
        """
        path = Path(path)
        _prepare_dir(path, overwrite)
        manifest = self.manifest()
        if self.net is not None:
            tmp = path / (WEIGHTS + ".tmp")
            torch.save(self.net.state_dict(), tmp)
            os.replace(tmp, path / WEIGHTS)  # atomic: a crash never leaves half a weights file
            manifest["weights"] = {"file": WEIGHTS, "sha256": _sha256(path / WEIGHTS)}
        else:
            manifest["weights"] = None
        self._write_extra_files(path, manifest)
        tmp = path / (MANIFEST + ".tmp")
        tmp.write_text(json.dumps(manifest, indent=2, default=_json_default))
        os.replace(tmp, path / MANIFEST)
        if (path / ONNX_FILE).is_file() and self.net is not None:
            (path / ONNX_FILE).unlink()  # a stale export would not match the new weights
        self.model_dir = path
        return path

    def _write_extra_files(self, path: Path, manifest: dict[str, Any]) -> None:
        """Hook for models that keep more files (ONNX-only models copy their ONNX)."""

    @classmethod
    def load(cls, path: str | Path) -> Learner:
        """Load a saved model directory (any registered model when called on :class:`Learner`).

        Raises:
            CheckpointError: the directory or weights file is missing.
            ManifestError: the manifest is malformed, names another model, or does not match the weights.
        """
        path = Path(path)
        manifest = read_manifest(path)
        target = resolve_model_class(manifest["name"])
        if cls is not Learner and not issubclass(target, cls):
            raise ManifestError(f"{path} holds a {manifest['name']!r} model, not a {cls.__name__}")
        if str(manifest.get("version")) != str(target.version):
            raise ManifestError(f"{path}: model version {manifest.get('version')!r} does not match this code's "
                                f"{target.name} version {target.version!r}")
        config = dict(manifest.get("config", {}))
        if "onnx_path" in config:  # ONNX-only models keep their file next to the manifest
            config["onnx_path"] = str(path / Path(config["onnx_path"]).name)
        try:
            learner = target(**config)
        except TypeError as exc:
            raise ManifestError(
                f"{path}: config {manifest.get('config')} does not fit {target.__name__}: {exc}") from exc
        learner.model_dir = path
        if learner.net is not None:
            weights = manifest.get("weights") or {}
            wpath = path / weights.get("file", WEIGHTS)
            if not wpath.is_file():
                raise CheckpointError(f"weights file {wpath} is missing")
            if weights.get("sha256") and _sha256(wpath) != weights["sha256"]:
                raise ManifestError(f"{wpath} does not match the SHA-256 in {path / MANIFEST}: the weights were "
                                    f"changed or corrupted")
            try:
                state = torch.load(wpath, map_location="cpu", weights_only=True)
                learner.net.load_state_dict(state, strict=True)
            except RuntimeError as exc:
                raise ManifestError(f"{path}: weights do not match the network described by the manifest: "
                                    f"{str(exc).splitlines()[0]}") from exc
            except Exception as exc:
                raise CheckpointError(f"cannot read weights {wpath}: {exc}") from exc
            learner.net.eval()
        learner.training_data_hash = manifest.get("training_data_hash")
        learner.metrics = manifest.get("metrics") or {}
        learner.load_extra_state(manifest.get("extra") or {})
        return learner

    # -- export ------------------------------------------------------------------------------------
    def export(self, path: str | Path, format: str = "onnx", opset: int = 17, overwrite: bool = True) -> Path:
        """Export the network to ONNX (dynamic batch) and return the file path.

        ``path`` is a ``.onnx`` file or a directory (then ``model.onnx`` inside it, next to the manifest).
        The TorchScript-based exporter is used: for these plain CNNs it gives the same graph as the dynamo
        exporter in well under a second instead of ~10 s.
        """
        if format != "onnx":
            raise UnknownNameError("export format", format, ("onnx",))
        if self.net is None:
            raise InvalidArgumentError(f"{self.name} is ONNX-only; its ONNX file is already the export")
        path = Path(path)
        if path.suffix != ".onnx":
            path.mkdir(parents=True, exist_ok=True)
            path = path / ONNX_FILE
        if path.exists() and not overwrite:
            raise ModelExistsError(f"{path} exists; pass overwrite=True")
        path.parent.mkdir(parents=True, exist_ok=True)
        spec = self.input_spec()
        dummy = torch.zeros([2 if d < 0 else d for d in spec.shape])
        outputs = [o.name for o in self.output_spec()]
        self.net.eval()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the legacy exporter warns that it is deprecated
            torch.onnx.export(self.net, (dummy,), str(path), dynamo=False, input_names=[spec.name],
                              output_names=outputs, opset_version=opset,
                              dynamic_axes={spec.name: {0: "batch"}, **{o: {0: "batch"} for o in outputs}})
        import onnx

        model = onnx.load(str(path))
        onnx.checker.check_model(model)
        meta = model.metadata_props.add()
        meta.key, meta.value = "vantage_manifest", json.dumps(self.manifest(), default=_json_default)
        onnx.save(model, str(path))
        return path

    def optimize(self, path: str | Path | None = None, target: str = "tensorrt", precision: str = "fp16",
                 calibration: np.ndarray | None = None, max_batch: int = 8) -> Path:
        """Build a TensorRT engine (``model.<precision>.engine``) from the ONNX export.

        Args:
            path: output directory (default: the model directory).
            target: only ``tensorrt``.
            precision: ``fp32``, ``fp16`` or ``int8`` (int8 needs ``calibration`` preprocessed inputs).
            calibration: float32 ``(N, C, H, W)`` inputs for int8 calibration.
            max_batch: largest batch the engine accepts.

        Raises:
            RuntimeNotAvailableError: TensorRT or a CUDA GPU is missing.
        """
        if target != "tensorrt":
            raise UnknownNameError("optimize target", target, ("tensorrt",))
        folder = Path(path) if path is not None else self.model_dir
        if folder is None:
            raise InvalidArgumentError("optimize() needs an output directory (or save the model first)")
        folder.mkdir(parents=True, exist_ok=True)
        onnx_path = folder / ONNX_FILE
        if not onnx_path.is_file():
            onnx_path = self.export(folder)
        shape = tuple(self.input_spec().shape[1:])
        return build_tensorrt_engine(onnx_path, folder / f"model.{precision}.engine", shape, precision,
                                     max_batch, calibration)


def warmup_cosine(optimizer: torch.optim.Optimizer, total_steps: int,
                  warmup: float = 0.1) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over ``warmup`` of the steps, then cosine decay to 2 % of the peak rate.

    Unlike ``OneCycleLR`` it is valid for any number of steps, including the handful of a smoke test.
    """
    total = max(1, int(total_steps))
    warm = max(1, round(warmup * total))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = min(1.0, (step - warm) / max(1, total - warm))
        return 0.02 + 0.98 * 0.5 * (1.0 + float(np.cos(np.pi * progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class TrainingCheckpoint:
    """Per-epoch training state written atomically, so an interrupted ``fit`` resumes where it stopped.

    Args:
        path: checkpoint file, or ``None`` to disable checkpointing.
        modules: name -> object with ``state_dict``/``load_state_dict`` (networks, optimiser, scheduler).
        rng: the NumPy generator driving shuffling and augmentation (its state is saved too).
    """

    def __init__(self, path: str | Path | None, modules: dict[str, Any], rng: np.random.Generator) -> None:
        self.path = Path(path) if path is not None else None
        self.modules = modules
        self.rng = rng

    def resume(self) -> tuple[int, list[float]]:
        """Restore the last checkpoint if there is one: ``(epochs done, loss history)``."""
        if self.path is None or not self.path.is_file():
            return 0, []
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
            for name, module in self.modules.items():
                module.load_state_dict(state[name])
        except Exception as exc:
            raise CheckpointError(f"cannot resume from {self.path}: {exc}; delete it to start over") from exc
        self.rng.bit_generator.state = json.loads(state["rng"])
        return int(state["epoch"]), list(state["history"])

    def save(self, epoch: int, history: list[float]) -> None:
        """Write the state after ``epoch`` epochs (write to a temporary file, then rename)."""
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        state = {name: m.state_dict() for name, m in self.modules.items()}
        state.update(epoch=epoch, history=history, rng=json.dumps(self.rng.bit_generator.state))
        tmp = self.path.with_name(self.path.name + ".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.path)

    def remove(self) -> None:
        """Delete the checkpoint once training has finished."""
        if self.path is not None and self.path.is_file():
            self.path.unlink()


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def read_manifest(path: str | Path) -> dict[str, Any]:
    """Read and validate ``path/manifest.json``.

    Raises:
        CheckpointError: ``path`` is not a directory.
        ManifestError: the manifest is missing, not JSON, or lacks required keys.
    """
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"saved model directory not found: {path}")
    file = path / MANIFEST
    if not file.is_file():
        raise ManifestError(f"{path} has no {MANIFEST}; it is not a saved Vantage perception model")
    try:
        manifest = json.loads(file.read_text())
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{file} is not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise ManifestError(f"{file} is not a {MANIFEST_FORMAT} manifest (format={manifest.get('format')!r})"
                            if isinstance(manifest, dict) else f"{file} must hold a JSON object")
    missing = [k for k in ("name", "version", "config", "input", "outputs") if k not in manifest]
    if missing:
        raise ManifestError(f"{file} lacks required keys {missing}")
    if manifest["name"] not in MODEL_REGISTRY:
        raise ManifestError(f"{file} names unknown model {manifest['name']!r}; known: {sorted(MODEL_REGISTRY)}")
    return manifest


def resolve_model_class(name: str) -> type[Learner]:
    """The learner class registered under ``name``."""
    if name not in MODEL_REGISTRY:
        raise UnknownNameError("perception model", name, MODEL_REGISTRY)
    module, cls = MODEL_REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), cls)


def load_model(path: str | Path) -> Learner:
    """Load any saved perception model directory."""
    return Learner.load(path)


def make_model(name: str, **config: Any) -> Learner:
    """A fresh learner ``name`` with constructor ``config``."""
    return resolve_model_class(name)(**config)


def copy_file(src: Path, dst: Path) -> None:
    """Copy ``src`` to ``dst`` unless they are the same file."""
    if src.resolve() != dst.resolve():
        shutil.copyfile(src, dst)


def validate_onnx(path: str | Path) -> None:
    """Raise :class:`OnnxModelError` unless ``path`` is a loadable, valid ONNX model."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise OnnxModelError(f"ONNX file not found: {path}")
    try:
        onnx.checker.check_model(onnx.load(str(path)))
    except Exception as exc:  # onnx raises DecodeError / ValidationError / others for corrupt files
        raise OnnxModelError(f"{path} is not a valid ONNX model: {exc}") from exc
