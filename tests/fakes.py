"""Test doubles shared by the suite.

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
  elapsed, before that ``getImage`` returns ``None``.

Every API call is appended to :attr:`FakeWorld.calls` as ``(method, target, *args)``.
"""

# ruff: noqa: N802 (method names mirror the camelCase Webots API)

from __future__ import annotations

import math
import os
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

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


class FakeNode:
    """``controller.Node`` for a Solid or Robot: translation, rotation, optional physics, velocity."""

    def __init__(
        self,
        world: FakeWorld,
        def_name: str,
        type_name: str = "Solid",
        translation: tuple[float, float, float] = (0.0, 0.0, 0.0),
        rotation: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 0.0),
        physics: bool = False,
    ) -> None:
        self.world, self.def_name, self.type_name = world, def_name, type_name
        physics_node = FakePhysics() if physics else None
        position, axis_angle = [float(v) for v in translation], [float(v) for v in rotation]
        self.fields = {
            "translation": FakeField(self, "translation", FakeField.SF_VEC3F, position),
            "rotation": FakeField(self, "rotation", FakeField.SF_ROTATION, axis_angle),
            "physics": FakeField(self, "physics", FakeField.SF_NODE, physics_node),
            "name": FakeField(self, "name", FakeField.SF_STRING, def_name),
        }
        self.velocity = [0.0] * 6

    @property
    def has_physics(self) -> bool:
        return self.fields["physics"].value is not None

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
        return list(self.fields["translation"].value)

    def getOrientation(self) -> list[float]:
        return _matrix_from_axis_angle(self.fields["rotation"].value)

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
        self.velocity = [0.0] * 6


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
    """``controller.TouchSensor`` of the "force" type: one value, sampled while stepping."""

    def __init__(self, world: FakeWorld, name: str, value: float = 0.0) -> None:
        super().__init__(world, name)
        self.true_value, self.value = value, float("nan")

    def sample(self) -> None:
        self.value = self.true_value

    def getValue(self) -> float:
        return self.value


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
        return self.world.nodes.get(name)

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
    _initial: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)

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

    def snapshot(self) -> None:
        """Remember the state that ``simulationReset`` returns to (the loaded world)."""
        self._initial = {
            name: (list(n.fields["translation"].value), list(n.fields["rotation"].value))
            for name, n in self.nodes.items()
        }

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
        else:
            dt = ms / 1000.0
            self.time += dt
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


def install_fake_controller(monkeypatch: Any, world: FakeWorld) -> types.ModuleType:
    """Put a fake ``controller`` module over ``world`` into ``sys.modules`` for one test.

    Args:
        monkeypatch: pytest's fixture; everything is undone after the test.
        world: the state the fake Supervisor exposes.

    Returns:
        The fake module (``Robot``, ``Supervisor``, ``Node``, ``Field``, ``Camera``, ``TouchSensor``).
    """
    module = types.ModuleType("controller")
    module.Robot = FakeRobot
    module.Supervisor = FakeSupervisor
    module.Node = FakeNode
    module.Field = FakeField
    module.Camera = FakeCamera
    module.TouchSensor = FakeTouchSensor
    monkeypatch.setattr(FakeRobot, "created", None)
    monkeypatch.setattr(FakeSupervisor, "world", world, raising=False)
    monkeypatch.setitem(sys.modules, "controller", module)
    return module
