"""Webots backend: the task world runs in Webots and Vantage drives it as an extern Supervisor controller.

Webots is not on PyPI, so everything Webots-specific is found at run time (:mod:`envs.sim.webots_process`):

* ``WEBOTS_HOME`` (the ``webots_home`` argument, the environment variable, or a usual install folder) must
  hold Webots R2023b or newer. Its controller library, ``$WEBOTS_HOME/lib/controller/python``, is put on
  ``sys.path`` and ``controller`` is imported on first use; without it :class:`SimulatorNotAvailableError`.
* Unless told to attach (``launch=False``, or ``WEBOTS_CONTROLLER_URL`` already set), the backend starts
  ``webots --batch --mode=fast --no-rendering --stdout --stderr --minimize --port=<free port> <world>``,
  waits for Webots to announce the extern robot, connects with ``WEBOTS_CONTROLLER_URL=ipc://<port>/<robot>``
  (Webots user guide, "Running Extern Robot Controllers") and stops that process on :meth:`close`.

How the interface maps onto the documented Webots API:

* **World file.** It is parsed here first (:func:`load_world`), so a missing file, a broken brace, an
  undeclared PROTO or a control period that does not fit ``WorldInfo.basicTimeStep`` fails before Webots
  starts. The controlled robot is the one with ``controller "<extern>"`` and ``supervisor TRUE``.
* **Entities** are the world's top-level ``DEF`` nodes (``Supervisor.getFromDef``). One with a ``Physics``
  node is *planar* (a robot: velocity commands, :meth:`set_pose` uses x, y and yaw and keeps its height);
  one without is *static* (:meth:`set_pose` uses the full pose). Poses are the ``translation`` and
  ``rotation`` fields (axis-angle, converted to ``(w, x, y, z)``), which read back what was just written.
* **Velocity commands** go through ``Node.setVelocity`` before every basic step, re-projected onto the
  current heading, exactly as the MuJoCo backend overwrites its planar joint velocities every substep. The
  Vantage worlds set ``gravity 0`` and float robots 2 mm above the floor, so the only contacts are the
  horizontal ones (walls, obstacles, the other robot) and ODE stops the body there, like MuJoCo does.
* **Time.** :meth:`step` calls ``Robot.step(basicTimeStep)`` ``control_period / basicTimeStep`` times.
  :meth:`reset` calls ``Supervisor.simulationReset`` and one basic step (the reset happens at the end of a
  step); :attr:`time` counts from there.
* **Cameras** are enabled on first use with a sampling period of one basic step, because Webots renders
  only while stepping: that way the image after any step is current. After :meth:`reset` or
  :meth:`set_pose`, the next :meth:`render` first takes one hidden basic step (commanded robots held still,
  :attr:`time` unchanged) so the image shows the new poses, as MuJoCo's would. Images arrive as BGRA bytes
  and are returned as RGB; ``Camera.getFov`` is the *horizontal* field of view and is converted to the
  vertical one. ``camera_sizes`` resamples the image (edit the world's ``width``/``height`` for a native
  size). The MuJoCo world's fixed ``overview`` camera has no Webots counterpart: devices must sit on the
  controlled robot, so they move with it.
* **Depth** comes from a ``RangeFinder`` named ``<camera>_depth`` placed like the camera, with the same
  ``width``, ``height`` and ``fieldOfView`` (checked on connection): ``render_depth(camera)`` returns its
  ``getRangeImage`` as float32 metres, the distance to the image plane like MuJoCo's depth, synchronised with
  the same hidden step as images; pixels with nothing between ``minRange`` and ``maxRange`` read ``inf``
  (Webots' convention; MuJoCo gives the far clipping distance).
* **Sensors** are the other readable devices of the controlled robot, enabled on first read like cameras. A
  ``TouchSensor`` of type ``"force-3d"`` reads its 3 force components, other touch sensors their one value.

Articulated bodies (``worlds/webots/arm2.wbt`` is the small example):

* **Joints** are the ``DEF``'d ``HingeJoint`` and ``SliderJoint`` nodes inside the controlled robot, named by
  their DEF and reached with ``Supervisor.getFromDef`` through their DEF path (``shoulder.link1.elbow``: DEF
  names must be unique in the world). Positions are the joint parameters' ``position`` field, which Webots
  updates every physics step; velocities are the projection on the joint axis of the end point's velocity
  relative to the joint's parent Solid (``Node.getVelocity``: Webots has no joint-velocity function);
  :meth:`set_joint_positions` calls ``Node.setJointPosition`` and ``resetPhysics`` on the end point. Limits
  are ``minStop``/``maxStop`` (both 0 means unlimited).
* **Actuators** are the robot's ``RotationalMotor``/``LinearMotor`` devices. Webots does not record what a
  motor's control means, so ``actuator_modes`` says it per motor: ``"position"`` (the default;
  ``Motor.setPosition``, range ``minPosition``..``maxPosition``, unlimited when both are 0), ``"velocity"``
  (``setPosition(inf)`` then ``setVelocity``, range +-``maxVelocity``) or ``"torque"`` (``setTorque``, or
  ``setForce`` for a linear motor, range +-``maxTorque``/``maxForce``). Held controls are sent to the motors
  at the start of every :meth:`step`; :meth:`reset` clears them (Webots' reset restores the motors).
* **Force/torque**: Webots R2023b has no 6-axis force/torque sensor (a ``TouchSensor`` measures contact
  forces only, and no torque), so :attr:`force_torque_names` is empty and :meth:`read_force_torque` raises
  :class:`SimulatorError`; read a ``"force-3d"`` touch sensor with :meth:`read_sensor` instead.
* **Sites** are the ``DEF``'d ``Pose``/``Transform`` nodes inside the controlled robot, outside bounding
  objects (``DEF wrist Pose``), posed by ``Node.getPosition``/``getOrientation``. :meth:`site_jacobian` is
  geometric: each joint's world axis ``a`` and anchor ``c`` come from its ``axis``/``anchor`` parameters
  (expressed in the closest upper Pose, Transform or Solid, Webots' convention) and that node's world pose;
  a hinge contributes ``[a x (p - c), a]`` for the site at ``p``, a slider ``[a, 0]``, a joint that does not
  carry the site (is not its ancestor) a zero column.
* The hidden basic step (see *Cameras*) also holds the joints' motors still: position-controlled ones get
  their joint's current position as target (``Motor.getTargetPosition`` saves theirs), velocity-controlled
  ones a zero velocity, torque-controlled ones a zero torque; their own targets are sent back right after.

libController connects once per process, so one process holds at most one :class:`WebotsBackend`; run
parallel environments in subprocesses (e.g. Gymnasium's ``AsyncVectorEnv``).
"""

from __future__ import annotations

import math
import os
import urllib.parse
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from envs.errors import (
    InvalidArgumentError,
    SimulatorError,
    UnknownNameError,
    WorldFileError,
    check_choice,
    lookup,
)
from envs.sim.base import (
    Pose,
    SimBackend,
    check_controls,
    check_joint_values,
    check_names,
    hinge_jacobian_column,
)
from envs.sim.wbt import load_world
from envs.sim.webots_process import (
    WebotsProcess,
    find_webots_home,
    free_port,
    import_controller,
    webots_executable,
)

_PLANAR, _STATIC = "planar", "static"
_JOINT_KINDS = {"HingeJoint": "hinge", "SliderJoint": "slider"}
#: Default ``axis`` of HingeJointParameters and of (slider) JointParameters, as Webots documents them.
_DEFAULT_AXES = {"hinge": (1.0, 0.0, 0.0), "slider": (0.0, 0.0, 1.0)}
_SITE_TYPES = ("Pose", "Transform")
#: A camera's depth twin is the RangeFinder named ``<camera>`` + this suffix.
DEPTH_SUFFIX = "_depth"
#: What a motor's control means (``actuator_modes``).
MOTOR_MODES = ("position", "velocity", "torque")

def axis_angle_to_quaternion(rotation: Sequence[float]) -> np.ndarray:
    """Webots ``SFRotation`` ``(x, y, z, angle)`` -> unit quaternion ``(w, x, y, z)``."""
    axis = np.asarray(rotation[:3], dtype=np.float64)
    norm = float(np.linalg.norm(axis))
    if norm < 1e-12:
        return np.array([1.0, 0.0, 0.0, 0.0])
    half = 0.5 * float(rotation[3])
    return np.concatenate([[math.cos(half)], math.sin(half) * axis / norm])


def quaternion_to_axis_angle(quaternion: Sequence[float]) -> list[float]:
    """Quaternion ``(w, x, y, z)`` -> Webots ``SFRotation`` ``[x, y, z, angle]`` with angle in [0, pi]."""
    q = np.asarray(quaternion, dtype=np.float64)
    q = q / np.linalg.norm(q)
    if q[0] < 0:  # same rotation; keeps the angle in [0, pi]
        q = -q
    sin_half = float(np.linalg.norm(q[1:]))
    if sin_half < 1e-12:
        return [0.0, 0.0, 1.0, 0.0]  # Webots' own identity rotation
    axis = q[1:] / sin_half
    return [float(axis[0]), float(axis[1]), float(axis[2]), 2.0 * math.atan2(sin_half, float(q[0]))]


def horizontal_to_vertical_fov(fov: float, width: int, height: int) -> float:
    """Webots' horizontal ``fieldOfView`` -> vertical field of view (square pixels, Webots Camera docs)."""
    return 2.0 * math.atan(math.tan(0.5 * fov) * height / width)


def _yaw(quaternion: np.ndarray) -> float:
    w, x, y, z = quaternion
    return math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


@dataclass
class _Entity:
    kind: str
    node: Any
    translation: Any
    rotation: Any
    height: float = 0.0  # planar robots keep the height they have after a reset


@dataclass
class _Joint:
    kind: str  # "hinge" or "slider"
    node: Any
    position: Any  # the SFFloat field Webots keeps the joint position in
    axis: np.ndarray  # in the frame of `frame`
    anchor: np.ndarray  # in the frame of `frame`
    low: float
    high: float
    endpoint: Any  # the Solid the joint moves
    frame: Any  # closest upper Pose/Transform/Solid, or None for the world
    parent: Any  # closest upper Solid, or None for the world


@dataclass
class _Motor:
    device: Any
    mode: str
    low: float
    high: float
    linear: bool


class WebotsBackend(SimBackend):
    """A Webots world behind the :class:`~envs.sim.base.SimBackend` interface (see the module docstring).

    Args:
        world: path of a ``.wbt`` file (R2023b or newer).
        control_period: seconds per :meth:`step`; a whole number of the world's ``basicTimeStep``.
        camera_sizes: optional ``{camera: (height, width)}``; images are resampled to these sizes.
        webots_home: the Webots installation; defaults to ``$WEBOTS_HOME`` or a usual install folder.
        launch: start Webots (``True``) or attach to a running instance (``False``); ``None`` attaches
            when ``WEBOTS_CONTROLLER_URL`` is set and launches otherwise.
        robot_name: ``name`` of the Robot to control; defaults to the world's only robot with
            ``controller "<extern>"`` and ``supervisor TRUE``.
        timeout: seconds to wait for a launched Webots to load the world.
        actuator_modes: ``{motor: "position" | "velocity" | "torque"}``, what each motor's control means;
            motors not named are position-controlled.

    Raises:
        WorldFileError: the world file is missing or malformed, or has no extern supervisor robot.
        InvalidArgumentError: bad control period, camera size, robot name or actuator mode.
        SimulatorNotAvailableError: Webots or its Python controller library cannot be found.
        SimulatorError: Webots failed to start, or the running simulation does not match the world file.
    """

    def __init__(
        self,
        world: str | Path,
        control_period: float = 0.05,
        camera_sizes: dict[str, tuple[int, int]] | None = None,
        *,
        webots_home: str | Path | None = None,
        launch: bool | None = None,
        robot_name: str | None = None,
        timeout: float = 60.0,
        actuator_modes: Mapping[str, str] | None = None,
    ) -> None:
        self.world = Path(world)
        self.scene = load_world(self.world)
        self.robot_name = self._pick_robot(robot_name)
        self.control_period = float(control_period)
        self.n_substeps = self._substeps(self.scene.basic_time_step_ms)  # fail before starting Webots
        self._camera_sizes = self._check_sizes(camera_sizes or {})
        modes = dict(actuator_modes or {})
        for mode in modes.values():
            check_choice("actuator mode", mode, MOTOR_MODES)
        self._controls: dict[str, float] = {}
        self._motor_joints: dict[str, _Joint] = {}  # motor -> the joint it drives (from the world file)
        self._site_nodes: dict[str, Any] = {}
        self._site_ancestors: dict[str, frozenset[int]] = {}
        self._process: WebotsProcess | None = None
        self._supervisor: Any = None
        self._closed = False
        self._commands: dict[str, tuple[float, float]] = {}
        self._enabled: set[str] = set()
        self._dirty = True  # cameras/sensors do not yet show the current state
        self._time_origin = 0.0

        home = find_webots_home(webots_home)
        self._controller = import_controller(home)
        if launch is None:
            launch = not os.environ.get("WEBOTS_CONTROLLER_URL")
        try:
            url = self._launch(home, timeout) if launch else os.environ.get("WEBOTS_CONTROLLER_URL")
            self._supervisor = self._connect(url or urllib.parse.quote(self.robot_name, safe=""))
            self.basic_time_step_ms = float(self._supervisor.getBasicTimeStep())
            self.n_substeps = self._substeps(self.basic_time_step_ms)  # the running world is what counts
            self._entities = self._index_entities()
            self._cameras, self._sensors, self._range_finders, motors = self._index_devices()
            self._motors = self._index_motors(motors, modes)
            self._joints = self._index_joints()
            self._sites = self._index_sites()
            for name in self._camera_sizes:
                self._camera(name)
            self.reset()
            for entity in self._entities.values():
                entity.height = float(entity.translation.getSFVec3f()[2])
        except BaseException:
            self.close()
            raise

    # -- construction helpers ------------------------------------------------------------------------
    def _pick_robot(self, robot_name: str | None) -> str:
        robots = self.scene.extern_supervisors()
        if robot_name is not None:
            if robot_name not in robots:
                raise UnknownNameError("extern supervisor robot", robot_name, robots)
            return robot_name
        if len(robots) != 1:
            raise WorldFileError(
                f"{self.world}: need exactly one Robot with controller \"<extern>\" and supervisor TRUE to "
                f"control, found {sorted(robots) or 'none'}; pass robot_name= to choose"
            )
        return next(iter(robots))

    def _substeps(self, basic_ms: float) -> int:
        if basic_ms != int(basic_ms):
            raise WorldFileError(f"{self.world}: basicTimeStep must be a whole number of ms, got {basic_ms}")
        substeps = self.control_period * 1000.0 / basic_ms
        if not math.isfinite(substeps) or substeps < 1 or abs(substeps - round(substeps)) > 1e-6:
            raise InvalidArgumentError(
                f"control_period={self.control_period!r} must be a positive multiple of the world's "
                f"basicTimeStep {basic_ms / 1000.0} s (world {self.world.name})"
            )
        return round(substeps)

    @staticmethod
    def _check_sizes(sizes: dict[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
        checked = {}
        for name, size in sizes.items():
            height, width = size
            if int(height) != height or int(width) != width or height < 1 or width < 1:
                raise InvalidArgumentError(
                    f"camera size for {name!r} must be two positive integers (height, width), got {size}"
                )
            checked[name] = (int(height), int(width))
        return checked

    def _launch(self, home: Path, timeout: float) -> str:
        argv = [str(webots_executable(home)), "--batch", "--mode=fast", "--no-rendering", "--stdout",
                "--stderr", "--minimize", f"--port={free_port()}", str(self.world.resolve())]
        self._process = WebotsProcess(argv, self.robot_name)
        weakref.finalize(self, self._process.stop)  # never leave a Webots behind, even without close()
        port = self._process.wait_ready(timeout)
        return f"ipc://{port}/{urllib.parse.quote(self.robot_name, safe='')}"

    def _connect(self, url: str) -> Any:
        robot_class = getattr(self._controller, "Robot", None)
        if getattr(robot_class, "created", None) is not None:
            raise SimulatorError(
                "this process already created a Webots controller; libController connects once per "
                "process, so run each WebotsBackend in its own process"
            )
        previous = os.environ.get("WEBOTS_CONTROLLER_URL")
        os.environ["WEBOTS_CONTROLLER_URL"] = url  # read once, by the Supervisor constructor
        try:
            return self._controller.Supervisor()
        except Exception as exc:  # libController reports a refused or impossible connection
            raise SimulatorError(
                f"could not connect to Webots as extern controller of robot {self.robot_name!r} "
                f"(WEBOTS_CONTROLLER_URL={url!r}): {exc}"
            ) from exc
        finally:
            if previous is None:
                os.environ.pop("WEBOTS_CONTROLLER_URL", None)
            else:
                os.environ["WEBOTS_CONTROLLER_URL"] = previous

    def _index_entities(self) -> dict[str, _Entity]:
        entities = {}
        for wbt_node in self.scene.nodes:
            if not wbt_node.def_name:
                continue
            node = self._supervisor.getFromDef(wbt_node.def_name)
            if node is None:
                raise SimulatorError(
                    f"DEF {wbt_node.def_name!r} of {self.world.name} is not in the running simulation; "
                    "is Webots running this world?"
                )
            translation, rotation = node.getField("translation"), node.getField("rotation")
            if translation is None or rotation is None:
                continue  # not a Solid (e.g. a DEF'd light): nothing to pose
            physics = node.getField("physics")
            kind = _PLANAR if physics is not None and physics.getSFNode() is not None else _STATIC
            entities[wbt_node.def_name] = _Entity(kind, node, translation, rotation)
        return entities

    def _index_devices(self) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]:
        """The robot's cameras, readable sensors, range finders and motors, by device name."""
        cameras, sensors, range_finders, motors = {}, {}, {}, {}
        camera_class = self._controller.Camera
        # Classes missing from an older controller module match nothing (isinstance needs a type).
        range_finder_class = getattr(self._controller, "RangeFinder", ()) or ()
        motor_class = getattr(self._controller, "Motor", ()) or ()
        for index in range(self._supervisor.getNumberOfDevices()):
            try:
                device = self._supervisor.getDeviceByIndex(index)
            except KeyError:  # a device type this version of the Python API does not wrap
                continue
            if isinstance(device, camera_class):
                cameras[device.getName()] = device
            elif isinstance(device, range_finder_class):
                range_finders[device.getName()] = device
            elif isinstance(device, motor_class):
                motors[device.getName()] = device
            elif hasattr(device, "enable") and any(
                hasattr(device, getter) for getter in ("getValues", "getValue", "getRollPitchYaw")
            ):
                sensors[device.getName()] = device
        for name, camera in cameras.items():
            twin = range_finders.get(name + DEPTH_SUFFIX)
            if twin is None:
                continue
            camera_view = (int(camera.getWidth()), int(camera.getHeight()), round(float(camera.getFov()), 6))
            depth_view = (int(twin.getWidth()), int(twin.getHeight()), round(float(twin.getFov()), 6))
            if camera_view != depth_view:
                raise SimulatorError(
                    f"RangeFinder {name + DEPTH_SUFFIX!r} must match camera {name!r} so depth aligns with the "
                    f"image: (width, height, fieldOfView) {depth_view} vs {camera_view}"
                )
        return cameras, sensors, range_finders, motors

    def _index_motors(self, devices: dict[str, Any], modes: dict[str, str]) -> dict[str, _Motor]:
        for name in modes:
            if name not in devices:
                raise UnknownNameError("motor", name, devices)
        linear = getattr(getattr(self._controller, "Motor", None), "LINEAR", None)
        motors = {}
        for name, device in devices.items():
            mode = modes.get(name, "position")
            is_linear = linear is not None and device.getType() == linear
            if mode == "position":
                low, high = float(device.getMinPosition()), float(device.getMaxPosition())
                if low == high == 0.0:  # Webots: both 0 means no soft limits
                    low, high = -math.inf, math.inf
            elif mode == "velocity":
                high = float(device.getMaxVelocity())
                low = -high
            else:
                high = float(device.getMaxForce() if is_linear else device.getMaxTorque())
                low = -high
            motors[name] = _Motor(device, mode, low, high, is_linear)
        return motors

    def _robot_node(self) -> Any:
        return self.scene.extern_supervisors()[self.robot_name]

    def _from_def(self, path: str) -> Any:
        node = self._supervisor.getFromDef(path)
        if node is None:
            raise SimulatorError(
                f"DEF path {path!r} of {self.world.name} is not in the running simulation; is Webots running "
                "this world?"
            )
        return node

    def _index_joints(self) -> dict[str, _Joint]:
        joints: dict[str, _Joint] = {}
        for path, wbt_node in self.scene.def_paths(self._robot_node()):
            kind = _JOINT_KINDS.get(wbt_node.type_name)
            if kind is None:
                continue
            if wbt_node.def_name in joints:
                raise WorldFileError(f"{self.world}: two joints are DEF {wbt_node.def_name!r}; joint DEFs must differ")
            node = self._from_def(path)
            parameters_field = node.getField("jointParameters")
            parameters = parameters_field.getSFNode() if parameters_field is not None else None
            axis, anchor = np.array(_DEFAULT_AXES[kind]), np.zeros(3)
            low, high = -math.inf, math.inf
            if parameters is None:  # no JointParameters: Webots keeps the position in a hidden field
                position = node.getField("position")
            else:
                position = parameters.getField("position")
                axis = np.array(parameters.getField("axis").getSFVec3f(), dtype=np.float64)
                anchor_field = parameters.getField("anchor")  # slider JointParameters have none
                if anchor_field is not None:
                    anchor = np.array(anchor_field.getSFVec3f(), dtype=np.float64)
                stops = (float(parameters.getField("minStop").getSFFloat()),
                         float(parameters.getField("maxStop").getSFFloat()))
                if stops != (0.0, 0.0):  # Webots: both 0 means no hard limits
                    low, high = stops
            if position is None or not np.linalg.norm(axis) > 0:
                raise SimulatorError(f"joint {wbt_node.def_name!r} has no position field or a zero axis")
            endpoint_field = node.getField("endPoint")
            endpoint = endpoint_field.getSFNode() if endpoint_field is not None else None
            frame, parent = self._joint_frames(node)
            joint = joints[wbt_node.def_name] = _Joint(
                kind, node, position, axis / np.linalg.norm(axis), anchor, low, high, endpoint, frame, parent
            )
            for device in wbt_node.fields.get("device", []):
                if getattr(device, "type_name", None) in ("RotationalMotor", "LinearMotor"):
                    name = device.value("name", "")
                    if name in self._motors:
                        self._motor_joints[name] = joint
        return joints

    @staticmethod
    def _joint_frames(node: Any) -> tuple[Any, Any]:
        """The closest upper node with a frame (joint axes are expressed in it) and the closest upper Solid."""
        frame = parent = None
        ancestor = node.getParentNode()
        while ancestor is not None and parent is None:
            base = ancestor.getBaseTypeName()
            if base != "Group" and frame is None:
                frame = ancestor
            if base not in ("Group", "Pose", "Transform"):
                parent = ancestor
            ancestor = ancestor.getParentNode()
        return frame, parent

    def _index_sites(self) -> dict[str, str]:
        """Site name -> DEF path; the nodes are fetched on first use, so worlds that use no site pay nothing."""
        sites: dict[str, str] = {}
        # Poses inside bounding objects are collision geometry, not frames anyone asks for.
        for path, wbt_node in self.scene.def_paths(self._robot_node(), skip_fields=("boundingObject",)):
            if wbt_node.type_name not in _SITE_TYPES:
                continue
            if wbt_node.def_name in sites:
                raise WorldFileError(f"{self.world}: two sites are DEF {wbt_node.def_name!r}; site DEFs must differ")
            sites[wbt_node.def_name] = path
        return sites

    def _site(self, name: str) -> Any:
        path = lookup("site", self._sites, name)
        node = self._site_nodes.get(name)
        if node is None:
            node = self._site_nodes[name] = self._from_def(path)
        return node

    # -- lookups ---------------------------------------------------------------------------------------
    def _open(self) -> Any:
        if self._closed or self._supervisor is None:
            raise SimulatorError(f"WebotsBackend for {self.world.name} is closed")
        return self._supervisor

    def _entity(self, name: str) -> _Entity:
        return lookup("entity", self._entities, name)

    def _camera(self, name: str) -> Any:
        return lookup("camera", self._cameras, name)

    # -- SimBackend --------------------------------------------------------------------------------------
    @property
    def entity_names(self) -> tuple[str, ...]:
        return tuple(self._entities)

    @property
    def camera_names(self) -> tuple[str, ...]:
        return tuple(self._cameras)

    @property
    def sensor_names(self) -> tuple[str, ...]:
        return tuple(self._sensors)

    @property
    def time(self) -> float:
        return float(self._open().getTime()) - self._time_origin

    def reset(self, seed: int | None = None) -> None:
        # Webots reseeds its own generator on reset (WorldInfo.randomSeed); the seed is accepted for symmetry.
        supervisor = self._open()
        self._commands.clear()
        self._controls.clear()  # Webots' reset restores the motors themselves
        supervisor.simulationReset()
        self._advance()  # the reset takes effect at the end of this step
        self._time_origin = float(supervisor.getTime())
        for name in self._enabled:  # idempotent; keeps devices on whatever a reset does to them
            self._readable(name).enable(self._basic_ms)
        self._dirty = True

    def step(self) -> None:
        self._open()
        for name, value in self._controls.items():
            self._send_control(self._motors[name], value)
        for _ in range(self.n_substeps):
            for name, (forward, yaw_rate) in self._commands.items():
                entity = self._entities[name]
                rotation = entity.rotation.getSFRotation()
                if not all(math.isfinite(v) for v in rotation):
                    raise SimulatorError(f"Webots returned a non-finite rotation {rotation} for {name!r}")
                yaw = _yaw(axis_angle_to_quaternion(rotation))
                # World-frame linear and angular velocity; refreshed every basic step so the robot follows
                # the unicycle arc instead of flying straight along its initial heading.
                entity.node.setVelocity(
                    [forward * math.cos(yaw), forward * math.sin(yaw), 0.0, 0.0, 0.0, yaw_rate]
                )
            self._advance()
        self._dirty = False

    def get_pose(self, entity: str) -> Pose:
        self._open()
        item = self._entity(entity)
        position = np.array(item.translation.getSFVec3f(), dtype=np.float64)
        return Pose(position, axis_angle_to_quaternion(item.rotation.getSFRotation()))

    def set_pose(self, entity: str, pose: Pose) -> None:
        self._open()
        item = self._entity(entity)
        if item.kind == _PLANAR:
            position = [float(pose.position[0]), float(pose.position[1]), item.height]
            rotation = [0.0, 0.0, 1.0, float(pose.yaw)]
        else:
            position = [float(v) for v in pose.position]
            rotation = quaternion_to_axis_angle(pose.quaternion)
        # The Webots Python API only accepts plain lists of floats here.
        item.translation.setSFVec3f(position)
        item.rotation.setSFRotation(rotation)
        item.node.resetPhysics()  # documented way to zero a moved body's velocities
        self._dirty = True

    def set_planar_velocity(self, entity: str, forward: float, yaw_rate: float) -> None:
        item = self._entity(entity)
        if item.kind != _PLANAR:
            raise InvalidArgumentError(
                f"entity {entity!r} is {item.kind}; planar velocity needs a top-level Solid or Robot "
                "with a Physics node"
            )
        if not (math.isfinite(forward) and math.isfinite(yaw_rate)):
            raise InvalidArgumentError(
                f"planar velocity for {entity!r} must be finite, got forward={forward}, yaw_rate={yaw_rate}"
            )
        self._commands[entity] = (float(forward), float(yaw_rate))

    def render(self, camera: str) -> np.ndarray:
        self._open()
        device = self._camera(camera)
        raw, height, width = self._capture(camera, device, "getImage", 4)
        bgra = np.frombuffer(raw, dtype=np.uint8).reshape(height, width, 4)
        return self._resampled(camera, np.ascontiguousarray(bgra[:, :, 2::-1]), "INTER_AREA")

    def camera_shape(self, camera: str) -> tuple[int, int]:
        device = self._camera(camera)
        return self._camera_sizes.get(camera) or (int(device.getHeight()), int(device.getWidth()))

    def camera_fovy(self, camera: str) -> float:
        device = self._camera(camera)
        # Resampling does not change what the image covers, so the device's own aspect ratio decides.
        width, height = int(device.getWidth()), int(device.getHeight())
        return horizontal_to_vertical_fov(float(device.getFov()), width, height)

    def read_sensor(self, name: str) -> np.ndarray:
        self._open()
        try:
            device = self._sensors[name]
        except KeyError:
            raise UnknownNameError("sensor", name, self._sensors) from None
        self._enable(name, device)
        self._sync()
        touch_class = getattr(self._controller, "TouchSensor", ()) or ()
        if isinstance(device, touch_class):
            # getValues is only valid for "force-3d" sensors (it returns a pointer to 3 doubles), getValue
            # for the bumper and "force" types.
            if device.getType() == getattr(touch_class, "FORCE3D", None):
                return np.array(device.getValues()[:3], dtype=np.float64)
            return np.array([device.getValue()], dtype=np.float64)
        for getter in ("getValues", "getValue", "getRollPitchYaw"):
            if hasattr(device, getter):
                return np.atleast_1d(np.asarray(getattr(device, getter)(), dtype=np.float64)).copy()
        raise SimulatorError(f"sensor {name!r} has no value to read")  # pragma: no cover - filtered at init

    def render_depth(self, camera: str) -> np.ndarray:
        self._open()
        self._camera(camera)
        name = camera + DEPTH_SUFFIX
        device = self._range_finders.get(name)
        if device is None:
            raise SimulatorError(
                f"camera {camera!r} has no depth in {self.world.name}: add a RangeFinder named {name!r} with the "
                f"camera's pose, width, height and fieldOfView (range finders here: {sorted(self._range_finders)})"
            )
        raw, height, width = self._capture(name, device, "getRangeImage", 1)
        # Nearest neighbour: averaging across an object's edge would invent depths in between.
        return self._resampled(camera, np.asarray(raw, dtype=np.float32).reshape(height, width), "INTER_NEAREST")

    def _capture(self, name: str, device: Any, getter: str, per_pixel: int) -> tuple[Any, int, int]:
        """Enable ``device`` if needed, bring it up to date and read its whole image: ``(raw, height, width)``."""
        self._enable(name, device)
        self._sync()
        width, height = int(device.getWidth()), int(device.getHeight())
        try:
            raw = getattr(device, getter)()
        except ValueError:  # the Python API raises on a NULL image
            raw = None
        if raw is None or len(raw) != width * height * per_pixel:
            raise SimulatorError(f"{name!r} returned {0 if raw is None else len(raw)} values from {getter}, "
                                 f"expected {width}x{height}x{per_pixel}")
        return raw, height, width

    def _resampled(self, camera: str, image: np.ndarray, interpolation: str) -> np.ndarray:
        """``image`` resized to ``camera``'s requested size (``camera_sizes``), if one was asked for."""
        size = self._camera_sizes.get(camera)
        if size is None or size == image.shape[:2]:
            return image
        import cv2  # only needed when resampling

        return cv2.resize(image, (size[1], size[0]), interpolation=getattr(cv2, interpolation))

    # -- articulated bodies ------------------------------------------------------------------------------
    @property
    def joint_names(self) -> tuple[str, ...]:
        return tuple(self._joints)

    def _joint_list(self, joints: Sequence[str]) -> list[_Joint]:
        self._open()
        return [self._joints[name] for name in check_names("joint", joints, self._joints)]

    def get_joint_positions(self, joints: Sequence[str]) -> np.ndarray:
        return np.array([joint.position.getSFFloat() for joint in self._joint_list(joints)], dtype=np.float64)

    def get_joint_velocities(self, joints: Sequence[str]) -> np.ndarray:
        velocities = []
        for joint in self._joint_list(joints):
            if joint.endpoint is None:
                velocities.append(0.0)
                continue
            axis = self._frame_rotation(joint.frame) @ joint.axis
            child = np.array(joint.endpoint.getVelocity(), dtype=np.float64)
            parent = np.zeros(6) if joint.parent is None else np.array(joint.parent.getVelocity(), dtype=np.float64)
            if joint.kind == "hinge":
                relative = child[3:] - parent[3:]
            else:  # the end point's velocity minus that of the parent's point it coincides with
                offset = np.array(joint.endpoint.getPosition()) - (
                    np.zeros(3) if joint.parent is None else np.array(joint.parent.getPosition())
                )
                relative = child[:3] - parent[:3] - np.cross(parent[3:], offset)
            velocities.append(float(axis @ relative))
        return np.array(velocities, dtype=np.float64)

    def set_joint_positions(self, joints: Sequence[str], values: Sequence[float] | np.ndarray) -> None:
        selected = self._joint_list(joints)
        names = tuple(joints)
        values = check_joint_values(names, values, *self.joint_limits(names))
        for joint, value in zip(selected, values):
            joint.node.setJointPosition(float(value))
            if joint.endpoint is not None:
                joint.endpoint.resetPhysics()  # the documented way to zero a moved body's velocities
        self._dirty = True

    def joint_limits(self, joints: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        selected = self._joint_list(joints)
        return (np.array([j.low for j in selected], dtype=np.float64),
                np.array([j.high for j in selected], dtype=np.float64))

    @property
    def actuator_names(self) -> tuple[str, ...]:
        return tuple(self._motors)

    def set_actuator_controls(self, controls: Mapping[str, float]) -> None:
        self._open()
        ranges = {name: (motor.low, motor.high) for name, motor in self._motors.items()}
        self._controls.update(check_controls(controls, ranges))  # sent at the start of the next step()

    def actuator_ranges(self, actuators: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        names = check_names("actuator", actuators, self._motors)
        return (np.array([self._motors[n].low for n in names], dtype=np.float64),
                np.array([self._motors[n].high for n in names], dtype=np.float64))

    def _send_control(self, motor: _Motor, value: float) -> None:
        device = motor.device
        if motor.mode == "position":
            device.setPosition(value)
        elif motor.mode == "velocity":
            device.setPosition(math.inf)  # Webots' velocity control: an infinite target position
            device.setVelocity(value)
        elif motor.linear:
            device.setForce(value)
        else:
            device.setTorque(value)

    def read_force_torque(self, name: str, substeps: bool = False) -> np.ndarray:
        touch_class = getattr(self._controller, "TouchSensor", ()) or ()
        force_3d = sorted(
            sensor for sensor, device in self._sensors.items()
            if isinstance(device, touch_class) and device.getType() == getattr(touch_class, "FORCE3D", None)
        )
        raise SimulatorError(
            f"no force/torque sensor {name!r}: Webots R2023b has no torque sensor, so WebotsBackend lists no "
            "force/torque sensors. A TouchSensor of type \"force-3d\" measures contact forces only; read it "
            f"with read_sensor (force-3d touch sensors here: {force_3d or 'none'})"
        )

    @property
    def site_names(self) -> tuple[str, ...]:
        return tuple(self._sites)

    def get_site_pose(self, site: str) -> Pose:
        self._open()
        node = self._site(site)
        position, orientation = node.getPosition(), node.getOrientation()
        if not all(math.isfinite(v) for v in [*position, *orientation]):
            raise SimulatorError(f"Webots returned a non-finite pose for site {site!r}: {position}, {orientation}")
        return Pose.from_matrix(np.array(position, dtype=np.float64), np.array(orientation, dtype=np.float64))

    def site_jacobian(self, site: str, joints: Sequence[str]) -> np.ndarray:
        self._open()
        node = self._site(site)
        selected = self._joint_list(joints)
        ancestors = self._site_ancestors.get(site)
        if ancestors is None:
            ancestors = self._site_ancestors[site] = frozenset(self._ancestor_ids(node))
        point = np.array(node.getPosition(), dtype=np.float64)
        jacobian = np.zeros((6, len(selected)))
        for column, joint in enumerate(selected):
            if joint.node.getId() not in ancestors:
                continue  # the joint does not carry the site
            rotation = self._frame_rotation(joint.frame)
            axis = rotation @ joint.axis
            if joint.kind == "slider":
                jacobian[:3, column] = axis
            else:
                origin = np.zeros(3) if joint.frame is None else np.array(joint.frame.getPosition(), dtype=np.float64)
                jacobian[:, column] = hinge_jacobian_column(axis, rotation @ joint.anchor + origin, point)
        return jacobian

    @staticmethod
    def _frame_rotation(frame: Any) -> np.ndarray:
        if frame is None:
            return np.eye(3)
        return np.array(frame.getOrientation(), dtype=np.float64).reshape(3, 3)

    @staticmethod
    def _ancestor_ids(node: Any) -> list[int]:
        ids = []
        ancestor = node.getParentNode()
        while ancestor is not None:
            ids.append(ancestor.getId())
            ancestor = ancestor.getParentNode()
        return ids

    def close(self) -> None:
        """Stop the Webots this backend launched. An attached instance keeps running: libController
        has no disconnect, it lets go when this process ends."""
        self._closed = True
        self._supervisor = None
        if self._process is not None:
            self._process.stop()

    # -- stepping helpers --------------------------------------------------------------------------------
    @property
    def _basic_ms(self) -> int:
        return int(self.basic_time_step_ms)

    def _advance(self) -> None:
        if self._supervisor.step(self._basic_ms) == -1:
            raise SimulatorError(
                f"Webots ended the simulation of {self.world.name} (Robot.step returned -1): it quit or the "
                "connection was lost"
            )

    def _readable(self, name: str) -> Any:
        """The camera, sensor or range finder called ``name``."""
        return self._cameras.get(name) or self._range_finders.get(name) or self._sensors[name]

    def _enable(self, name: str, device: Any) -> None:
        if name not in self._enabled:
            device.enable(self._basic_ms)  # every basic step: the image after any step is current
            self._enabled.add(name)
            self._dirty = True

    def _sync(self) -> None:
        """Take one hidden basic step so devices show what reset/set_pose changed since the last step."""
        if not self._dirty:
            return
        supervisor = self._supervisor
        for name in self._commands:  # held still; step() re-applies their commands
            self._entities[name].node.setVelocity([0.0] * 6)
        restore = self._hold_motors()
        before = float(supervisor.getTime())
        self._advance()
        self._time_origin += float(supervisor.getTime()) - before
        for send in restore:  # the motors' own targets again, effective from the next step
            send()
        self._dirty = False

    def _hold_motors(self) -> list[Any]:
        """Hold the joints' motors still for a hidden step; returns the calls that give them their targets back."""
        restore = []
        for name, joint in self._motor_joints.items():
            motor = self._motors[name]
            device = motor.device
            if motor.mode == "position":
                target = float(device.getTargetPosition())
                device.setPosition(float(joint.position.getSFFloat()))
                restore.append(lambda device=device, target=target: device.setPosition(target))
            elif motor.mode == "velocity":
                velocity = float(device.getVelocity())  # the velocity target, in velocity control
                device.setVelocity(0.0)
                restore.append(lambda device=device, velocity=velocity: device.setVelocity(velocity))
            elif name in self._controls:  # a torque cannot be read back; only a held one is restored
                self._send_control(motor, 0.0)
                restore.append(lambda motor=motor, value=self._controls[name]: self._send_control(motor, value))
        return restore
