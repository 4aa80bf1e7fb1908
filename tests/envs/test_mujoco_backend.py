"""The MuJoCo backend behind the simulator interface."""

import math

import numpy as np
import pytest

from envs.errors import InvalidArgumentError, UnknownNameError, WorldFileError
from envs.sim import Pose, make_backend, world_path


@pytest.fixture
def sim():
    backend = make_backend("mujoco", "tracking")
    yield backend
    backend.close()


def test_names_and_camera_shapes(sim):
    assert {"target", "tracker", "obstacle_0"} <= set(sim.entity_names)
    assert {"tracker_camera", "chase_camera", "overview"} <= set(sim.camera_names)
    image = sim.render("tracker_camera")
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    assert sim.camera_fovy("tracker_camera") == pytest.approx(math.radians(60))


def test_camera_size_override():
    sim = make_backend("mujoco", "tracking", camera_sizes={"tracker_camera": (32, 48)})
    assert sim.render("tracker_camera").shape == (32, 48, 3)
    sim.close()


def test_planar_velocity_follows_unicycle_arc(sim):
    sim.set_pose("target", Pose.planar(0.0, 0.0, 0.0))
    sim.set_pose("tracker", Pose.planar(-1.0, -1.0, 0.0))
    forward, rate = 0.05, 0.3
    sim.set_planar_velocity("target", forward, rate)
    for _ in range(20):
        sim.step()
    t = sim.time
    pose = sim.get_pose("target")
    expected = np.array([forward / rate * math.sin(rate * t), forward / rate * (1 - math.cos(rate * t))])
    np.testing.assert_allclose(pose.xy, expected, atol=2e-4)
    assert pose.yaw == pytest.approx(rate * t, abs=1e-6)


def test_walls_stop_a_robot(sim):
    sim.set_pose("target", Pose.planar(2.3, 0.0, 0.0))
    sim.set_planar_velocity("target", 0.129, 0.0)
    for _ in range(100):
        sim.step()
    assert sim.get_pose("target").xy[0] < 2.5 - 0.037 + 0.01


def test_set_pose_round_trip_and_reset(sim):
    sim.set_pose("tracker", Pose.planar(1.0, -0.5, 2.0))
    pose = sim.get_pose("tracker")
    np.testing.assert_allclose(pose.xy, [1.0, -0.5], atol=1e-9)
    assert pose.yaw == pytest.approx(2.0)
    sim.set_pose("obstacle_0", Pose.planar(0.5, 0.5, 0.0))
    np.testing.assert_allclose(sim.get_pose("obstacle_0").position, [0.5, 0.5, 0.0])
    sim.set_planar_velocity("tracker", 0.1, 0.0)
    sim.reset()
    np.testing.assert_allclose(sim.get_pose("obstacle_0").position, [0.0, 0.0, -1.0])
    np.testing.assert_allclose(sim.get_pose("tracker").xy, [-0.2, 0.0])
    sim.step()
    np.testing.assert_allclose(sim.get_pose("tracker").xy, [-0.2, 0.0])  # command cleared by reset


def test_unknown_names_and_bad_commands(sim):
    with pytest.raises(UnknownNameError, match="tracker"):
        sim.get_pose("trackr")
    with pytest.raises(UnknownNameError, match="tracker_camera"):
        sim.render("front")
    with pytest.raises(InvalidArgumentError, match="planar"):
        sim.set_planar_velocity("obstacle_0", 0.1, 0.0)
    with pytest.raises(InvalidArgumentError, match="finite"):
        sim.set_planar_velocity("tracker", float("nan"), 0.0)
    with pytest.raises(UnknownNameError, match="sensor"):
        sim.read_sensor("imu")


def test_bad_world_files(tmp_path):
    with pytest.raises(WorldFileError, match="not found"):
        make_backend("mujoco", tmp_path / "missing.xml")
    bad = tmp_path / "bad.xml"
    bad.write_text("<mujoco><worldbody><geom type='sphere'/></worldbody")
    with pytest.raises(WorldFileError, match="could not load"):
        make_backend("mujoco", bad)
    with pytest.raises(WorldFileError, match="tracking"):
        world_path("trackin", "mujoco")
    with pytest.raises(UnknownNameError, match="mujoco, webots"):
        make_backend("gazebo", "tracking")


def test_control_period_must_be_multiple_of_timestep():
    with pytest.raises(InvalidArgumentError, match="control_period"):
        make_backend("mujoco", "tracking", control_period=0.015)


def test_pose_validation():
    with pytest.raises(ValueError, match="finite"):
        Pose(np.array([np.nan, 0, 0]))
    with pytest.raises(ValueError, match="shape"):
        Pose(np.zeros(2))
    assert Pose.planar(0, 0, -3.0).yaw == pytest.approx(-3.0)
