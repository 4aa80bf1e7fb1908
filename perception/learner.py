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
network from the manifest's config, checks the weights' hash (the ONNX file's for ONNX-only models) and loads
them strictly, so a manifest that does not match its weights or its network's inputs and outputs is a
:class:`ManifestError`, not a silent mismatch.

Writing is checked first and atomic. A model's *identity* is its name, class, config and weights hash
(:func:`model_identity`). ``save`` refuses a non-empty folder without ``overwrite`` and never writes into a
dataset or training run. ``export``, ``quantize`` and ``optimize`` refuse a folder whose manifest describes
another model (even with ``overwrite``: the folder would hold two models' files); in the model's own folder
(or a copy of it) they rewrite the files that depend only on the weights (:data:`REGENERATED_FILES`:
``model.onnx``, ``model.fp16.onnx``) freely, and replace an existing ``model.int8.onnx`` (it depends on the
calibration data) or engine (it depends on the GPU and the TensorRT version) only with ``overwrite``; anywhere
else any existing file needs ``overwrite``.
"""

from __future__ import annotations

import abc
import contextlib
import importlib
import inspect
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import torch

from common.errors import UnknownNameError, check_choice
from common.io import ARTEFACT_FILES, atomic_path, json_default
from perception.errors import (
    CheckpointError,
    InvalidArgumentError,
    InvalidInputError,
    ManifestError,
    ModelExistsError,
    OnnxModelError,
    OutputExistsError,
)
from perception.manifest import (
    INT8_ONNX_FILE,
    MANIFEST,
    MANIFEST_FORMAT,
    MANIFEST_VERSION,
    MODEL_REGISTRY,
    ONNX_FILE,
    REGENERATED_FILES,
    STALE_PATTERNS,
    WEIGHTS,
    _check_manifest_inputs,
    _check_manifest_outputs,
    _sha256,
    check_save_dir,
    describe_identity,
    model_identity,
    read_manifest,
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


class Learner(abc.ABC):
    """Base class of perception models: ``fit``, ``eval``, ``infer``, ``save``, ``load``, ``export``, ``optimize``.

    Subclasses set :attr:`name`, :attr:`version`, build their network from ``self.config`` in
    :meth:`build_network`, describe it in :meth:`input_specs` / :meth:`output_spec`, and implement the task
    methods. The network's ``forward`` takes the inputs in :meth:`input_specs` order and returns the outputs in
    :meth:`output_spec` order. Constructor keyword arguments are the ``config`` saved in the manifest.
    """

    name: ClassVar[str]
    version: ClassVar[str] = "1"
    #: What the model is for (``"face detector"``, ``"face recogniser"``); callers that combine models (the face
    #: pipeline) check it when they load a folder. Empty: no particular role.
    role: ClassVar[str] = ""
    #: Whether ``fit`` can train it (``False`` for models wrapping a user's ONNX file).
    trainable: ClassVar[bool] = True

    def __init__(self, **config: Any) -> None:
        self.config: dict[str, Any] = dict(config)
        self.net: torch.nn.Module | None = self.build_network()
        self.training_data_hash: str | None = None
        self.metrics: dict[str, Any] = {}
        self.model_dir: Path | None = None
        #: :func:`model_identity` of the folder this model was loaded from or saved to; ``None`` when it was
        #: never saved or its weights changed since (``fit``).
        self.saved_identity: dict[str, Any] | None = None
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
            path = self._default_onnx() if precision == "fp32" else self._model_file(
                INT8_ONNX_FILE, "quantize() (vantage perception quantize MODEL_DIR --calib-data DATA)")
        elif name == "tensorrt" and path is None:
            how = f"optimize(precision={precision!r}) (vantage perception optimize MODEL_DIR --precision {precision})"
            path = self._model_file(f"model.{precision}.engine", how)
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
        """Write weights + manifest into directory ``path``.

        Every file is first written to a temporary file beside its target; only when all are complete are they
        renamed into place (weights first, manifest last). A failure part-way leaves the previous model, if
        any, loadable and no temporary file behind. Replacing a model's weights removes its derived files
        (ONNX exports, int8 graph, engines), which were made from the old weights.

        Raises:
            ModelExistsError: ``path`` holds files and ``overwrite`` is false.
            OutputExistsError: ``path`` is a file or holds a dataset or training run.
        """
        path = check_save_dir(path, overwrite)
        created = not path.exists()
        manifest = self.manifest()
        try:
            with contextlib.ExitStack() as stack:
                # Contexts exit in reverse: the weights are renamed into place before the manifest that names
                # their hash.
                manifest_tmp = stack.enter_context(atomic_path(path / MANIFEST))
                if self.net is not None:
                    weights_tmp = stack.enter_context(atomic_path(path / WEIGHTS))
                    torch.save(self.net.state_dict(), weights_tmp)
                    manifest["weights"] = {"file": WEIGHTS, "sha256": _sha256(weights_tmp)}
                else:
                    manifest["weights"] = None
                self._write_extra_files(path, manifest, stack)
                text = json.dumps(manifest, indent=2, sort_keys=False, default=json_default) + "\n"
                manifest_tmp.write_text(text, encoding="utf-8")
                if self.net is not None:
                    for pattern in STALE_PATTERNS:  # exports of older weights would not match the new ones
                        for stale in path.glob(pattern):
                            stale.unlink(missing_ok=True)
        except BaseException:
            if created and path.is_dir() and not any(path.iterdir()):
                path.rmdir()  # a failed first save leaves no empty model folder behind
            raise
        self.model_dir = path
        self.saved_identity = model_identity(manifest)
        return path

    def _write_extra_files(self, path: Path, manifest: dict[str, Any], stack: contextlib.ExitStack) -> None:
        """Hook for models that keep more files (ONNX-only models copy their ONNX file).

        Args:
            path: the model folder.
            manifest: the manifest being written; the hook may add entries.
            stack: enter :func:`common.io.atomic_path` contexts on it, so that the files are renamed into place
                together with the weights and the manifest.
        """

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
        config = dict(manifest["config"])
        if "onnx_path" in config:  # ONNX-only models keep their file next to the manifest
            config["onnx_path"] = str(path / Path(config["onnx_path"]).name)
            onnx_entry = manifest.get("onnx") or {}
            onnx_file = Path(config["onnx_path"])
            if onnx_entry.get("sha256") and onnx_file.is_file() and _sha256(onnx_file) != onnx_entry["sha256"]:
                raise ManifestError(f"{onnx_file} does not match the SHA-256 in {path / MANIFEST}: the ONNX file was "
                                    f"changed or corrupted; import the model again (vantage perception import-onnx "
                                    f"... --out {path} --overwrite)")
        try:
            learner = target(**config)
        except (TypeError, InvalidArgumentError) as exc:
            raise ManifestError(
                f"{path}: config {manifest.get('config')} does not fit {target.__name__}: {exc}") from exc
        # Version-1 manifests of ONNX-only models named their one input "input" whatever the graph called it.
        _check_manifest_inputs(path, manifest["inputs"], learner.input_specs(),
                               names="converted_from_manifest_version" not in manifest)
        _check_manifest_outputs(path, manifest["outputs"], learner.output_spec())
        learner.model_dir = path
        if learner.net is not None:
            weights = manifest.get("weights") or {}
            wpath = path / weights.get("file", WEIGHTS)
            if not wpath.is_file():
                raise CheckpointError(f"weights file {wpath} is missing; restore it, or train the model again")
            if weights.get("sha256") and _sha256(wpath) != weights["sha256"]:
                raise ManifestError(f"{wpath} does not match the SHA-256 in {path / MANIFEST}: the weights were "
                                    f"changed or corrupted; restore the folder from a copy, or train the model "
                                    f"again")
            try:
                state = torch.load(wpath, map_location="cpu", weights_only=True)
            except Exception as exc:  # torch raises RuntimeError, pickle and zip errors for a damaged file
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                raise CheckpointError(f"cannot read weights {wpath} ({type(exc).__name__}: {first}); it is truncated "
                                      f"or corrupt: restore the folder from a copy, or train the model again") from exc
            try:
                learner.net.load_state_dict(state, strict=True)
            except (RuntimeError, TypeError, AttributeError) as exc:
                raise ManifestError(f"{path}: weights do not match the network described by the manifest: "
                                    f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc
            learner.net.eval()
        learner.training_data_hash = manifest.get("training_data_hash")
        learner.metrics = manifest.get("metrics") or {}
        learner.load_extra_state(manifest.get("extra") or {})
        learner.saved_identity = model_identity(manifest)
        return learner

    # -- output checks -----------------------------------------------------------------------------
    def check_output(self, folder: str | Path, files: Sequence[str], overwrite: bool = False,
                     what: str = "files") -> Path:
        """Check that this model's derived ``files`` may be written into ``folder``; nothing is created.

        The rules (module docstring): never into a dataset or training run, never next to another model's
        manifest, and an existing file needs ``overwrite`` unless ``folder`` holds this very model and the file
        is one of :data:`REGENERATED_FILES`.

        Args:
            folder: the output folder.
            files: names of the files that will be written into it.
            overwrite: allow replacing existing files.
            what: what is written, for the messages (``"ONNX export"``).

        Returns:
            ``folder`` as a :class:`~pathlib.Path`.

        Raises:
            OutputExistsError: ``folder`` is a file or holds a dataset or training run.
            ModelExistsError: ``folder`` holds another model, or a file exists and ``overwrite`` is false.
        """
        folder = Path(folder)
        if folder.exists() and not folder.is_dir():
            raise OutputExistsError(f"output folder {folder} is a file; choose a folder")
        for identity, kind in ARTEFACT_FILES.items():
            if identity != MANIFEST and (folder / identity).is_file():
                raise OutputExistsError(f"{folder} holds {kind} ({identity}); write the {what} of {self.name!r} to "
                                        f"its model folder or an empty one")
        own = False
        if (folder / MANIFEST).is_file():
            try:
                other = model_identity(read_manifest(folder))
            except CheckpointError as exc:
                raise ModelExistsError(f"{folder} holds a {MANIFEST} that is not a readable model manifest ({exc}); "
                                       f"write the {what} to an empty folder") from exc
            if other != self.saved_identity:
                source = f"from {self.model_dir}" if self.model_dir is not None else "being written"
                changed = " (its weights changed since it was loaded or saved: save it first)" \
                    if self.saved_identity is None and self.model_dir is not None else ""
                raise ModelExistsError(
                    f"{folder} holds another model, {describe_identity(other)}; the model {source} is "
                    f"{describe_identity(self.saved_identity)}{changed}. Writing its {what} there would mix two "
                    f"models' files, so it is refused even with --overwrite: write to "
                    + (f"{self.model_dir} or an empty folder" if self.saved_identity and self.model_dir
                       else "an empty folder"))
            own = True
        existing = [f for f in files if (folder / f).exists() and not (own and f in REGENERATED_FILES)]
        if existing and not overwrite:
            raise ModelExistsError(f"{folder} already holds {', '.join(existing)}; pass overwrite=True (--overwrite) "
                                   f"to replace {'them' if len(existing) > 1 else 'it'}, or write elsewhere")
        return folder

    # -- export ------------------------------------------------------------------------------------
    def export(self, path: str | Path, format: str = "onnx", opset: int | None = None,
               overwrite: bool = False) -> Path:
        """Export the network to ONNX and return the file path.

        ``path`` is a ``.onnx`` file or a directory (then ``model.onnx`` inside it, next to the manifest).
        One dummy input per input spec; every ``-1`` dimension of every input and the batch dimension of the
        outputs are dynamic; the manifest is embedded as ONNX metadata (``vantage_manifest``). The exporter and
        opset are pinned in :func:`perception.export.export_onnx`. The file is written atomically.

        Args:
            path: ``.onnx`` file or folder.
            format: only ``onnx``.
            opset: ONNX opset (default :data:`perception.export.OPSET`).
            overwrite: replace an existing file; not needed for ``model.onnx`` in the model's own folder (it is
                made from the saved weights alone). See :meth:`check_output`.

        Raises:
            ModelExistsError: the folder holds another model, or the file exists and ``overwrite`` is false.
            OutputExistsError: the folder is a file or holds a dataset or training run.
        """
        from perception.export import OPSET, dynamic_axes, example_inputs, export_onnx

        if format != "onnx":
            raise UnknownNameError("export format", format, ("onnx",))
        if self.net is None:
            raise InvalidArgumentError(f"{self.name} is ONNX-only; its ONNX file is already the export")
        path = Path(path)
        if path.suffix != ".onnx":
            path = path / ONNX_FILE
        self.check_output(path.parent, [path.name], overwrite, "ONNX export")
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
                 path: str | Path | None = None, overwrite: bool = False, **options: Any) -> Path:
        """Write ``model.int8.onnx``: the ONNX export quantized to int8 Q/DQ form, calibrated on ``calibration``.

        Runs on the CPU (ONNX Runtime's static quantizer; see :mod:`perception.quantization` for the
        settings); the result runs on ONNX Runtime (``set_runtime("onnxruntime", precision="int8")``) and is
        what :meth:`optimize` builds int8 TensorRT engines from.

        Args:
            calibration: batches of preprocessed inputs (dicts name -> array, e.g. from
                :meth:`calibration_inputs`; bare arrays for a one-input learner).
            path: output directory (default: the model directory).
            overwrite: replace an existing ``model.int8.onnx`` (it depends on the calibration data, so it is
                never replaced silently).
            options: passed to :func:`perception.quantization.quantize_onnx`.

        Raises:
            InvalidArgumentError: no output directory, no calibration samples, or batches without the model's
                input names.
            ModelExistsError: ``model.int8.onnx`` exists and ``overwrite`` is false, or the folder holds another
                model.
            QuantizationError: ONNX Runtime cannot quantize the graph.
        """
        from perception.quantization import quantize_onnx

        names = [s.name for s in self.input_specs()]
        batches = [dict(named_inputs(b, names)) for b in calibration]
        if not batches:
            raise InvalidArgumentError("int8 quantization needs calibration samples (batches of named inputs)")
        for k, batch in enumerate(batches):
            if sorted(batch) != sorted(names):
                raise InvalidArgumentError(f"calibration batch {k} has inputs {sorted(batch)}; {self.name} takes "
                                           f"inputs {sorted(names)}")
        folder = self._output_dir(path, "quantize", [INT8_ONNX_FILE], overwrite)
        onnx_path = folder / ONNX_FILE
        if not onnx_path.is_file():
            onnx_path = self.export(folder)
        return quantize_onnx(onnx_path, folder / INT8_ONNX_FILE, batches, **options)

    def _output_dir(self, path: str | Path | None, what: str, files: Sequence[str], overwrite: bool) -> Path:
        """The checked output folder of ``quantize`` / ``optimize`` (default: the model folder), created."""
        folder = Path(path) if path is not None else self.model_dir
        if folder is None:
            raise InvalidArgumentError(f"{what}() needs an output directory (or save the model first)")
        self.check_output(folder, files, overwrite, f"{what} output")
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def optimize(self, path: str | Path | None = None, target: str = "tensorrt", precision: str = "fp16",
                 calibration: Sequence[Mapping[str, np.ndarray]] | Sequence[np.ndarray] | None = None,
                 max_batch: int = 8, shapes: Mapping[str, Sequence[Sequence[int]]] | None = None,
                 overwrite: bool = False) -> Path:
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
            overwrite: replace an existing engine of this precision (engines depend on the GPU and TensorRT
                version, so one is never replaced silently).

        Raises:
            RuntimeNotAvailableError: TensorRT or a CUDA GPU is missing.
            InvalidArgumentError: int8 without a quantized graph or calibration samples.
            ModelExistsError: the engine exists and ``overwrite`` is false, or the folder holds another model.
        """
        if target != "tensorrt":
            raise UnknownNameError("optimize target", target, ("tensorrt",))
        check_choice("precision", precision, PRECISIONS)
        folder = self._output_dir(path, "optimize", [f"model.{precision}.engine"], overwrite)
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
    """A fresh learner ``name`` with constructor ``config``.

    Raises:
        UnknownNameError: ``name`` is not a registered model.
        InvalidArgumentError: a config key is not a constructor argument, or a value does not fit it (the
            message names the key or value and what the model takes).
    """
    cls = resolve_model_class(name)
    params = inspect.signature(cls.__init__).parameters
    allowed = [p for p in params if p != "self" and params[p].kind not in (inspect.Parameter.VAR_POSITIONAL,
                                                                          inspect.Parameter.VAR_KEYWORD)]
    unknown = sorted(set(config) - set(allowed))
    if unknown:
        raise InvalidArgumentError(f"unknown config keys {unknown} for {name}; it takes {allowed}")
    missing = [p for p in allowed if params[p].default is inspect.Parameter.empty and p not in config]
    if missing:
        raise InvalidArgumentError(f"{name} needs config {missing}")
    for key, value in config.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidArgumentError(f"config {key}={value!r} for {name} must be a finite number")
    try:
        return cls(**config)
    except (InvalidArgumentError, OnnxModelError):
        raise
    except (TypeError, ValueError, IndexError, KeyError) as exc:  # a value of the wrong type for the constructor
        raise InvalidArgumentError(f"config {config} does not fit {name}: {type(exc).__name__}: {exc}; its "
                                   f"arguments are {allowed}") from exc
