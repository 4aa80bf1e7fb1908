"""Model sessions of the on-robot runner: ONNX Runtime (CPU, or CUDA where that build is installed) and
TensorRT engines, behind one ``run({name: array}) -> {name: array}`` call, with no torch anywhere.

TensorRT and CUDA's Python bindings are imported only when an engine is run (``--backend tensorrt``); on a
Jetson both come with JetPack (``docs/deploy-jetson.md``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from common.errors import InvalidArgumentError, VantageError, check_choice

__all__ = ["BACKENDS", "BackendUnavailableError", "OnnxSession", "TensorRTSession", "make_session"]

BACKENDS = ("onnxruntime", "tensorrt")

_ORT_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
               "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(uint8)": np.uint8,
               "tensor(int8)": np.int8, "tensor(bool)": np.bool_}


class BackendUnavailableError(VantageError):
    """The asked-for inference backend (TensorRT, CUDA) is not installed or has no device."""


class OnnxSession:
    """An ONNX Runtime session with named inputs and outputs.

    Args:
        path: the ``.onnx`` file.
        threads: intra-op threads (0: ONNX Runtime's default, all cores); the robot runner uses 1 per model so
            the policy and the perception models do not fight over a small CPU.
        providers: execution providers (default: CUDA first where this ONNX Runtime build has it, then CPU).
    """

    name = "onnxruntime"

    def __init__(self, path: str | Path, threads: int = 1, providers: list[str] | None = None) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(int(threads), 0)
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        if providers is None:
            providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
                         if p in ort.get_available_providers()]
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # ONNX Runtime raises its own exception types for unreadable graphs
            raise InvalidArgumentError(f"ONNX Runtime cannot load {path}: {exc}") from exc
        self.path = Path(path)
        self.inputs = {i.name: (list(i.shape), _ORT_DTYPES.get(i.type, np.float32)) for i in self.session.get_inputs()}
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the graph on named, batched inputs (cast to each input's dtype)."""
        cast = {name: np.ascontiguousarray(feeds[name], dtype) for name, (_, dtype) in self.inputs.items()}
        return dict(zip(self.output_names, self.session.run(self.output_names, cast)))


class TensorRTSession:
    """A serialized TensorRT engine run through CUDA's Python bindings (``cuda-python``), without torch.

    Args:
        path: the engine file (``vantage deploy build``).

    Raises:
        BackendUnavailableError: TensorRT or ``cuda-python`` is missing, or the engine does not deserialize
            (another TensorRT version or GPU: build it again on this device).
    """

    name = "tensorrt"

    def __init__(self, path: str | Path) -> None:
        trt, cudart = import_tensorrt()
        self._trt, self._cudart = trt, cudart
        path = Path(path)
        if not path.is_file():
            raise BackendUnavailableError(f"TensorRT engine {path} not found: build it on this device with "
                                          f"`vantage deploy build BUNDLE`")
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self.runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise BackendUnavailableError(f"TensorRT cannot load engine {path} (built by another TensorRT version or "
                                          f"for another GPU): build it again here with `vantage deploy build BUNDLE "
                                          f"--overwrite`")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input_names = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.output_names = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.dtypes = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}
        self.stream = _check_cuda(cudart.cudaStreamCreate())
        self._buffers: dict[str, tuple[int, int]] = {}  # name -> (device pointer, bytes)

    def _device(self, name: str, nbytes: int) -> int:
        pointer, size = self._buffers.get(name, (0, 0))
        if size < nbytes:
            if pointer:
                _check_cuda(self._cudart.cudaFree(pointer))
            pointer = _check_cuda(self._cudart.cudaMalloc(max(nbytes, 1)))
            self._buffers[name] = (pointer, nbytes)
        return pointer

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        cudart = self._cudart
        h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        for name in self.input_names:
            host = np.ascontiguousarray(feeds[name], self.dtypes[name])
            self.context.set_input_shape(name, tuple(host.shape))
            pointer = self._device(name, host.nbytes)
            _check_cuda(cudart.cudaMemcpyAsync(pointer, host.ctypes.data, host.nbytes, h2d, self.stream))
            self.context.set_tensor_address(name, pointer)
        outputs = {}
        for name in self.output_names:
            outputs[name] = np.empty(tuple(self.context.get_tensor_shape(name)), self.dtypes[name])
            self.context.set_tensor_address(name, self._device(name, outputs[name].nbytes))
        if not self.context.execute_async_v3(self.stream):
            raise BackendUnavailableError("TensorRT failed to run the engine")
        for name, host in outputs.items():
            _check_cuda(cudart.cudaMemcpyAsync(host.ctypes.data, self._buffers[name][0], host.nbytes, d2h,
                                               self.stream))
        _check_cuda(cudart.cudaStreamSynchronize(self.stream))
        return outputs


def _check_cuda(result: Any) -> Any:
    """Unpack a ``cuda-python`` call's ``(error, value...)`` tuple, raising on an error."""
    error, *values = result if isinstance(result, tuple) else (result,)
    if int(error) != 0:
        raise BackendUnavailableError(f"CUDA call failed: {error}")
    return values[0] if len(values) == 1 else (values or None)


def import_tensorrt() -> tuple[Any, Any]:
    """``(tensorrt, cudart)``, or :class:`BackendUnavailableError` saying what to install."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise BackendUnavailableError(
            "TensorRT is not installed here (import tensorrt failed): on a Jetson it comes with JetPack "
            "(python3-libnvinfer); on a desktop GPU `pip install tensorrt`. Without a GPU use --backend onnxruntime"
        ) from exc
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart  # cuda-python < 12.6
        except ImportError as exc:
            raise BackendUnavailableError("running TensorRT engines needs CUDA's Python bindings: `pip install "
                                          "cuda-python` (matching the CUDA version of JetPack)") from exc
    return trt, cudart


def make_session(path: str | Path, backend: str = "onnxruntime", threads: int = 1) -> OnnxSession | TensorRTSession:
    """A session of ``backend`` on ``path`` (an ONNX file, or an engine for ``tensorrt``)."""
    check_choice("backend", backend, BACKENDS)
    return OnnxSession(path, threads=threads) if backend == "onnxruntime" else TensorRTSession(path)
