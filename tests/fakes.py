"""Every test double of the suite, in one place.

* a recording stand-in for Webots' ``controller`` module (below), and for a launched Webots process
  (:class:`FakePopen`);
* :class:`BareBackend`, a simulator backend with only the abstract methods;
* :class:`ScriptedPipeline`, a face pipeline whose answers a test scripts;
* :class:`DictObsEnv`, a tiny environment with ``Dict`` observations;
* fake ONNX files in the YuNet / SFace formats (:func:`fake_model`) and a two-input learner
  (:class:`FusionTestLearner`) for the perception tests.

Webots cannot be installed on the build machines, so the Webots backend is tested against a recording
stand-in for the ``controller`` module that ships with Webots (``$WEBOTS_HOME/lib/controller/python``).
It follows the documented R2023b Python API (``Supervisor``, ``Node``, ``Field``, ``Camera``,
``Robot.step``) and keeps a small world whose state stays consistent:

* ``translation``/``rotation`` fields hold the poses; like the real ``Field`` setters, ``setSFVec3f`` and
  ``setSFRotation`` accept only plain lists of floats of the right length (here they raise instead of
  printing an error, so a wrong call fails the test);
* ``Node.setVelocity`` sets a world-frame velocity that each ``step`` integrates for bodies with physics
  (no contacts are modelled); ``resetPhysics`` zeroes it;
* ``simulationReset`` restores the initial state at the end of the next step, as Webots documents;
* cameras only produce images while stepping: an enabled camera captures once its sampling period has
  elapsed, before that ``getImage`` returns ``None``; range finders likewise (``getRangeImage`` then raises
  ``ValueError``, as the Python API does on a NULL image);
* nested nodes have a parent (``Node.getParentNode``) and their world pose (``getPosition``,
  ``getOrientation``) composes their ``translation``/``rotation`` with their ancestors'; ``getFromDef``
  follows DEF paths the way Webots does (the first name anywhere, each next one among direct sub-nodes);
* joints (``HingeJoint``/``SliderJoint`` with ``jointParameters`` and an ``endPoint``) move their end point
  about their axis through their anchor, expressed in their parent's frame; ``Node.setJointPosition`` clamps to
  the stops as Webots does; motors in position control move their joint towards the target at most at their
  velocity per step (velocity control: at that velocity; torque control holds it, the fake has no dynamics),
  and end points report the matching world-frame ``getVelocity``.

Every API call is appended to :attr:`FakeWorld.calls` as ``(method, target, *args)``.
"""

# ruff: noqa: N802 (method names mirror the camelCase Webots API)

from __future__ import annotations

import io
import itertools
import math
import os
import signal
import sys
import threading
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from envs.sim.base import Pose, SimBackend
from perception.errors import InvalidArgumentError
from perception.export import export_onnx
from perception.faces.pipeline import FaceResult
from perception.learner import Learner
from perception.specs import ArrayPreprocessing, ImagePreprocessing, TensorSpec

if TYPE_CHECKING:
    from envs.tasks.face_recognition import DroneFaceEnv

# -- small rotation helpers, written independently of envs.sim.webots so the tests check its maths --------


def _quat_from_axis_angle(rotation: list[float]) -> list[float]:
    x, y, z, angle = rotation
    norm = math.sqrt(x * x + y * y + z * z) or 1.0
    s = math.sin(angle / 2) / norm
    return [math.cos(angle / 2), x * s, y * s, z * s]


def _axis_angle_from_quat(q: list[float]) -> list[float]:
    w, x, y, z = q
    s = math.sqrt(x * x + y * y + z * z)
    if s < 1e-12:
        return [0.0, 0.0, 1.0, 0.0]
    return [x / s, y / s, z / s, 2 * math.atan2(s, w)]


def _quat_mul(a: list[float], b: list[float]) -> list[float]:
    aw, ax, ay, az = a
    bw, bx, by, bz = b
    return [
        aw * bw - ax * bx - ay * by - az * bz,
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
    ]


def _matrix_from_axis_angle(rotation: list[float]) -> list[float]:
    w, x, y, z = _quat_from_axis_angle(rotation)
    return [
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ]


# -- the fake Webots API ----------------------------------------------------------------------------------


class FakeField:
    """``controller.Field``: one field of a node."""

    SF_BOOL, SF_INT32, SF_FLOAT, SF_VEC2F, SF_VEC3F, SF_ROTATION, SF_COLOR, SF_STRING, SF_NODE = range(1, 10)
    _LENGTHS: ClassVar[dict[int, int]] = {SF_VEC3F: 3, SF_ROTATION: 4}

    def __init__(self, node: FakeNode, name: str, kind: int, value: Any) -> None:
        self.node, self.name, self.kind, self.value = node, name, kind, value

    def _record(self, method: str, *args: Any) -> None:
        self.node.world.calls.append((method, f"{self.node.def_name}.{self.name}", *args))

    def getType(self) -> int:
        return self.kind

    def getName(self) -> str:
        return self.name

    def getSFVec3f(self) -> list[float]:
        self._record("getSFVec3f")
        return list(self.value)

    def getSFRotation(self) -> list[float]:
        self._record("getSFRotation")
        return list(self.value)

    def getSFNode(self) -> FakeNode | None:
        self._record("getSFNode")
        return self.value

    def getSFString(self) -> str:
        return self.value

    def getSFFloat(self) -> float:
        self._record("getSFFloat")
        if self.kind != self.SF_FLOAT:
            raise TypeError(f"getSFFloat on {self.name}, a field of another type")
        return float(self.value)

    def _set(self, method: str, kind: int, value: Any) -> None:
        if self.kind != kind:
            raise TypeError(f"{method} on {self.name}, a field of another type")
        length = self._LENGTHS[kind]
        if type(value) is not list or len(value) != length or any(type(v) is not float for v in value):
            raise TypeError(f"{method}({value!r}): the Webots API needs a list of {length} Python floats")
        self._record(method, list(value))
        self.value = list(value)

    def setSFVec3f(self, value: list[float]) -> None:
        self._set("setSFVec3f", self.SF_VEC3F, value)

    def setSFRotation(self, value: list[float]) -> None:
        self._set("setSFRotation", self.SF_ROTATION, value)


class FakePhysics:
    """The ``Physics`` node a Solid's ``physics`` field holds when the body is dynamic."""

    def getTypeName(self) -> str:
        return "Physics"


_node_ids = itertools.count(1)


class FakeNode:
    """``controller.Node`` for a Solid, Robot or Pose: translation, rotation, optional physics, velocity.

    ``parent`` is the node whose field holds this one (``None`` at the top level); with ``pose=False`` the node
    has no frame of its own (a joint, joint parameters) and sits where its parent's frame is.
    """

    def __init__(
        self,
        world: FakeWorld,
        def_name: str,
        type_name: str = "Solid",
        translation: tuple[float, float, float] = (0.0, 0.0, 0.0),
        rotation: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 0.0),
        physics: bool = False,
        parent: FakeNode | None = None,
        pose: bool = True,
    ) -> None:
        self.world, self.def_name, self.type_name = world, def_name, type_name
        self.parent, self.sub_nodes, self.id = parent, [], next(_node_ids)
        if parent is not None:
            parent.sub_nodes.append(self)
        self.fields = {"name": FakeField(self, "name", FakeField.SF_STRING, def_name)}
        if pose:
            physics_node = FakePhysics() if physics else None
            position, axis_angle = [float(v) for v in translation], [float(v) for v in rotation]
            self.fields.update({
                "translation": FakeField(self, "translation", FakeField.SF_VEC3F, position),
                "rotation": FakeField(self, "rotation", FakeField.SF_ROTATION, axis_angle),
                "physics": FakeField(self, "physics", FakeField.SF_NODE, physics_node),
            })
        self.velocity = [0.0] * 6

    @property
    def has_physics(self) -> bool:
        return "physics" in self.fields and self.fields["physics"].value is not None

    def world_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """World position and rotation matrix: the parent's frame composed with this node's own."""
        if "translation" in self.fields:
            position = np.array(self.fields["translation"].value, dtype=float)
            rotation = np.reshape(_matrix_from_axis_angle(self.fields["rotation"].value), (3, 3))
        else:
            position, rotation = np.zeros(3), np.eye(3)
        if self.parent is None:
            return position, rotation
        parent_position, parent_rotation = self.parent.world_pose()
        return parent_position + parent_rotation @ position, parent_rotation @ rotation

    def getId(self) -> int:
        return self.id

    def getParentNode(self) -> FakeNode | None:
        return self.parent

    def getDef(self) -> str:
        return self.def_name

    def getTypeName(self) -> str:
        return self.type_name

    def getBaseTypeName(self) -> str:
        return self.type_name

    def getField(self, name: str) -> FakeField | None:
        self.world.calls.append(("getField", self.def_name, name))
        return self.fields.get(name)

    def getPosition(self) -> list[float]:
        return [float(v) for v in self.world_pose()[0]]

    def getOrientation(self) -> list[float]:
        return [float(v) for v in self.world_pose()[1].reshape(-1)]

    def getVelocity(self) -> list[float]:
        return list(self.velocity)

    def setVelocity(self, velocity: list[float]) -> None:
        if len(velocity) != 6 or not all(math.isfinite(v) for v in velocity):
            raise ValueError(f"setVelocity needs 6 finite numbers, got {velocity!r}")
        self.world.calls.append(("setVelocity", self.def_name, [float(v) for v in velocity]))
        if self.has_physics:  # Webots ignores velocities of bodies without physics
            self.velocity = [float(v) for v in velocity]

    def resetPhysics(self) -> None:
        self.world.calls.append(("resetPhysics", self.def_name))
        stack = [self]  # Webots stops the node and all its descendants
        while stack:
            node = stack.pop()
            node.velocity = [0.0] * 6
            if isinstance(node, FakeJoint):
                node.rate = 0.0
            stack.extend(node.sub_nodes)


class FakeJoint(FakeNode):
    """``controller.Node`` of a ``HingeJoint`` or ``SliderJoint`` with its ``jointParameters`` and ``endPoint``.

    Moving the joint moves the end point as Webots does: from its world-file pose (at the world file's
    ``position``) it turns about ``axis`` through ``anchor`` (hinge) or slides along ``axis``, both expressed in
    the joint's parent frame. ``rate`` is the joint velocity of the last step.
    """

    def __init__(
        self,
        world: FakeWorld,
        def_name: str,
        parent: FakeNode,
        type_name: str = "HingeJoint",
        axis: tuple[float, float, float] = (0.0, 0.0, 1.0),
        anchor: tuple[float, float, float] = (0.0, 0.0, 0.0),
        position: float = 0.0,
        min_stop: float = 0.0,
        max_stop: float = 0.0,
    ) -> None:
        super().__init__(world, def_name, type_name=type_name, parent=parent, pose=False)
        hinge = type_name == "HingeJoint"
        self.parameters = FakeNode(world, "", "HingeJointParameters" if hinge else "JointParameters", parent=self,
                                   pose=False)
        values = {"position": (FakeField.SF_FLOAT, float(position)), "axis": (FakeField.SF_VEC3F, list(axis)),
                  "minStop": (FakeField.SF_FLOAT, float(min_stop)), "maxStop": (FakeField.SF_FLOAT, float(max_stop))}
        if hinge:  # slider JointParameters have no anchor
            values["anchor"] = (FakeField.SF_VEC3F, list(anchor))
        for name, (kind, value) in values.items():
            self.parameters.fields[name] = FakeField(self.parameters, name, kind, value)
        self.fields["jointParameters"] = FakeField(self, "jointParameters", FakeField.SF_NODE, self.parameters)
        self.fields["endPoint"] = FakeField(self, "endPoint", FakeField.SF_NODE, None)
        self.rate = 0.0
        self._home: tuple[float, np.ndarray, list[float]] | None = None

    @property
    def hinge(self) -> bool:
        return self.type_name == "HingeJoint"

    @property
    def position(self) -> float:
        return self.parameters.fields["position"].value

    @property
    def endpoint(self) -> FakeNode:
        return self.fields["endPoint"].value

    def attach(self, endpoint: FakeNode) -> None:
        """Make ``endpoint`` (posed as in the world file, at the current position) the moved Solid."""
        self.fields["endPoint"].value = endpoint
        self._home = (self.position, np.array(endpoint.fields["translation"].value, dtype=float),
                      _quat_from_axis_angle(endpoint.fields["rotation"].value))

    def axis_and_anchor(self) -> tuple[np.ndarray, np.ndarray]:
        """The joint's unit axis and anchor in its parent's frame."""
        fields = self.parameters.fields
        axis = np.array(fields["axis"].value, dtype=float)
        anchor = np.array(fields["anchor"].value, dtype=float) if "anchor" in fields else np.zeros(3)
        return axis / np.linalg.norm(axis), anchor

    def move_to(self, position: float, rate: float = 0.0) -> None:
        """Put the joint at ``position`` with velocity ``rate``; the end point follows."""
        self.parameters.fields["position"].value = float(position)
        self.rate = float(rate)
        assert self._home is not None, "attach() an end point first"
        home_position, home_translation, home_quaternion = self._home
        axis, anchor = self.axis_and_anchor()
        delta = float(position) - home_position
        if self.hinge:
            turn = _quat_from_axis_angle([*axis, delta])
            rotation = np.reshape(_matrix_from_axis_angle([*axis, delta]), (3, 3))
            translation = anchor + rotation @ (home_translation - anchor)
            quaternion = _quat_mul(turn, home_quaternion)
        else:
            translation, quaternion = home_translation + axis * delta, home_quaternion
        self.endpoint.fields["translation"].value = [float(v) for v in translation]
        self.endpoint.fields["rotation"].value = _axis_angle_from_quat(quaternion)

    def setJointPosition(self, position: float, index: int = 1) -> None:
        if type(position) is not float or index != 1:
            raise TypeError(f"setJointPosition({position!r}, {index!r}) needs a float and index 1 for this joint")
        self.world.calls.append(("setJointPosition", self.def_name, position))
        low, high = self.parameters.fields["minStop"].value, self.parameters.fields["maxStop"].value
        if (low, high) != (0.0, 0.0):  # Webots clamps into the stops (with a warning)
            position = min(max(position, low), high)
        self.move_to(position)


class FakeDevice:
    """``controller.Device``: a named device of the controlled robot."""

    def __init__(self, world: FakeWorld, name: str) -> None:
        self.world, self.name = world, name
        self.sampling_period = 0
        self._since_sample = 0

    def getName(self) -> str:
        return self.name

    def enable(self, sampling_period: int) -> None:
        if type(sampling_period) is not int or sampling_period < 1:
            raise TypeError(f"enable() needs a positive int period in ms, got {sampling_period!r}")
        self.world.calls.append(("enable", self.name, sampling_period))
        self.sampling_period, self._since_sample = sampling_period, 0

    def disable(self) -> None:
        self.world.calls.append(("disable", self.name))
        self.sampling_period = 0

    def getSamplingPeriod(self) -> int:
        return self.sampling_period

    def advance(self, ms: int) -> None:
        """Called by the fake simulator after each step: sample once the period has elapsed."""
        if self.sampling_period:
            self._since_sample += ms
            if self._since_sample >= self.sampling_period:
                self._since_sample = 0
                self.sample()

    def sample(self) -> None:
        """Take a new reading."""

    def actuate(self, ms: int) -> None:
        """Called by the fake simulator at the start of each step: actuators act here."""

    def on_reset(self) -> None:
        """Called when ``simulationReset`` takes effect: actuators return to their initial state."""


class FakeCamera(FakeDevice):
    """``controller.Camera``: BGRA images of ``width`` x ``height``; ``fov`` is horizontal, as in Webots.

    Args:
        scene: optional ``world -> (height, width, 4) uint8 BGRA`` drawing the current state; by default
            a fixed pattern (``self.bgra``) whose blue, green and red channels differ.
    """

    def __init__(
        self,
        world: FakeWorld,
        name: str,
        width: int,
        height: int,
        fov: float,
        scene: Callable[[FakeWorld], np.ndarray] | None = None,
    ) -> None:
        super().__init__(world, name)
        self.width, self.height, self.fov, self.scene = width, height, fov, scene
        rows, cols = np.mgrid[0:height, 0:width]
        self.bgra = np.stack(
            [rows % 256, cols % 256, np.full_like(rows, 200), np.full_like(rows, 255)], axis=-1
        ).astype(np.uint8)
        self.image: bytes | None = None

    def sample(self) -> None:
        frame = self.scene(self.world) if self.scene is not None else self.bgra
        assert frame.shape == (self.height, self.width, 4) and frame.dtype == np.uint8
        self.image = frame.tobytes()

    def disable(self) -> None:
        super().disable()
        self.image = None

    def getImage(self) -> bytes | None:
        self.world.calls.append(("getImage", self.name))
        return self.image if self.sampling_period else None

    def getWidth(self) -> int:
        return self.width

    def getHeight(self) -> int:
        return self.height

    def getFov(self) -> float:
        return self.fov


class FakeTouchSensor(FakeDevice):
    """``controller.TouchSensor``: one value (types bumper and "force") or three (type "force-3d"), sampled
    while stepping. Like the real ``getValues`` (a ctypes pointer), ``getValues`` is only meaningful for
    "force-3d" sensors."""

    BUMPER, FORCE, FORCE3D = 0, 1, 2

    def __init__(
        self,
        world: FakeWorld,
        name: str,
        value: float = 0.0,
        sensor_type: int = 1,
        values: tuple[float, float, float] = (0.0, 0.0, 0.0),
    ) -> None:
        super().__init__(world, name)
        self.true_value, self.value = value, float("nan")
        self.sensor_type = sensor_type
        self.true_values, self.values = list(values), [float("nan")] * 3

    def sample(self) -> None:
        self.value, self.values = self.true_value, list(self.true_values)

    def getType(self) -> int:
        return self.sensor_type

    def getValue(self) -> float:
        if self.sensor_type == self.FORCE3D:
            raise AssertionError("getValue() on a force-3d TouchSensor: Webots documents getValues() for it")
        return self.value

    def getValues(self) -> list[float]:
        if self.sensor_type != self.FORCE3D:
            raise AssertionError("getValues() on a 1-value TouchSensor: Webots documents getValue() for it")
        return list(self.values)


class FakeMotor(FakeDevice):
    """``controller.Motor`` driving ``joint``: position control by default (target = the joint's position),
    velocity control after ``setPosition(inf)``, torque/force control after ``setTorque``/``setForce``."""

    ROTATIONAL, LINEAR = 0, 1

    def __init__(
        self,
        world: FakeWorld,
        name: str,
        joint: FakeJoint | None,
        min_position: float = 0.0,
        max_position: float = 0.0,
        max_velocity: float = 10.0,
        max_torque: float = 10.0,
        max_force: float = 10.0,
        motor_type: int = 0,
    ) -> None:
        super().__init__(world, name)
        self.joint, self.motor_type = joint, motor_type
        self.min_position, self.max_position = min_position, max_position
        self.max_velocity, self.max_torque, self.max_force = max_velocity, max_torque, max_force
        self._initial = (joint.position if joint is not None else 0.0, max_velocity)
        self.on_reset()

    def on_reset(self) -> None:
        self.target_position, self.velocity = self._initial
        self.torque: float | None = None

    def _number(self, method: str, value: float) -> float:
        if type(value) is not float:
            raise TypeError(f"{method}({value!r}): the Webots API needs a Python float")
        self.world.calls.append((method, self.name, value))
        return value

    def setPosition(self, position: float) -> None:
        self.target_position, self.torque = self._number("setPosition", position), None

    def setVelocity(self, velocity: float) -> None:
        self.velocity = self._number("setVelocity", velocity)

    def setTorque(self, torque: float) -> None:
        self.torque = self._number("setTorque", torque)

    def setForce(self, force: float) -> None:
        self.torque = self._number("setForce", force)

    def getTargetPosition(self) -> float:
        return self.target_position

    def getMinPosition(self) -> float:
        return self.min_position

    def getMaxPosition(self) -> float:
        return self.max_position

    def getVelocity(self) -> float:
        return self.velocity

    def getMaxVelocity(self) -> float:
        return self.max_velocity

    def getMaxTorque(self) -> float:
        return self.max_torque

    def getMaxForce(self) -> float:
        return self.max_force

    def getType(self) -> int:
        return self.motor_type

    def actuate(self, ms: int) -> None:
        if self.joint is None:
            return
        dt = ms / 1000.0
        if self.torque is not None:  # no dynamics in the fake: the joint stays where it is
            self.joint.rate = 0.0
            return
        position = self.joint.position
        if math.isinf(self.target_position):  # velocity control
            step = self.velocity * dt
        else:  # position control: towards the target at most at the motor's velocity
            limit = abs(self.velocity) * dt
            step = min(max(self.target_position - position, -limit), limit)
        self.joint.move_to(position + step, step / dt)


class FakePositionSensor(FakeDevice):
    """``controller.PositionSensor`` of ``joint``: its position, sampled while stepping."""

    def __init__(self, world: FakeWorld, name: str, joint: FakeJoint) -> None:
        super().__init__(world, name)
        self.joint, self.value = joint, float("nan")

    def sample(self) -> None:
        self.value = self.joint.position

    def getValue(self) -> float:
        return self.value


class FakeRangeFinder(FakeDevice):
    """``controller.RangeFinder``: ``width`` x ``height`` depths in metres, ``fov`` horizontal.

    Args:
        scene: optional ``world -> (height, width) float32`` depth of the current state; by default a fixed
            ramp (``self.depth``) whose rows and columns differ.
    """

    def __init__(
        self,
        world: FakeWorld,
        name: str,
        width: int,
        height: int,
        fov: float,
        min_range: float = 0.01,
        max_range: float = 1.0,
        scene: Callable[[FakeWorld], np.ndarray] | None = None,
    ) -> None:
        super().__init__(world, name)
        self.width, self.height, self.fov, self.scene = width, height, fov, scene
        self.min_range, self.max_range = min_range, max_range
        rows, cols = np.mgrid[0:height, 0:width]
        self.depth = (0.5 + 0.01 * rows + 0.001 * cols).astype(np.float32)
        self.image: list[float] | None = None

    def sample(self) -> None:
        frame = self.scene(self.world) if self.scene is not None else self.depth
        assert frame.shape == (self.height, self.width) and frame.dtype == np.float32
        self.image = [float(v) for v in frame.reshape(-1)]

    def disable(self) -> None:
        super().disable()
        self.image = None

    def getRangeImage(self, data_type: str = "list") -> list[float]:
        self.world.calls.append(("getRangeImage", self.name))
        if data_type != "list":
            raise AssertionError("only the documented default data_type='list' is modelled")
        if not self.sampling_period or self.image is None:
            raise ValueError("NULL pointer access")
        return list(self.image)

    def getWidth(self) -> int:
        return self.width

    def getHeight(self) -> int:
        return self.height

    def getFov(self) -> float:
        return self.fov

    def getMinRange(self) -> float:
        return self.min_range

    def getMaxRange(self) -> float:
        return self.max_range


class FakeRobot:
    """``controller.Robot``: Webots allows one instance per controller process (``Robot.created``)."""

    created: FakeRobot | None = None


class FakeSupervisor(FakeRobot):
    """``controller.Supervisor`` over :attr:`world` (installed by :func:`install_fake_controller`)."""

    world: FakeWorld

    def __init__(self) -> None:
        world = type(self).world
        if world.refuse_connection:
            raise RuntimeError("fake libController: no Webots instance to connect to")
        FakeRobot.created = self
        self.url = os.environ.get("WEBOTS_CONTROLLER_URL")
        world.calls.append(("Supervisor", self.url))
        world.snapshot()

    def getBasicTimeStep(self) -> float:
        return self.world.basic_time_step

    def getTime(self) -> float:
        return self.world.time

    def step(self, duration: int) -> int:
        world = self.world
        world.calls.append(("step", duration))
        if type(duration) is not int or duration % int(world.basic_time_step):
            raise ValueError(f"step({duration!r}) must be a whole number of basic steps in ms")
        if world.quit:
            return -1
        world.advance(duration)
        return 0

    def simulationReset(self) -> None:
        self.world.calls.append(("simulationReset",))
        self.world.pending_reset = True

    def simulationResetPhysics(self) -> None:
        self.world.calls.append(("simulationResetPhysics",))
        for node in self.world.nodes.values():
            node.velocity = [0.0] * 6

    def simulationQuit(self, status: int) -> None:
        self.world.calls.append(("simulationQuit", status))
        self.world.quit = True

    def getFromDef(self, name: str) -> FakeNode | None:
        self.world.calls.append(("getFromDef", name))
        return self.world.resolve_def(name)

    def getNumberOfDevices(self) -> int:
        return len(self.world.devices)

    def getDeviceByIndex(self, index: int) -> FakeDevice:
        return self.world.devices[index]

    def getDevice(self, name: str) -> FakeDevice | None:
        return next((d for d in self.world.devices if d.name == name), None)


@dataclass
class FakeWorld:
    """The simulated state behind the fake ``controller`` module."""

    basic_time_step: float = 10.0
    nodes: dict[str, FakeNode] = field(default_factory=dict)
    devices: list[FakeDevice] = field(default_factory=list)
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    time: float = 0.0
    pending_reset: bool = False
    quit: bool = False
    refuse_connection: bool = False
    nested: list[FakeNode] = field(default_factory=list)  # DEF'd nodes below the top level
    joints: list[FakeJoint] = field(default_factory=list)  # parents before children
    _initial: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)
    _initial_joints: list[float] = field(default_factory=list)

    def add_node(self, def_name: str, **kwargs: Any) -> FakeNode:
        node = FakeNode(self, def_name, **kwargs)
        self.nodes[def_name] = node
        return node

    def add_camera(self, name: str, width: int, height: int, fov: float, **kwargs: Any) -> FakeCamera:
        camera = FakeCamera(self, name, width, height, fov, **kwargs)
        self.devices.append(camera)
        return camera

    def camera(self, name: str) -> FakeCamera:
        return next(d for d in self.devices if isinstance(d, FakeCamera) and d.name == name)

    def device(self, name: str) -> FakeDevice:
        return next(d for d in self.devices if d.name == name)

    def joint(self, def_name: str) -> FakeJoint:
        return next(j for j in self.joints if j.def_name == def_name)

    def resolve_def(self, path: str) -> FakeNode | None:
        """Webots' DEF lookup: the first name anywhere in the world, each next one among direct sub-nodes."""
        first, *rest = path.split(".")
        node = self.nodes.get(first) or next((n for n in self.nested if n.def_name == first), None)
        for name in rest:
            if node is None:
                return None
            node = next((child for child in node.sub_nodes if child.def_name == name), None)
        return node

    def update_joint_velocities(self) -> None:
        """World-frame velocities of the joints' end points, from the joint rates (parents first)."""
        for joint in self.joints:
            solid = joint.parent
            while solid is not None and solid.type_name in ("Pose", "Transform", "Group"):
                solid = solid.parent
            parent_velocity = np.array(solid.velocity if solid is not None else [0.0] * 6)
            parent_position = solid.world_pose()[0] if solid is not None else np.zeros(3)
            frame_position, frame_rotation = joint.parent.world_pose()
            axis, anchor = joint.axis_and_anchor()
            axis = frame_rotation @ axis
            end_position = joint.endpoint.world_pose()[0]
            omega = parent_velocity[3:]
            linear = parent_velocity[:3] + np.cross(omega, end_position - parent_position)
            if joint.hinge:
                turn = axis * joint.rate
                linear = linear + np.cross(turn, end_position - (frame_position + frame_rotation @ anchor))
                omega = omega + turn
            else:
                linear = linear + axis * joint.rate
            joint.endpoint.velocity = [float(v) for v in (*linear, *omega)]

    def snapshot(self) -> None:
        """Remember the state that ``simulationReset`` returns to (the loaded world)."""
        self._initial = {
            name: (list(n.fields["translation"].value), list(n.fields["rotation"].value))
            for name, n in self.nodes.items()
        }
        self._initial_joints = [joint.position for joint in self.joints]

    def calls_named(self, method: str) -> list[tuple[Any, ...]]:
        return [call for call in self.calls if call[0] == method]

    def advance(self, ms: int) -> None:
        """One ``Robot.step``: integrate velocities (or apply a pending reset), then sample devices."""
        if self.pending_reset:  # Webots resets at the end of the step: time, poses and physics
            self.pending_reset = False
            self.time = 0.0
            for name, (translation, rotation) in self._initial.items():
                node = self.nodes[name]
                node.fields["translation"].value = list(translation)
                node.fields["rotation"].value = list(rotation)
                node.velocity = [0.0] * 6
            for joint, position in zip(self.joints, self._initial_joints):  # joints and motors too
                joint.move_to(position)
            for device in self.devices:
                device.on_reset()
            self.update_joint_velocities()
        else:
            dt = ms / 1000.0
            self.time += dt
            for device in self.devices:
                device.actuate(ms)
            self.update_joint_velocities()
            for node in self.nodes.values():
                vx, vy, vz, _, _, wz = node.velocity  # robots stay upright: only the yaw rate turns
                position = node.fields["translation"].value
                node.fields["translation"].value = [position[0] + vx * dt, position[1] + vy * dt,
                                                    position[2] + vz * dt]
                if wz:
                    turn = _quat_from_axis_angle([0.0, 0.0, 1.0, wz * dt])
                    current = _quat_from_axis_angle(node.fields["rotation"].value)
                    node.fields["rotation"].value = _axis_angle_from_quat(_quat_mul(turn, current))
        for device in self.devices:
            device.advance(ms)


def tracking_world() -> FakeWorld:
    """The fake counterpart of ``worlds/webots/tracking.wbt`` (same DEF names, devices and time step)."""
    world = FakeWorld(basic_time_step=10.0)
    world.add_node("target", type_name="Robot", physics=True)
    world.add_node("tracker", type_name="Robot", translation=(-0.2, 0.0, 0.0), physics=True)
    for index in range(4):
        world.add_node(f"obstacle_{index}", translation=(0.0, 0.0, -1.0))
    world.add_camera("tracker_camera", 64, 64, 1.047198)
    world.add_camera("chase_camera", 240, 240, 0.959931)
    return world


def arm_world() -> FakeWorld:
    """The fake counterpart of ``worlds/webots/arm2.wbt``, built from the file itself.

    Every Pose, Solid and joint inside the arm robot keeps its DEF, pose and joint parameters, and every device
    is modelled: the motors (position control), position sensors, the "force-3d" touch sensor, the camera and
    its RangeFinder twin. Geometry (shapes, bounding objects) is left out. Reading the file keeps the double in
    step with it; ``tests/envs/test_webots_backend.py`` checks the file against the MuJoCo world.
    """
    from envs.sim import worlds_dir
    from envs.sim.wbt import load_world

    scene = load_world(worlds_dir() / "webots" / "arm2.wbt")
    world = FakeWorld(basic_time_step=scene.basic_time_step_ms)
    (robot_node,) = scene.extern_supervisors().values()
    robot = FakeNode(world, robot_node.def_name or "", "Robot", translation=robot_node.value("translation", (0, 0, 0)),
                     rotation=robot_node.value("rotation", (0, 0, 1, 0)))
    _add_wbt_children(world, robot_node, robot)
    return world


def _add_wbt_children(world: FakeWorld, wbt_node: Any, parent: FakeNode) -> None:
    """Mirror the ``children`` of a parsed world-file node below ``parent`` (see :func:`arm_world`)."""
    for child in wbt_node.fields.get("children", []):
        if not hasattr(child, "type_name"):
            continue
        kind, name = child.type_name, child.value("name", "")
        if kind in ("Pose", "Transform", "Solid"):
            node = FakeNode(world, child.def_name or "", kind, translation=child.value("translation", (0, 0, 0)),
                            rotation=child.value("rotation", (0, 0, 1, 0)),
                            physics=child.value("physics") is not None, parent=parent)
            if child.def_name:
                world.nested.append(node)
            _add_wbt_children(world, child, node)
        elif kind in ("HingeJoint", "SliderJoint"):
            parameters, end = child.value("jointParameters"), child.value("endPoint")
            default_axis = (1.0, 0.0, 0.0) if kind == "HingeJoint" else (0.0, 0.0, 1.0)
            joint = FakeJoint(world, child.def_name or "", parent, kind,
                              axis=parameters.value("axis", default_axis), anchor=parameters.value("anchor", (0, 0, 0)),
                              position=parameters.value("position", 0.0), min_stop=parameters.value("minStop", 0.0),
                              max_stop=parameters.value("maxStop", 0.0))
            endpoint = FakeNode(world, end.def_name or "", "Solid", translation=end.value("translation", (0, 0, 0)),
                                rotation=end.value("rotation", (0, 0, 1, 0)), physics=end.value("physics") is not None,
                                parent=joint)
            joint.attach(endpoint)
            world.joints.append(joint)
            world.nested += [n for n in (joint, endpoint) if n.def_name]
            for device in child.fields.get("device", []):
                if device.type_name in ("RotationalMotor", "LinearMotor"):
                    world.devices.append(FakeMotor(
                        world, device.value("name"), joint, min_position=device.value("minPosition", 0.0),
                        max_position=device.value("maxPosition", 0.0), max_velocity=device.value("maxVelocity", 10.0),
                        max_torque=device.value("maxTorque", 10.0), max_force=device.value("maxForce", 10.0),
                        motor_type=FakeMotor.ROTATIONAL if device.type_name == "RotationalMotor" else FakeMotor.LINEAR))
                elif device.type_name == "PositionSensor":
                    world.devices.append(FakePositionSensor(world, device.value("name"), joint))
            _add_wbt_children(world, end, endpoint)
        elif kind == "Camera":
            world.add_camera(name, int(child.value("width")), int(child.value("height")), child.value("fieldOfView"))
        elif kind == "RangeFinder":
            world.devices.append(FakeRangeFinder(
                world, name, int(child.value("width")), int(child.value("height")), child.value("fieldOfView"),
                min_range=child.value("minRange", 0.01), max_range=child.value("maxRange", 1.0)))
        elif kind == "TouchSensor":
            touch_type = {"bumper": FakeTouchSensor.BUMPER, "force-3d": FakeTouchSensor.FORCE3D}.get(
                child.value("type", "bumper"), FakeTouchSensor.FORCE)
            world.devices.append(FakeTouchSensor(world, name, sensor_type=touch_type))


def install_fake_controller(monkeypatch: Any, world: FakeWorld) -> types.ModuleType:
    """Put a fake ``controller`` module over ``world`` into ``sys.modules`` for one test.

    Args:
        monkeypatch: pytest's fixture; everything is undone after the test.
        world: the state the fake Supervisor exposes.

    Returns:
        The fake module (``Robot``, ``Supervisor``, ``Node``, ``Field``, ``Camera``, ``TouchSensor``,
        ``Motor``, ``PositionSensor``, ``RangeFinder``).
    """
    module = types.ModuleType("controller")
    module.Robot = FakeRobot
    module.Supervisor = FakeSupervisor
    module.Node = FakeNode
    module.Field = FakeField
    module.Camera = FakeCamera
    module.TouchSensor = FakeTouchSensor
    module.Motor = FakeMotor
    module.PositionSensor = FakePositionSensor
    module.RangeFinder = FakeRangeFinder
    monkeypatch.setattr(FakeRobot, "created", None)
    monkeypatch.setattr(FakeSupervisor, "world", world, raising=False)
    monkeypatch.setitem(sys.modules, "controller", module)
    return module


# ======================================================================================================
# Perception fakes: tiny ONNX files in the YuNet / SFace formats, and a learner with two named inputs.
# (This section's imports sit here, not at the top, so that it stays one block appended to the file.)
# ======================================================================================================





def fake_model(kind: str, path: str | Path, input_size: tuple[int, int] = (64, 64)) -> Path:
    """Write a tiny random-weight ONNX model in YuNet (``kind="yunet"``) or SFace format.

    The YuNet fake has a fixed ``(1, 3, H, W)`` input and always "detects" one face centred at cell
    (row 1, col 2) of stride 8, 16 px wide; the SFace fake maps ``(N, 3, 112, 112)`` to 128-d features.
    """
    from perception.faces.external import YUNET_OUTPUTS, YUNET_STRIDES

    path = Path(path)
    if kind == "yunet":
        h, w = input_size

        class _FakeYuNet(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                for s in YUNET_STRIDES:
                    n = (h // s) * (w // s)
                    cls = torch.zeros(1, n, 1)
                    bbox = torch.zeros(1, n, 4)
                    if s == 8:
                        cls[0, 1 * (w // 8) + 2] = 1.0
                        bbox[0, 1 * (w // 8) + 2] = torch.tensor([0.5, 0.5, math.log(2.0), math.log(2.5)])
                    self.register_buffer(f"cls_{s}", cls)
                    self.register_buffer(f"bbox_{s}", bbox)
                    self.register_buffer(f"kps_{s}", torch.zeros(1, n, 10))

            def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
                zero = x.mean() * 0.0  # ties outputs to the input so the graph keeps it
                cls = [getattr(self, f"cls_{s}") + zero for s in YUNET_STRIDES]
                return (*cls, *[c.clone() for c in cls], *[getattr(self, f"bbox_{s}") + zero for s in YUNET_STRIDES],
                        *[getattr(self, f"kps_{s}") + zero for s in YUNET_STRIDES])

        return export_onnx(_FakeYuNet(), [torch.zeros(1, 3, h, w)], path, input_names=["input"],
                           output_names=list(YUNET_OUTPUTS))
    if kind == "sface":
        torch.manual_seed(0)
        module = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 4, 4), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(4),
                                     torch.nn.Flatten(), torch.nn.Linear(128, 128))
        return export_onnx(module, [torch.zeros(1, 3, 112, 112)], path, input_names=["data"], output_names=["fc1"],
                           dynamic_axes={"data": {0: "batch"}, "fc1": {0: "batch"}})
    raise InvalidArgumentError(f"fake model kind must be 'yunet' or 'sface', got {kind!r}")


class FusionNet(torch.nn.Module):
    """Image features (conv, global mean) and token features (embedding, mean over tokens), fused by a linear head.

    Returns ``(logits (N, classes), features (N, 16))``.
    """

    def __init__(self, vocab: int = 10, classes: int = 3) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, 2, 1)
        self.embed = torch.nn.Embedding(vocab, 8)
        self.head = torch.nn.Linear(16, classes)

    def forward(self, image: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = torch.cat([torch.relu(self.conv(image)).mean((2, 3)), self.embed(tokens).mean(1)], 1)
        return self.head(features), features


class FusionTestLearner(Learner):
    """A VQA-shaped learner with two named inputs: an RGB image and a variable-length list of question tokens.

    Register it for save/load with ``monkeypatch.setitem(MODEL_REGISTRY, "fusion_test", FUSION_TEST_ENTRY)``.

    Args:
        image_size: side of the square network image.
        vocab: token vocabulary size.
        classes: answer classes.
    """

    name = "fusion_test"
    version = "1"

    def __init__(self, image_size: int = 16, vocab: int = 10, classes: int = 3) -> None:
        super().__init__(image_size=image_size, vocab=vocab, classes=classes)

    def build_network(self) -> torch.nn.Module:
        torch.manual_seed(0)
        return FusionNet(self.config["vocab"], self.config["classes"])

    def input_specs(self) -> list[TensorSpec]:
        size = self.config["image_size"]
        return [TensorSpec.image("image", ImagePreprocessing(size=(size, size))),
                TensorSpec("tokens", [-1, -1], "int64", "question token ids, padded with 0",
                           ArrayPreprocessing("int64", pad_value=0), value_range=[0, self.config["vocab"]])]

    def output_spec(self) -> list[TensorSpec]:
        return [TensorSpec("logits", [-1, self.config["classes"]], "float32", "answer logits"),
                TensorSpec("features", [-1, 16], "float32", "fused image + question features")]

    def fit(self, dataset: Any, **kwargs: Any) -> dict[str, Any]:
        return {}

    def eval(self, dataset: Any, **kwargs: Any) -> dict[str, Any]:
        return {}

    def infer(self, inputs: Any) -> np.ndarray:
        """Answer class per sample of ``{"image": [RGB images], "tokens": [token lists]}``."""
        return self.run_network(self.preprocess(inputs))["logits"].argmax(1)


#: :data:`perception.learner.MODEL_REGISTRY` entry of :class:`FusionTestLearner`.
FUSION_TEST_ENTRY = "tests.fakes:FusionTestLearner"


# == Other doubles: Webots processes, a bare simulator backend, a scripted face pipeline, a Dict env ==========

class FakeOutput:
    """A process's stdout pipe: ``text``, then it blocks until the process ends."""

    def __init__(self, text: str, ended: threading.Event) -> None:
        self.text, self.ended = text, ended

    def __iter__(self) -> Iterator[str]:
        yield from io.StringIO(self.text)
        self.ended.wait(10)


class FakePopen:
    """Stands in for the Webots process: prints ``output`` and runs until signalled (or exits at once)."""

    launched: ClassVar[list[FakePopen]] = []
    output = ""
    exits_at_once = False

    def __init__(self, argv: list[str], **kwargs: Any) -> None:
        self.argv, self.kwargs = argv, kwargs
        self.pid = 424242
        self.ended = threading.Event()
        self.returncode: int | None = None
        if self.exits_at_once:
            self.returncode = 1
            self.ended.set()
        self.stdout = FakeOutput(self.output, self.ended)
        FakePopen.launched.append(self)

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:  # only reached after the backend signalled the process group
            self.returncode = -signal.SIGTERM
        self.ended.set()
        return self.returncode

    def terminate(self) -> None:
        self.returncode = -signal.SIGTERM
        self.ended.set()


class BareBackend(SimBackend):
    """A backend implementing only the abstract methods, as other backends did before joints existed."""

    control_period = 0.1
    entity_names = camera_names = ()
    time = 0.0

    def reset(self, seed: int | None = None) -> None: ...
    def step(self) -> None: ...
    def get_pose(self, entity: str) -> Pose: ...
    def set_pose(self, entity: str, pose: Pose) -> None: ...
    def set_planar_velocity(self, entity: str, forward: float, yaw_rate: float) -> None: ...
    def render(self, camera: str) -> np.ndarray: ...
    def camera_fovy(self, camera: str) -> float: ...


class ScriptedPipeline:
    """Answers every frame with one face: ``answer(env)`` -> (identity, confidence, similarity) or None."""

    def __init__(self) -> None:
        self.env: DroneFaceEnv | None = None
        self.answer: Callable[[DroneFaceEnv], tuple[str, float, float] | None] = (
            lambda env: (env.identity_true, 0.8, 0.9)
        )
        self.box = np.array([70.0, 50.0, 90.0, 70.0], np.float32)
        self.calls = 0

    def __call__(self, frame: np.ndarray) -> list[FaceResult]:
        assert frame.dtype == np.uint8 and frame.ndim == 3
        self.calls += 1
        got = self.answer(self.env)
        if got is None:
            return []
        identity, confidence, similarity = got
        return [FaceResult(self.box.copy(), 0.9, identity, confidence, similarity)]


class DictObsEnv(gym.Env):
    """Dict observations (a vector and a discrete mode); reward 1 for picking the mode, 10 steps an episode."""

    def __init__(self) -> None:
        self.observation_space = spaces.Dict({"vec": spaces.Box(-1, 1, (3,), np.float32), "mode": spaces.Discrete(2)})
        self.action_space = spaces.Discrete(2)
        self._t = 0
        self._mode = 0

    def _obs(self) -> dict[str, Any]:
        return {"vec": self.np_random.uniform(-1, 1, 3).astype(np.float32), "mode": self._mode}

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        self._t, self._mode = 0, int(self.np_random.integers(2))
        return self._obs(), {}

    def step(self, action: int) -> tuple[dict, float, bool, bool, dict]:
        reward = float(action == self._mode)
        self._t += 1
        self._mode = int(self.np_random.integers(2))
        return self._obs(), reward, False, self._t >= 10, {}


# == A scripted VQA model for vantage/VQAVirtualCamera-v0 =====================================================

class FakeVQA:
    """Answers from a view's mean colour: ``p(answer i)`` is the softmax of ``view[..., i % 3].mean() / 40 + i / 100``.

    Known words are ``FakeVQA.WORDS``; others tokenise to the unknown id 1, as a real tokenizer does.
    """

    answers: ClassVar[list[str]] = ["yes", "no", "0", "1", "2", "3", "red", "blue"]
    WORDS: ClassVar[tuple[str, ...]] = ("is", "there", "a", "red", "cube", "how", "many", "what", "color", "?")

    def tokenize(self, question: str) -> tuple[list[int], int]:
        words = question.lower().replace("?", " ?").split()
        ids = [self.WORDS.index(w) + 2 if w in self.WORDS else 1 for w in words]
        return ids, sum(i == 1 for i in ids)

    def probabilities(self, view: np.ndarray) -> np.ndarray:
        logits = np.array([view[..., i % 3].astype(np.float64).mean() / 40 + i / 100 for i in range(len(self.answers))])
        p = np.exp(logits - logits.max())
        return p / p.sum()

    def __call__(self, views: np.ndarray, tokens: list[list[int]]) -> np.ndarray:
        return np.stack([self.probabilities(v) for v in views])
