"""Face-recognition baselines (static, rule-based) and the world files behind the environment."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agents.evaluation import Episode, run_episode
from envs.baselines import FaceRulePolicy, FaceStaticPolicy, StaticPolicy
from envs.errors import UnknownNameError
from envs.sim import worlds_dir
from envs.sim.wbt import load_world
from envs.specs import get_task
from envs.tasks.face_recognition import FaceEvaluator
from envs.worlds.face_room import FaceWorldLayout, build_face_recognition_world, layout_path
from tests.envs.test_face_recognition import make, tiny_world  # noqa: F401  (fixture)

FACE = get_task("face-recognition")


def run_face_episode(policy, env, seed: int, options: dict) -> Episode:
    return run_episode(policy, env, seed, FaceEvaluator(), options=options, max_steps=300)


def test_static_never_moves_and_recognises_from_the_start(tiny_world: Path) -> None:  # noqa: F811
    env, pipeline = make(tiny_world)
    policy = FACE.make_baseline("static", env)
    assert isinstance(policy, FaceStaticPolicy)
    obs, _ = env.reset(seed=0)
    start = env.sim.get_pose("drone")
    for _ in range(5):
        action, _ = policy.predict(obs)
        assert env.action_names[int(action)] == "recognize"
        obs, _, terminated, _, _info = env.step(action)
        np.testing.assert_array_equal(env.sim.get_pose("drone").position, start.position)
        assert env.sim.get_pose("drone").yaw == pytest.approx(start.yaw)
        assert not terminated
    assert pipeline.calls == 5 and policy.finished


def test_static_episode_is_one_recognition(tiny_world: Path) -> None:  # noqa: F811
    env, pipeline = make(tiny_world, action_set="paper")
    episode = run_face_episode(FaceStaticPolicy(env), env, seed=1, options={"start": {"distance": 3.0}})
    assert episode.steps == 1 and episode.metrics["recognition_calls"] == 1 and pipeline.calls == 1
    assert episode.metrics["correct"] and episode.metrics["confidence_correct"] == pytest.approx(0.8)


def test_rule_looks_then_centres_the_face(tiny_world: Path) -> None:  # noqa: F811
    env, pipeline = make(tiny_world)
    policy = FaceRulePolicy(env)
    obs, _ = env.reset(seed=0, options={"start": {"distance": 4.0}})
    width = env.recognition_size[1]
    action, _ = policy.predict(obs)
    assert env.action_names[int(action)] == "recognize"  # nothing seen yet
    pipeline.box = np.array([0.8 * width, 50, 0.8 * width + 10, 60], np.float32)  # face right of centre
    obs, *_ = env.step(action)
    action, _ = policy.predict(obs)
    assert env.action_names[int(action)] == "yaw_right"
    obs, *_ = env.step(action)
    action, _ = policy.predict(obs)
    assert env.action_names[int(action)] == "recognize"  # look again after moving


def test_rule_searches_without_a_face_and_gives_up(tiny_world: Path) -> None:  # noqa: F811
    env, pipeline = make(tiny_world)
    pipeline.answer = lambda e: None
    policy = FaceRulePolicy(env, max_search=3)
    obs, _ = env.reset(seed=0)
    names = []
    for _ in range(10):
        action, _ = policy.predict(obs)
        names.append(env.action_names[int(action)])
        obs, *_ = env.step(action)
    assert names[:7] == ["recognize", "yaw_left", "recognize", "yaw_left", "recognize", "yaw_left", "recognize"]
    assert policy.finished and set(names[7:]) == {"recognize"}


def test_rule_approaches_until_the_confidence_peaks_then_backs_off(tiny_world: Path) -> None:  # noqa: F811
    env, pipeline = make(tiny_world)
    height, width = env.recognition_size
    pipeline.box = np.array([width / 2 - 5, height / 2 - 5, width / 2 + 5, height / 2 + 5], np.float32)
    confidences = iter([0.3, 0.5, 0.7, 0.6, 0.4, 0.4, 0.4])
    pipeline.answer = lambda e: (e.identity_true, next(confidences), 0.9)
    policy = FaceRulePolicy(env, patience=2)
    episode = run_face_episode(policy, env, seed=0, options={"start": {"distance": 6.0}})
    # looks at 6.0 (0.3), 5.9 (0.5), 5.8 (0.7, best), 5.7 (0.6), 5.6 (0.4): back two steps to 5.8, final look
    assert episode.metrics["final_distance"] == pytest.approx(5.8)
    assert episode.metrics["recognition_calls"] == 6 and episode.metrics["confidence_correct"] == pytest.approx(0.4)


def test_baseline_names(tiny_world: Path) -> None:  # noqa: F811
    env, _ = make(tiny_world)
    with pytest.raises(UnknownNameError, match="face-recognition baseline 'oracle'; known: rule, static"):
        FACE.make_baseline("oracle", env)
    with pytest.raises(UnknownNameError, match="Discrete space of size"):
        StaticPolicy(env.action_space)


# -- worlds ------------------------------------------------------------------------------------------


def test_world_generation_is_deterministic(tmp_path: Path) -> None:
    first = build_face_recognition_world(tmp_path / "a", tmp_path / "tex", name="w", n_people=2, n_furniture=3)
    second = build_face_recognition_world(tmp_path / "b", tmp_path / "tex", name="w", n_people=2, n_furniture=3)
    for backend in ("mujoco", "webots"):
        assert first[backend].read_bytes() == second[backend].read_bytes()
        assert layout_path(first[backend]).read_bytes() == layout_path(second[backend]).read_bytes()


def test_shipped_world_matches_its_generator(tmp_path: Path) -> None:
    repo = worlds_dir().parent
    fresh = build_face_recognition_world(tmp_path / "worlds", tmp_path / "tex")
    shipped = {"mujoco": worlds_dir() / "mujoco" / "face_recognition.xml",
               "webots": worlds_dir() / "webots" / "face_recognition.wbt"}
    assert FaceWorldLayout.load(fresh["mujoco"]) == FaceWorldLayout.load(shipped["mujoco"])
    assert FaceWorldLayout.load(shipped["webots"]) == FaceWorldLayout.load(shipped["mujoco"])
    for name in FaceWorldLayout.load(shipped["mujoco"]).people:
        assert (repo / "assets" / "textures" / "faces" / f"{name}.png").is_file()


def test_webots_world_mirrors_the_mujoco_world() -> None:
    scene = load_world(worlds_dir() / "webots" / "face_recognition.wbt")
    layout = FaceWorldLayout.load(worlds_dir() / "mujoco" / "face_recognition.xml")
    defs = {n.def_name for n in scene.nodes if n.def_name}
    assert defs == {"drone", *(p["entity"] for p in layout.people.values()), *layout.furniture}
    cameras = {n.value("name"): n for n in scene.iter_nodes() if n.type_name == "Camera"}
    assert set(cameras) == set(layout.cameras.values())
    assert (cameras["nav_camera"].value("width"), cameras["nav_camera"].value("height")) == (128, 96)
    assert list(scene.extern_supervisors()) == ["drone"]
    textures = [n.fields["url"][0] for n in scene.iter_nodes() if n.type_name == "ImageTexture"]
    base = worlds_dir() / "webots"
    assert len(textures) == len(layout.people)
    for url in textures:
        assert (base / url).resolve().is_file(), url


# -- Webots (against tests.fakes' controller double) --------------------------------------------------------


def test_webots_backend_gives_the_same_episode_as_mujoco(tiny_world: Path, tmp_path: Path,  # noqa: F811
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import math
    import sys

    from tests.fakes import FakeWorld, ScriptedPipeline, install_fake_controller

    home = tmp_path / "webots"
    (home / "lib" / "controller" / "python").mkdir(parents=True)
    monkeypatch.setenv("WEBOTS_HOME", str(home))
    monkeypatch.delenv("WEBOTS_CONTROLLER_URL", raising=False)
    monkeypatch.setattr(sys, "path", list(sys.path))
    wbt = tiny_world.parents[1] / "webots" / "tiny_faces.wbt"
    scene = load_world(wbt)
    fake = FakeWorld(basic_time_step=10.0)
    for node in scene.nodes:
        if node.def_name:
            fake.add_node(node.def_name, type_name=node.type_name,
                          translation=tuple(node.fields.get("translation", (0.0, 0.0, 0.0))))
    for camera in (n for n in scene.iter_nodes() if n.type_name == "Camera"):
        fake.add_camera(camera.value("name"), int(camera.value("width")), int(camera.value("height")),
                        float(camera.value("fieldOfView")))
    install_fake_controller(monkeypatch, fake)

    def run(backend: str) -> list:
        pipeline = ScriptedPipeline()
        from envs.tasks.face_recognition import DroneFaceEnv

        kwargs = {"backend_kwargs": {"launch": False}} if backend == "webots" else {}
        env = DroneFaceEnv(backend=backend, world=wbt if backend == "webots" else tiny_world, pipeline=pipeline,
                           **kwargs)
        pipeline.env = env
        obs, info = env.reset(seed=11)
        out = [(obs.shape, info)]
        for action in (1, 3, 5, 8, 7, 2, 6, 4, 9, 0):
            obs, reward, terminated, _, info = env.step(np.int64(action))
            out.append((obs.shape, reward, terminated, info))
        drone = env.sim.get_pose("drone")
        out.append((round(float(drone.position[0]), 9), round(float(drone.position[1]), 9),
                    round(math.remainder(drone.yaw, 2 * math.pi), 9)))
        env.close()
        return out

    webots = run("webots")
    mujoco = run("mujoco")
    assert webots[:-1] == mujoco[:-1]
    assert webots[-1] == pytest.approx(mujoco[-1], abs=1e-6)
    assert fake.calls_named("setSFVec3f"), "the drone was moved through the Supervisor fields"
