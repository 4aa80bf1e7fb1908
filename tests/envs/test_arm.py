"""The arm robot adapter (:class:`envs.robots.arm.Arm`) on the MuJoCo two-link arm.

The same adapter drives the Webots arm; ``tests/envs/test_webots_backend.py`` runs it against the Webots double.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest

from envs.errors import InvalidActionError, InvalidArgumentError
from envs.robots.arm import Arm
from envs.sim import make_backend
from envs.sim.mujoco import MujocoBackend

ARM = Arm(("shoulder", "elbow"), ("shoulder_motor", "elbow_motor"), "wrist")


@pytest.fixture
def sim() -> Iterator[MujocoBackend]:
    backend = make_backend("mujoco", "arm2", control_period=0.05)
    yield backend
    backend.close()


def test_differential_ik_tracks_a_reachable_target(sim: MujocoBackend) -> None:
    ARM.reset_to(sim, [0.4, 1.2])  # bent: away from the stretched-arm singularity
    start = ARM.end_effector_pose(sim).position
    target = start + np.array([0.05, -0.04, 0.0])
    errors = []
    for _ in range(10):
        ARM.move_end_effector(sim, target - ARM.end_effector_pose(sim).position)
        sim.step()
        errors.append(float(np.linalg.norm(target - ARM.end_effector_pose(sim).position)))
    assert errors[0] < 0.064 * 0.7  # the first step already covers most of the way
    assert errors[-1] < 1e-3
    np.testing.assert_allclose(ARM.joint_velocities(sim), [0.0, 0.0], atol=0.05)


def test_ik_leaves_unreachable_directions_alone(sim: MujocoBackend) -> None:
    """The planar arm cannot move its wrist up: asking for it changes no joint target."""
    ARM.reset_to(sim, [0.4, 1.2])
    np.testing.assert_allclose(ARM.ik_targets(sim, [0.0, 0.0, 0.05]), [0.4, 1.2], atol=1e-12)


def test_ik_with_yaw_turns_the_end_effector(sim: MujocoBackend) -> None:
    ARM.reset_to(sim, [0.4, 1.2])
    yaw = ARM.end_effector_pose(sim).yaw
    targets = ARM.move_end_effector(sim, [0.0, 0.0, 0.0], delta_yaw=0.2)
    predicted = sim.site_jacobian("wrist", ARM.joints) @ (targets - np.array([0.4, 1.2]))
    assert predicted[5] > 0.05  # two joints cannot hold the position and turn: a least-squares compromise
    for _ in range(5):
        sim.step()
    assert ARM.end_effector_pose(sim).yaw > yaw + 0.05


def test_ik_targets_stay_inside_the_joint_limits(sim: MujocoBackend) -> None:
    ARM.reset_to(sim, [2.5, 1.0])
    targets = ARM.ik_targets(sim, [-0.3, 0.3, 0.0], damping=0.01)
    low, high = ARM.joint_limits(sim)
    assert np.all(targets >= low) and np.all(targets <= high)
    ARM.command_joint_targets(sim, targets)  # always a valid command


def test_command_joint_targets_reaches_them(sim: MujocoBackend) -> None:
    sent = ARM.command_joint_targets(sim, [0.5, -0.5])
    assert sent.dtype == np.float64 and sent.tolist() == [0.5, -0.5]
    for _ in range(20):
        sim.step()
    np.testing.assert_allclose(ARM.joint_positions(sim), [0.5, -0.5], atol=2e-3)
    ARM.command_joint_targets(sim, [2.6, -2.4])  # exactly on the limits is allowed


@pytest.mark.parametrize(
    ("targets", "message"),
    [
        ([2.7, 0.0], r"target 2\.7 for joint 'shoulder' is outside its limits \[-2\.6, 2\.6\]"),
        ([0.0, -2.5], r"target -2\.5 for joint 'elbow' is outside its limits \[-2\.4, 2\.4\]"),
        ([float("nan"), 0.0], r"target nan for joint 'shoulder' is not finite"),
        ([0.0, float("inf")], "not finite"),
        ([0.1, 0.2, 0.3], r"shape \(2,\), got \(3,\)"),
        ([[0.1, 0.2]], r"shape \(2,\), got \(1, 2\)"),
    ],
)
def test_bad_joint_targets_raise(sim: MujocoBackend, targets: list, message: str) -> None:
    with pytest.raises(InvalidActionError, match=message):
        ARM.command_joint_targets(sim, targets)
    for _ in range(3):
        sim.step()
    np.testing.assert_allclose(ARM.joint_positions(sim), [0.0, 0.0], atol=1e-9)  # nothing was sent


def test_bad_ik_requests_raise(sim: MujocoBackend) -> None:
    with pytest.raises(InvalidActionError, match="delta_position"):
        ARM.ik_targets(sim, [0.0, float("nan"), 0.0])
    with pytest.raises(InvalidActionError, match="delta_position"):
        ARM.ik_targets(sim, [0.0, 0.1])
    with pytest.raises(InvalidActionError, match="delta_yaw"):
        ARM.ik_targets(sim, [0.0, 0.0, 0.0], delta_yaw=math.inf)
    with pytest.raises(InvalidArgumentError, match="damping"):
        ARM.ik_targets(sim, [0.0, 0.0, 0.0], damping=0.0)


def test_arm_definition_is_checked() -> None:
    assert Arm(["a", "b"], ["m", "n"], "s").joints == ("a", "b")  # lists become tuples: hashable, frozen
    with pytest.raises(InvalidArgumentError, match="one position actuator per joint"):
        Arm(("a", "b"), ("m",), "s")
    with pytest.raises(InvalidArgumentError, match="sequence of names"):
        Arm("shoulder", ("m",), "s")


def test_targets_respect_a_narrower_actuator_range(tmp_path) -> None:
    from envs.sim import world_path

    text = world_path("arm2", "mujoco").read_text(encoding="utf-8")
    narrow = tmp_path / "arm2_narrow.xml"
    narrow.write_text(text.replace('joint="elbow" kp="10" dampratio="1" ctrlrange="-2.4 2.4"',
                                   'joint="elbow" kp="10" dampratio="1" ctrlrange="-1 1"'), encoding="utf-8")
    with make_backend("mujoco", narrow) as sim:
        low, high = ARM.target_limits(sim)
        assert low.tolist() == [-2.6, -1.0] and high.tolist() == [2.6, 1.0]
        with pytest.raises(InvalidActionError, match=r"target 1\.5 for joint 'elbow' is outside .*\[-1\.0, 1\.0\]"):
            ARM.command_joint_targets(sim, [0.0, 1.5])
        ARM.reset_to(sim, [0.3, 0.9])
        assert ARM.ik_targets(sim, [-0.2, 0.0, 0.0])[1] <= 1.0  # IK stays inside the servo's range
