"""Perception models behind one learner interface (fit, eval, infer, save, load, export, quantize, optimize).

Sub-packages hold one task each (:mod:`perception.faces`: face detection and recognition). Common pieces:
:mod:`perception.learner` (base class, named input specs and preprocessing, saved-model format, registry),
:mod:`perception.runtime` (torch, ONNX Runtime and TensorRT runtimes on dicts of named arrays),
:mod:`perception.export` (the pinned ONNX exporter, parity checks), :mod:`perception.quantization` (int8 by
explicit Q/DQ quantization), :mod:`perception.training` (shared training-loop pieces),
:mod:`perception.progress` (progress bars, or plain lines off a terminal), :mod:`perception.benchmark`,
:mod:`perception.metrics`, :mod:`perception.errors`.
"""

from __future__ import annotations

from perception.learner import Learner, load_model, make_model
from perception.manifest import MODEL_REGISTRY
from perception.runtime import RUNTIMES, TOLERANCES
from perception.specs import ArrayPreprocessing, ImagePreprocessing, TensorSpec

__all__ = [
    "MODEL_REGISTRY",
    "RUNTIMES",
    "TOLERANCES",
    "ArrayPreprocessing",
    "ImagePreprocessing",
    "Learner",
    "TensorSpec",
    "load_model",
    "make_model",
]
