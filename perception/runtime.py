"""Inference runtimes behind one call: ``run(x) -> list of output arrays``.

``torch`` runs the learner's module eagerly, ``onnxruntime`` an exported ONNX file on the CPU (or CUDA when
its provider is present), ``tensorrt`` a serialized engine on an NVIDIA GPU. Learners pre- and post-process in
NumPy around :meth:`Runtime.run`, so every runtime gives the same results within :data:`TOLERANCES`.
``tensorrt`` and CUDA are imported only when a TensorRT runtime or engine build is asked for.
"""

from __future__ import annotations

import abc
from pathlib import Path

import numpy as np
import torch

from common.errors import check_choice
from perception.errors import InvalidArgumentError, OnnxModelError, RuntimeNotAvailableError

RUNTIMES = ("torch", "onnxruntime", "tensorrt")

#: Max absolute difference of raw network outputs from the torch fp32 reference, per runtime/precision.
TOLERANCES: dict[str, float] = {"onnxruntime": 1e-4, "tensorrt-fp32": 1e-3, "tensorrt-fp16": 1e-2,
                                "tensorrt-int8": 1e-1}


class Runtime(abc.ABC):
    """One loaded network that maps a float32 NCHW batch to its output arrays."""

    name: str

    @abc.abstractmethod
    def run(self, x: np.ndarray) -> list[np.ndarray]:
        """Run the network on a preprocessed batch ``x`` (float32)."""


class TorchRuntime(Runtime):
    """Eager PyTorch on the CPU (the reference)."""

    name = "torch"

    def __init__(self, module: torch.nn.Module) -> None:
        self.module = module.eval()

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        with torch.inference_mode():
            out = self.module(torch.from_numpy(np.ascontiguousarray(x, np.float32)))
        outs = out if isinstance(out, tuple | list) else (out,)
        return [o.numpy() for o in outs]


class OnnxRuntime(Runtime):
    """ONNX Runtime session on an ONNX file.

    Args:
        path: the ONNX file.
        threads: intra-op threads (0 lets ONNX Runtime choose: all cores).
        providers: execution providers; default CPU only, which keeps results comparable across machines.

    Raises:
        OnnxModelError: the file is missing or not a valid ONNX model.
        RuntimeNotAvailableError: onnxruntime is not installed.
    """

    name = "onnxruntime"

    def __init__(self, path: str | Path, threads: int = 0, providers: list[str] | None = None) -> None:
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
            raise OnnxModelError(f"ONNX Runtime cannot load {path}: {exc}") from exc
        self.path = path
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(x, np.float32)})


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


def build_tensorrt_engine(onnx_path: str | Path, engine_path: str | Path, input_shape: tuple[int, ...],
                          precision: str = "fp16", max_batch: int = 8,
                          calibration: np.ndarray | None = None) -> Path:
    """Build a serialized TensorRT engine from an ONNX file with a dynamic batch dimension.

    Args:
        onnx_path: exported model (batch dimension dynamic).
        engine_path: where to write the engine.
        input_shape: one sample's shape ``(C, H, W)``.
        precision: ``fp32``, ``fp16`` or ``int8``.
        max_batch: largest batch of the optimisation profile.
        calibration: preprocessed float32 samples ``(N, C, H, W)`` for int8 calibration (required for int8).

    Raises:
        RuntimeNotAvailableError: TensorRT or CUDA is missing.
        OnnxModelError: TensorRT cannot parse the ONNX file or build the engine.
    """
    check_choice("precision", precision, ("fp32", "fp16", "int8"))
    if precision == "int8" and (calibration is None or len(calibration) == 0):
        raise InvalidArgumentError("int8 engines need calibration samples (preprocessed inputs)")
    trt = _import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise OnnxModelError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 1 << 28)
    profile = builder.create_optimization_profile()
    name = network.get_input(0).name
    profile.set_shape(name, (1, *input_shape), (1, *input_shape), (max_batch, *input_shape))
    config.add_optimization_profile(profile)
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    elif precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        config.set_flag(trt.BuilderFlag.FP16)
        config.int8_calibrator = _make_calibrator(trt, np.asarray(calibration, np.float32), name)
        config.set_calibration_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise OnnxModelError(f"TensorRT failed to build an engine from {onnx_path} ({precision})")
    engine_path = Path(engine_path)
    engine_path.write_bytes(bytes(serialized))
    return engine_path


def _make_calibrator(trt, samples: np.ndarray, input_name: str):
    """An entropy calibrator feeding ``samples`` one batch of 8 at a time from CUDA memory."""

    class _Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            super().__init__()
            self.batches = [torch.from_numpy(samples[i:i + 8]).cuda() for i in range(0, len(samples), 8)]
            self.index = 0

        def get_batch_size(self) -> int:
            return 8

        def get_batch(self, names):
            if self.index >= len(self.batches):
                return None
            batch = self.batches[self.index]
            self.index += 1
            return [int(batch.data_ptr())]

        def read_calibration_cache(self):
            return None

        def write_calibration_cache(self, cache) -> None:
            return None

    return _Calibrator()


class TensorRTRuntime(Runtime):
    """A serialized TensorRT engine executed on the default CUDA device (buffers are torch CUDA tensors).

    Raises:
        RuntimeNotAvailableError: TensorRT or CUDA is missing.
        OnnxModelError: the engine file cannot be deserialized (other TensorRT version or GPU).
    """

    name = "tensorrt"

    def __init__(self, engine_path: str | Path) -> None:
        trt = _import_tensorrt()
        self._trt = trt
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise OnnxModelError(f"TensorRT cannot deserialize engine {engine_path}")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.stream = torch.cuda.Stream()

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        x_gpu = torch.from_numpy(np.ascontiguousarray(x, np.float32)).cuda()
        self.context.set_input_shape(self.inputs[0], tuple(x_gpu.shape))
        self.context.set_tensor_address(self.inputs[0], int(x_gpu.data_ptr()))
        outs = []
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            out = torch.empty(shape, dtype=torch.float32, device="cuda")
            self.context.set_tensor_address(name, int(out.data_ptr()))
            outs.append(out)
        self.context.execute_async_v3(self.stream.cuda_stream)
        self.stream.synchronize()
        return [o.cpu().numpy() for o in outs]


def make_runtime(name: str, *, module: torch.nn.Module | None = None, path: str | Path | None = None,
                 threads: int = 0) -> Runtime:
    """Create runtime ``name`` from a torch ``module`` or a model file ``path`` (ONNX file or engine)."""
    check_choice("runtime", name, RUNTIMES)
    if name == "torch":
        if module is None:
            raise InvalidArgumentError("the torch runtime needs the learner's network (this model is ONNX-only)")
        return TorchRuntime(module)
    if path is None:
        raise InvalidArgumentError(f"the {name} runtime needs a model file; export or optimize the model first")
    if name == "onnxruntime":
        return OnnxRuntime(path, threads=threads)
    return TensorRTRuntime(path)
