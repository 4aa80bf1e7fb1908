"""The one ONNX exporter every export in the repository goes through, and export parity checks.

``torch.onnx.export`` in torch >= 2.9 defaults to the dynamo exporter: it needs ``onnxscript``, fails on
some graphs (data-dependent shapes, some in-place ops) and takes ~10 s for the small CNNs here. The
TorchScript exporter gives the same graphs in well under a second, so :func:`export_onnx` pins it
(``dynamo=False``) and a fixed opset in one place; learners (:meth:`perception.learner.Learner.export`) and the
test fakes call it rather than ``torch.onnx.export``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from perception.learner import Learner
    from perception.specs import TensorSpec

#: ONNX opset of every export (TensorRT 10 and 11 and ONNX Runtime >= 1.17 all read it; Q/DQ per-channel
#: quantization needs >= 13).
OPSET = 17
#: Which ``torch.onnx.export`` path is used: the TorchScript-based one.
EXPORTER = "torchscript"
#: Name of the shared dynamic batch dimension of every input and output.
BATCH_AXIS = "batch"


def export_onnx(module: torch.nn.Module, args: Sequence[torch.Tensor], path: str | Path, *,
                input_names: Sequence[str], output_names: Sequence[str],
                dynamic_axes: Mapping[str, Mapping[int, str]] | None = None, opset: int = OPSET) -> Path:
    """Export ``module`` called on ``args`` to ONNX with the TorchScript exporter (never dynamo).

    Args:
        module: the network; it is put in eval mode.
        args: one example tensor per input, in the order ``forward`` takes them.
        path: the ``.onnx`` file to write.
        input_names: graph input names, one per tensor of ``args``.
        output_names: graph output names, in the order ``forward`` returns them.
        dynamic_axes: tensor name -> {axis: symbolic name} for dimensions that vary at run time.
        opset: ONNX opset.

    Returns:
        ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter warns that it is deprecated
        torch.onnx.export(module.eval(), tuple(args), str(path), dynamo=False, opset_version=opset,
                          input_names=list(input_names), output_names=list(output_names),
                          dynamic_axes={k: dict(v) for k, v in dynamic_axes.items()} if dynamic_axes else None)
    return path


def dynamic_axes(inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]) -> dict[str, dict[int, str]]:
    """Dynamic axes for export: every ``-1`` dimension of every input and the batch dimension of the outputs.

    The batch dimension (axis 0) shares one symbol, :data:`BATCH_AXIS`, so the graph says all inputs and outputs
    have the same batch; other dynamic dimensions are named ``<input>_<axis>``.
    """
    axes: dict[str, dict[int, str]] = {}
    for spec in inputs:
        dims = {i: BATCH_AXIS if i == 0 else f"{spec.name}_{i}" for i, d in enumerate(spec.shape) if d < 0}
        if dims:
            axes[spec.name] = dims
    for spec in outputs:
        if spec.shape and spec.shape[0] < 0:
            axes[spec.name] = {0: BATCH_AXIS}
    return axes


def example_inputs(specs: Sequence[TensorSpec], batch: int = 2, rng: np.random.Generator | None = None,
                   dynamic: int = 2) -> dict[str, np.ndarray]:
    """Random network inputs of the specs' shapes and dtypes (parity checks, benchmarks, export dummies).

    Float inputs are standard normal (or uniform in the spec's ``value_range``); integer inputs are uniform in
    ``value_range`` (default ``[0, 2)``). The batch dimension becomes ``batch``, other dynamic ones ``dynamic``.
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    out = {}
    for spec in specs:
        shape = [(batch if i == 0 else dynamic) if d < 0 else d for i, d in enumerate(spec.shape)]
        dtype = np.dtype(spec.dtype)
        lo, hi = spec.value_range or (None, None)
        if np.issubdtype(dtype, np.integer):
            out[spec.name] = rng.integers(int(lo or 0), int(hi or 2), size=shape).astype(dtype)
        elif np.issubdtype(dtype, np.bool_):
            out[spec.name] = rng.random(shape) < 0.5
        elif lo is not None:
            out[spec.name] = rng.uniform(lo, hi, size=shape).astype(dtype)
        else:
            out[spec.name] = rng.normal(size=shape).astype(dtype)
    return out


def max_abs_difference(reference: Mapping[str, np.ndarray], other: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Max absolute difference per output name (both must give the same names and shapes).

    Raises:
        InvalidArgumentError: the outputs' names or shapes differ.
    """
    from perception.errors import InvalidArgumentError

    if list(reference) != list(other) and sorted(reference) != sorted(other):
        raise InvalidArgumentError(f"outputs differ: {list(reference)} vs {list(other)}")
    out = {}
    for name, ref in reference.items():
        got = other[name]
        if np.shape(ref) != np.shape(got):
            raise InvalidArgumentError(f"output {name!r} has shape {np.shape(got)}, the reference {np.shape(ref)}")
        diff = np.abs(np.asarray(ref, np.float64) - np.asarray(got, np.float64))
        out[name] = float(diff.max()) if diff.size else 0.0
    return out


def check_export_parity(learner: Learner, onnx_path: str | Path, samples: int = 100, seed: int = 0,
                        threads: int = 0) -> dict[str, Any]:
    """Compare the learner's torch outputs with ONNX Runtime on ``samples`` random inputs (one batch).

    Returns:
        ``{"max_abs_diff", "tolerance", "parity", "max_abs_diff_by_output"}``.
    """
    from perception.runtime import TOLERANCES, OnnxRuntime

    specs = learner.input_specs()
    x = example_inputs(specs, batch=samples, rng=np.random.default_rng(seed))
    ref = learner.run_network(x)
    got = OnnxRuntime(onnx_path, threads=threads, inputs=specs).run(x)
    by_output = max_abs_difference(ref, got)
    diff = max(by_output.values()) if by_output else 0.0
    tolerance = TOLERANCES["onnxruntime"]
    return {"max_abs_diff": diff, "tolerance": tolerance, "parity": diff <= tolerance,
            "max_abs_diff_by_output": by_output}
