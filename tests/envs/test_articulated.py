"""Joints, actuators, force/torque, sites, Jacobians and depth of the MuJoCo backend, on ``worlds/mujoco/arm2.xml``.

The arm's geometry and load are documented in the world file: links of 0.2 m and 0.15 m on hinges about +z,
a 0.1 kg hand whose centre of mass is (0.03, 0, -0.04) m from the wrist site.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import mujoco
import numpy as np
import pytest

from envs.errors import InvalidArgumentError, SimulatorError, UnknownNameError
from envs.sim import make_backend
from envs.sim.base import Pose
from envs.sim.mujoco import MujocoBackend
from tests.fakes import BareBackend

JOINTS = ("shoulder", "elbow")
ACTUATORS = ("shoulder_motor", "elbow_motor")
HAND_MASS, HAND_COM, GRAVITY = 0.1, np.array([0.03, 0.0, -0.04]), 9.81


@pytest.fixture
def arm() -> Iterator[MujocoBackend]:
    backend = make_backend("mujoco", "arm2", control_period=0.05)
    yield backend
    backend.close()


def _settle(sim: MujocoBackend, targets: tuple[float, float], steps: int = 20) -> None:
    sim.set_actuator_controls(dict(zip(ACTUATORS, targets)))
    for _ in range(steps):
        sim.step()


# -- names and errors --------------------------------------------------------------------------------------


def test_names_limits_and_ranges(arm: MujocoBackend) -> None:
    assert arm.joint_names == JOINTS
    assert arm.actuator_names == ACTUATORS
    assert arm.site_names == ("wrist",)
    assert arm.force_torque_names == ("wrist",)
    assert arm.entity_names == ()  # articulated links are no entities
    low, high = arm.joint_limits(["elbow", "shoulder"])  # in the order asked for
    np.testing.assert_array_equal(low, [-2.4, -2.6])
    np.testing.assert_array_equal(high, [2.4, 2.6])
    low, high = arm.actuator_ranges(ACTUATORS)
    np.testing.assert_array_equal(low, [-2.6, -2.4])
    np.testing.assert_array_equal(high, [2.6, 2.4])


def test_tracking_world_has_no_joints_and_records_nothing() -> None:
    with make_backend("mujoco", "tracking") as sim:
        assert sim.joint_names == sim.actuator_names == sim.site_names == sim.force_torque_names == ()
        assert sim._ft_window is None  # step() stays free of force recording in worlds without the sensors
        with pytest.raises(UnknownNameError, match=r"unknown force/torque sensor 'wrist'; known: \(none\)"):
            sim.read_force_torque("wrist")


@pytest.mark.parametrize(
    ("call", "kind", "known"),
    [
        (lambda s: s.get_joint_positions(["wrist"]), "joint", "elbow, shoulder"),
        (lambda s: s.get_joint_velocities(["shoulder", "knee"]), "joint", "elbow, shoulder"),
        (lambda s: s.set_joint_positions(["knee"], [0.0]), "joint", "elbow, shoulder"),
        (lambda s: s.joint_limits(["knee"]), "joint", "elbow, shoulder"),
        (lambda s: s.site_jacobian("wrist", ["knee"]), "joint", "elbow, shoulder"),
        (lambda s: s.set_actuator_controls({"gripper": 0.0}), "actuator", "elbow_motor, shoulder_motor"),
        (lambda s: s.actuator_ranges(["gripper"]), "actuator", "elbow_motor, shoulder_motor"),
        (lambda s: s.read_force_torque("elbow"), "force/torque sensor", "wrist"),
        (lambda s: s.get_site_pose("tip"), "site", "wrist"),
        (lambda s: s.site_jacobian("tip", ["elbow"]), "site", "wrist"),
    ],
)
def test_unknown_names_list_the_known_ones(arm: MujocoBackend, call, kind: str, known: str) -> None:
    with pytest.raises(UnknownNameError, match=f"unknown {kind} .*known: {known}$"):
        call(arm)


def test_names_must_be_a_sequence(arm: MujocoBackend) -> None:
    with pytest.raises(InvalidArgumentError, match="sequence of names"):
        arm.get_joint_positions("shoulder")
    with pytest.raises(InvalidArgumentError, match="empty"):
        arm.joint_limits([])


@pytest.mark.parametrize(
    ("controls", "message"),
    [
        ({"shoulder_motor": 2.7},
         r"control 2\.7 for actuator 'shoulder_motor' is outside its control range \[-2\.6, 2\.6\]"),
        ({"elbow_motor": -3.0}, r"control -3\.0 for actuator 'elbow_motor' is outside .*\[-2\.4, 2\.4\]"),
        ({"elbow_motor": float("nan")}, r"control nan for actuator 'elbow_motor' is not finite"),
        ({"elbow_motor": float("inf")}, "not finite"),
        ({"elbow_motor": "up"}, "must be a number"),
    ],
)
def test_bad_controls_raise_and_apply_nothing(arm: MujocoBackend, controls: dict, message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        arm.set_actuator_controls({"shoulder_motor": 1.0, **controls})
    for _ in range(5):
        arm.step()
    np.testing.assert_allclose(arm.get_joint_positions(JOINTS), [0.0, 0.0], atol=1e-9)  # not even the good one


def test_set_joint_positions_checks_its_values(arm: MujocoBackend) -> None:
    with pytest.raises(InvalidArgumentError, match=r"'elbow' value 2\.5 is outside its limits \[-2\.4, 2\.4\]"):
        arm.set_joint_positions(JOINTS, [0.0, 2.5])
    with pytest.raises(InvalidArgumentError, match="not finite"):
        arm.set_joint_positions(JOINTS, [float("nan"), 0.0])
    with pytest.raises(InvalidArgumentError, match=r"shape \(2,\)"):
        arm.set_joint_positions(JOINTS, [0.1])
    np.testing.assert_array_equal(arm.get_joint_positions(JOINTS), [0.0, 0.0])


# -- joints and actuators ----------------------------------------------------------------------------------


def test_position_actuators_drive_their_joints_to_the_targets(arm: MujocoBackend) -> None:
    arm.set_actuator_controls({"shoulder_motor": 0.8, "elbow_motor": -1.0})
    arm.step()
    assert 0.0 < arm.get_joint_positions(["shoulder"])[0] < 0.8  # on its way: a servo, not a teleport
    assert arm.get_joint_velocities(["shoulder"])[0] > 0.0
    for _ in range(19):  # the controls are held over the following steps
        arm.step()
    np.testing.assert_allclose(arm.get_joint_positions(JOINTS), [0.8, -1.0], atol=2e-3)
    np.testing.assert_allclose(arm.get_joint_velocities(JOINTS), [0.0, 0.0], atol=0.02)
    np.testing.assert_allclose(arm.read_sensor("shoulder_sensor"), [arm.get_joint_positions(["shoulder"])[0]])


def test_set_joint_positions_teleports_and_zeroes_velocities(arm: MujocoBackend) -> None:
    arm.set_actuator_controls({"shoulder_motor": 1.0})
    arm.step()
    assert arm.get_joint_velocities(["shoulder"])[0] > 0.1
    arm.set_joint_positions(["elbow", "shoulder"], [-0.5, 0.25])
    np.testing.assert_allclose(arm.get_joint_positions(JOINTS), [0.25, -0.5])
    np.testing.assert_array_equal(arm.get_joint_velocities(JOINTS), [0.0, 0.0])
    # The wrist moved with the joints (the kinematics were recomputed, no step needed).
    expected = [0.2 * math.cos(0.25) + 0.15 * math.cos(-0.25), 0.2 * math.sin(0.25) + 0.15 * math.sin(-0.25), 0.1]
    np.testing.assert_allclose(arm.get_site_pose("wrist").position, expected, atol=1e-12)


def test_reset_clears_controls_and_restores_joints(arm: MujocoBackend) -> None:
    _settle(arm, (1.2, 0.7))
    arm.set_joint_positions(["elbow"], [1.5])
    arm.reset()
    np.testing.assert_array_equal(arm.get_joint_positions(JOINTS), [0.0, 0.0])
    for _ in range(5):
        arm.step()
    np.testing.assert_allclose(arm.get_joint_positions(JOINTS), [0.0, 0.0], atol=1e-9)  # no control left


# -- force/torque ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pose", [(0.0, 0.0), (0.7, -1.2), (-2.0, 2.0)])
def test_wrist_reads_the_static_load_in_its_frame(arm: MujocoBackend, pose: tuple[float, float]) -> None:
    """At rest the arm holds the hand up: f = +m g along the wrist's z (up), t = r x f about the wrist."""
    arm.set_joint_positions(JOINTS, pose)
    _settle(arm, pose, steps=10)
    wrench = arm.read_force_torque("wrist")
    assert wrench.shape == (6,) and wrench.dtype == np.float64
    force = np.array([0.0, 0.0, HAND_MASS * GRAVITY])
    np.testing.assert_allclose(wrench[:3], force, atol=1e-4)
    np.testing.assert_allclose(wrench[3:], np.cross(HAND_COM, force), atol=1e-4)  # (0, -m g 0.03, 0)
    assert wrench[4] == pytest.approx(-HAND_MASS * GRAVITY * 0.03, abs=1e-4)
    sensors = np.concatenate([arm.read_sensor("wrist_force"), arm.read_sensor("wrist_torque")])
    np.testing.assert_allclose(wrench, sensors)


def test_force_window_holds_every_substep_of_the_last_step() -> None:
    with make_backend("mujoco", "arm2", control_period=0.064) as sim:
        assert sim.n_substeps == 32
        window = sim.read_force_torque("wrist", substeps=True)
        assert window.shape == (32, 6) and window.dtype == np.float64
        np.testing.assert_allclose(window, np.tile(sim.read_force_torque("wrist"), (32, 1)))  # after reset

        sim.set_actuator_controls({"shoulder_motor": 1.0})  # a jerk: the hand's inertia shows in the window
        sim.step()
        window = sim.read_force_torque("wrist", substeps=True)
        np.testing.assert_array_equal(window[-1], sim.read_force_torque("wrist"))
        assert np.ptp(window[:, 1]) > 0.5  # lateral force changes within the step
        np.testing.assert_allclose(window[:, 2], HAND_MASS * GRAVITY, atol=1e-6)  # the hand stays level

        # Row k describes the state after substep k: MuJoCo stepped by hand, sensors recomputed after each.
        model, data = sim.model, mujoco.MjData(sim.model)
        data.ctrl[0] = 1.0
        for row in window:
            mujoco.mj_step(model, data)
            mujoco.mj_forward(model, data)
            np.testing.assert_allclose(row, data.sensordata[:6], atol=1e-9)


def test_window_is_a_copy(arm: MujocoBackend) -> None:
    window = arm.read_force_torque("wrist", substeps=True)
    window[:] = 0.0
    assert arm.read_force_torque("wrist", substeps=True)[0, 2] > 0.9


# -- sites and Jacobians ------------------------------------------------------------------------------------


def _rotation_vector(rotation: np.ndarray) -> np.ndarray:
    """Small-angle log map of a rotation matrix."""
    return 0.5 * np.array([rotation[2, 1] - rotation[1, 2], rotation[0, 2] - rotation[2, 0],
                           rotation[1, 0] - rotation[0, 1]])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_site_jacobian_matches_finite_differences(arm: MujocoBackend, seed: int) -> None:
    q = np.random.default_rng(seed).uniform([-2.0, -2.0], [2.0, 2.0])
    arm.set_joint_positions(JOINTS, q)
    jacobian = arm.site_jacobian("wrist", JOINTS)
    assert jacobian.shape == (6, 2)
    eps = 1e-6
    for column in range(2):
        poses = []
        for sign in (1.0, -1.0):
            arm.set_joint_positions(JOINTS, q + sign * eps * np.eye(2)[column])
            poses.append(arm.get_site_pose("wrist"))
        linear = (poses[0].position - poses[1].position) / (2 * eps)
        angular = _rotation_vector(poses[0].rotation_matrix @ poses[1].rotation_matrix.T) / (2 * eps)
        np.testing.assert_allclose(jacobian[:, column], np.concatenate([linear, angular]), atol=1e-6)
    arm.set_joint_positions(JOINTS, q)
    np.testing.assert_array_equal(arm.site_jacobian("wrist", ["elbow", "shoulder"]), jacobian[:, ::-1])


def test_site_pose_follows_the_link(arm: MujocoBackend) -> None:
    arm.set_joint_positions(JOINTS, [math.pi / 2, 0.0])
    pose = arm.get_site_pose("wrist")
    np.testing.assert_allclose(pose.position, [0.0, 0.35, 0.1], atol=1e-12)
    assert pose.yaw == pytest.approx(math.pi / 2)
    np.testing.assert_allclose(pose.rotation_matrix[:, 2], [0.0, 0.0, 1.0], atol=1e-12)


def test_pose_from_matrix_round_trips() -> None:
    rng = np.random.default_rng(0)
    for q in rng.normal(size=(50, 4)):
        pose = Pose(np.zeros(3), q)
        back = Pose.from_matrix(np.zeros(3), pose.rotation_matrix.reshape(-1))
        assert abs(float(np.dot(back.quaternion, pose.quaternion))) == pytest.approx(1.0)


# -- depth --------------------------------------------------------------------------------------------------


def test_depth_is_metric_distance_to_the_image_plane(arm: MujocoBackend) -> None:
    """Floor pixels read the analytic depth of the plane z = 0; the arm is nearer than the floor behind it."""
    depth = arm.render_depth("arm_camera")
    assert depth.shape == (64, 64) and depth.dtype == np.float32
    position, rotation = arm.camera_frame("arm_camera")
    height, width = arm.camera_shape("arm_camera")
    focal = 0.5 * height / math.tan(0.5 * arm.camera_fovy("arm_camera"))
    rows, cols = np.mgrid[0:height, 0:width]
    rays = np.stack([(cols + 0.5 - width / 2) / focal, -(rows + 0.5 - height / 2) / focal,
                     -np.ones((height, width))], axis=-1) @ rotation.T  # camera looks along -z
    assert np.all(rays[..., 2] < 0), "every pixel of the 45-degree camera should see the floor"
    floor = -position[2] / rays[..., 2]  # distance along the optical axis to z = 0
    on_floor = np.abs(depth / floor - 1) < 1e-3
    assert on_floor.mean() > 0.9
    assert np.all(depth <= floor * (1 + 1e-3))
    (u, v), wrist_depth = (x[0] for x in arm.project(arm.get_site_pose("wrist").position[None], "arm_camera"))
    assert not on_floor[int(v), int(u)]
    assert depth[int(v), int(u)] == pytest.approx(wrist_depth, abs=0.03)


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.get_joint_positions(["a"]),
        lambda s: s.get_joint_velocities(["a"]),
        lambda s: s.set_joint_positions(["a"], [0.0]),
        lambda s: s.joint_limits(["a"]),
        lambda s: s.set_actuator_controls({"a": 0.0}),
        lambda s: s.actuator_ranges(["a"]),
        lambda s: s.read_force_torque("a"),
        lambda s: s.get_site_pose("a"),
        lambda s: s.site_jacobian("a", ["b"]),
    ],
)
def test_backends_without_articulation_say_so(call) -> None:
    bare = BareBackend()
    assert bare.joint_names == bare.actuator_names == bare.force_torque_names == bare.site_names == ()
    with pytest.raises(SimulatorError, match="BareBackend for this world has no"):
        call(bare)
