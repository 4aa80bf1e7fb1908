"""The learner interface every perception model follows, with its saved-model format.

A learner owns a small torch network with one or more *named* inputs, each described by a
:class:`TensorSpec` (shape with ``-1`` for dynamic dimensions, dtype, meaning, and how the raw input is
preprocessed: :class:`ImagePreprocessing` for camera images, :class:`ArrayPreprocessing` for tokens, depth,
force windows or proprioception). Pre- and post-processing are NumPy code around the network, so the same
:meth:`Learner.infer` runs on any :mod:`perception.runtime` runtime, which takes and returns dicts of named
arrays.

Saved model (a directory)::

    manifest.json   name, class version, constructor config, input specs (with preprocessing), output specs,
                    training-data hash, weights file + SHA-256, extra state (gallery, calibration), metrics
    weights.pt      torch ``state_dict`` (absent for ONNX-only models)
    model.onnx      written by :meth:`Learner.export` (ONNX-only models keep their user file here)
    model.int8.onnx written by :meth:`Learner.quantize` (Q/DQ graph, explicit int8 quantization)
    model.<precision>.engine   written by :meth:`Learner.optimize` (TensorRT)

Manifest version 2 lists ``inputs`` (one entry per network input, each with its ``preprocessing``); version-1
manifests (one ``input`` and a top-level ``preprocessing``) are converted on read. ``Learner.load`` rebuilds the
network from the manifest's config, checks the weights' hash and loads them strictly, so a manifest that does
not match its weights or its network's inputs is a :class:`ManifestError`, not a silent mismatch.
"""

from __future__ import annotations

import abc
import hashlib
import importlib
import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import torch

from common.errors import UnknownNameError, check_choice
from common.io import atomic_path, atomic_write_json, json_default
from perception.errors import (
    CheckpointError,
    InvalidArgumentError,
    InvalidInputError,
    ManifestError,
    ModelExistsError,
    OnnxModelError,
)
from perception.runtime import (
    PRECISIONS,
    RUNTIMES,
    Runtime,
    build_tensorrt_engine,
    make_runtime,
    named_inputs,
    tensorrt_available,
    tensorrt_profile,
)
from perception.specs import ImagePreprocessing, TensorSpec

MANIFEST = "manifest.json"
WEIGHTS = "weights.pt"
ONNX_FILE = "model.onnx"
INT8_ONNX_FILE = "model.int8.onnx"
MANIFEST_FORMAT = "vantage-perception-model"
MANIFEST_VERSION = 2
#: Manifest versions :func:`read_manifest` reads (older ones are converted to the current layout).
MANIFEST_VERSIONS = (1, 2)

#: Model name -> "module:Class"; entries are strings so listing models imports nothing heavy.
MODEL_REGISTRY: dict[str, str] = {
    "face_detector": "perception.faces.detector:FaceDetectorLearner",
    "face_recognizer": "perception.faces.recognizer:FaceRecognizerLearner",
    "yunet": "perception.faces.external:YuNetDetector",
    "sface": "perception.faces.external:SFaceRecognizer",
}


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
    :meth:`build_network`, describe it in :meth:`input_specs` / :meth:`output_spec`, and implement the task
    methods. The network's ``forward`` takes the inputs in :meth:`input_specs` order and returns the outputs in
    :meth:`output_spec` order. Constructor keyword arguments are the ``config`` saved in the manifest.
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

    @abc.abstractmethod
    def input_specs(self) -> list[TensorSpec]:
        """The network inputs, in the order ``forward`` takes them, each with its preprocessing."""

    @abc.abstractmethod
    def output_spec(self) -> list[TensorSpec]:
        """The network outputs, in order; their names key :meth:`run_network`'s result."""

    @abc.abstractmethod
    def fit(self, dataset: Any, **kwargs: Any) -> dict[str, Any]:
        """Train on ``dataset``; returns a summary (e.g. loss history)."""

    @abc.abstractmethod
    def eval(self, dataset: Any, **kwargs: Any) -> dict[str, Any]:
        """Metrics on ``dataset``."""

    @abc.abstractmethod
    def infer(self, inputs: Any) -> Any:
        """Typed results for one sample or a list of samples."""

    def extra_state(self) -> dict[str, Any]:
        """JSON-serialisable state beyond the weights (galleries, thresholds)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`extra_state`."""

    def calibration_inputs(self, dataset: Any, samples: int) -> list[dict[str, np.ndarray]]:
        """About ``samples`` preprocessed inputs drawn from ``dataset``, as batches of named arrays, for int8
        calibration (:meth:`quantize`). Learners that know their datasets override it.

        Raises:
            InvalidArgumentError: this learner cannot draw inputs from a dataset; pass them to :meth:`quantize`.
        """
        raise InvalidArgumentError(f"{self.name} cannot draw calibration inputs from a dataset; pass calibration "
                                   f"batches (dicts of named, preprocessed arrays) to quantize()")

    def _batches(self, samples: Sequence[Any], batch_size: int = 8) -> list[dict[str, np.ndarray]]:
        """Preprocessed batches of raw ``samples`` of a one-input learner (batch 1 where the graph fixes it)."""
        spec = self.input_specs()[0]
        size = batch_size if spec.shape[0] < 0 else max(1, spec.shape[0])
        return [self.preprocess(list(samples[i:i + size])) for i in range(0, len(samples), size)]

    # -- spec --------------------------------------------------------------------------------------
    @property
    def preprocessing(self) -> ImagePreprocessing:
        """The image preprocessing of a learner whose only input is an image.

        Raises:
            InvalidArgumentError: the learner has several inputs, or its input is not an image.
        """
        specs = self.input_specs()
        if len(specs) != 1 or not isinstance(specs[0].preprocessing, ImagePreprocessing):
            raise InvalidArgumentError(f"{self.name} has inputs {[s.name for s in specs]}, not one image input; "
                                       f"use input_specs() and preprocess()")
        return specs[0].preprocessing

    def preprocess(self, inputs: Mapping[str, Any] | Any) -> dict[str, np.ndarray]:
        """Raw inputs (images, token lists, sensor windows) -> batched network inputs, by input name.

        Args:
            inputs: input name -> raw batch (a list of samples, or a batched array); for a learner with one
                input the raw batch alone is accepted.

        Raises:
            InvalidInputError: an input is missing or unexpected, or does not fit its spec.
        """
        specs = self.input_specs()
        names = [s.name for s in specs]
        feeds = named_inputs(inputs, names)
        missing = [n for n in names if n not in feeds]
        extra = sorted(set(feeds) - set(names))
        if missing or extra:
            raise InvalidInputError(f"{self.name} takes inputs {names}; missing {missing}, unexpected {extra}")
        out = {s.name: s.preprocess(feeds[s.name]) for s in specs}
        batches = {n: len(a) for n, a in out.items()}
        if len(set(batches.values())) > 1:
            raise InvalidInputError(f"inputs have different batch sizes {batches}")
        return out

    def manifest(self) -> dict[str, Any]:
        """The JSON manifest describing this model (version :data:`MANIFEST_VERSION`)."""
        return {
            "format": MANIFEST_FORMAT,
            "manifest_version": MANIFEST_VERSION,
            "name": self.name,
            "class": f"{type(self).__module__}:{type(self).__qualname__}",
            "version": self.version,
            "config": self.config,
            "inputs": [s.to_dict() for s in self.input_specs()],
            "outputs": [o.to_dict() for o in self.output_spec()],
            "training_data_hash": self.training_data_hash,
            "metrics": self.metrics,
            "extra": self.extra_state(),
        }

    # -- runtimes ----------------------------------------------------------------------------------
    def set_runtime(self, name: str, path: str | Path | None = None, threads: int = 0,
                    precision: str | None = None) -> Self:
        """Select the inference runtime: ``torch``, ``onnxruntime`` or ``tensorrt``.

        Args:
            name: runtime name.
            path: ONNX file or TensorRT engine; defaults to the files in :attr:`model_dir` for ``precision``
                (``model.onnx``, ``model.int8.onnx``; ``model.<precision>.engine`` for TensorRT), exporting
                ONNX to a temporary folder when the model was never saved.
            threads: ONNX Runtime intra-op threads (0 = all cores).
            precision: ``fp32`` (torch; onnxruntime's default), ``int8`` (onnxruntime: the Q/DQ graph written
                by :meth:`quantize`) or, for TensorRT, the engine's precision (default ``fp16``).

        Raises:
            UnknownNameError: unknown runtime or precision.
            InvalidArgumentError: the runtime has no such precision, or its model file does not exist yet.
        """
        if name not in RUNTIMES:
            raise UnknownNameError("runtime", name, RUNTIMES)
        allowed = {"torch": ("fp32",), "onnxruntime": ("fp32", "int8"), "tensorrt": PRECISIONS}[name]
        default = "fp16" if name == "tensorrt" else "fp32"
        precision = precision or default
        check_choice(f"{name} precision", precision, allowed)
        if name == "onnxruntime" and path is None:
            path = self._default_onnx() if precision == "fp32" else self._model_file(INT8_ONNX_FILE, "quantize()")
        elif name == "tensorrt" and path is None:
            path = self._model_file(f"model.{precision}.engine", f"optimize(precision={precision!r})")
        self._runtime = make_runtime(name, module=self.net, path=path, threads=threads, inputs=self.input_specs(),
                                     outputs=self.output_spec())
        self.runtime_name = name if precision == default else f"{name}-{precision}"
        return self

    def _model_file(self, file: str, how: str) -> Path:
        path = self.model_dir / file if self.model_dir is not None else None
        if path is None or not path.is_file():
            raise InvalidArgumentError(f"no {file} in {self.model_dir or 'an unsaved model'}: call {how} first "
                                       f"or pass path=")
        return path

    def _default_onnx(self) -> Path:
        if self.model_dir is not None and (self.model_dir / ONNX_FILE).is_file():
            return self.model_dir / ONNX_FILE
        import tempfile

        folder = Path(tempfile.mkdtemp(prefix=f"vantage_{self.name}_"))
        return self.export(folder / ONNX_FILE)

    @property
    def runtime(self) -> Runtime:
        """The selected runtime (eager torch unless :meth:`set_runtime` chose another)."""
        if self._runtime is None:
            self._runtime = make_runtime("torch", module=self.net, inputs=self.input_specs(),
                                         outputs=self.output_spec())
        return self._runtime

    def run_network(self, inputs: Mapping[str, np.ndarray] | np.ndarray) -> dict[str, np.ndarray]:
        """Raw network outputs, by output name, for preprocessed batched inputs on the selected runtime.

        Args:
            inputs: input name -> batch (:meth:`preprocess`'s result); a bare array for a one-input learner.
        """
        if self.net is not None:
            self.net.eval()
        return self.runtime.run(inputs)

    # -- persistence -------------------------------------------------------------------------------
    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write weights + manifest into directory ``path`` (each file atomically).

        Raises:
            ModelExistsError: ``path`` holds files and ``overwrite`` is false.
        """
        path = Path(path)
        _prepare_dir(path, overwrite)
        manifest = self.manifest()
        if self.net is not None:
            with atomic_path(path / WEIGHTS) as tmp:  # a crash never leaves half a weights file
                torch.save(self.net.state_dict(), tmp)
            manifest["weights"] = {"file": WEIGHTS, "sha256": _sha256(path / WEIGHTS)}
        else:
            manifest["weights"] = None
        self._write_extra_files(path, manifest)
        atomic_write_json(path / MANIFEST, manifest, sort_keys=False)
        if self.net is not None:
            for stale in (ONNX_FILE, INT8_ONNX_FILE):  # exports of older weights would not match the new ones
                (path / stale).unlink(missing_ok=True)
        self.model_dir = path
        return path

    def _write_extra_files(self, path: Path, manifest: dict[str, Any]) -> None:
        """Hook for models that keep more files (ONNX-only models copy their ONNX)."""

    @classmethod
    def load(cls, path: str | Path) -> Learner:
        """Load a saved model directory (any registered model when called on :class:`Learner`).

        Raises:
            CheckpointError: the directory or weights file is missing.
            ManifestError: the manifest is malformed, names another model, or does not match the weights or the
                network's inputs.
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
        # Version-1 manifests of ONNX-only models named their one input "input" whatever the graph called it.
        _check_manifest_inputs(path, manifest["inputs"], learner.input_specs(),
                               names="converted_from_manifest_version" not in manifest)
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
    def export(self, path: str | Path, format: str = "onnx", opset: int | None = None,
               overwrite: bool = True) -> Path:
        """Export the network to ONNX and return the file path.

        ``path`` is a ``.onnx`` file or a directory (then ``model.onnx`` inside it, next to the manifest).
        One dummy input per input spec; every ``-1`` dimension of every input and the batch dimension of the
        outputs are dynamic; the manifest is embedded as ONNX metadata (``vantage_manifest``). The exporter and
        opset are pinned in :func:`perception.export.export_onnx`.
        """
        from perception.export import OPSET, dynamic_axes, example_inputs, export_onnx

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
        inputs, outputs = self.input_specs(), self.output_spec()
        # Zeros, not random values: the traced graph must not depend on the dummy's values, and zeros are valid
        # for every input kind (token id 0, an all-black image).
        dummies = [torch.zeros(a.shape, dtype=torch.from_numpy(a).dtype)
                   for a in example_inputs(inputs, batch=2).values()]
        import onnx

        with atomic_path(path) as tmp:
            export_onnx(self.net, dummies, tmp, input_names=[s.name for s in inputs],
                        output_names=[o.name for o in outputs], dynamic_axes=dynamic_axes(inputs, outputs),
                        opset=opset or OPSET)
            model = onnx.load(str(tmp))
            onnx.checker.check_model(model)
            meta = model.metadata_props.add()
            meta.key, meta.value = "vantage_manifest", json.dumps(self.manifest(), default=json_default)
            onnx.save(model, str(tmp))
        return path

    def quantize(self, calibration: Sequence[Mapping[str, np.ndarray]] | Sequence[np.ndarray],
                 path: str | Path | None = None, **options: Any) -> Path:
        """Write ``model.int8.onnx``: the ONNX export quantized to int8 Q/DQ form, calibrated on ``calibration``.

        Runs on the CPU (ONNX Runtime's static quantizer; see :mod:`perception.quantization` for the
        settings); the result runs on ONNX Runtime (``set_runtime("onnxruntime", precision="int8")``) and is
        what :meth:`optimize` builds int8 TensorRT engines from.

        Args:
            calibration: batches of preprocessed inputs (dicts name -> array, e.g. from
                :meth:`calibration_inputs`; bare arrays for a one-input learner).
            path: output directory (default: the model directory).
            options: passed to :func:`perception.quantization.quantize_onnx`.

        Raises:
            InvalidArgumentError: no output directory or no calibration samples.
            QuantizationError: ONNX Runtime cannot quantize the graph.
        """
        from perception.quantization import quantize_onnx

        folder = self._output_dir(path, "quantize")
        names = [s.name for s in self.input_specs()]
        batches = [dict(named_inputs(b, names)) for b in calibration]
        onnx_path = folder / ONNX_FILE
        if not onnx_path.is_file():
            onnx_path = self.export(folder)
        return quantize_onnx(onnx_path, folder / INT8_ONNX_FILE, batches, **options)

    def _output_dir(self, path: str | Path | None, what: str) -> Path:
        folder = Path(path) if path is not None else self.model_dir
        if folder is None:
            raise InvalidArgumentError(f"{what}() needs an output directory (or save the model first)")
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def optimize(self, path: str | Path | None = None, target: str = "tensorrt", precision: str = "fp16",
                 calibration: Sequence[Mapping[str, np.ndarray]] | Sequence[np.ndarray] | None = None,
                 max_batch: int = 8, shapes: Mapping[str, Sequence[Sequence[int]]] | None = None) -> Path:
        """Build a TensorRT engine (``model.<precision>.engine``) from the ONNX export.

        ``int8`` is explicit quantization: the engine is built from ``model.int8.onnx`` (the Q/DQ graph of
        :meth:`quantize`), which is written first from ``calibration`` when it does not exist yet. The same
        path serves TensorRT 10 and 11 (:func:`perception.runtime.build_tensorrt_engine`).

        Args:
            path: output directory (default: the model directory).
            target: only ``tensorrt``.
            precision: ``fp32``, ``fp16`` or ``int8``.
            calibration: preprocessed input batches for int8 when ``model.int8.onnx`` is missing.
            max_batch: largest batch the engine accepts.
            shapes: input name -> ``(min, opt, max)`` shapes for inputs with dynamic non-batch dimensions.

        Raises:
            RuntimeNotAvailableError: TensorRT or a CUDA GPU is missing.
            InvalidArgumentError: int8 without a quantized graph or calibration samples.
        """
        if target != "tensorrt":
            raise UnknownNameError("optimize target", target, ("tensorrt",))
        check_choice("precision", precision, PRECISIONS)
        folder = self._output_dir(path, "optimize")
        ok, reason = tensorrt_available()
        if not ok:  # fail before minutes of export and quantization that could not be used
            from perception.errors import RuntimeNotAvailableError

            raise RuntimeNotAvailableError(reason)
        profile = tensorrt_profile(self.input_specs(), max_batch, shapes)
        if precision == "int8":
            onnx_path = folder / INT8_ONNX_FILE
            if not onnx_path.is_file():
                if not calibration:
                    raise InvalidArgumentError(f"int8 needs the quantized graph {onnx_path}: run quantize() "
                                               f"(vantage perception quantize) or pass calibration=")
                onnx_path = self.quantize(calibration, folder)
        else:
            onnx_path = folder / ONNX_FILE
            if not onnx_path.is_file():
                onnx_path = self.export(folder)
        return build_tensorrt_engine(onnx_path, folder / f"model.{precision}.engine", profile, precision)


def _spec_fits(entry: Mapping[str, Any], spec: TensorSpec) -> bool:
    shape = list(entry.get("shape", []))
    return (len(shape) == len(spec.shape) and entry.get("dtype", "float32") == spec.dtype
            and all(a < 0 or b < 0 or a == b for a, b in zip(shape, spec.shape)))


def _check_manifest_inputs(path: Path, entries: list[dict[str, Any]], specs: list[TensorSpec],
                           names: bool = True) -> None:
    """Raise :class:`ManifestError` unless the manifest's inputs are the network's (names, ranks, fixed dims)."""
    listed = [e.get("name") for e in entries]
    if (listed if names else len(listed)) != ([s.name for s in specs] if names else len(specs)):
        raise ManifestError(f"{path / MANIFEST} lists inputs {listed} but the network takes {[s.name for s in specs]}")
    for entry, spec in zip(entries, specs):
        if not _spec_fits(entry, spec):
            raise ManifestError(f"{path / MANIFEST}: input {spec.name!r} is {entry.get('shape')} "
                                f"{entry.get('dtype', 'float32')} but the network takes {spec.shape} {spec.dtype}")


def upgrade_manifest(manifest: dict[str, Any], file: str | Path = MANIFEST) -> dict[str, Any]:
    """A manifest in the current layout (version 2): version 1's ``input`` + ``preprocessing`` become ``inputs``.

    Raises:
        ManifestError: the manifest version is unknown or the version-1 input entry is malformed.
    """
    version = manifest.get("manifest_version", 1)
    if version not in MANIFEST_VERSIONS:
        raise ManifestError(f"{file} has manifest_version {version!r}; this code reads {list(MANIFEST_VERSIONS)}")
    if version == 1:
        manifest = dict(manifest)
        entry = manifest.pop("input", None)
        pre = manifest.pop("preprocessing", None)
        if not isinstance(entry, dict):
            raise ManifestError(f"{file} (manifest version 1) lacks its 'input' entry")
        entry = dict(entry)
        if isinstance(pre, dict):  # version-1 models all took one image
            entry["preprocessing"] = {"kind": ImagePreprocessing.kind, **pre}
        manifest["inputs"] = [entry]
        manifest["manifest_version"] = MANIFEST_VERSION
        manifest["converted_from_manifest_version"] = 1
    return manifest


def read_manifest(path: str | Path) -> dict[str, Any]:
    """Read and validate ``path/manifest.json``, converting older manifest versions to the current layout.

    Raises:
        CheckpointError: ``path`` is not a directory.
        ManifestError: the manifest is missing, not JSON, of an unknown version, or lacks required keys.
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
    manifest = upgrade_manifest(manifest, file)
    missing = [k for k in ("name", "version", "config", "inputs", "outputs") if k not in manifest]
    if missing:
        raise ManifestError(f"{file} lacks required keys {missing}")
    if not isinstance(manifest["inputs"], list) or not all(isinstance(e, dict) for e in manifest["inputs"]):
        raise ManifestError(f"{file}: 'inputs' must be a list of input specs")
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
