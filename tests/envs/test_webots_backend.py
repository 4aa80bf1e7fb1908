"""Webots backend: world-file syntax, the adapter's calls against the documented Webots API, and (with
``WEBOTS_HOME``) a run on a real Webots.

Webots cannot be installed here, so most tests connect the backend to :mod:`tests.fakes`' recording
``controller`` module in attach mode; the launch path runs against a fake ``subprocess.Popen``.
"""

from __future__ import annotations

import io
import math
import os
import re
import signal
import sys
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from envs.errors import (
    InvalidArgumentError,
    SimulatorError,
    SimulatorNotAvailableError,
    UnknownNameError,
    WorldFileError,
)
from envs.sim import make_backend, worlds_dir
from envs.sim import webots as webots_module
from envs.sim.base import Pose
from envs.sim.wbt import WEBOTS_BASE_NODES, load_world, parse_world
from envs.sim.webots import (
    WebotsBackend,
    axis_angle_to_quaternion,
    horizontal_to_vertical_fov,
    quaternion_to_axis_angle,
)
from tests.fakes import FakeRobot, FakeTouchSensor, FakeWorld, install_fake_controller, tracking_world

WEBOTS_WORLDS = sorted((worlds_dir() / "webots").glob("*.wbt"))
TRACKING_WBT = worlds_dir() / "webots" / "tracking.wbt"
TRACKING_XML = worlds_dir() / "mujoco" / "tracking.xml"
ENTITIES = ("target", "tracker", "obstacle_0", "obstacle_1", "obstacle_2", "obstacle_3")
R2023B_PROTO_URL = re.compile(
    r"https://raw\.githubusercontent\.com/cyberbotics/webots/R2023b/projects/[\w/.-]+/protos/[\w-]+\.proto"
)


# -- fixtures -------------------------------------------------------------------------------------------


@pytest.fixture
def webots_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder laid out like a Webots install (the fake controller module stands in for its library)."""
    home = tmp_path / "webots"
    (home / "lib" / "controller" / "python").mkdir(parents=True)
    monkeypatch.setenv("WEBOTS_HOME", str(home))
    monkeypatch.delenv("WEBOTS_CONTROLLER_URL", raising=False)
    monkeypatch.setattr(sys, "path", list(sys.path))  # the backend prepends the API folder
    return home


@pytest.fixture
def world(webots_home: Path, monkeypatch: pytest.MonkeyPatch) -> FakeWorld:
    """A fake Webots running the tracking world, installed as the ``controller`` module."""
    fake = tracking_world()
    install_fake_controller(monkeypatch, fake)
    return fake


@pytest.fixture
def sim(world: FakeWorld) -> Iterator[WebotsBackend]:
    backend = WebotsBackend(TRACKING_WBT, control_period=0.05, launch=False)
    yield backend
    backend.close()


def _strip_strings_and_comments(text: str) -> str:
    """The world text without comments and strings, for bracket counting."""
    return re.sub(r'"(?:[^"\\\n]|\\.)*"|#[^\n]*', "", text)


# -- world files ----------------------------------------------------------------------------------------


def test_there_is_a_webots_world_for_every_mujoco_world() -> None:
    mujoco = {p.stem for p in (worlds_dir() / "mujoco").glob("*.xml")}
    assert mujoco <= {p.stem for p in WEBOTS_WORLDS}


@pytest.mark.parametrize("path", WEBOTS_WORLDS, ids=lambda p: p.name)
def test_world_file_syntax(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.splitlines()[0] == "#VRML_SIM R2023b utf8"
    bare = _strip_strings_and_comments(text)
    for opening, closing in ("{}", "[]"):
        depth = 0
        for char in bare:
            depth += (char == opening) - (char == closing)
            assert depth >= 0, f"unbalanced {closing!r} in {path.name}"
        assert depth == 0, f"unbalanced {opening!r} in {path.name}"

    scene = parse_world(text, path.name)
    urls = re.findall(r'^EXTERNPROTO "([^"]+)"', text, flags=re.M)
    assert urls == scene.externprotos
    for url in urls:
        assert R2023B_PROTO_URL.fullmatch(url), f"{url} is not an R2023b PROTO of the Webots distribution"
    used = {node.type_name for node in scene.iter_nodes()}
    assert used - WEBOTS_BASE_NODES <= set(scene.proto_names), "every PROTO used must be declared"
    assert set(scene.proto_names) <= used, "declared PROTOs should be used"
    assert len(scene.extern_supervisors()) == 1, "exactly one robot is driven by the extern Supervisor"


def test_tracking_world_mirrors_the_mujoco_world() -> None:
    scene = load_world(TRACKING_WBT)
    mjcf = ET.parse(TRACKING_XML).getroot()

    top_defs = [node.def_name for node in scene.nodes if node.def_name]
    mujoco_bodies = [body.get("name") for body in mjcf.find("worldbody").findall("body")]
    assert top_defs == mujoco_bodies == list(ENTITIES)
    assert scene.basic_time_step_ms / 1000.0 == float(mjcf.find("option").get("timestep"))

    tracker = scene.extern_supervisors()["tracker"]
    assert tracker.def_name == "tracker" and tracker.value("supervisor") is True
    webots_cameras = {n.value("name"): n for n in tracker.children() if n.type_name == "Camera"}
    assert len(webots_cameras) == sum(n.type_name == "Camera" for n in scene.iter_nodes())
    mujoco_cameras = {cam.get("name"): cam for cam in mjcf.iter("camera")}
    assert set(webots_cameras) == set(mujoco_cameras) - {"overview"}  # overview is MuJoCo only
    for name, node in webots_cameras.items():
        width, height = int(node.value("width")), int(node.value("height"))
        assert f"{width} {height}" == mujoco_cameras[name].get("resolution")
        fovy = horizontal_to_vertical_fov(node.value("fieldOfView"), width, height)
        assert math.degrees(fovy) == pytest.approx(float(mujoco_cameras[name].get("fovy")), abs=0.01)
        position = [float(v) for v in mujoco_cameras[name].get("pos").split()]
        assert list(node.value("translation")) == pytest.approx(position)

    poses = {node.def_name: node.value("translation") for node in scene.nodes if node.def_name}
    for body in mjcf.find("worldbody").findall("body"):
        assert list(poses[body.get("name")]) == pytest.approx([float(v) for v in body.get("pos").split()])
    physics = {node.def_name: node.value("physics") is not None for node in scene.nodes if node.def_name}
    assert physics == {name: name in ("target", "tracker") for name in ENTITIES}  # robots: setVelocity


def test_camera_mounts_look_where_the_mujoco_cameras_look() -> None:
    scene = load_world(TRACKING_WBT)
    cameras = {n.value("name"): n for n in scene.iter_nodes() if n.type_name == "Camera"}
    for camera in ET.parse(TRACKING_XML).getroot().iter("camera"):
        if camera.get("name") not in cameras:
            continue
        right, up = np.reshape([float(v) for v in camera.get("xyaxes").split()], (2, 3))
        up = up / np.linalg.norm(up)
        forward = -np.cross(right, up)  # MuJoCo cameras look along -z
        rotation = cameras[camera.get("name")].value("rotation", (0.0, 0.0, 1.0, 0.0))
        w, x, y, z = axis_angle_to_quaternion(rotation)
        matrix = np.array([  # columns: where the Webots camera's x (view) and z (image up) axes point
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ])
        assert matrix[:, 0] == pytest.approx(forward / np.linalg.norm(forward), abs=1e-4)
        assert matrix[:, 2] == pytest.approx(up, abs=1e-4)


def test_fake_world_matches_the_tracking_world_file() -> None:
    """Keeps tests.fakes.tracking_world honest: same DEF names, poses, physics and cameras."""
    scene, fake = load_world(TRACKING_WBT), tracking_world()
    top = {node.def_name: node for node in scene.nodes if node.def_name}
    assert list(top) == list(fake.nodes)
    for name, node in top.items():
        fields = fake.nodes[name].fields
        assert list(node.value("translation")) == fields["translation"].value
        assert (node.value("physics") is not None) == (fields["physics"].value is not None)
    cameras = {n.value("name"): n for n in scene.iter_nodes() if n.type_name == "Camera"}
    assert list(cameras) == [device.name for device in fake.devices]
    for name, node in cameras.items():
        device = fake.camera(name)
        assert (device.width, device.height, device.fov) == (
            node.value("width"), node.value("height"), node.value("fieldOfView"))
    assert fake.basic_time_step == scene.basic_time_step_ms


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("WorldInfo {\n}\n", "header"),
        ("#VRML_SIM R2021a utf8\nWorldInfo {\n}\n", "R2023b or newer"),
        ("#VRML_SIM R2023b utf8\nWorldInfo {\n  basicTimeStep 10\n", "end of file"),
        ("#VRML_SIM R2023b utf8\nWorldInfo {\n}\n}\n", ":4:"),
        ("#VRML_SIM R2023b utf8\nSolid {\n  children [\n    Shape {\n    }\n}\n", "expected"),
        ("#VRML_SIM R2023b utf8\nSolid {\n  name \"box\n}\n", "unterminated string"),
        ("#VRML_SIM R2023b utf8\nRectangleArena {\n}\n", "RectangleArena"),
        ('#VRML_SIM R2023b utf8\nEXTERNPROTO "https://x.org/protos/Foo.txt"\nFoo {\n}\n', ".proto"),
        ('#VRML_SIM R2023b utf8\nEXTERNPROTO "ftp://x.org/protos/Foo.proto"\nFoo {\n}\n', "scheme"),
        ("#VRML_SIM R2023b utf8\nSolid {\n  boundingObject USE BODY\n}\n", "USE BODY before its DEF"),
        ("#VRML_SIM R2023b utf8\nDEF a Solid {\n}\nDEF a Solid {\n}\n", "unique"),
        ("#VRML_SIM R2023b utf8\nSolid {\n  translation\n}\n", "'translation' has no value"),
    ],
)
def test_malformed_worlds_are_refused(text: str, message: str) -> None:
    with pytest.raises(WorldFileError, match=re.escape(message)):
        parse_world(text)


def test_missing_world_file(tmp_path: Path) -> None:
    with pytest.raises(WorldFileError, match="not found"):
        make_backend("webots", tmp_path / "nowhere.wbt")
    with pytest.raises(WorldFileError, match="no webots world named 'nowhere'"):
        make_backend("webots", "nowhere")


def test_malformed_world_file_fails_before_looking_for_webots(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("WEBOTS_HOME", raising=False)
    broken = tmp_path / "broken.wbt"
    broken.write_text("#VRML_SIM R2023b utf8\nWorldInfo {\n", encoding="utf-8")
    with pytest.raises(WorldFileError, match=r"broken\.wbt:2"):
        WebotsBackend(broken)


# -- finding Webots -------------------------------------------------------------------------------------


def test_missing_webots_home_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WEBOTS_HOME", raising=False)
    monkeypatch.setattr(webots_module, "DEFAULT_WEBOTS_HOMES", ())
    with pytest.raises(SimulatorNotAvailableError) as info:
        WebotsBackend(TRACKING_WBT)
    message = str(info.value)
    assert "WEBOTS_HOME" in message and "R2023b" in message and "cyberbotics.com" in message
    assert isinstance(info.value, ImportError)  # callers catching ImportError also see it


def test_webots_home_without_python_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBOTS_HOME", str(tmp_path))
    with pytest.raises(SimulatorNotAvailableError, match="lib/controller/python"):
        WebotsBackend(TRACKING_WBT)
    with pytest.raises(SimulatorNotAvailableError, match="webots_home="):
        WebotsBackend(TRACKING_WBT, webots_home=tmp_path / "absent")


def test_controller_module_is_imported_from_webots_home(world: FakeWorld, webots_home: Path) -> None:
    with WebotsBackend(TRACKING_WBT, launch=False):
        assert str(webots_home / "lib" / "controller" / "python") in sys.path
        assert os.environ["WEBOTS_HOME"] == str(webots_home)  # the Webots wb.py loads libController from it


# -- construction and names -----------------------------------------------------------------------------


def test_attach_connects_to_the_extern_supervisor_and_resets(world: FakeWorld, sim: WebotsBackend) -> None:
    # No WEBOTS_CONTROLLER_URL: the documented local form is the robot's name; it is not left set.
    assert world.calls_named("Supervisor") == [("Supervisor", "tracker")]
    assert "WEBOTS_CONTROLLER_URL" not in os.environ
    assert FakeRobot.created is not None
    assert sim.entity_names == ENTITIES
    assert sim.camera_names == ("tracker_camera", "chase_camera")
    assert sim.sensor_names == ()
    assert {call[1] for call in world.calls_named("getFromDef")} == set(ENTITIES)
    assert world.calls_named("simulationReset") and sim.time == 0.0


def test_existing_controller_url_is_used(webots_home, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tracking_world()
    install_fake_controller(monkeypatch, fake)
    monkeypatch.setenv("WEBOTS_CONTROLLER_URL", "tcp://10.0.0.2:1234/tracker")
    with WebotsBackend(TRACKING_WBT):  # launch=None attaches because the URL is set
        pass
    assert fake.calls_named("Supervisor") == [("Supervisor", "tcp://10.0.0.2:1234/tracker")]


def test_refused_connection_names_the_url(webots_home, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tracking_world()
    fake.refuse_connection = True
    install_fake_controller(monkeypatch, fake)
    with pytest.raises(SimulatorError, match="WEBOTS_CONTROLLER_URL='tracker'"):
        WebotsBackend(TRACKING_WBT, launch=False)
    assert "WEBOTS_CONTROLLER_URL" not in os.environ


def test_make_backend_finds_the_world_by_name(world: FakeWorld) -> None:
    with make_backend("webots", "tracking", launch=False) as backend:
        assert isinstance(backend, WebotsBackend) and backend.world == TRACKING_WBT


def test_one_controller_per_process(world: FakeWorld, sim: WebotsBackend) -> None:
    with pytest.raises(SimulatorError, match="own process"):
        WebotsBackend(TRACKING_WBT, launch=False)


def test_robot_name_must_be_an_extern_supervisor(world: FakeWorld) -> None:
    with pytest.raises(UnknownNameError, match="target"):
        WebotsBackend(TRACKING_WBT, launch=False, robot_name="target")


def test_world_needs_exactly_one_extern_supervisor(world: FakeWorld, tmp_path: Path) -> None:
    text = TRACKING_WBT.read_text(encoding="utf-8")
    text = text.replace('controller "<none>"', 'controller "<extern>"\n  supervisor TRUE')
    two = tmp_path / "two.wbt"
    two.write_text(text, encoding="utf-8")
    with pytest.raises(WorldFileError, match=r"\['target', 'tracker'\]"):
        WebotsBackend(two, launch=False)
    with WebotsBackend(two, launch=False, robot_name="tracker") as backend:
        assert backend.robot_name == "tracker"


@pytest.mark.parametrize("period", [0.055, 0.005, 0.0, -0.05, float("nan")])
def test_bad_control_period_fails_before_starting_webots(period: float, monkeypatch) -> None:
    monkeypatch.delenv("WEBOTS_HOME", raising=False)
    with pytest.raises(InvalidArgumentError, match=r"basicTimeStep 0\.01 s"):
        WebotsBackend(TRACKING_WBT, control_period=period)


def test_control_period_is_checked_against_the_running_world(webots_home, monkeypatch) -> None:
    fake = tracking_world()
    fake.basic_time_step = 20.0  # the instance runs an edited world: 50 ms is 2.5 of its steps
    install_fake_controller(monkeypatch, fake)
    with pytest.raises(InvalidArgumentError, match=r"basicTimeStep 0\.02 s"):
        WebotsBackend(TRACKING_WBT, control_period=0.05, launch=False)


def test_running_world_must_match_the_file(webots_home, monkeypatch) -> None:
    fake = tracking_world()
    del fake.nodes["obstacle_3"]
    install_fake_controller(monkeypatch, fake)
    with pytest.raises(SimulatorError, match="obstacle_3"):
        WebotsBackend(TRACKING_WBT, launch=False)


# -- stepping and time ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("period", "substeps"), [(0.01, 1), (0.05, 5), (0.1, 10)])
def test_step_calls_robot_step_basic_time_step_times(world: FakeWorld, period: float, substeps: int) -> None:
    with WebotsBackend(TRACKING_WBT, control_period=period, launch=False) as backend:
        world.calls.clear()
        backend.step()
        assert world.calls_named("step") == [("step", 10)] * substeps
        backend.step()
        assert backend.time == pytest.approx(2 * period)
        assert backend.n_substeps == substeps


def test_reset_restores_poses_time_and_clears_commands(world: FakeWorld, sim: WebotsBackend) -> None:
    start = sim.get_pose("tracker")
    sim.set_planar_velocity("tracker", 0.2, 0.5)
    sim.set_pose("target", Pose.planar(1.0, 1.0, 0.3))
    for _ in range(4):
        sim.step()
    world.calls.clear()
    sim.reset(seed=3)
    assert world.calls_named("simulationReset") == [("simulationReset",)]
    assert world.calls_named("step") == [("step", 10)]  # Webots resets at the end of a step
    assert sim.time == 0.0
    assert sim.get_pose("tracker").position == pytest.approx(start.position)
    assert sim.get_pose("target").xy == pytest.approx([0.0, 0.0])
    world.calls.clear()
    sim.step()
    assert world.calls_named("setVelocity") == []  # the command did not survive the reset
    assert sim.get_pose("tracker").position == pytest.approx(start.position)


def test_step_reports_a_simulation_that_ended(world: FakeWorld, sim: WebotsBackend) -> None:
    world.quit = True
    with pytest.raises(SimulatorError, match="returned -1"):
        sim.step()


def test_closed_backend_refuses_work_and_close_is_idempotent(sim: WebotsBackend) -> None:
    sim.close()
    sim.close()
    with pytest.raises(SimulatorError, match="closed"):
        sim.step()
    with pytest.raises(SimulatorError, match="closed"):
        sim.get_pose("target")


# -- poses ----------------------------------------------------------------------------------------------


def test_rotation_conversions_round_trip() -> None:
    rng = np.random.default_rng(0)
    for q in rng.normal(size=(200, 4)):
        q /= np.linalg.norm(q)
        rotation = quaternion_to_axis_angle(q)
        assert 0.0 <= rotation[3] <= math.pi + 1e-12
        assert np.linalg.norm(rotation[:3]) == pytest.approx(1.0)
        back = axis_angle_to_quaternion(rotation)
        assert abs(float(np.dot(back, q))) == pytest.approx(1.0)  # q and -q are the same rotation
    assert quaternion_to_axis_angle([1, 0, 0, 0]) == [0.0, 0.0, 1.0, 0.0]
    assert axis_angle_to_quaternion([0, 0, 0, 1.0]) == pytest.approx([1, 0, 0, 0])
    assert axis_angle_to_quaternion([0, 0, 2, math.pi]) == pytest.approx([0, 0, 0, 1])
    assert quaternion_to_axis_angle([0, 1, 0, 0]) == pytest.approx([1, 0, 0, math.pi])


def test_planar_pose_round_trip(world: FakeWorld, sim: WebotsBackend) -> None:
    world.calls.clear()
    sim.set_pose("target", Pose.planar(0.5, -0.3, 2.5, z=0.7))  # planar robots keep their height
    assert ("setSFVec3f", "target.translation", [0.5, -0.3, 0.0]) in world.calls
    assert ("setSFRotation", "target.rotation", [0.0, 0.0, 1.0, 2.5]) in world.calls
    assert ("resetPhysics", "target") in world.calls
    pose = sim.get_pose("target")
    assert pose.position == pytest.approx([0.5, -0.3, 0.0])
    assert pose.yaw == pytest.approx(2.5)
    sim.set_pose("tracker", Pose.planar(0.0, 0.0, -3.0))
    assert sim.get_pose("tracker").yaw == pytest.approx(-3.0)


def test_static_pose_round_trip_with_any_orientation(world: FakeWorld, sim: WebotsBackend) -> None:
    quaternion = np.array([0.3, -0.5, 0.4, 0.7])
    pose = Pose(np.array([1.2, -0.4, 0.05]), -quaternion)
    sim.set_pose("obstacle_2", pose)
    stored = world.nodes["obstacle_2"].fields["rotation"].value
    assert 0.0 <= stored[3] <= math.pi
    back = sim.get_pose("obstacle_2")
    assert back.position == pytest.approx(pose.position)
    assert abs(float(np.dot(back.quaternion, pose.quaternion))) == pytest.approx(1.0)
    sim.reset()
    assert sim.get_pose("obstacle_2").position == pytest.approx([0.0, 0.0, -1.0])  # parked again


def test_get_pose_reads_what_webots_moved(world: FakeWorld, sim: WebotsBackend) -> None:
    world.nodes["target"].fields["translation"].value = [0.1, 0.2, 0.0]
    world.nodes["target"].fields["rotation"].value = [0.0, 0.0, -1.0, 0.5]
    pose = sim.get_pose("target")
    assert pose.xy == pytest.approx([0.1, 0.2]) and pose.yaw == pytest.approx(-0.5)


# -- velocity commands ----------------------------------------------------------------------------------


def test_planar_velocity_drives_straight(world: FakeWorld, sim: WebotsBackend) -> None:
    sim.set_pose("tracker", Pose.planar(0.0, 0.0, math.pi / 2))
    sim.set_planar_velocity("tracker", 0.2, 0.0)
    world.calls.clear()
    for _ in range(10):
        sim.step()
    assert sim.get_pose("tracker").xy == pytest.approx([0.0, 0.1], abs=1e-9)
    velocities = world.calls_named("setVelocity")
    assert len(velocities) == 10 * sim.n_substeps  # re-applied before every basic step
    assert velocities[0] == ("setVelocity", "tracker", pytest.approx([0.0, 0.2, 0.0, 0.0, 0.0, 0.0]))


def test_planar_velocity_follows_the_unicycle_arc(world: FakeWorld, sim: WebotsBackend) -> None:
    forward, yaw_rate, yaw0 = 0.2, 1.0, 0.4
    sim.set_pose("target", Pose.planar(0.0, 0.0, yaw0))
    sim.set_planar_velocity("target", forward, yaw_rate)
    for _ in range(20):  # 1 s, command held
        sim.step()
    t, radius = sim.time, forward / yaw_rate
    expected = [radius * (math.sin(yaw0 + yaw_rate * t) - math.sin(yaw0)),
                radius * (math.cos(yaw0) - math.cos(yaw0 + yaw_rate * t))]
    pose = sim.get_pose("target")
    assert t == pytest.approx(1.0)
    assert pose.xy == pytest.approx(expected, abs=2e-3)  # re-projected every 10 ms basic step
    assert pose.yaw == pytest.approx(yaw0 + yaw_rate * t)
    sim.set_planar_velocity("target", 0.0, 0.0)
    sim.step()
    assert sim.get_pose("target").xy == pytest.approx(pose.xy)


def test_planar_velocity_rejects_static_entities_and_bad_numbers(sim: WebotsBackend) -> None:
    with pytest.raises(InvalidArgumentError, match=r"obstacle_0.*Physics"):
        sim.set_planar_velocity("obstacle_0", 0.1, 0.0)
    with pytest.raises(InvalidArgumentError, match="finite"):
        sim.set_planar_velocity("target", float("nan"), 0.0)


# -- cameras --------------------------------------------------------------------------------------------


def test_camera_bgra_becomes_rgb(world: FakeWorld, sim: WebotsBackend) -> None:
    image = sim.render("tracker_camera")
    bgra = world.camera("tracker_camera").bgra
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    assert image.flags.c_contiguous
    np.testing.assert_array_equal(image[..., 0], bgra[..., 2])  # red
    np.testing.assert_array_equal(image[..., 1], bgra[..., 1])  # green
    np.testing.assert_array_equal(image[..., 2], bgra[..., 0])  # blue
    assert sim.camera_shape("tracker_camera") == (64, 64)
    assert sim.render("chase_camera").shape == (240, 240, 3)


def test_cameras_are_enabled_on_first_use_every_basic_step(world: FakeWorld, sim: WebotsBackend) -> None:
    assert world.calls_named("enable") == []  # unused cameras cost nothing
    sim.render("tracker_camera")
    sim.render("tracker_camera")
    assert world.calls_named("enable") == [("enable", "tracker_camera", 10)]


def test_render_shows_poses_set_since_the_last_step(world: FakeWorld, sim: WebotsBackend) -> None:
    def scene(fake: FakeWorld) -> np.ndarray:  # brightness encodes the target's x, as a camera would see
        x = fake.nodes["target"].fields["translation"].value[0]
        return np.full((64, 64, 4), round(100 + 100 * x), dtype=np.uint8)

    world.camera("tracker_camera").scene = scene
    sim.set_pose("target", Pose.planar(0.5, 0.0, 0.0))
    sim.set_planar_velocity("tracker", 0.3, 0.0)
    tracker = sim.get_pose("tracker")
    assert sim.render("tracker_camera")[0, 0, 0] == 150
    assert sim.time == 0.0  # the hidden basic step is not counted
    assert sim.get_pose("tracker").xy == pytest.approx(tracker.xy)  # commanded robots were held
    world.calls.clear()
    sim.step()
    sim.render("tracker_camera")
    assert len(world.calls_named("step")) == sim.n_substeps  # a render after step() needs no extra step
    sim.set_pose("target", Pose.planar(-0.5, 0.0, 0.0))
    assert sim.render("tracker_camera")[0, 0, 0] == 50


def test_camera_fov_is_converted_to_vertical(world: FakeWorld, sim: WebotsBackend) -> None:
    assert math.degrees(sim.camera_fovy("tracker_camera")) == pytest.approx(60.0, abs=1e-3)
    assert math.degrees(sim.camera_fovy("chase_camera")) == pytest.approx(55.0, abs=1e-3)
    wide = horizontal_to_vertical_fov(1.2, width=128, height=64)
    assert wide == pytest.approx(2 * math.atan(math.tan(0.6) / 2))
    assert horizontal_to_vertical_fov(1.2, width=64, height=128) > 1.2


def test_wide_camera_fovy(webots_home, monkeypatch) -> None:
    fake = tracking_world()
    fake.add_camera("wide", 128, 64, 1.2)
    install_fake_controller(monkeypatch, fake)
    with WebotsBackend(TRACKING_WBT, launch=False) as backend:
        assert backend.camera_fovy("wide") == pytest.approx(2 * math.atan(math.tan(0.6) * 64 / 128))
        assert backend.render("wide").shape == (64, 128, 3)


def test_camera_sizes_resample_without_changing_the_field_of_view(world: FakeWorld) -> None:
    sizes = {"chase_camera": (96, 128)}
    with WebotsBackend(TRACKING_WBT, camera_sizes=sizes, launch=False) as backend:
        assert backend.render("chase_camera").shape == (96, 128, 3)
        assert backend.camera_shape("chase_camera") == (96, 128)
        assert math.degrees(backend.camera_fovy("chase_camera")) == pytest.approx(55.0, abs=1e-3)


@pytest.mark.parametrize(
    ("sizes", "error"),
    [({"overview": (64, 64)}, UnknownNameError), ({"tracker_camera": (0, 64)}, InvalidArgumentError)],
)
def test_bad_camera_sizes(world: FakeWorld, sizes: dict, error: type[Exception]) -> None:
    with pytest.raises(error):
        WebotsBackend(TRACKING_WBT, camera_sizes=sizes, launch=False)


def test_camera_without_an_image_is_an_error(world: FakeWorld, sim: WebotsBackend) -> None:
    camera = world.camera("tracker_camera")
    sim.render("tracker_camera")
    camera.image = b"\x00" * 10
    with pytest.raises(SimulatorError, match="64x64"):
        sim.render("tracker_camera")


def test_no_depth_in_webots(sim: WebotsBackend) -> None:
    with pytest.raises(SimulatorError, match="depth"):
        sim.render_depth("tracker_camera")


# -- sensors and unknown names --------------------------------------------------------------------------


def test_sensors_are_read_through_their_devices(webots_home, monkeypatch) -> None:
    fake = tracking_world()
    fake.devices.append(FakeTouchSensor(fake, "bumper", value=2.5))
    install_fake_controller(monkeypatch, fake)
    with WebotsBackend(TRACKING_WBT, launch=False) as backend:
        assert backend.sensor_names == ("bumper",)
        reading = backend.read_sensor("bumper")
        assert reading.dtype == np.float64 and reading.tolist() == [2.5]
        assert fake.calls_named("enable") == [("enable", "bumper", 10)]


@pytest.mark.parametrize(
    ("call", "kind"),
    [
        (lambda s: s.get_pose("ghost"), "entity"),
        (lambda s: s.set_pose("ghost", Pose()), "entity"),
        (lambda s: s.set_planar_velocity("ghost", 0.1, 0.0), "entity"),
        (lambda s: s.render("overview"), "camera"),  # the overview camera exists only in MuJoCo
        (lambda s: s.camera_fovy("ghost"), "camera"),
        (lambda s: s.camera_shape("ghost"), "camera"),
        (lambda s: s.read_sensor("ghost"), "sensor"),
    ],
)
def test_unknown_names(sim: WebotsBackend, call: Any, kind: str) -> None:
    with pytest.raises(UnknownNameError, match=f"unknown {kind}") as info:
        call(sim)
    assert isinstance(info.value, ValueError)
    if kind == "entity":
        assert info.value.known == tuple(sorted(ENTITIES))


# -- launching Webots -----------------------------------------------------------------------------------


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


@pytest.fixture
def fake_launch(webots_home: Path, monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    (webots_home / "webots").write_text("#!/bin/sh\n", encoding="utf-8")
    monkeypatch.setattr(FakePopen, "launched", [])
    monkeypatch.setattr(webots_module.subprocess, "Popen", FakePopen)
    signals: list[tuple[int, int]] = []
    monkeypatch.setattr(webots_module.os, "killpg", lambda pid, sig: signals.append((pid, sig)))
    return signals


def test_launch_starts_webots_headless_and_stops_it(world, webots_home, fake_launch, monkeypatch) -> None:
    monkeypatch.setattr(FakePopen, "output", (
        "INFO: 'tracker' extern controller: Waiting for local or remote connection on port 1240 "
        "targeting robot named 'tracker'.\n"
    ))
    backend = WebotsBackend(TRACKING_WBT, launch=True, timeout=5)
    (proc,) = FakePopen.launched
    assert proc.argv[0] == str(webots_home / "webots")
    headless = ["--batch", "--mode=fast", "--no-rendering", "--stdout", "--stderr", "--minimize"]
    assert proc.argv[1:7] == headless
    assert re.fullmatch(r"--port=\d+", proc.argv[7]) and proc.argv[-1] == str(TRACKING_WBT.resolve())
    assert proc.kwargs.get("start_new_session") is (os.name == "posix")
    # Webots said which port it really took; the extern controller URL follows it.
    assert world.calls_named("Supervisor") == [("Supervisor", "ipc://1240/tracker")]
    assert "WEBOTS_CONTROLLER_URL" not in os.environ
    backend.close()
    backend.close()
    assert proc.returncode is not None
    if os.name == "posix":
        assert fake_launch == [(proc.pid, signal.SIGTERM)]


def test_launch_reports_webots_dying_with_its_output(world, fake_launch, monkeypatch) -> None:
    monkeypatch.setattr(FakePopen, "output", "ERROR: could not open the OpenGL context\n")
    monkeypatch.setattr(FakePopen, "exits_at_once", True)
    with pytest.raises(SimulatorError, match="OpenGL context"):
        WebotsBackend(TRACKING_WBT, launch=True, timeout=5)
    assert world.calls_named("Supervisor") == []  # never connects to a dead Webots


def test_launch_ignores_other_robots_and_times_out(world, fake_launch, monkeypatch) -> None:
    monkeypatch.setattr(FakePopen, "output", (
        "INFO: 'other' extern controller: Waiting for local or remote connection on port 1234 "
        "targeting robot named 'other'.\n"
    ))
    with pytest.raises(SimulatorError, match="did not offer robot 'tracker'"):
        WebotsBackend(TRACKING_WBT, launch=True, timeout=0.2)
    assert FakePopen.launched[0].returncode is not None  # the process is stopped, not leaked


# -- a real Webots --------------------------------------------------------------------------------------


@pytest.mark.webots
@pytest.mark.skipif(
    not os.environ.get("WEBOTS_HOME"), reason="WEBOTS_HOME is not set; install Webots R2023b+ to run"
)
def test_real_webots_tracking_world() -> None:
    with make_backend("webots", "tracking", control_period=0.05, launch=True, timeout=120) as real:
        assert set(real.entity_names) == set(ENTITIES)
        assert set(real.camera_names) == {"tracker_camera", "chase_camera"}
        assert real.get_pose("tracker").xy == pytest.approx([-0.2, 0.0], abs=1e-6)
        assert math.degrees(real.camera_fovy("tracker_camera")) == pytest.approx(60.0, abs=0.01)

        real.set_pose("target", Pose.planar(0.5, 0.0, 0.0))
        image = real.render("tracker_camera")
        assert image.shape == (64, 64, 3) and image.dtype == np.uint8
        red = (image[..., 0].astype(int) - image[..., 2]) > 60
        assert red[:, 24:40].any(), "the red target ahead of the tracker should be in view"

        real.set_planar_velocity("tracker", 0.1, 0.0)
        for _ in range(10):
            real.step()
        assert real.time == pytest.approx(0.5)
        assert real.get_pose("tracker").xy == pytest.approx([-0.15, 0.0], abs=5e-3)

        real.set_pose("tracker", Pose.planar(2.35, 0.0, 0.0))  # 0.3 m/s for 1 s: 0.15 m past the wall
        real.set_planar_velocity("tracker", 0.3, 0.0)
        for _ in range(20):
            real.step()
        assert real.get_pose("tracker").position[0] < 2.5 - 0.037 + 5e-3, "walls stop the robot"
        assert real.get_pose("tracker").position[2] == pytest.approx(0.0, abs=1e-3)

        real.reset()
        assert real.time == 0.0
        assert real.get_pose("target").xy == pytest.approx([0.0, 0.0], abs=1e-6)
