"""``vantage deploy build``: TensorRT engines for a bundle, built on the device that will run them.

Engines are specific to a GPU and a TensorRT version, so they are cached under
``BUNDLE/engines/<gpu>_trt<version>/<model>.<precision>.engine`` and rebuilt only with ``overwrite``; a bundle
copied to another robot builds its own next to the first one's. Both TensorRT 10 (JetPack 6) and 11 read the
bundle's graphs: ``int8`` is the explicitly quantized Q/DQ graph (``*.int8.onnx``), parsed strongly typed so the
graph alone sets each layer's precision (TensorRT 11 removed implicit INT8 calibration); ``fp16`` sets the FP16
builder flag on the fp32 graph where it exists (TensorRT <= 10) and otherwise parses the bundle's fp16 graph.
:func:`trtexec_commands` prints the same builds for ``trtexec`` on the Jetson itself.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from common.errors import OutputExistsError
from common.io import atomic_write_bytes
from deploy.bundle import Bundle, check_precision
from deploy.inference import BackendUnavailableError, import_tensorrt

__all__ = ["build_engines", "device_key", "engine_path", "trtexec_commands"]

#: Largest batch of every engine's optimisation profile (the runner uses 1; the detector's crops batch up).
MAX_BATCH = 8


def device_key() -> str:
    """``<gpu name>_trt<version>``, the engine cache folder of this device (needs TensorRT and a GPU)."""
    trt, cudart = import_tensorrt()
    from deploy.inference import _check_cuda

    props = _check_cuda(cudart.cudaGetDeviceProperties(0))
    name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    return re.sub(r"[^A-Za-z0-9.]+", "-", f"{name}_trt{trt.__version__}").strip("-")


def engine_path(bundle: Bundle, onnx: Path, key: str | None = None) -> Path:
    """Where the engine of ``onnx`` (a file of the bundle) is cached for this device."""
    stem = Path(onnx).stem
    if stem.count(".") == 0:
        stem += ".fp32"
    return bundle.root / "engines" / (key or device_key()) / f"{stem}.engine"


def _entries(bundle: Bundle) -> list[dict[str, Any]]:
    """The policy and every perception model, each with ``name`` and its input shapes ``[(name, shape), ...]``."""
    out = [{"name": "policy", "entry": bundle.policy,
            "inputs": [(i["name"], i["shape"]) for i in bundle.policy["inputs"]]}]
    for model in (bundle.perception or {}).get("models", []):
        inputs = [(model["input"]["name"], model["input"]["shape"])]
        out.append({"name": model["name"], "entry": model, "inputs": inputs})
    return out


def _shape(shape: list[int], batch: int) -> tuple[int, ...]:
    return tuple(batch if i == 0 and d < 0 else int(d) for i, d in enumerate(shape))


def trtexec_commands(bundle: Bundle, precision: str, key: str = "<device>") -> list[str]:
    """The ``trtexec`` command of every engine (run in the bundle folder on the target)."""
    precision = check_precision(bundle, precision)
    commands = []
    for item in _entries(bundle):
        source = bundle.model_file(item["entry"], "fp32" if precision == "fp16" else precision)
        target = engine_path(bundle, bundle.model_file(item["entry"], precision), key).relative_to(bundle.root)
        shapes = {tag: ",".join(f"{n}:{'x'.join(str(d) for d in _shape(s, b))}" for n, s in item["inputs"])
                  for tag, b in (("min", 1), ("opt", 1), ("max", MAX_BATCH))}
        flag = {"fp32": "", "fp16": " --fp16", "int8": " --stronglyTyped"}[precision]
        commands.append(f"trtexec --onnx={source.name} --saveEngine={target}{flag} --minShapes={shapes['min']} "
                        f"--optShapes={shapes['opt']} --maxShapes={shapes['max']}")
    return commands


def build_engines(bundle: Bundle, precision: str | None = None, overwrite: bool = False) -> list[Path]:
    """Build (or find cached) TensorRT engines of every model of the bundle for this device.

    Raises:
        BackendUnavailableError: TensorRT, CUDA's Python bindings or a GPU is missing.
        OutputExistsError: an engine exists already (without ``overwrite``; the runner uses it as it is).
    """
    precision = check_precision(bundle, precision)
    trt, _ = import_tensorrt()
    key = device_key()
    legacy_fp16 = hasattr(trt.BuilderFlag, "FP16")  # TensorRT <= 10
    built = []
    for item in _entries(bundle):
        target = engine_path(bundle, bundle.model_file(item["entry"], precision), key)
        if target.exists() and not overwrite:
            raise OutputExistsError(f"engine {target} exists (built earlier on this device); pass --overwrite to "
                                    f"build it again")
        source = bundle.model_file(item["entry"], "fp32" if precision == "fp16" and legacy_fp16 else precision)
        logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(logger)
        strongly = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
        flags = 1 << int(strongly) if strongly is not None and legacy_fp16 and precision == "int8" else 0
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse(source.read_bytes()):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise BackendUnavailableError(f"TensorRT cannot parse {source}: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 1 << 28)
        profile = builder.create_optimization_profile()
        for name, shape in item["inputs"]:
            profile.set_shape(name, _shape(shape, 1), _shape(shape, 1), _shape(shape, MAX_BATCH))
        config.add_optimization_profile(profile)
        if precision == "fp16" and legacy_fp16:
            config.set_flag(trt.BuilderFlag.FP16)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise BackendUnavailableError(f"TensorRT failed to build an engine from {source} ({precision})")
        built.append(atomic_write_bytes(target, bytes(serialized)))
    return built
