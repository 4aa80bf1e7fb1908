"""Perception models behind one learner interface (fit, eval, infer, save, load, export, optimize).

Sub-packages hold one task each (:mod:`perception.faces`: face detection and recognition). Common pieces:
:mod:`perception.learner` (base class, saved-model format, registry), :mod:`perception.runtime` (torch,
ONNX Runtime and TensorRT runtimes), :mod:`perception.metrics`, :mod:`perception.errors`.
"""

from __future__ import annotations

from perception.learner import MODEL_REGISTRY, Learner, load_model, make_model
from perception.runtime import RUNTIMES, TOLERANCES

__all__ = ["MODEL_REGISTRY", "RUNTIMES", "TOLERANCES", "Learner", "load_model", "make_model"]
