"""vantage/DroneFaceRecognition-v0: API, seeding, bad input, reward geometry, target zone, collisions.

Most tests run on a tiny generated world (2 people, 2 pieces of furniture) with a scripted pipeline standing
in for the face models, so rewards can be checked exactly; one test runs the shipped models end to end.
"""

from __future__ import annotations

import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs  # noqa: F401
from envs.errors import InvalidActionError, InvalidArgumentError, UnknownNameError, WorldFileError
from envs.tasks.face_recognition import ACTION_SETS, DroneFaceEnv, action_index, wrap_angle
from envs.worlds.face_room import FaceWorldLayout, build_face_recognition_world
from tests.fakes import ScriptedPipeline

ENV_ID = "vantage/DroneFaceRecognition-v0"


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("face_world")
    paths = build_face_recognition_world(root / "worlds", root / "textures", name="tiny_faces", n_people=2,
                                         n_furniture=2, nav_size=(48, 64), rec_size=(120, 160))
    return paths["mujoco"]


def make(world: Path, **kwargs) -> tuple[DroneFaceEnv, ScriptedPipeline]:
    pipeline = ScriptedPipeline()
    env = DroneFaceEnv(world=world, pipeline=pipeline, **kwargs)
    pipeline.env = env
    return env, pipeline


def act(env: DroneFaceEnv, name: str) -> tuple[np.ndarray, float, bool, bool, dict]:
    return env.step(np.int64(action_index(env.action_set, name)))


# -- API -----------------------------------------------------------------------------------------------


def test_the_shipped_world_and_models_recognise() -> None:
    env = gym.make(ENV_ID)
    assert env.observation_space.shape == (96, 128, 3)
    _obs, info = env.reset(seed=0, options={"start": {"distance": 2.0}})
    _, _, _, _, info = env.step(np.int64(action_index("toolkit", "recognize")))
    for key in ("identity_true", "identity_pred", "confidence", "correct", "distance", "angle", "frontal_angle",
                "height", "recognition_calls"):
        assert key in info
    assert info["recognition_calls"] == 1 and info["recognized"]
    assert info["identity_pred"] != ""
    env.close()


# A spec holding a pipeline object cannot be re-made, so the checker cannot try other render modes.
@pytest.mark.filterwarnings("ignore:.*not having a spec")
@pytest.mark.parametrize(("action_set", "reward"), [("toolkit", "shaped"), ("paper", "paper"), ("paper", "shaped")])
def test_check_env_tiny(tiny_world: Path, action_set: str, reward: str) -> None:
    env, _ = make(tiny_world, action_set=action_set, reward=reward, render_mode="rgb_array")
    check_env(env)
    assert env.action_space.n == len(ACTION_SETS[action_set])
    frame = env.render()
    assert frame.dtype == np.uint8 and frame.shape[0] == 240
    env.close()


def test_same_seed_same_episode(tiny_world: Path) -> None:
    a, _ = make(tiny_world)
    b, _ = make(tiny_world)
    obs_a, info_a = a.reset(seed=7)
    obs_b, _info_b = b.reset(seed=7)
    np.testing.assert_array_equal(obs_a, obs_b)
    rng = np.random.default_rng(0)
    for action in rng.integers(0, a.action_space.n, size=40):
        out_a, out_b = a.step(np.int64(action)), b.step(np.int64(action))
        np.testing.assert_array_equal(out_a[0], out_b[0])
        assert out_a[1:4] == out_b[1:4]
        strip = lambda info: {k: v for k, v in info.items() if k != "perception_seconds"}  # noqa: E731
        assert strip(out_a[4]) == strip(out_b[4])
        assert out_a[1] == pytest.approx(sum(v for k, v in out_a[4].items() if k.startswith("reward_")))
        if out_a[2]:
            a.reset(seed=int(action))
            b.reset(seed=int(action))
    c, _ = make(tiny_world)
    obs_c, _ = c.reset(seed=8)
    assert not np.array_equal(obs_a, obs_c) or info_a["distance"] != c.measure()["distance"]


# -- bad input ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("action", [1.0, True, np.array([1, 2]), 10, -1, "forward", np.float32(3)])
def test_invalid_actions_name_the_value_and_the_allowed_set(tiny_world: Path, action: object) -> None:
    env, _ = make(tiny_world)
    env.reset(seed=0)
    with pytest.raises(InvalidActionError, match=r"0=stay.*7=recognize") as err:
        env.step(action)
    assert str(action if not isinstance(action, np.ndarray) else action.tolist()[0]) in str(err.value)


@pytest.mark.parametrize(
    ("kwargs", "error", "fragment"),
    [
        ({"action_set": "arcade"}, UnknownNameError, "'arcade'; known: paper, toolkit"),
        ({"reward": "dense"}, UnknownNameError, "'dense'; known: paper, shaped"),
        ({"backend": "gazebo"}, UnknownNameError, "'gazebo'; known: mujoco, webots"),
        ({"render_mode": "human"}, UnknownNameError, "'human'; known: rgb_array"),
        ({"n_distractors": 2}, InvalidArgumentError, "n_distractors=2 must be an integer in [0, 1]"),
        ({"step_size": -0.1}, InvalidArgumentError, "step_size=-0.1"),
        ({"start_height": (2.0, 1.0)}, InvalidArgumentError, "start_height=(2.0, 1.0)"),
        ({"distance_cutoff": 3.0}, InvalidArgumentError, "distance_cutoff=3.0"),
    ],
)
def test_invalid_options(tiny_world: Path, kwargs: dict, error: type, fragment: str) -> None:
    with pytest.raises(error) as err:
        make(tiny_world, **kwargs)
    assert fragment in str(err.value)


def test_missing_world_and_layout(tmp_path: Path, tiny_world: Path) -> None:
    with pytest.raises(WorldFileError, match="no mujoco world named 'nowhere'"):
        DroneFaceEnv(world="nowhere", pipeline=ScriptedPipeline())
    lonely = tmp_path / "lonely.xml"
    lonely.write_text(tiny_world.read_text())
    with pytest.raises(WorldFileError, match="layout"):
        DroneFaceEnv(world=lonely, pipeline=ScriptedPipeline())


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"pose": 1}, "unknown reset option 'pose'; known: identity, start"),
        ({"identity": "id_042"}, "unknown identity 'id_042'; known: id_000, id_001"),
        ({"start": {"distance": 30}}, "start distance=30.0 must be in [0.6, 22]"),
        ({"start": {"distance": 3, "yaw": 1}}, "unknown start key 'yaw'"),
        ({"start": {"angle_deg": 10}}, "needs 'distance'"),
        ({"start": {"distance": 3, "height": 9}}, "height in"),
    ],
)
def test_invalid_reset_options(tiny_world: Path, options: dict, fragment: str) -> None:
    env, _ = make(tiny_world)
    with pytest.raises(InvalidArgumentError) as err:
        env.reset(seed=0, options=options)
    assert fragment in str(err.value)


# -- geometry and rewards ----------------------------------------------------------------------------------


def _geometry(env: DroneFaceEnv) -> dict[str, float]:
    """Distance, angles and height from the simulator's poses, computed independently of the task."""
    drone = env.sim.get_pose("drone")
    person = env.sim.get_pose(f"human_{env.identity_true}")
    to_person = person.xy - drone.xy
    to_drone = -to_person
    facing = np.array([math.cos(person.yaw), math.sin(person.yaw)])
    heading = np.array([math.cos(drone.yaw), math.sin(drone.yaw)])
    unit = to_person / np.linalg.norm(to_person)
    return {
        "distance": float(np.linalg.norm(to_person)),
        "angle": float(math.acos(np.clip(heading @ unit, -1, 1))),
        "frontal_angle": float(math.acos(np.clip(facing @ (to_drone / np.linalg.norm(to_drone)), -1, 1))),
        "height": float(drone.position[2]),
    }


@pytest.mark.parametrize("moves", [("forward",), ("strafe_left", "yaw_right"), ("up", "backward", "yaw_left")])
def test_shaped_reward_matches_hand_computed_geometry(tiny_world: Path, moves: tuple[str, ...]) -> None:
    env, _ = make(tiny_world)
    _, info = env.reset(seed=3, options={"start": {"distance": 3.0, "angle_deg": 30.0, "height": 1.2}})
    before = _geometry(env)
    assert before["distance"] == pytest.approx(3.0)
    assert before["frontal_angle"] == pytest.approx(math.radians(30.0))
    assert before["angle"] == pytest.approx(0.0, abs=1e-9)
    for key in before:
        assert info[key] == pytest.approx(before[key], abs=1e-9)
    for move in moves:
        _, reward, terminated, _, info = act(env, move)
        after = _geometry(env)
        expected = {
            "angle": 2 * (before["angle"] - after["angle"]),
            "frontal": 2 * (before["frontal_angle"] - after["frontal_angle"]),
            "distance": abs(before["distance"] - 1.0) - abs(after["distance"] - 1.0),
            "height": abs(before["height"] - 1.7) - abs(after["height"] - 1.7),
        }
        for term, value in expected.items():
            assert info[f"reward_{term}"] == pytest.approx(value, abs=1e-9), term
        assert reward == pytest.approx(sum(expected.values()), abs=1e-9)
        assert not terminated
        before = after


def test_moves_have_the_documented_sizes(tiny_world: Path) -> None:
    env, _ = make(tiny_world)
    env.reset(seed=1, options={"start": {"distance": 4.0, "height": 1.5}})
    start = env.sim.get_pose("drone")
    act(env, "forward")
    assert env.measure()["distance"] == pytest.approx(3.9)
    act(env, "up")
    assert env.sim.get_pose("drone").position[2] == pytest.approx(1.55)
    act(env, "yaw_left")
    assert wrap_angle(env.sim.get_pose("drone").yaw - start.yaw) == pytest.approx(math.radians(3))
    paper, _ = make(tiny_world, action_set="paper")
    paper.reset(seed=1, options={"start": {"distance": 4.0}})
    act(paper, "arc_left")
    m = paper.measure()
    assert m["distance"] == pytest.approx(4.0) and m["angle"] == pytest.approx(0.0, abs=1e-9)
    assert m["frontal_angle"] == pytest.approx(math.radians(15))


def test_target_zone_recognition_ends_the_episode_with_twenty_times_confidence(tiny_world: Path) -> None:
    env, pipeline = make(tiny_world)
    _, info = env.reset(seed=2, options={"start": {"distance": 1.0, "height": 1.7}})
    assert info["in_target_zone"]
    _, reward, terminated, _, info = act(env, "recognize")
    assert terminated and reward == pytest.approx(20 * 0.8)
    assert info["correct"] and info["confidence_correct"] == pytest.approx(0.8) and info["recognition_calls"] == 1

    pipeline.answer = lambda e: ("id_001" if e.identity_true == "id_000" else "id_000", 0.9, 0.9)
    env.reset(seed=2, options={"start": {"distance": 1.0, "height": 1.7}})
    _, reward, terminated, _, info = act(env, "recognize")
    assert terminated and reward == 0.0 and not info["correct"]



def test_paper_actions_widen_the_frontal_tolerance_to_half_an_arc(tiny_world: Path) -> None:
    toolkit, _ = make(tiny_world)
    paper, _ = make(tiny_world, action_set="paper")
    assert toolkit.frontal_tolerance == pytest.approx(0.1)
    assert paper.frontal_tolerance == pytest.approx(math.radians(7.5) + 0.01)
    # 7 deg off frontal: out of reach of a 15 deg arc's grid at 0.1 rad, inside half an arc.
    start = {"distance": 1.0, "angle_deg": 7.0, "height": 1.7}
    assert not toolkit.reset(seed=2, options={"start": start})[1]["in_target_zone"]
    assert paper.reset(seed=2, options={"start": start})[1]["in_target_zone"]
    start["angle_deg"] = 9.0
    assert not paper.reset(seed=2, options={"start": start})[1]["in_target_zone"]

@pytest.mark.parametrize(
    "start",
    [{"distance": 3.0, "height": 1.7}, {"distance": 1.0, "height": 1.2}, {"distance": 1.0, "angle_deg": 10.0},
     {"distance": 1.4, "height": 1.7}],
)
def test_recognising_outside_the_zone_costs_and_continues(tiny_world: Path, start: dict) -> None:
    env, pipeline = make(tiny_world)
    _, info = env.reset(seed=2, options={"start": start})
    assert not info["in_target_zone"]
    _, reward, terminated, _, info = act(env, "recognize")
    assert not terminated and reward == pytest.approx(-0.05) and pipeline.calls == 1


def test_moving_never_runs_perception_in_shaped_mode(tiny_world: Path) -> None:
    env, pipeline = make(tiny_world)
    env.reset(seed=0)
    for name in ("stay", "forward", "backward", "strafe_left", "strafe_right", "yaw_left", "yaw_right", "up",
                 "down"):
        _, _, _, _, info = act(env, name)
        assert not info["recognized"] and info["identity_pred"] == ""
    assert pipeline.calls == 0 and info["recognition_calls"] == 0


def test_collision_with_the_person_terminates_and_refuses_the_move(tiny_world: Path) -> None:
    env, _ = make(tiny_world)
    env.reset(seed=4, options={"start": {"distance": 0.9}})
    for _ in range(5):
        before = env.sim.get_pose("drone").position.copy()
        _, reward, terminated, _, info = act(env, "forward")
        if terminated:
            break
    assert terminated and info["collision"] and reward == pytest.approx(-1.0)
    np.testing.assert_allclose(env.sim.get_pose("drone").position, before)
    assert info["distance"] >= 0.55 - 1e-9


def test_collision_with_the_floor(tiny_world: Path) -> None:
    env, _ = make(tiny_world)
    env.reset(seed=4, options={"start": {"distance": 4.0, "height": 0.28}})
    _, reward, terminated, _, info = act(env, "down")
    assert terminated and info["collision"] and reward == pytest.approx(-1.0)


def test_paper_reward_from_the_embedding_distance(tiny_world: Path) -> None:
    env, pipeline = make(tiny_world, action_set="paper", reward="paper", distance_cutoff=0.8)
    env.reset(seed=5, options={"start": {"distance": 3.0}})
    pipeline.answer = lambda e: (e.identity_true, 0.7, 0.9)
    _, reward, terminated, _, info = act(env, "forward")
    assert reward == pytest.approx(1 - math.sqrt(2 - 2 * 0.9) / 0.8) and not terminated
    assert info["recognition_calls"] == 1
    pipeline.answer = lambda e: (e.identity_true, 0.7, 0.6)  # correct, but farther than the cut-off
    _, reward, _, _, info = act(env, "recognize")
    assert reward == 0.0 and info["recognition_calls"] == 2
    pipeline.answer = lambda e: None
    _, reward, _, _, info = act(env, "arc_left")
    assert reward == 0.0 and info["identity_pred"] == "none"


def test_paper_cutoff_defaults_to_the_recogniser_threshold() -> None:
    env = gym.make(ENV_ID, reward="paper").unwrapped
    threshold = env.pipeline.recognizer.threshold
    assert env.distance_cutoff == pytest.approx(math.sqrt(2 - 2 * threshold))


def test_random_starts_follow_the_spec(tiny_world: Path) -> None:
    env, _ = make(tiny_world)
    layout = FaceWorldLayout.load(tiny_world)
    for seed in range(25):
        _, info = env.reset(seed=seed)
        x, y, z, _ = env._drone
        assert -8 <= x <= 8 and -8 <= y <= 8 and 0.5 <= z <= 2.5
        assert not env.collides(env._drone)
        assert not (info["distance"] < 2 and info["angle"] < env._half_hfov and info["frontal_angle"] < math.pi / 3)
        assert info["identity_true"] in layout.people
    paper, _ = make(tiny_world, action_set="paper")
    for seed in range(5):
        _, info = paper.reset(seed=seed)
        assert info["angle"] == pytest.approx(0.0, abs=1e-9) and info["height"] == pytest.approx(1.7)


def test_identity_option_and_distractors(tiny_world: Path) -> None:
    env, _ = make(tiny_world, n_distractors=1)
    _, info = env.reset(seed=0, options={"identity": "id_001", "start": {"distance": 5.0}})
    assert info["identity_true"] == "id_001"
    other = env.sim.get_pose("human_id_000").position
    assert other[2] > -1.0  # placed in the room, not parked
    assert not env.collides(env._drone)
