"""Gymnasium registration of every Vantage environment, from the task specs (:data:`envs.specs.TASKS`).

Entry points are strings so that ``import envs`` loads no simulator. Episode limits live in the specs, not
the classes. The simulator is a ``backend=`` keyword argument, never part of an id.

The drone face-recognition task is given its perception pipeline; :func:`make_drone_face_env` (its entry
point) is the factory that loads one from saved face models, so ``gymnasium.make`` works without one and the
task itself never imports ``perception``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gymnasium.envs.registration import register, registry

from envs.errors import InvalidArgumentError
from envs.specs import ASSETS, TASKS

#: id -> (entry point, max_episode_steps), for every registered environment.
ENVIRONMENTS: dict[str, tuple[str, int]] = {spec.env_id: (spec.entry_point, spec.max_episode_steps)
                                            for spec in TASKS.values()}

DEFAULT_DETECTOR = ASSETS / "models" / "face_detector"
DEFAULT_RECOGNIZER = ASSETS / "models" / "face_recognizer"


def register_all() -> None:
    """Register the Vantage environments with Gymnasium (idempotent)."""
    for env_id, (entry_point, max_steps) in ENVIRONMENTS.items():
        if env_id not in registry:
            register(id=env_id, entry_point=entry_point, max_episode_steps=max_steps)


def make_drone_face_env(*, pipeline: Any = None, detector_dir: str | Path | None = None,
                        recognizer_dir: str | Path | None = None, runtime: str = "onnxruntime",
                        perception_threads: int = 1, **kwargs: Any) -> Any:
    """``vantage/DroneFaceRecognition-v0`` with a face pipeline loaded from saved models.

    Args:
        pipeline: a ready pipeline (RGB frame -> faces); then no models are loaded.
        detector_dir, recognizer_dir: saved face models (defaults: ``assets/models/face_detector`` and
            ``face_recognizer``); point them at better models or at imported ONNX ones.
        runtime: ``"onnxruntime"`` (default), ``"torch"`` or ``"tensorrt"``.
        perception_threads: CPU threads per model (1 keeps vectorised environments from fighting).
        **kwargs: :class:`envs.tasks.face_recognition.DroneFaceEnv` arguments and settings.
    """
    from envs.tasks.face_recognition import DroneFaceEnv

    if pipeline is None:
        from perception.faces.pipeline import FacePipeline

        pipeline = FacePipeline.load(detector_dir or DEFAULT_DETECTOR, recognizer_dir or DEFAULT_RECOGNIZER,
                                     runtime=runtime, threads=perception_threads)
    elif detector_dir is not None or recognizer_dir is not None:
        raise InvalidArgumentError("pass either pipeline= or detector_dir/recognizer_dir, not both")
    return DroneFaceEnv(pipeline=pipeline, **kwargs)


DEFAULT_VQA = ASSETS / "models" / "vqa_film"


def make_vqa_env(*, vqa: Any = None, vqa_dir: str | Path | None = None, perception_threads: int = 1,
                 **kwargs: Any) -> Any:
    """``vantage/VQAVirtualCamera-v0`` with a VQA model loaded from a saved folder.

    Args:
        vqa: a ready VQA model (``tokenize``, ``answers``, ``__call__(views, tokens)``); then nothing is loaded.
        vqa_dir: saved VQA model (default ``assets/models/vqa_film``; any :class:`perception.vqa.VQALearner`).
        perception_threads: torch CPU threads for the model (1 keeps vectorised environments from fighting).
        **kwargs: :class:`envs.tasks.vqa_camera.VQACameraEnv` arguments and settings.
    """
    from envs.tasks.vqa_camera import VQACameraEnv

    if vqa is None:
        import torch

        from perception.learner import load_model
        from perception.vqa import VQALearner  # noqa: F401  (registers the model name)

        torch.set_num_threads(perception_threads)
        vqa = load_model(vqa_dir or DEFAULT_VQA)
    elif vqa_dir is not None:
        raise InvalidArgumentError("pass either vqa= or vqa_dir=, not both")
    return VQACameraEnv(vqa=vqa, **kwargs)
