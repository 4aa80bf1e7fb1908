"""Inference runtimes behind one call: ``run({input name: array}) -> {output name: array}``.

``torch`` runs the learner's module eagerly, ``onnxruntime`` an ONNX file (fp32 export or the int8 Q/DQ graph)
on the CPU (or CUDA when its provider is present), ``tensorrt`` a serialized engine on an NVIDIA GPU. Learners
pre- and post-process in NumPy around :meth:`Runtime.run`, so every runtime gives the same results within
:data:`TOLERANCES`. Inputs and outputs are named, so a model may take several inputs (an image and question
tokens; RGB, depth, force and proprioception). ``tensorrt`` and CUDA are imported only when a TensorRT runtime
or engine build is asked for; engines are built the same way for TensorRT 10 and 11 (see
:func:`build_tensorrt_engine`).
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from common.errors import check_choice
from perception.errors import (
    InvalidArgumentError,
    InvalidInputError,
    OnnxModelError,
    QuantizationError,
    RuntimeNotAvailableError,
    SpecMismatchError,
)

if TYPE_CHECKING:
    from perception.specs import TensorSpec

RUNTIMES = ("torch", "onnxruntime", "tensorrt")
PRECISIONS = ("fp32", "fp16", "int8")

#: Max absolute difference of raw network outputs from the torch fp32 reference, per runtime/precision.
#: The ``-int8`` entries are different: int8 (the Q/DQ graph: symmetric int8 activations, per-channel int8
#: weights) bounds each output's *mean* absolute difference from fp32 as a fraction of that output's range, on
#: inputs like the calibration data (simulator frames, face crops); see
#: :func:`perception.quantization.compare_onnx`. Measured on the shipped models: detector 0.027, recogniser 0.016.
TOLERANCES: dict[str, float] = {"onnxruntime": 1e-4, "onnxruntime-int8": 0.05, "tensorrt-fp32": 1e-3,
                                "tensorrt-fp16": 1e-2, "tensorrt-int8": 0.05}

_ORT_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
               "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(int8)": "int8", "tensor(uint8)": "uint8",
               "tensor(bool)": "bool"}


def named_inputs(inputs: Mapping[str, Any] | np.ndarray, names: Sequence[str]) -> Mapping[str, Any]:
    """``inputs`` as a name -> value mapping; a bare array is accepted when there is exactly one input.

    Raises:
        InvalidInputError: a bare array was given to a model with several inputs.
    """
    if isinstance(inputs, Mapping):
        return inputs
    if len(names) != 1:
        raise InvalidInputError(f"this model takes {len(names)} named inputs {list(names)}; pass a dict "
                                f"name -> array, not a bare {type(inputs).__name__}")
    return {names[0]: inputs}


def _check_names(inputs: Mapping[str, Any], names: Sequence[str]) -> None:
    missing = [n for n in names if n not in inputs]
    extra = sorted(set(inputs) - set(names))
    if missing or extra:
        raise InvalidInputError(f"network inputs must be exactly {list(names)}; missing {missing}, unexpected {extra}")


class Runtime(abc.ABC):
    """One loaded network mapping named input arrays to named output arrays."""

    name: str
    #: input names in the order the network takes them
    input_names: list[str]
    #: output names in the order the network gives them
    output_names: list[str]

    @abc.abstractmethod
    def run(self, inputs: Mapping[str, np.ndarray] | np.ndarray) -> dict[str, np.ndarray]:
        """Run the network on preprocessed, batched inputs.

        Args:
            inputs: input name -> array (batch first); a bare array when the network has one input.

        Returns:
            Output name -> array, in the network's output order.

        Raises:
            InvalidInputError: an input is missing or unexpected.
        """


class TorchRuntime(Runtime):
    """Eager PyTorch on the CPU (the reference): the module is called with the inputs in spec order.

    Args:
        module: the learner's network.
        inputs: input specs, in the order ``module.forward`` takes them.
        outputs: output specs, in the order the module returns its outputs; they name them.
    """

    name = "torch"

    def __init__(self, module: torch.nn.Module, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]) -> None:
        self.module = module.eval()
        self.input_specs = list(inputs)
        self.input_names = [s.name for s in self.input_specs]
        self.output_names = [s.name for s in outputs]

    def run(self, inputs: Mapping[str, np.ndarray] | np.ndarray) -> dict[str, np.ndarray]:
        feeds = named_inputs(inputs, self.input_names)
        _check_names(feeds, self.input_names)
        args = [torch.from_numpy(np.ascontiguousarray(feeds[s.name], np.dtype(s.dtype))) for s in self.input_specs]
        with torch.inference_mode():
            out = self.module(*args)
        outs = out if isinstance(out, tuple | list) else (out,)
        if len(outs) != len(self.output_names):
            raise OnnxModelError(f"the network returned {len(outs)} outputs but the output spec names "
                                 f"{len(self.output_names)}: {self.output_names}")
        return {name: o.numpy() for name, o in zip(self.output_names, outs)}


def onnx_graph_inputs(session: Any) -> list[tuple[str, list[int], str]]:
    """``(name, shape with -1 for symbolic dims, numpy dtype name)`` of an ONNX Runtime session's inputs."""
    return [(i.name, [d if isinstance(d, int) and d > 0 else -1 for d in (i.shape or [])],
             _ORT_DTYPES.get(i.type, i.type)) for i in session.get_inputs()]


def check_graph_inputs(graph: Sequence[tuple[str, Sequence[int], str]], specs: Sequence[TensorSpec],
                       where: str | Path) -> None:
    """Raise :class:`SpecMismatchError` unless a model file's inputs fit the model's input specs.

    Names must be the same set; ranks and dtypes equal; a dimension the graph fixes must be fixed to the same
    size in the spec (a graph dimension that is dynamic accepts any spec).
    """
    graph_names = [g[0] for g in graph]
    spec_names = [s.name for s in specs]
    if sorted(graph_names) != sorted(spec_names):
        raise SpecMismatchError(f"{where} has inputs {graph_names} but the model's input specs name {spec_names}")
    by_name = {s.name: s for s in specs}
    for name, shape, dtype in graph:
        spec = by_name[name]
        fits = len(shape) == len(spec.shape) and all(g < 0 or g == s for g, s in zip(shape, spec.shape))
        if not fits:
            raise SpecMismatchError(f"{where}: input {name!r} has shape {list(shape)} (-1 = dynamic) but its spec "
                                    f"says {list(spec.shape)}")
        if dtype != spec.dtype:
            raise SpecMismatchError(f"{where}: input {name!r} has dtype {dtype} but its spec says {spec.dtype}")


def check_graph_outputs(graph: Sequence[tuple[str, Sequence[int] | None]], specs: Sequence[TensorSpec],
                        where: str | Path) -> None:
    """Raise :class:`SpecMismatchError` unless a model file's outputs fit the model's output specs.

    Names must be the same set (the learner reads outputs by name); where the file records an output's shape,
    its rank must equal the spec's and a dimension fixed in both must agree.
    """
    graph_names = [g[0] for g in graph]
    spec_names = [s.name for s in specs]
    if sorted(graph_names) != sorted(spec_names):
        raise SpecMismatchError(f"{where} has outputs {graph_names} but the model's output specs name {spec_names}; "
                                f"the file was made for another model: re-export or re-import it")
    by_name = {s.name: s for s in specs}
    for name, shape in graph:
        if shape is None:  # the file does not record this output's shape
            continue
        spec = by_name[name]
        fits = len(shape) == len(spec.shape) and all(g < 0 or s < 0 or g == s for g, s in zip(shape, spec.shape))
        if not fits:
            raise SpecMismatchError(f"{where}: output {name!r} has shape {list(shape)} (-1 = dynamic) but its spec "
                                    f"says {list(spec.shape)}; re-export the model")


def _shape_or_none(shape: Any) -> list[int] | None:
    if shape is None:
        return None
    return [d if isinstance(d, int) and d > 0 else -1 for d in shape]


class OnnxRuntime(Runtime):
    """ONNX Runtime session on an ONNX file (fp32 export or int8 Q/DQ graph); inputs and outputs by graph name.

    Args:
        path: the ONNX file.
        threads: intra-op threads (0 lets ONNX Runtime choose: all cores).
        providers: execution providers; default CPU only, which keeps results comparable across machines.
        inputs: the model's input specs; when given, the graph's input names, ranks, fixed dims and dtypes
            must match them.
        outputs: the model's output specs; when given, the graph's output names (and recorded ranks and fixed
            dims) must match them.

    Raises:
        OnnxModelError: the file is missing or not a valid ONNX model.
        SpecMismatchError: the graph's inputs or outputs do not match ``inputs`` / ``outputs``.
        RuntimeNotAvailableError: onnxruntime is not installed.
    """

    name = "onnxruntime"

    def __init__(self, path: str | Path, threads: int = 0, providers: list[str] | None = None,
                 inputs: Sequence[TensorSpec] | None = None, outputs: Sequence[TensorSpec] | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:  # pragma: no cover - onnxruntime is a core dependency
            raise RuntimeNotAvailableError("the onnxruntime runtime needs: pip install onnxruntime") from exc
        path = Path(path)
        if not path.is_file():
            raise OnnxModelError(f"ONNX file not found: {path}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers or ["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors for bad protobufs/graphs
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise OnnxModelError(f"ONNX Runtime cannot load {path} ({first}); the file is truncated, corrupt or "
                                 f"not ONNX: re-export it (vantage perception export MODEL_DIR) or get it "
                                 f"again") from exc
        self.path = path
        graph = onnx_graph_inputs(self.session)
        if inputs is not None:
            check_graph_inputs(graph, inputs, path)
        if outputs is not None:
            check_graph_outputs([(o.name, _shape_or_none(o.shape)) for o in self.session.get_outputs()], outputs,
                                path)
        self.input_names = [g[0] for g in graph]
        self._dtypes = {g[0]: np.dtype(g[2]) for g in graph}
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, inputs: Mapping[str, np.ndarray] | np.ndarray) -> dict[str, np.ndarray]:
        feeds = named_inputs(inputs, self.input_names)
        _check_names(feeds, self.input_names)
        outs = self.session.run(None, {n: np.ascontiguousarray(feeds[n], self._dtypes[n]) for n in self.input_names})
        return dict(zip(self.output_names, outs))


def _import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise RuntimeNotAvailableError(
            "the tensorrt runtime needs NVIDIA TensorRT (pip install tensorrt) and a CUDA GPU") from exc
    if not torch.cuda.is_available():
        raise RuntimeNotAvailableError("the tensorrt runtime needs a CUDA GPU and a CUDA build of PyTorch; "
                                       "torch.cuda.is_available() is False")
    return trt


def tensorrt_available() -> tuple[bool, str]:
    """``(True, "")`` when TensorRT and a CUDA device are usable, else ``(False, reason)``."""
    try:
        _import_tensorrt()
    except RuntimeNotAvailableError as exc:
        return False, str(exc)
    return True, ""


def tensorrt_profile(specs: Sequence[TensorSpec], max_batch: int = 8,
                     shapes: Mapping[str, Sequence[Sequence[int]]] | None = None
                     ) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
    """The ``(min, opt, max)`` shapes of every input for a TensorRT optimisation profile.

    A dynamic batch dimension (the first, ``-1``) runs from 1 to ``max_batch`` (optimised for 1, the
    closed-loop case); any other dynamic dimension (a token count, a force window) has no natural bound, so it
    must be given in ``shapes``.

    Raises:
        InvalidArgumentError: an input has a dynamic non-batch dimension and no entry in ``shapes``.
    """
    shapes = dict(shapes or {})
    out = {}
    for spec in specs:
        if spec.name in shapes:
            lo, opt, hi = (tuple(int(d) for d in s) for s in shapes[spec.name])
            out[spec.name] = (lo, opt, hi)
            continue
        if any(d < 0 for d in spec.shape[1:]):
            raise InvalidArgumentError(f"input {spec.name!r} has dynamic dimensions {spec.shape} beyond the batch; "
                                       f"pass shapes={{{spec.name!r}: (min, opt, max)}} for the TensorRT profile")
        rest = tuple(spec.shape[1:])
        first = spec.shape[0]
        out[spec.name] = ((1, *rest), (1, *rest), (max_batch, *rest)) if first < 0 else ((first, *rest),) * 3
    return out


def has_qdq(onnx_path: str | Path) -> bool:
    """Whether the ONNX graph holds QuantizeLinear/DequantizeLinear nodes (explicit quantization)."""
    import onnx

    nodes = onnx.load(str(onnx_path), load_external_data=False).graph.node
    return any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in nodes)


def build_tensorrt_engine(onnx_path: str | Path, engine_path: str | Path,
                          profile: Mapping[str, tuple[Sequence[int], Sequence[int], Sequence[int]]],
                          precision: str = "fp16") -> Path:
    """Build a serialized TensorRT engine from an ONNX file, the same way on TensorRT 10 and 11.

    TensorRT 11 removed implicit quantization (``IInt8EntropyCalibrator2``, ``BuilderFlag.INT8``) and the
    precision builder flags; both versions build *explicitly quantized* networks: ``int8`` takes the Q/DQ graph
    from :func:`perception.quantization.quantize_onnx` (``model.int8.onnx``) and parses it as a strongly typed
    network, so the precision of every layer comes from the graph and both versions build the same engine.
    ``fp16`` uses ``BuilderFlag.FP16`` where it exists (TensorRT 10); on TensorRT 11 the graph itself is
    converted to fp16 first (``model.fp16.onnx``, fp32 inputs and outputs kept).

    Args:
        onnx_path: the ONNX file (fp32 export, or the Q/DQ graph for ``int8``).
        engine_path: where to write the engine.
        profile: input name -> ``(min, opt, max)`` shapes (:func:`tensorrt_profile`).
        precision: ``fp32``, ``fp16`` or ``int8``.

    Raises:
        RuntimeNotAvailableError: TensorRT or CUDA is missing.
        QuantizationError: ``int8`` was asked for with a graph that has no Q/DQ nodes.
        OnnxModelError: TensorRT cannot parse the ONNX file or build the engine.
    """
    check_choice("precision", precision, PRECISIONS)
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    if precision == "int8" and not has_qdq(onnx_path):
        raise QuantizationError(f"{onnx_path} has no Q/DQ nodes; int8 engines are built from the quantized graph "
                                f"(vantage perception quantize / Learner.quantize writes model.int8.onnx)")
    trt = _import_tensorrt()
    legacy_fp16 = hasattr(trt.BuilderFlag, "FP16")  # TensorRT <= 10
    if precision == "fp16" and not legacy_fp16:
        from perception.quantization import convert_float16

        onnx_path = convert_float16(onnx_path, engine_path.with_name("model.fp16.onnx"))
    flags = 0
    strongly_typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    # TensorRT 11 is always strongly typed (the flag is deprecated there); TensorRT 10 needs the flag so that the
    # Q/DQ graph alone decides each layer's precision, as on 11 (NVIDIA: explicit quantization with strong typing,
    # no precision flags).
    if strongly_typed is not None and legacy_fp16 and precision == "int8":
        flags = 1 << int(strongly_typed)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise OnnxModelError(f"TensorRT cannot parse {onnx_path}: {errors}")
    names = [network.get_input(i).name for i in range(network.num_inputs)]
    if sorted(names) != sorted(profile):
        raise SpecMismatchError(f"{onnx_path} has inputs {names} but the optimisation profile names {sorted(profile)}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 1 << 28)
    opt_profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in profile.items():
        opt_profile.set_shape(name, tuple(lo), tuple(opt), tuple(hi))
    config.add_optimization_profile(opt_profile)
    if precision == "fp16" and legacy_fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise OnnxModelError(f"TensorRT failed to build an engine from {onnx_path} ({precision})")
    from common.io import atomic_write_bytes

    return atomic_write_bytes(engine_path, bytes(serialized))


def _numpy_dtype(trt: Any, dtype: Any) -> np.dtype:
    """NumPy dtype of a TensorRT I/O tensor type; float32 for types NumPy lacks (bf16, fp8 never reach the I/O
    of the engines built here: the graphs keep fp32 inputs and outputs)."""
    try:
        return np.dtype(trt.nptype(dtype))
    except TypeError:
        return np.dtype(np.float32)


class TensorRTRuntime(Runtime):
    """A serialized TensorRT engine executed on the default CUDA device (buffers are torch CUDA tensors).

    Every input's shape and address is set by name, and every output is returned by name.

    Args:
        engine_path: the serialized engine.
        inputs: the model's input specs; when given, the engine's input names must match them.

    Raises:
        RuntimeNotAvailableError: TensorRT or CUDA is missing.
        OnnxModelError: the engine file cannot be deserialized (other TensorRT version or GPU).
        SpecMismatchError: the engine's input names differ from ``inputs``.
    """

    name = "tensorrt"

    def __init__(self, engine_path: str | Path, inputs: Sequence[TensorSpec] | None = None,
                 outputs: Sequence[TensorSpec] | None = None) -> None:
        trt = _import_tensorrt()
        self._trt = trt
        engine_path = Path(engine_path)
        if not engine_path.is_file():
            raise OnnxModelError(f"TensorRT engine not found: {engine_path}; build it with vantage perception optimize")
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if self.engine is None:
            raise OnnxModelError(f"TensorRT cannot deserialize engine {engine_path} (corrupt, or built by another "
                                 f"TensorRT version or GPU): build it again with vantage perception optimize "
                                 f"--overwrite")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input_names = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.output_names = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if inputs is not None and sorted(self.input_names) != sorted(s.name for s in inputs):
            raise SpecMismatchError(f"engine {engine_path} has inputs {self.input_names} but the model's input specs "
                                    f"name {[s.name for s in inputs]}")
        if outputs is not None:
            check_graph_outputs([(n, None) for n in self.output_names], outputs, engine_path)
        self._dtypes = {n: _numpy_dtype(trt, self.engine.get_tensor_dtype(n)) for n in names}
        self.stream = torch.cuda.Stream()

    def run(self, inputs: Mapping[str, np.ndarray] | np.ndarray) -> dict[str, np.ndarray]:
        feeds = named_inputs(inputs, self.input_names)
        _check_names(feeds, self.input_names)
        keep = []  # device buffers must outlive the asynchronous execution
        for name in self.input_names:
            x = torch.from_numpy(np.ascontiguousarray(feeds[name], self._dtypes[name])).cuda()
            self.context.set_input_shape(name, tuple(x.shape))
            self.context.set_tensor_address(name, int(x.data_ptr()))
            keep.append(x)
        outs = {}
        for name in self.output_names:
            shape = tuple(self.context.get_tensor_shape(name))
            dtype = torch.from_numpy(np.zeros(0, self._dtypes[name])).dtype
            out = torch.empty(shape, dtype=dtype, device="cuda")
            self.context.set_tensor_address(name, int(out.data_ptr()))
            outs[name] = out
        self.context.execute_async_v3(self.stream.cuda_stream)
        self.stream.synchronize()
        return {name: o.cpu().numpy() for name, o in outs.items()}


def make_runtime(name: str, *, module: torch.nn.Module | None = None, path: str | Path | None = None,
                 threads: int = 0, inputs: Sequence[TensorSpec] | None = None,
                 outputs: Sequence[TensorSpec] | None = None) -> Runtime:
    """Create runtime ``name`` from a torch ``module`` or a model file ``path`` (ONNX file or engine).

    Args:
        name: ``torch``, ``onnxruntime`` or ``tensorrt``.
        module: the network (torch runtime).
        path: ONNX file or TensorRT engine (the other runtimes).
        threads: ONNX Runtime intra-op threads (0 = all cores).
        inputs: the model's input specs (required for torch; checked against the file otherwise).
        outputs: the model's output specs (required for torch: they name the module's outputs).
    """
    check_choice("runtime", name, RUNTIMES)
    if name == "torch":
        if module is None:
            raise InvalidArgumentError("the torch runtime needs the learner's network, and this model is ONNX-only: "
                                       "use the onnxruntime (or tensorrt) runtime")
        if inputs is None or outputs is None:
            raise InvalidArgumentError("the torch runtime needs the input and output specs to name the tensors")
        return TorchRuntime(module, inputs, outputs)
    if path is None:
        raise InvalidArgumentError(f"the {name} runtime needs a model file; export or optimize the model first")
    if name == "onnxruntime":
        return OnnxRuntime(path, threads=threads, inputs=inputs, outputs=outputs)
    return TensorRTRuntime(path, inputs=inputs, outputs=outputs)
