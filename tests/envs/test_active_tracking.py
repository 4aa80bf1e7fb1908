"""vantage/ActiveTracking-v0: spaces, checker, determinism, rewards from info, lost-target rule, bad input."""

import math

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401
from envs.errors import InvalidActionError, InvalidArgumentError, UnknownNameError
from envs.sim import Pose
from envs.tasks.active_tracking import ActiveTrackingEnv

ENV_ID = "vantage/ActiveTracking-v0"
def test_spaces():
    env = ActiveTrackingEnv(k=3, image_size=32)
    assert env.action_space == gym.spaces.Discrete(49)
    assert env.observation_space.shape == (32, 32, 3)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (32, 32, 3)
    env.close()
    env = ActiveTrackingEnv(action_mode="continuous")
    assert env.action_space.shape == (2,)
    env.close()


def test_reward_equals_sum_of_info_terms_and_td_definition():
    env = ActiveTrackingEnv(reward="td")
    _, info = env.reset(seed=1)
    prev = info
    for _ in range(30):
        _, reward, _, _, info = env.step(env.action_space.sample())
        assert reward == pytest.approx(info["reward_distance"] + info["reward_angle"])
        assert info["reward_distance"] == pytest.approx(prev["distance_error"] - info["distance_error"])
        assert info["reward_angle"] == pytest.approx(prev["angle_error"] - info["angle_error"])
        prev = info
    env.close()


def test_errors_from_known_geometry():
    env = ActiveTrackingEnv()
    env.reset(seed=0)
    env.sim.set_pose("tracker", Pose.planar(0.0, 0.0, 0.0))
    env.sim.set_pose("target", Pose.planar(0.3, 0.3, 0.0))
    m = env._measure()
    assert m["distance_error"] == pytest.approx(abs(math.hypot(0.3, 0.3) - 0.2))
    assert m["angle_error"] == pytest.approx(math.pi / 4)
    assert m["target_visible"] is False  # 45 deg is outside the 30 deg half field of view
    env.sim.set_pose("target", Pose.planar(0.2, 0.05, 1.0))
    m = env._measure()
    assert m["angle_error"] == pytest.approx(math.atan2(0.05, 0.2))
    assert m["target_visible"] is True
    env.close()


def test_zero_errors_give_zero_td_reward_when_holding():
    env = ActiveTrackingEnv(reward="td", target_speed_range=(0.0, 0.0))
    env.reset(seed=0)
    env.sim.set_pose("tracker", Pose.planar(0.0, 0.0, 0.0))
    env.sim.set_pose("target", Pose.planar(0.2, 0.0, 0.0))
    env.reward_scheme.reset(env._measure())
    centre = env.k * (2 * env.k + 1) + env.k  # both wheels stopped
    _, reward, terminated, _, info = env.step(centre)
    assert reward == pytest.approx(0.0, abs=1e-9)
    assert info["distance_error"] == pytest.approx(0.0, abs=1e-9)
    assert info["angle_error"] == pytest.approx(0.0, abs=1e-9)
    assert not terminated
    env.close()


def test_lost_target_terminates_after_patience():
    env = ActiveTrackingEnv(lost_patience=5, target_speed_range=(0.0, 0.0))
    env.reset(seed=0)
    env.sim.set_pose("tracker", Pose.planar(0.0, 0.0, math.pi))  # facing away from the target
    env.sim.set_pose("target", Pose.planar(0.2, 0.0, 0.0))
    centre = env.k * (2 * env.k + 1) + env.k
    flags = []
    for _ in range(5):
        _, _, terminated, _truncated, info = env.step(centre)
        flags.append((info["target_visible"], info["target_lost"], terminated))
    assert flags[:4] == [(False, False, False)] * 4
    assert flags[4] == (False, True, True)
    env.close()


def test_out_of_range_target_counts_as_invisible():
    env = ActiveTrackingEnv(max_range=0.5)
    env.reset(seed=0)
    env.sim.set_pose("tracker", Pose.planar(0.0, 0.0, 0.0))
    env.sim.set_pose("target", Pose.planar(0.6, 0.0, 0.0))
    assert env._measure()["target_visible"] is False
    env.close()


@pytest.mark.parametrize("action", [25, -1, 2.5, np.array([1, 2]), "3", None])
def test_bad_discrete_actions(action):
    env = ActiveTrackingEnv()
    env.reset(seed=0)
    with pytest.raises(InvalidActionError, match="discrete action"):
        env.step(action)
    env.close()


@pytest.mark.parametrize("action", [[1.5, 0.0], [np.nan, 0.0], [0.1], [[0.1, 0.2]], [-1.01, 0.0]])
def test_bad_continuous_actions(action):
    env = ActiveTrackingEnv(action_mode="continuous")
    env.reset(seed=0)
    with pytest.raises(InvalidActionError, match="continuous action"):
        env.step(np.array(action))
    env.close()


def test_discrete_action_decoding():
    env = ActiveTrackingEnv(k=2)
    assert env.decode_action(0) == (-6.28, -6.28)
    assert env.decode_action(24) == (6.28, 6.28)
    assert env.decode_action(np.int64(8)) == pytest.approx((-3.14, 3.14))
    env.close()


@pytest.mark.parametrize(
    "kwargs, match",
    [({"reward": "positive"}, "hint, negative, td"), ({"motion": "random"}, "constant"),
     ({"backend": "gazebo"}, "mujoco"), ({"action_mode": "hybrid"}, "continuous"), ({"k": 0}, "k=0"),
     ({"image_size": 8}, "image_size"), ({"render_mode": "human"}, "rgb_array"),
     ({"max_range": 0.1}, "max_range"), ({"target_speed_range": (0.5, 0.1)}, "target_speed_range")],
)
def test_bad_options(kwargs, match):
    with pytest.raises((UnknownNameError, InvalidArgumentError), match=match):
        ActiveTrackingEnv(**kwargs)


def test_missing_world_file(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        ActiveTrackingEnv(world=str(tmp_path / "nowhere.xml"))


def test_render_shows_chase_view_beside_tracker_view():
    env = ActiveTrackingEnv(render_mode="rgb_array")
    obs, _ = env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (240, 480, 3) and frame.dtype == np.uint8
    np.testing.assert_array_equal(frame[0, 240], obs[0, 0])
    np.testing.assert_array_equal(frame[-1, -1], obs[-1, -1])
    env.close()


def test_obstacles_are_placed_clear_of_robots():
    env = ActiveTrackingEnv(motion="obstacles")
    for seed in range(5):
        env.reset(seed=seed)
        robots = [env.sim.get_pose(n).xy for n in ("target", "tracker")]
        for name in ("obstacle_0", "obstacle_1", "obstacle_2", "obstacle_3"):
            pose = env.sim.get_pose(name)
            assert pose.position[2] == pytest.approx(0.0)
            assert all(np.linalg.norm(pose.xy - r) >= 0.5 for r in robots)
    env.close()


def test_switching_changes_target_speeds():
    env = ActiveTrackingEnv(motion="switching", switch_interval=3)
    env.reset(seed=0)
    first = env._target_wheels
    for _ in range(3):
        env.step(12)
    assert env._target_wheels != first
    env.close()
