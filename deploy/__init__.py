"""The on-robot side of Vantage: load a deployment bundle, run its policy and perception, emit actions.

Lean on purpose: at module level this package imports only NumPy, OpenCV, ONNX Runtime, the standard library
and :mod:`common`; TensorRT and CUDA's bindings load only for ``--backend tensorrt``, Gymnasium and the
simulator only for a ``sim:`` source. ``deploy/requirements-runtime.txt`` is what a robot installs;
``python -m deploy BUNDLE --source camera:0`` runs there without the rest of Vantage's dependencies.
See ``docs/deployment.md`` and ``docs/deploy-jetson.md``.
"""
