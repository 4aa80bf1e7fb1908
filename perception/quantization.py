"""INT8 by explicit quantization: the ONNX graph gets QuantizeLinear/DequantizeLinear (Q/DQ) nodes on the CPU.

TensorRT 11 removed implicit INT8 (``IInt8EntropyCalibrator2`` and the INT8 builder flag); both TensorRT 10
(JetPack 6) and 11 build *explicitly* quantized graphs, where Q/DQ nodes say which tensors are int8 and with
which scales. :func:`quantize_onnx` writes such a graph with ONNX Runtime's static quantizer, calibrated on a few
batches of real inputs (dicts of named, preprocessed arrays drawn from simulator frames), in the form TensorRT
accepts (:data:`QDQ_SETTINGS`): symmetric signed int8 activations (zero point 0), symmetric per-channel int8
weights, float biases (TensorRT quantizes them itself). The same file runs on ONNX Runtime on the CPU, which is
how its accuracy is measured where there is no GPU (:func:`compare_onnx`, ``vantage perception eval --runtime
onnxruntime --precision int8``).

NVIDIA ModelOpt's ONNX quantizer is the alternative; it is not used because ``nvidia-modelopt[onnx]`` pulls
``onnxruntime-gpu`` and CuPy (CUDA) into a CPU-only install.
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from common.errors import check_choice
from common.io import atomic_path, json_default
from perception.errors import InvalidArgumentError, QuantizationError

if TYPE_CHECKING:
    from perception.learner import Learner

#: Calibration methods of :func:`quantize_onnx` (ONNX Runtime's ``CalibrationMethod`` names).
CALIBRATION_METHODS = ("minmax", "percentile", "entropy")

#: ONNX Runtime ``quantize_static`` extra options giving the Q/DQ form TensorRT's explicit quantization takes.
QDQ_SETTINGS: dict[str, Any] = {
    "ActivationSymmetric": True,  # TensorRT supports zero point 0 only
    "WeightSymmetric": True,  # weights in [-127, 127]
    "QuantizeBias": False,  # TensorRT takes float biases and folds them into its int8 kernels
}

#: Q/DQ node types.
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")

#: Operators quantized by default: the weighted layers, where int8 pays off and where TensorRT wants Q/DQ on the
#: inputs. Element-wise ops, resizes, sigmoids and concatenations stay float, so a detector head's outputs keep
#: their own scales (on the shipped detector this gave fewer changed detections than quantizing every op).
DEFAULT_OP_TYPES = ("Conv", "ConvTranspose", "MatMul", "Gemm")


class _Batches:
    """ONNX Runtime's calibration reader over a list of named input batches."""

    def __init__(self, batches: Sequence[Mapping[str, np.ndarray]]) -> None:
        # One sample at a time: ONNX Runtime's histogram calibrators stack per-run outputs and need equal batch
        # sizes, and a graph may fix its batch to 1.
        self._iter: Iterator[Mapping[str, np.ndarray]] = (
            {k: v[i:i + 1] for k, v in batch.items()} for batch in batches
            for i in range(len(next(iter(batch.values())))))

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._iter, None)
        return None if batch is None else {k: np.ascontiguousarray(v) for k, v in batch.items()}


def qdq_node_counts(onnx_path: str | Path) -> dict[str, int]:
    """How many QuantizeLinear and DequantizeLinear nodes the graph holds."""
    import onnx

    nodes = onnx.load(str(onnx_path), load_external_data=False).graph.node
    return {op: sum(n.op_type == op for n in nodes) for op in QDQ_OPS}


def quantize_onnx(onnx_path: str | Path, out_path: str | Path, calibration: Sequence[Mapping[str, np.ndarray]], *,
                  method: str = "minmax", per_channel: bool = True, op_types: Sequence[str] | None = DEFAULT_OP_TYPES,
                  exclude_nodes: Sequence[str] | None = None) -> Path:
    """Quantize an fp32 ONNX graph to int8 Q/DQ form (static, calibrated), on the CPU.

    Args:
        onnx_path: the fp32 export.
        out_path: the Q/DQ graph to write (``model.int8.onnx``); written atomically.
        calibration: batches of preprocessed inputs, each a dict input name -> batched array, like the data the
            model will see (activation ranges are taken from them).
        method: ``minmax`` (the full observed range), ``percentile`` (clips the 0.001 % tails) or ``entropy``.
        per_channel: one weight scale per output channel (what TensorRT expects for convolutions).
        op_types: operator types to quantize (:data:`DEFAULT_OP_TYPES`; ``None``: every type ONNX Runtime can).
        exclude_nodes: node names to keep in float (sensitive layers).

    Returns:
        ``out_path``.

    Raises:
        InvalidArgumentError: no calibration batches, or batches whose names differ from the graph's inputs.
        QuantizationError: ONNX Runtime failed to quantize the graph.
    """
    check_choice("calibration method", method, CALIBRATION_METHODS)
    onnx_path, out_path = Path(onnx_path), Path(out_path)
    batches = list(calibration)
    if not batches:
        raise InvalidArgumentError("int8 quantization needs calibration samples (batches of named inputs)")
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    source = onnx.load(str(onnx_path))
    init = {i.name for i in source.graph.initializer}
    graph_inputs = sorted(i.name for i in source.graph.input if i.name not in init)
    for k, batch in enumerate(batches):
        if sorted(batch) != graph_inputs:
            raise InvalidArgumentError(f"calibration batch {k} has inputs {sorted(batch)}; the graph {onnx_path} "
                                       f"takes {graph_inputs}")
    calibrate = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                 "entropy": CalibrationMethod.Entropy}[method]
    try:
        # The calibrators print progress to stdout, which would corrupt the commands' JSON output.
        with tempfile.TemporaryDirectory(prefix="vantage_quant_") as tmp, contextlib.redirect_stdout(io.StringIO()):
            prepared = Path(tmp) / "prepared.onnx"
            # Shape inference (and ONNX Runtime's basic graph clean-up) first, as ONNX Runtime recommends: the
            # quantizer needs every tensor's shape to place per-channel scales.
            quant_pre_process(str(onnx_path), str(prepared), skip_symbolic_shape=True)
            with atomic_path(out_path) as tmp_out:
                quantize_static(str(prepared), str(tmp_out), _Batches(batches), quant_format=QuantFormat.QDQ,
                                activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                                per_channel=per_channel, calibrate_method=calibrate,
                                op_types_to_quantize=list(op_types) if op_types else None,
                                nodes_to_exclude=list(exclude_nodes or []), extra_options=dict(QDQ_SETTINGS))
                model = onnx.load(str(tmp_out))
                meta = {p.key: p.value for p in source.metadata_props}
                meta["vantage_quantization"] = json.dumps(
                    {"format": "QDQ", "activations": "int8 symmetric", "weights": "int8 symmetric"
                     + (" per-channel" if per_channel else ""), "method": method,
                     "calibration_batches": len(batches),
                     "calibration_samples": int(sum(len(next(iter(b.values()))) for b in batches)),
                     "source": onnx_path.name}, default=json_default)
                del model.metadata_props[:]
                for key, value in meta.items():
                    prop = model.metadata_props.add()
                    prop.key, prop.value = key, value
                onnx.save(model, str(tmp_out))
                # Checked before the rename: a useless graph must not replace a good model.int8.onnx.
                if not any(qdq_node_counts(tmp_out).values()):
                    raise QuantizationError(f"quantizing {onnx_path} inserted no Q/DQ nodes (no quantizable "
                                            f"operators)")
    except (InvalidArgumentError, QuantizationError):
        raise
    except Exception as exc:  # the quantizer raises plain exceptions for graphs it cannot handle
        raise QuantizationError(f"ONNX Runtime could not quantize {onnx_path}: {exc}") from exc
    return out_path


def compare_onnx(reference: str | Path, quantized: str | Path, inputs: Sequence[Mapping[str, np.ndarray]],
                 threads: int = 0, tolerance_key: str = "onnxruntime-int8") -> dict[str, Any]:
    """Parity of a quantized graph with its fp32 graph on ONNX Runtime (CPU), over batches of named inputs.

    int8 parity is judged on the *relative mean* difference of each output: mean ``|int8 - fp32|`` divided by the
    fp32 output's range over the inputs. The maximum difference is reported too, but it sits on values no
    decoder reads (a detector's box sizes at cells without a face), so it does not decide parity.

    Returns:
        ``max_abs_diff``, ``mean_abs_diff``, ``relative_mean_abs_diff`` (the worst output's), per-output
        ``..._by_output`` figures and ``output_range_by_output``, ``tolerance`` (from
        :data:`perception.runtime.TOLERANCES`), ``parity`` and ``samples``.
    """
    from perception.runtime import TOLERANCES, OnnxRuntime

    ref_rt, q_rt = OnnxRuntime(reference, threads=threads), OnnxRuntime(quantized, threads=threads)
    worst: dict[str, float] = {}
    total: dict[str, float] = {}
    count: dict[str, int] = {}
    lo: dict[str, float] = {}
    hi: dict[str, float] = {}
    samples = 0
    for batch in inputs:
        ref, got = ref_rt.run(batch), q_rt.run(batch)
        samples += len(next(iter(batch.values())))
        for name, a in ref.items():
            a = np.asarray(a, np.float64)
            diff = np.abs(a - np.asarray(got[name], np.float64))
            if not diff.size:
                continue
            worst[name] = max(worst.get(name, 0.0), float(diff.max()))
            total[name] = total.get(name, 0.0) + float(diff.sum())
            count[name] = count.get(name, 0) + diff.size
            lo[name] = min(lo.get(name, np.inf), float(a.min()))
            hi[name] = max(hi.get(name, -np.inf), float(a.max()))
    mean = {n: total[n] / count[n] for n in total}
    relative = {n: mean[n] / max(hi[n] - lo[n], 1e-12) for n in mean}
    tolerance = TOLERANCES[tolerance_key]
    worst_relative = max(relative.values()) if relative else 0.0
    return {"max_abs_diff": max(worst.values()) if worst else 0.0,
            "mean_abs_diff": max(mean.values()) if mean else 0.0,
            "relative_mean_abs_diff": worst_relative,
            "max_abs_diff_by_output": worst, "mean_abs_diff_by_output": mean,
            "relative_mean_abs_diff_by_output": relative,
            "output_range_by_output": {n: [lo[n], hi[n]] for n in lo}, "tolerance": tolerance,
            "parity": worst_relative <= tolerance, "samples": samples}


def quantize_learner(learner: Learner, dataset: Any, samples: int = 64, check_samples: int = 16,
                     path: str | Path | None = None, method: str = "minmax", threads: int = 0,
                     overwrite: bool = False) -> dict[str, Any]:
    """Quantize a learner's ONNX export with calibration inputs drawn from ``dataset``, and check parity.

    The first ``samples`` inputs calibrate; the next ``check_samples`` (inputs the calibration did not see)
    compare the int8 graph with the fp32 one on ONNX Runtime. With ``check_samples=0`` the calibration inputs
    are compared instead. The output folder is checked (:meth:`Learner.check_output`) before any calibration
    input is read: an existing ``model.int8.onnx`` is replaced only with ``overwrite``.

    Returns:
        The parity summary of :func:`compare_onnx` plus ``onnx``, ``int8_onnx``, ``calibration_samples``,
        ``qdq_nodes``, ``method`` and the two files' sizes in bytes.
    """
    from perception.manifest import INT8_ONNX_FILE, ONNX_FILE

    if samples < 1 or check_samples < 0:
        raise InvalidArgumentError(f"samples must be >= 1 and check_samples >= 0, got {samples}, {check_samples}")
    check_choice("calibration method", method, CALIBRATION_METHODS)
    folder = path if path is not None else learner.model_dir
    if folder is not None:  # fail before reading calibration data that could not be written
        learner.check_output(folder, [INT8_ONNX_FILE], overwrite, "int8 graph")
    calibration, check = _split(learner.calibration_inputs(dataset, samples + check_samples), samples)
    int8 = learner.quantize(calibration, path, overwrite=overwrite, method=method)
    fp32 = int8.parent / ONNX_FILE
    summary = compare_onnx(fp32, int8, check or calibration, threads=threads)
    summary["checked_on"] = "held-out samples" if check else "calibration samples"
    summary.update(onnx=str(fp32), int8_onnx=str(int8), method=method, qdq_nodes=qdq_node_counts(int8),
                   calibration_samples=int(sum(len(next(iter(b.values()))) for b in calibration)),
                   size_bytes_fp32=fp32.stat().st_size, size_bytes_int8=int8.stat().st_size)
    return summary


def _split(batches: Sequence[Mapping[str, np.ndarray]], first: int
           ) -> tuple[list[dict[str, np.ndarray]], list[dict[str, np.ndarray]]]:
    """Split batches of named arrays after the ``first`` samples (a batch straddling the cut is split too)."""
    head: list[dict[str, np.ndarray]] = []
    tail: list[dict[str, np.ndarray]] = []
    seen = 0
    for batch in batches:
        n = len(next(iter(batch.values())))
        cut = min(max(first - seen, 0), n)
        if cut:
            head.append({k: v[:cut] for k, v in batch.items()})
        if cut < n:
            tail.append({k: v[cut:] for k, v in batch.items()})
        seen += n
    return head, tail


def convert_float16(onnx_path: str | Path, out_path: str | Path) -> Path:
    """An fp16 copy of an fp32 ONNX graph with fp32 inputs and outputs (TensorRT 11's replacement for the FP16
    builder flag: a strongly typed network takes its precision from the graph).

    Raises:
        QuantizationError: the conversion failed.
    """
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    try:
        model = convert_float_to_float16(onnx.load(str(onnx_path)), keep_io_types=True)
    except Exception as exc:  # the converter raises plain exceptions on graphs it cannot handle
        raise QuantizationError(f"cannot convert {onnx_path} to fp16: {exc}") from exc
    with atomic_path(out_path) as tmp:
        onnx.save(model, str(tmp))
    return Path(out_path)
