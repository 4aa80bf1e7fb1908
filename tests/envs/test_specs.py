"""Every task spec is complete: what the tooling reads from it resolves, and bad names are refused."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agents.training import algo_presets
from envs.errors import InvalidArgumentError, UnknownNameError
from envs.robots.kinematic_camera import KinematicCamera
from envs.specs import TASKS, get_task, resolve, task_of_env
from envs.tasks.base import EpisodeEvaluator, VantageEnv


@pytest.mark.parametrize("name", list(TASKS))
def test_spec_references_resolve(name: str) -> None:
    spec = TASKS[name]
    assert get_task(name) is spec and task_of_env(spec.env_id) is spec
    env_class = resolve(spec.entry_point)
    assert callable(env_class)
    assert isinstance(spec.make_evaluator(), EpisodeEvaluator)
    for baseline in spec.baselines.values():
        assert callable(resolve(baseline))
    for option in spec.options:
        assert option.default in option.choices
    for algo, preset in spec.presets.items():
        assert preset in algo_presets(algo)
    if spec.shipped_agent is not None:
        assert (spec.shipped_agent / "config.json").is_file()
    if spec.demo is not None:
        assert set(spec.demo.baselines) <= set(spec.baselines)


def test_task_classes_share_the_base() -> None:
    from envs.tasks.active_tracking import ActiveTrackingEnv
    from envs.tasks.face_recognition import DroneFaceEnv

    assert issubclass(ActiveTrackingEnv, VantageEnv) and issubclass(DroneFaceEnv, VantageEnv)


def test_unknown_names_list_the_known_ones() -> None:
    known = "face-recognition, fusion, tracking, vqa"
    with pytest.raises(UnknownNameError, match=f"unknown task 'juggling'; known: {known}"):
        get_task("juggling")
    with pytest.raises(InvalidArgumentError, match="no default rainbow preset"):
        get_task("face-recognition").preset("rainbow")
    with pytest.raises(UnknownNameError, match="tracking baseline 'rule'; known: static"):
        get_task("tracking").make_baseline("rule", None)


def test_kinematic_camera_moves() -> None:
    cam = KinematicCamera("drone", step_size=0.1, vertical_step=0.05, yaw_step=math.radians(3),
                          arc_step=math.radians(15))
    state = np.array([1.0, 0.0, 1.5, math.pi])  # facing -x, towards a pivot at the origin
    np.testing.assert_allclose(cam.moved(state, "forward")[:2], [0.9, 0.0], atol=1e-12)
    np.testing.assert_allclose(cam.moved(state, "up")[2], 1.55)
    arc = cam.moved(state, "arc_left", pivot=np.zeros(2))
    assert math.hypot(*arc[:2]) == pytest.approx(1.0)  # stays on the circle
    heading = np.array([math.cos(arc[3]), math.sin(arc[3])])
    assert heading @ (-arc[:2] / np.linalg.norm(arc[:2])) == pytest.approx(1.0)  # still facing the pivot
    np.testing.assert_array_equal(cam.moved(state, "stay"), state)
    with pytest.raises(UnknownNameError, match="camera move 'jump'"):
        cam.moved(state, "jump")
    with pytest.raises(InvalidArgumentError, match="pivot"):
        cam.moved(state, "arc_right")
    with pytest.raises(InvalidArgumentError, match="step_size=0"):
        KinematicCamera("drone", step_size=0)
