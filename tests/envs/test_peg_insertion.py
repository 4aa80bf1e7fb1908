"""The peg-in-hole task (``vantage/PegInsertion-v0``): world, sensors, compliant control, success, failures.

The contract suite (``tests/envs/test_contract.py``) runs on it from its spec entry; these tests check what
is particular to it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401  (registers the environments)
from agents.fusion_scripted import ScriptedInsertion, back_project, localise_block
from envs.errors import InvalidActionError, InvalidArgumentError, UnknownNameError
from envs.sim.wbt import load_world
from envs.tasks.peg_insertion import FUSION_MODALITIES, PegInsertionEnv, parse_failures
from envs.worlds import peg_insertion as world


@pytest.fixture
def env() -> Iterator[PegInsertionEnv]:
    environment = PegInsertionEnv()
    yield environment
    environment.close()


def test_world_has_the_panda_joints_limits_and_sensors() -> None:
    sim = world.open_peg_world("mujoco")
    try:
        assert set(world.JOINTS) <= set(sim.joint_names) and set(world.ACTUATORS) <= set(sim.actuator_names)
        low, high = sim.joint_limits(world.JOINTS)
        np.testing.assert_allclose(np.stack([low, high], 1), world.JOINT_LIMITS)
        assert sim.force_torque_names == (world.FT_SENSOR,)
        assert sim.read_force_torque(world.FT_SENSOR, substeps=True).shape == (32, 6)
        assert sim.camera_shape(world.CAMERA) == (64, 64)
    finally:
        sim.close()


def test_generated_worlds_match_the_shipped_files() -> None:
    for shape in world.PEG_SHAPES:
        assert world.world_file(shape).read_text() == world.world_xml(shape)
        webots = world.worlds_dir() / "webots" / f"peg_{shape}.wbt"
        assert webots.read_text() == world.webots_xml(shape)
        paths = [path for path, _ in load_world(webots).def_paths()]
        assert "joint1.link1.joint2.link2.joint3.link3.joint4.link4.joint5.link5.joint6.link6.joint7.link7" in paths
    other = world.world_file("square", clearance=0.006)
    assert other.parent.name == "vantage_worlds" and "6.00 mm" in other.read_text()


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"shape": "hexagon"}, "peg shape 'hexagon'"),
    ({"clearance": 0.5}, "clearance=0.5"),
    ({"image_size": 512}, "image_size=512"),
])
def test_bad_world_settings_are_named(kwargs: dict, match: str) -> None:
    with pytest.raises(InvalidArgumentError, match=match):
        world.world_xml(**kwargs)


def test_force_torque_sensor_reads_the_pegs_weight_at_rest(env: PegInsertionEnv) -> None:
    """At rest with the peg vertical (sensor z down the peg) the hand holds the peg up: f = (0, 0, -m g)."""
    env.reset(seed=0)
    for _ in range(10):
        env.step(np.zeros(3))
    window = env.sim.read_force_torque(world.FT_SENSOR, substeps=True)
    force, torque = window[:, :3].mean(0), window[:, 3:].mean(0)
    np.testing.assert_allclose(force, [0.0, 0.0, -world.PEG_MASS * 9.81], atol=0.02)
    np.testing.assert_allclose(torque, 0.0, atol=2e-3)  # the weight acts along the axis through the site


def test_cartesian_controller_tracks_a_commanded_target(env: PegInsertionEnv) -> None:
    env.reset(seed=1)
    start, _ = env.controller.tool_pose(env.sim)
    target = start + np.array([0.03, -0.02, 0.02])
    for _ in range(20):  # the actions move the controller's target onto the goal, then hold it there
        env.step(np.clip((target - env.controller.target_position) / env.settings.max_translation, -1, 1))
    tip, _ = env.controller.tool_pose(env.sim)
    assert np.linalg.norm(tip - target) < 1.5e-3


def test_yaw_is_tracked_for_non_round_pegs() -> None:
    env = PegInsertionEnv(peg="square")
    try:
        env.reset(seed=2)
        _, yaw0 = env.controller.tool_pose(env.sim)
        for _ in range(10):
            env.step(np.array([0, 0, 0, 1.0]))  # 0.05 rad per step
        _, yaw = env.controller.tool_pose(env.sim)
        assert math.remainder(yaw - yaw0, 2 * math.pi) == pytest.approx(0.5, abs=0.06)
    finally:
        env.close()


def _drive(env: PegInsertionEnv, goal: np.ndarray, steps: int, speed: float = 1.0) -> dict:
    """Move the controller's target straight to ``goal`` (``speed`` x the per-step limit) for ``steps`` steps."""
    info: dict = {}
    for _ in range(steps):
        _, _, terminated, _, info = env.step(
            np.clip((goal - env.controller.target_position) / env.settings.max_translation, -speed, speed))
        if terminated:
            break
    return info


def test_a_blocked_peg_pushes_with_a_bounded_force(env: PegInsertionEnv) -> None:
    """Pushing down on the block top beside the hole is compliant: the force stays bounded by the lead limit."""
    _, info = env.reset(seed=3)
    beside = np.array([info["hole_position"][0] + 0.035, info["hole_position"][1], 0.07])
    _drive(env, beside, 20)
    forces = []
    for _ in range(15):
        _, _, terminated, _, info = env.step(np.array([0.0, 0.0, -1.0]))
        forces.append(info["force"])
        assert not terminated
    assert info["contact"] and info["insertion_depth"] < 0.0  # resting on the block's top
    assert 3.0 < max(forces) < 100.0


def test_success_is_detected_when_the_tip_is_deep_in_the_hole(env: PegInsertionEnv) -> None:
    _, info = env.reset(seed=4)
    hole = np.array(info["hole_position"])
    info = _drive(env, np.array([hole[0], hole[1], 0.07]), 25)
    assert not info["success"] and info["lateral_error"] < 0.0015
    info = _drive(env, np.array([hole[0], hole[1], 0.0]), 30, speed=0.3)  # fast descents drift sideways
    assert info["success"] and info["reward_success"] == 10.0
    assert info["insertion_depth"] >= env.settings.success_depth


@pytest.mark.parametrize("peg", world.PEG_SHAPES)
def test_the_scripted_controller_inserts_on_a_seeded_episode(peg: str) -> None:
    env = gym.make("vantage/PegInsertion-v0", peg=peg)
    try:
        policy = ScriptedInsertion(env)
        obs, _ = env.reset(seed=0)
        policy.reset()
        for _ in range(150):
            obs, _, terminated, truncated, info = env.step(policy.predict(obs)[0])
            if terminated or truncated:
                break
        assert info["success"]
    finally:
        env.close()


def test_the_block_is_localised_from_depth_alone(env: PegInsertionEnv) -> None:
    for seed in range(3):
        obs, info = env.reset(seed=seed)
        pos, rot = env.sim.camera_frame(world.CAMERA)
        centre, _ = localise_block(back_project(obs["depth"], pos, rot, env.sim.camera_fovy(world.CAMERA)), 0)
        assert np.linalg.norm(centre - np.array(info["hole_position"][:2])) < 0.006  # ~0.7 px


def test_observation_has_one_key_per_modality(env: PegInsertionEnv) -> None:
    obs, _ = env.reset(seed=0)
    assert tuple(obs) == FUSION_MODALITIES
    assert obs["rgb"].dtype == np.uint8 and obs["depth"].shape == (64, 64, 1) and obs["wrench"].shape == (32, 6)
    assert env.observables["wrench"].modality == "wrench" and env.observables["proprio"].modality == "joints"


def _failure_run(kind: str, modality: str, rate: float, steps: int = 60) -> tuple[list, list, list]:
    env = PegInsertionEnv(failures={modality: {"kind": kind, "rate": rate}})
    clean_env = PegInsertionEnv()
    try:
        obs, info = env.reset(seed=7)
        clean, _ = clean_env.reset(seed=7)
        flags, observed, truth = [info["corrupted"]], [obs[modality]], [clean[modality]]
        for _ in range(steps):
            action = np.array([0.3, -0.2, 0.0])
            obs, _, _, _, info = env.step(action)
            clean, *_ = clean_env.step(action)
            flags.append(info["corrupted"])
            observed.append(obs[modality])
            truth.append(clean[modality])
        return flags, observed, truth
    finally:
        env.close()
        clean_env.close()


def test_missing_failure_gives_zeros_at_its_rate() -> None:
    flags, observed, _ = _failure_run("missing", "depth", 0.5)
    hit = np.array(["depth" in f for f in flags])
    assert 0.3 < hit.mean() < 0.7
    assert all(not o.any() for o, h in zip(observed, hit) if h)
    assert all(o.any() for o, h in zip(observed, hit) if not h)


def test_noise_failure_has_its_standard_deviation() -> None:
    flags, observed, truth = _failure_run("noise", "wrench", 1.0)
    assert all(f == ["wrench"] for f in flags)
    residual = np.stack(observed) - np.stack(truth)
    assert residual.std() == pytest.approx(3.0, rel=0.05)  # std 1 x the wrench's 3 N scale


def test_frozen_failure_repeats_the_last_good_reading() -> None:
    flags, observed, truth = _failure_run("frozen", "rgb", 0.3)
    last_good = None
    for flag, obs, clean in zip(flags, observed, truth):
        if "rgb" in flag:
            assert last_good is None or np.array_equal(obs, last_good)
        else:
            np.testing.assert_array_equal(obs, clean)
            last_good = obs
    assert 0.1 < np.mean(["rgb" in f for f in flags]) < 0.5


def test_dropout_failure_comes_in_bursts() -> None:
    flags, observed, _ = _failure_run("dropout", "proprio", 0.1)
    hit = [int("proprio" in f) for f in flags]
    runs = [len(r) for r in "".join(map(str, hit)).split("0") if r]
    assert runs and all(r % 5 == 0 for r in runs[:-1])  # bursts of 5 (a burst may follow another)
    assert all(not o.any() for o, h in zip(observed, hit) if h)


def test_a_sensor_frozen_from_the_start_keeps_its_first_reading() -> None:
    flags, observed, truth = _failure_run("frozen", "proprio", 1.0, 10)
    assert all(f == ["proprio"] for f in flags)
    assert all(np.array_equal(o, truth[0]) for o in observed) and not np.array_equal(truth[-1], truth[0])


def test_failures_are_reproducible_from_the_seed() -> None:
    assert _failure_run("noise", "rgb", 0.5, 10)[0] == _failure_run("noise", "rgb", 0.5, 10)[0]


@pytest.mark.parametrize(("failures", "error", "match"), [
    ({"sonar": {"kind": "noise"}}, UnknownNameError, "modality 'sonar'"),
    ({"rgb": {"kind": "smudge"}}, UnknownNameError, "failure kind 'smudge'"),
    ({"rgb": {"kind": "noise", "rate": 1.5}}, InvalidArgumentError, r"rate=1.5 must be in \[0, 1\]"),
    ({"rgb": {"kind": "noise", "rate": -0.1}}, InvalidArgumentError, "rate=-0.1"),
    ({"rgb": {"kind": "noise", "colour": 1}}, UnknownNameError, "failure option for 'rgb' 'colour'"),
    ("noise-rgb", InvalidArgumentError, "KIND:MODALITY"),
])
def test_bad_failures_are_named(failures: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        parse_failures(failures)
    with pytest.raises(error, match=match):
        gym.make("vantage/PegInsertion-v0", failures=failures)


def test_failure_text_form() -> None:
    parsed = parse_failures("noise:rgb@0.25,missing:depth")
    assert parsed["rgb"].kind == "noise" and parsed["rgb"].rate == 0.25 and parsed["depth"].rate == 1.0


@pytest.mark.parametrize("action", [np.array([np.nan, 0, 0]), np.array([1.5, 0, 0]), np.zeros(4), "up"])
def test_bad_actions_name_the_value(env: PegInsertionEnv, action: object) -> None:
    env.reset(seed=0)
    with pytest.raises(InvalidActionError, match="action"):
        env.step(action)
