"""Webots backend: the task world runs in Webots and Vantage drives it as an extern Supervisor controller.

Webots is not on PyPI, so everything Webots-specific is found at run time:

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
  size). No depth (that would need a RangeFinder). The MuJoCo world's fixed ``overview`` camera has no
  Webots counterpart: devices must sit on the controlled robot, so they move with it.
* **Sensors** are the other readable devices of the controlled robot, enabled on first read like cameras.

libController connects once per process, so one process holds at most one :class:`WebotsBackend`; run
parallel environments in subprocesses (e.g. Gymnasium's ``AsyncVectorEnv``).
"""

from __future__ import annotations

import collections
import importlib
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import urllib.parse
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from envs.errors import (
    InvalidArgumentError,
    SimulatorError,
    SimulatorNotAvailableError,
    UnknownNameError,
    WorldFileError,
    lookup,
)
from envs.sim.base import Pose, SimBackend
from envs.sim.wbt import load_world

#: Where Webots usually lives when ``WEBOTS_HOME`` is not set (Linux package, snap, macOS, Windows).
DEFAULT_WEBOTS_HOMES: tuple[str, ...] = (
    "/usr/local/webots",
    "/snap/webots/current/usr/share/webots",
    "/opt/webots",
    "/Applications/Webots.app",
    r"C:\Program Files\Webots",
)
_PYTHON_API_DIRS = ("lib/controller/python", "Contents/lib/controller/python")
_EXECUTABLES = ("webots", "Contents/MacOS/webots", "msys64/mingw64/bin/webots.exe", "webots.exe")
_INSTALL_HINT = (
    "install Webots R2023b or newer from https://cyberbotics.com (it is not on PyPI) and set WEBOTS_HOME "
    "to its folder (e.g. /usr/local/webots), or pass webots_home=..."
)
# Webots prints this once the world is loaded and the extern robot accepts a controller.
_READY = re.compile(
    r"extern controller: [Ww]aiting for local or remote connection on port (\d+)"
    r"(?: targeting robot named '([^']*)')?"
)
_PLANAR, _STATIC = "planar", "static"

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


# --------------------------------------------------------------------------------------------------
# Finding Webots and running it
# --------------------------------------------------------------------------------------------------


def find_webots_home(webots_home: str | Path | None = None) -> Path:
    """The Webots installation to use: ``webots_home``, else ``$WEBOTS_HOME``, else a usual install folder.

    Raises:
        SimulatorNotAvailableError: no installation with a Python controller library was found.
    """
    if webots_home is not None or os.environ.get("WEBOTS_HOME"):
        origin = "webots_home" if webots_home is not None else "WEBOTS_HOME"
        home = Path(webots_home if webots_home is not None else os.environ["WEBOTS_HOME"]).expanduser()
        if not home.is_dir():
            raise SimulatorNotAvailableError(f"{origin}={str(home)!r} is not a folder; {_INSTALL_HINT}")
        if _python_api_dir(home) is None:
            raise SimulatorNotAvailableError(
                f"{origin}={str(home)!r} has no lib/controller/python (the Webots Python API of R2023a+); "
                f"{_INSTALL_HINT}"
            )
        return home
    for candidate in DEFAULT_WEBOTS_HOMES:
        home = Path(candidate)
        if home.is_dir() and _python_api_dir(home) is not None:
            return home
    raise SimulatorNotAvailableError(
        f"Webots was not found: WEBOTS_HOME is not set and none of {list(DEFAULT_WEBOTS_HOMES)} holds it; "
        f"{_INSTALL_HINT}"
    )


def _python_api_dir(home: Path) -> Path | None:
    for relative in _PYTHON_API_DIRS:
        if (home / relative).is_dir():
            return home / relative
    return None


def import_controller(home: Path) -> Any:
    """Import Webots' ``controller`` module from ``home`` (its ``wb.py`` reads ``WEBOTS_HOME``)."""
    api_dir = _python_api_dir(home)
    if api_dir is None:
        raise SimulatorNotAvailableError(f"no lib/controller/python under {home}; {_INSTALL_HINT}")
    os.environ["WEBOTS_HOME"] = str(home)
    if str(api_dir) not in sys.path:
        sys.path.insert(0, str(api_dir))
    try:
        return importlib.import_module("controller")
    except (ImportError, OSError) as exc:  # OSError: libController could not be loaded
        raise SimulatorNotAvailableError(
            f"could not import Webots' controller module from {api_dir}: {exc}; {_INSTALL_HINT}"
        ) from exc


def _webots_executable(home: Path) -> Path:
    for relative in _EXECUTABLES:
        if (home / relative).is_file():
            return home / relative
    found = shutil.which("webots")
    if found:
        return Path(found)
    raise SimulatorNotAvailableError(f"no webots executable under {home} nor on PATH; {_INSTALL_HINT}")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class WebotsProcess:
    """A Webots instance started for one backend; its output is drained (and kept) by a thread.

    Args:
        argv: the command line.
        robot_name: the extern robot whose "waiting for connection" line means ready.
    """

    def __init__(self, argv: Sequence[str], robot_name: str) -> None:
        self.argv = list(argv)
        self.robot_name = robot_name
        self.output: collections.deque[str] = collections.deque(maxlen=200)
        self.port: int | None = None
        self._event = threading.Event()
        try:
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                text=True, encoding="utf-8", errors="replace",
                start_new_session=os.name == "posix",  # own process group: stop() also ends webots-bin
            )
        except OSError as exc:
            message = f"could not start {self.argv[0]}: {exc}; {_INSTALL_HINT}"
            raise SimulatorNotAvailableError(message) from exc
        threading.Thread(target=self._drain, name="webots-output", daemon=True).start()

    def _drain(self) -> None:
        # Webots blocks once a pipe fills, so the output is read for the whole life of the process.
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line.rstrip())
            match = _READY.search(line)
            if match and self.port is None and match.group(2) in (None, self.robot_name):
                self.port = int(match.group(1))
                self._event.set()
        self._event.set()

    def wait_ready(self, timeout: float) -> int:
        """Block until the extern robot waits for a controller; return the port Webots really uses."""
        self._event.wait(timeout)
        if self.port is not None:
            return self.port
        tail = "\n".join(list(self.output)[-20:]) or "(no output)"
        code = self.proc.poll()
        self.stop()
        if code is not None or self._event.is_set():
            raise SimulatorError(f"Webots exited (code {code}) before accepting a controller:\n{tail}")
        raise SimulatorError(
            f"Webots did not offer robot {self.robot_name!r} to an extern controller within {timeout} s "
            f"(command: {' '.join(self.argv)}); last output:\n{tail}"
        )

    def stop(self, grace: float = 10.0) -> None:
        """Terminate Webots and its children, then kill them if they linger. Safe to call twice."""
        if self.proc.poll() is not None:
            return
        self._signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self._signal(getattr(signal, "SIGKILL", signal.SIGTERM))
            self.proc.wait(timeout=grace)

    def _signal(self, sig: int) -> None:
        try:
            if os.name == "posix":
                os.killpg(self.proc.pid, sig)  # the group created by start_new_session
            else:
                self.proc.terminate()
        except ProcessLookupError:
            pass


# --------------------------------------------------------------------------------------------------
# The backend
# --------------------------------------------------------------------------------------------------


@dataclass
class _Entity:
    kind: str
    node: Any
    translation: Any
    rotation: Any
    height: float = 0.0  # planar robots keep the height they have after a reset


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

    Raises:
        WorldFileError: the world file is missing or malformed, or has no extern supervisor robot.
        InvalidArgumentError: bad control period, camera size or robot name.
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
    ) -> None:
        self.world = Path(world)
        self.scene = load_world(self.world)
        self.robot_name = self._pick_robot(robot_name)
        self.control_period = float(control_period)
        self.n_substeps = self._substeps(self.scene.basic_time_step_ms)  # fail before starting Webots
        self._camera_sizes = self._check_sizes(camera_sizes or {})
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
            self._cameras, self._sensors = self._index_devices()
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
        argv = [str(_webots_executable(home)), "--batch", "--mode=fast", "--no-rendering", "--stdout",
                "--stderr", "--minimize", f"--port={_free_port()}", str(self.world.resolve())]
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

    def _index_devices(self) -> tuple[dict[str, Any], dict[str, Any]]:
        cameras, sensors = {}, {}
        camera_class = self._controller.Camera
        for index in range(self._supervisor.getNumberOfDevices()):
            try:
                device = self._supervisor.getDeviceByIndex(index)
            except KeyError:  # a device type this version of the Python API does not wrap
                continue
            if isinstance(device, camera_class):
                cameras[device.getName()] = device
            elif hasattr(device, "enable") and any(
                hasattr(device, getter) for getter in ("getValues", "getValue", "getRollPitchYaw")
            ):
                sensors[device.getName()] = device
        return cameras, sensors

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
        supervisor.simulationReset()
        self._advance()  # the reset takes effect at the end of this step
        self._time_origin = float(supervisor.getTime())
        for name in self._enabled:  # idempotent; keeps devices on whatever a reset does to them
            (self._cameras.get(name) or self._sensors[name]).enable(self._basic_ms)
        self._dirty = True

    def step(self) -> None:
        self._open()
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
        self._enable(camera, device)
        self._sync()
        width, height = int(device.getWidth()), int(device.getHeight())
        try:
            raw = device.getImage()
        except ValueError:  # the Python API raises on a NULL image
            raw = None
        if not raw or len(raw) != width * height * 4:
            raise SimulatorError(
                f"camera {camera!r} returned {len(raw or b'')} bytes, expected {width}x{height} BGRA pixels"
            )
        bgra = np.frombuffer(raw, dtype=np.uint8).reshape(height, width, 4)
        rgb = np.ascontiguousarray(bgra[:, :, 2::-1])
        size = self._camera_sizes.get(camera)
        if size is not None and size != (height, width):
            import cv2  # only needed when resampling

            rgb = cv2.resize(rgb, (size[1], size[0]), interpolation=cv2.INTER_AREA)
        return rgb

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
        for getter in ("getValues", "getValue", "getRollPitchYaw"):
            if hasattr(device, getter):
                return np.atleast_1d(np.asarray(getattr(device, getter)(), dtype=np.float64)).copy()
        raise SimulatorError(f"sensor {name!r} has no value to read")  # pragma: no cover - filtered at init

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
        before = float(supervisor.getTime())
        self._advance()
        self._time_origin += float(supervisor.getTime()) - before
        self._dirty = False
