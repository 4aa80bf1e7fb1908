"""Webots backend: world-file syntax, the adapter's calls against the documented Webots API, and (with
``WEBOTS_HOME``) a run on a real Webots.

Webots cannot be installed here, so most tests connect the backend to :mod:`tests.fakes`' recording
``controller`` module in attach mode; the launch path runs against a fake ``subprocess.Popen``.
"""

from __future__ import annotations

import math
import os
import re
import signal
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
from envs.sim import webots_process as process_module
from envs.sim.base import Pose
from envs.sim.wbt import WEBOTS_BASE_NODES, load_world, parse_world
from envs.sim.webots import (
    WebotsBackend,
    axis_angle_to_quaternion,
    horizontal_to_vertical_fov,
    quaternion_to_axis_angle,
)
from tests.fakes import (
    FakePopen,
    FakeRobot,
    FakeTouchSensor,
    FakeWorld,
    arm_world,
    install_fake_controller,
    tracking_world,
)

WEBOTS_WORLDS = sorted((worlds_dir() / "webots").glob("*.wbt"))
TRACKING_WBT = worlds_dir() / "webots" / "tracking.wbt"
TRACKING_XML = worlds_dir() / "mujoco" / "tracking.xml"
ARM_WBT = worlds_dir() / "webots" / "arm2.wbt"
ARM_XML = worlds_dir() / "mujoco" / "arm2.xml"
ARM_JOINTS = ("shoulder", "elbow")
ARM_MOTORS = ("shoulder_motor", "elbow_motor")
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


#: Worlds of tasks that run on MuJoCo only (their environments refuse backend="webots" by name): the VQA scenes are
#: generated and rendered per episode, which the Webots backend's one-world-file-per-run model does not fit.
MUJOCO_ONLY_WORLDS = {"vqa"}


def test_there_is_a_webots_world_for_every_mujoco_world() -> None:
    mujoco = {p.stem for p in (worlds_dir() / "mujoco").glob("*.xml")}
    assert mujoco - MUJOCO_ONLY_WORLDS <= {p.stem for p in WEBOTS_WORLDS}


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
    monkeypatch.setattr(process_module, "DEFAULT_WEBOTS_HOMES", ())
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


# -- the arm: joints, actuators, sites, depth (worlds/webots/arm2.wbt) ------------------------------------


@pytest.fixture
def arm_fake(webots_home: Path, monkeypatch: pytest.MonkeyPatch) -> FakeWorld:
    """A fake Webots running the two-link arm world."""
    fake = arm_world()
    install_fake_controller(monkeypatch, fake)
    return fake


@pytest.fixture
def arm_sim(arm_fake: FakeWorld) -> Iterator[WebotsBackend]:
    backend = WebotsBackend(ARM_WBT, control_period=0.05, launch=False)
    yield backend
    backend.close()


def test_arm_world_mirrors_the_mujoco_arm() -> None:
    """Same joints (axis, anchor, limits), motors, sensors, site, camera and time step as arm2.xml."""
    scene, mjcf = load_world(ARM_WBT), ET.parse(ARM_XML).getroot()
    assert scene.basic_time_step_ms / 1000.0 == float(mjcf.find("option").get("timestep"))
    nodes = {node.def_name: node for node in scene.iter_nodes() if node.def_name}
    mj_joints = {joint.get("name"): joint for joint in mjcf.iter("joint") if joint.get("name")}
    assert [n for n in nodes if nodes[n].type_name == "HingeJoint"] == list(mj_joints) == list(ARM_JOINTS)
    mj_bodies = {body.get("name"): body for body in mjcf.iter("body")}
    for name, body in (("shoulder", "link1"), ("elbow", "link2")):
        parameters = nodes[name].value("jointParameters")
        assert list(parameters.value("axis")) == [0.0, 0.0, 1.0]  # MJCF default class: hinge about +z
        assert (parameters.value("minStop"), parameters.value("maxStop")) == tuple(
            float(v) for v in mj_joints[name].get("range").split())
        position = [float(v) for v in mj_bodies[body].get("pos").split()]
        assert list(parameters.value("anchor")) == position  # the joint sits at its body's origin
        assert list(nodes[name].value("endPoint").value("translation")) == position
        (motor,) = [d for d in nodes[name].fields["device"] if d.type_name == "RotationalMotor"]
        (actuator,) = [a for a in mjcf.find("actuator") if a.get("joint") == name]
        assert motor.value("name") == actuator.get("name")
        assert (motor.value("minPosition"), motor.value("maxPosition")) == tuple(
            float(v) for v in actuator.get("ctrlrange").split())
    site = next(mjcf.iter("site"))
    assert nodes["wrist"].type_name == "Pose" and site.get("name") == "wrist"
    assert list(nodes["wrist"].value("translation")) == [float(v) for v in mj_bodies["hand"].get("pos").split()]

    cameras = {n.value("name"): n for n in scene.iter_nodes() if n.type_name in ("Camera", "RangeFinder")}
    assert set(cameras) == {"arm_camera", "arm_camera_depth"}
    mj_camera = next(mjcf.iter("camera"))
    for node in cameras.values():
        assert list(node.value("translation")) == [float(v) for v in mj_camera.get("pos").split()]
        assert f"{int(node.value('width'))} {int(node.value('height'))}" == mj_camera.get("resolution")
        fovy = horizontal_to_vertical_fov(node.value("fieldOfView"), node.value("width"), node.value("height"))
        assert math.degrees(fovy) == pytest.approx(float(mj_camera.get("fovy")), abs=0.01)
        rotation = Pose(np.zeros(3), axis_angle_to_quaternion(node.value("rotation"))).rotation_matrix
        right, up = np.reshape([float(v) for v in mj_camera.get("xyaxes").split()], (2, 3))
        up = up / np.linalg.norm(up)
        assert rotation[:, 0] == pytest.approx(-np.cross(right, up), abs=1e-5)  # Webots looks along +x
        assert rotation[:, 2] == pytest.approx(up, abs=1e-5)  # ... with image up = +z
    mj_sensors = {sensor.get("name") for sensor in mjcf.find("sensor")}
    webots_sensors = {n.value("name") for n in scene.iter_nodes() if n.type_name in ("PositionSensor", "TouchSensor")}
    assert webots_sensors == mj_sensors - {"wrist_torque"}  # Webots has no torque sensor


def test_def_paths_follow_unbroken_def_chains() -> None:
    """``Supervisor.getFromDef`` paths: a DEF-less ancestor restarts the chain; a USE'd node is listed once."""
    scene = parse_world(
        "#VRML_SIM R2023b utf8\n"
        "DEF a Solid {\n  children [\n    Pose {\n      children [\n        DEF b Pose {\n          children [\n"
        "            DEF c Pose {\n            }\n          ]\n        }\n      ]\n    }\n"
        "    DEF d Pose {\n    }\n  ]\n  boundingObject DEF e Pose {\n  }\n}\n"
        "Solid {\n  children [\n    USE d\n  ]\n}\n"
    )
    assert [path for path, _ in scene.def_paths()] == ["a", "b", "b.c", "a.d", "a.e"]
    assert [path for path, _ in scene.def_paths(skip_fields=("boundingObject",))] == ["a", "b", "b.c", "a.d"]
    root = scene.nodes[0]
    assert [path for path, _ in scene.def_paths(root)] == ["b", "b.c", "a.d", "a.e"]


def test_arm_names(arm_fake: FakeWorld, arm_sim: WebotsBackend) -> None:
    assert arm_sim.joint_names == ARM_JOINTS
    assert arm_sim.actuator_names == ARM_MOTORS
    assert arm_sim.site_names == ("wrist",)
    assert arm_sim.camera_names == ("arm_camera",)  # the RangeFinder is its depth, not a camera
    assert set(arm_sim.sensor_names) == {"shoulder_sensor", "elbow_sensor", "wrist_force"}
    assert arm_sim.force_torque_names == ()
    assert arm_sim.entity_names == ()
    # Joints are reached through their DEF paths; sites wait until they are used.
    assert [c[1] for c in arm_fake.calls_named("getFromDef")] == ["shoulder", "shoulder.link1.elbow"]


def test_tracking_world_has_no_joints(sim: WebotsBackend) -> None:
    assert sim.joint_names == sim.actuator_names == sim.site_names == ()


def test_arm_joint_positions_limits_and_teleport(arm_fake: FakeWorld, arm_sim: WebotsBackend) -> None:
    assert arm_sim.get_joint_positions(ARM_JOINTS).tolist() == [0.0, 0.0]
    low, high = arm_sim.joint_limits(["elbow", "shoulder"])
    assert low.tolist() == [-2.4, -2.6] and high.tolist() == [2.4, 2.6]
    arm_fake.calls.clear()
    arm_sim.set_joint_positions(["elbow", "shoulder"], np.array([-0.5, 0.25]))
    assert arm_fake.calls_named("setJointPosition") == [("setJointPosition", "elbow", -0.5),
                                                       ("setJointPosition", "shoulder", 0.25)]
    assert ("resetPhysics", "link2") in arm_fake.calls and ("resetPhysics", "link1") in arm_fake.calls
    assert arm_sim.get_joint_positions(ARM_JOINTS).tolist() == [0.25, -0.5]
    assert arm_sim.get_joint_velocities(ARM_JOINTS).tolist() == [0.0, 0.0]
    expected = [0.2 * math.cos(0.25) + 0.15 * math.cos(-0.25), 0.2 * math.sin(0.25) + 0.15 * math.sin(-0.25), 0.1]
    assert arm_sim.get_site_pose("wrist").position == pytest.approx(expected)
    assert arm_sim.get_site_pose("wrist").yaw == pytest.approx(-0.25)
    arm_sim.reset()
    assert arm_sim.get_joint_positions(ARM_JOINTS).tolist() == [0.0, 0.0]


@pytest.mark.parametrize(
    ("values", "message"),
    [([0.0, 2.5], r"'elbow' value 2\.5 is outside its limits \[-2\.4, 2\.4\]"), ([math.nan, 0.0], "not finite"),
     ([0.0], r"shape \(2,\)")],
)
def test_arm_teleport_is_checked_before_anything_is_sent(
    arm_fake: FakeWorld, arm_sim: WebotsBackend, values: list, message: str
) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        arm_sim.set_joint_positions(ARM_JOINTS, values)
    assert arm_fake.calls_named("setJointPosition") == []  # Webots would have clamped it silently


def test_arm_controls_reach_the_motors_every_step(arm_fake: FakeWorld, arm_sim: WebotsBackend) -> None:
    low, high = arm_sim.actuator_ranges(ARM_MOTORS)
    assert low.tolist() == [-2.6, -2.4] and high.tolist() == [2.6, 2.4]  # minPosition/maxPosition
    arm_sim.set_actuator_controls({"shoulder_motor": 0.3, "elbow_motor": -0.2})
    assert arm_fake.calls_named("setPosition") == []  # sent with the next step
    arm_sim.step()
    assert arm_fake.calls_named("setPosition") == [("setPosition", "shoulder_motor", 0.3),
                                                   ("setPosition", "elbow_motor", -0.2)]
    assert arm_sim.get_joint_positions(ARM_JOINTS) == pytest.approx([0.3, -0.2])  # 10 rad/s reaches them
    arm_sim.set_actuator_controls({"elbow_motor": 1.0})  # the shoulder keeps its control
    arm_fake.calls.clear()
    arm_sim.step()
    assert arm_fake.calls_named("setPosition") == [("setPosition", "shoulder_motor", 0.3),
                                                   ("setPosition", "elbow_motor", 1.0)]
    # 5 basic steps of 10 ms at the motor's 10 rad/s: 0.5 rad of the 1.2 rad way, still turning.
    assert arm_sim.get_joint_positions(["elbow"])[0] == pytest.approx(0.3)
    assert arm_sim.get_joint_velocities(ARM_JOINTS) == pytest.approx([0.0, 10.0])
    # Enabling the sensor takes a hidden basic step; the motors are held still through it.
    assert arm_sim.read_sensor("elbow_sensor").tolist() == pytest.approx([0.3])
    assert arm_sim.get_joint_positions(["elbow"])[0] == pytest.approx(0.3)
    assert arm_fake.device("elbow_motor").getTargetPosition() == 1.0  # its own target again
    arm_sim.reset()
    arm_fake.calls.clear()
    arm_sim.step()
    assert arm_fake.calls_named("setPosition") == []  # reset cleared the controls
    assert arm_sim.get_joint_positions(ARM_JOINTS).tolist() == [0.0, 0.0]


@pytest.mark.parametrize(
    ("controls", "message"),
    [({"elbow_motor": 2.5}, r"control 2\.5 for actuator 'elbow_motor' is outside its control range \[-2\.4, 2\.4\]"),
     ({"elbow_motor": math.nan}, "not finite")],
)
def test_arm_bad_controls_change_nothing(
    arm_fake: FakeWorld, arm_sim: WebotsBackend, controls: dict, message: str
) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        arm_sim.set_actuator_controls({"shoulder_motor": 0.5, **controls})
    with pytest.raises(UnknownNameError, match="elbow_motor, shoulder_motor"):
        arm_sim.set_actuator_controls({"gripper": 0.0})
    arm_sim.step()
    assert arm_fake.calls_named("setPosition") == []


def test_actuator_modes(webots_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = arm_world()
    install_fake_controller(monkeypatch, fake)
    modes = {"shoulder_motor": "velocity", "elbow_motor": "torque"}
    with WebotsBackend(ARM_WBT, launch=False, actuator_modes=modes) as backend:
        low, high = backend.actuator_ranges(ARM_MOTORS)
        assert low.tolist() == [-10.0, -5.0] and high.tolist() == [10.0, 5.0]  # maxVelocity, maxTorque
        backend.set_actuator_controls({"shoulder_motor": -2.0, "elbow_motor": 1.5})
        backend.step()
        assert fake.calls_named("setPosition") == [("setPosition", "shoulder_motor", math.inf)]
        assert fake.calls_named("setVelocity") == [("setVelocity", "shoulder_motor", -2.0)]
        assert fake.calls_named("setTorque") == [("setTorque", "elbow_motor", 1.5)]
        assert backend.get_joint_positions(["shoulder"])[0] == pytest.approx(-0.1)  # 50 ms at -2 rad/s
        fake.calls.clear()
        backend.set_joint_positions(["shoulder"], [0.4])
        backend.render("arm_camera")  # a hidden step: held still, then given their controls back
        assert backend.get_joint_positions(["shoulder"])[0] == pytest.approx(0.4)
        assert fake.calls_named("setVelocity") == [("setVelocity", "shoulder_motor", 0.0),
                                                   ("setVelocity", "shoulder_motor", -2.0)]
        assert fake.calls_named("setTorque") == [("setTorque", "elbow_motor", 0.0), ("setTorque", "elbow_motor", 1.5)]
    with pytest.raises(UnknownNameError, match="actuator mode"):
        WebotsBackend(ARM_WBT, launch=False, actuator_modes={"elbow_motor": "current"})


def test_actuator_modes_name_known_motors(webots_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_fake_controller(monkeypatch, arm_world())
    with pytest.raises(UnknownNameError, match="unknown motor 'gripper'; known: elbow_motor, shoulder_motor"):
        WebotsBackend(ARM_WBT, launch=False, actuator_modes={"gripper": "torque"})


def _rotation_vector(rotation: np.ndarray) -> np.ndarray:
    return 0.5 * np.array([rotation[2, 1] - rotation[1, 2], rotation[0, 2] - rotation[2, 0],
                           rotation[1, 0] - rotation[0, 1]])


@pytest.mark.parametrize("elbow_axis", [(0.0, 0.0, 1.0), (0.0, 0.6, 0.8)])
def test_arm_jacobian_matches_finite_differences(
    webots_home: Path, monkeypatch: pytest.MonkeyPatch, elbow_axis: tuple[float, float, float]
) -> None:
    """The geometric Jacobian against the double's kinematics, also with a tilted elbow (a 3-D arm)."""
    fake = arm_world()
    fake.joint("elbow").parameters.fields["axis"].value = list(elbow_axis)
    install_fake_controller(monkeypatch, fake)
    with WebotsBackend(ARM_WBT, launch=False) as backend:
        q = np.array([0.7, -1.1])
        backend.set_joint_positions(ARM_JOINTS, q)
        jacobian = backend.site_jacobian("wrist", ARM_JOINTS)
        eps = 1e-6
        for column in range(2):
            poses = []
            for sign in (1.0, -1.0):
                backend.set_joint_positions(ARM_JOINTS, q + sign * eps * np.eye(2)[column])
                poses.append(backend.get_site_pose("wrist"))
            linear = (poses[0].position - poses[1].position) / (2 * eps)
            angular = _rotation_vector(poses[0].rotation_matrix @ poses[1].rotation_matrix.T) / (2 * eps)
            assert jacobian[:, column] == pytest.approx(np.concatenate([linear, angular]), abs=1e-6)
        assert np.abs(jacobian[2]).max() > 0.02 or elbow_axis[1] == 0.0  # the tilted elbow lifts the wrist
        backend.set_joint_positions(ARM_JOINTS, q)
        assert backend.site_jacobian("wrist", ["elbow", "shoulder"]) == pytest.approx(jacobian[:, ::-1])


def test_arm_matches_the_mujoco_arm(arm_sim: WebotsBackend) -> None:
    """Both backends give the same wrist pose and Jacobian for the same joint angles (the worlds agree)."""
    with make_backend("mujoco", "arm2") as mujoco_sim:
        assert mujoco_sim.joint_names == arm_sim.joint_names
        assert mujoco_sim.actuator_names == arm_sim.actuator_names
        assert mujoco_sim.site_names == arm_sim.site_names
        for q in ([0.0, 0.0], [0.3, -0.7], [-2.0, 2.2]):
            mujoco_sim.set_joint_positions(ARM_JOINTS, q)
            arm_sim.set_joint_positions(ARM_JOINTS, q)
            mine, theirs = arm_sim.get_site_pose("wrist"), mujoco_sim.get_site_pose("wrist")
            assert mine.position == pytest.approx(theirs.position, abs=1e-9)
            assert abs(float(np.dot(mine.quaternion, theirs.quaternion))) == pytest.approx(1.0)
            assert arm_sim.site_jacobian("wrist", ARM_JOINTS) == pytest.approx(
                mujoco_sim.site_jacobian("wrist", ARM_JOINTS), abs=1e-9)
        for kind in ("joint_limits", "actuator_ranges"):
            names = ARM_JOINTS if kind == "joint_limits" else ARM_MOTORS
            for mine, theirs in zip(getattr(arm_sim, kind)(names), getattr(mujoco_sim, kind)(names)):
                assert mine.tolist() == theirs.tolist()


def test_arm_adapter_drives_the_webots_arm(arm_sim: WebotsBackend) -> None:
    from envs.robots.arm import Arm

    arm = Arm(ARM_JOINTS, ARM_MOTORS, "wrist")
    arm.reset_to(arm_sim, [0.4, 1.2])
    target = arm.end_effector_pose(arm_sim).position + np.array([0.05, -0.04, 0.0])
    for _ in range(8):
        arm.move_end_effector(arm_sim, target - arm.end_effector_pose(arm_sim).position)
        arm_sim.step()
    assert np.linalg.norm(target - arm.end_effector_pose(arm_sim).position) < 1e-3


def test_depth_arrives_as_float32_metres(arm_fake: FakeWorld, arm_sim: WebotsBackend) -> None:
    device = arm_fake.device("arm_camera_depth")

    def scene(fake: FakeWorld) -> np.ndarray:  # the depth encodes the shoulder angle, as a range image would
        return np.full((64, 64), 1.0 + fake.joint("shoulder").position, dtype=np.float32)

    depth = arm_sim.render_depth("arm_camera")
    assert depth.shape == (64, 64) and depth.dtype == np.float32
    np.testing.assert_array_equal(depth, device.depth)
    assert arm_fake.calls_named("enable") == [("enable", "arm_camera_depth", 2)]
    device.scene = scene
    arm_sim.set_joint_positions(["shoulder"], [0.5])
    assert arm_sim.render_depth("arm_camera")[0, 0] == pytest.approx(1.5)  # the hidden step shows the new pose
    assert arm_sim.time == 0.0
    assert arm_sim.get_joint_positions(["shoulder"])[0] == 0.5  # the motor (target 0) was held still
    arm_fake.calls.clear()
    arm_sim.set_actuator_controls({"shoulder_motor": 0.0})
    arm_sim.step()
    assert arm_sim.render_depth("arm_camera")[0, 0] == pytest.approx(1.0)
    assert len(arm_fake.calls_named("step")) == arm_sim.n_substeps  # no extra step after step()
    assert arm_sim.render("arm_camera").shape == (64, 64, 3)


def test_depth_is_resampled_like_the_image(webots_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_fake_controller(monkeypatch, arm_world())
    with WebotsBackend(ARM_WBT, launch=False, camera_sizes={"arm_camera": (32, 48)}) as backend:
        depth = backend.render_depth("arm_camera")
        assert depth.shape == (32, 48) and depth.dtype == np.float32
        assert backend.render("arm_camera").shape == (32, 48, 3)


def test_depth_errors(arm_fake: FakeWorld, arm_sim: WebotsBackend, webots_home, monkeypatch) -> None:
    with pytest.raises(UnknownNameError, match="camera"):
        arm_sim.render_depth("arm_camera_depth")  # the RangeFinder is addressed through its camera
    arm_sim.render_depth("arm_camera")
    arm_fake.device("arm_camera_depth").image = [1.0] * 10
    with pytest.raises(SimulatorError, match="returned 10 values from getRangeImage, expected 64x64x1"):
        arm_sim.render_depth("arm_camera")


def test_depth_twin_must_match_its_camera(webots_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = arm_world()
    fake.device("arm_camera_depth").fov = 0.8
    install_fake_controller(monkeypatch, fake)
    with pytest.raises(SimulatorError, match="'arm_camera_depth' must match camera 'arm_camera'"):
        WebotsBackend(ARM_WBT, launch=False)


def test_force_torque_is_refused_with_the_reason(arm_fake: FakeWorld, arm_sim: WebotsBackend) -> None:
    with pytest.raises(SimulatorError, match=r"no torque sensor.*read_sensor.*\['wrist_force'\]"):
        arm_sim.read_force_torque("wrist")
    with pytest.raises(SimulatorError, match="no torque sensor"):
        arm_sim.read_force_torque("wrist", substeps=True)
    arm_fake.device("wrist_force").true_values = [0.5, -0.25, 2.0]
    reading = arm_sim.read_sensor("wrist_force")  # the force-3d touch sensor: 3 contact-force components
    assert reading.dtype == np.float64 and reading.tolist() == [0.5, -0.25, 2.0]


@pytest.mark.parametrize(
    ("call", "kind"),
    [
        (lambda s: s.get_joint_positions(["wrist"]), "joint"),
        (lambda s: s.site_jacobian("wrist", ["knee"]), "joint"),
        (lambda s: s.actuator_ranges(["gripper"]), "actuator"),
        (lambda s: s.get_site_pose("tip"), "site"),
    ],
)
def test_arm_unknown_names(arm_sim: WebotsBackend, call: Any, kind: str) -> None:
    with pytest.raises(UnknownNameError, match=f"unknown {kind}"):
        call(arm_sim)


# -- launching Webots -----------------------------------------------------------------------------------


@pytest.fixture
def fake_launch(webots_home: Path, monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    (webots_home / "webots").write_text("#!/bin/sh\n", encoding="utf-8")
    monkeypatch.setattr(FakePopen, "launched", [])
    monkeypatch.setattr(process_module.subprocess, "Popen", FakePopen)
    signals: list[tuple[int, int]] = []
    monkeypatch.setattr(process_module.os, "killpg", lambda pid, sig: signals.append((pid, sig)))
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


@pytest.mark.webots
@pytest.mark.skipif(
    not os.environ.get("WEBOTS_HOME"), reason="WEBOTS_HOME is not set; install Webots R2023b+ to run"
)
def test_real_webots_arm_world() -> None:
    with make_backend("webots", "arm2", control_period=0.05, launch=True, timeout=120) as real:
        assert real.joint_names == ARM_JOINTS and real.actuator_names == ARM_MOTORS
        assert real.site_names == ("wrist",) and real.force_torque_names == ()
        assert real.get_site_pose("wrist").position == pytest.approx([0.35, 0.0, 0.1], abs=1e-6)
        real.set_actuator_controls({"shoulder_motor": 0.5, "elbow_motor": -0.5})
        for _ in range(40):
            real.step()
        assert real.get_joint_positions(ARM_JOINTS) == pytest.approx([0.5, -0.5], abs=0.01)
        with make_backend("mujoco", "arm2") as reference:
            reference.set_joint_positions(ARM_JOINTS, real.get_joint_positions(ARM_JOINTS))
            assert real.get_site_pose("wrist").position == pytest.approx(
                reference.get_site_pose("wrist").position, abs=1e-3)
            assert real.site_jacobian("wrist", ARM_JOINTS) == pytest.approx(
                reference.site_jacobian("wrist", ARM_JOINTS), abs=1e-3)
            depth, expected = real.render_depth("arm_camera"), reference.render_depth("arm_camera")
        assert depth.shape == (64, 64) and depth.dtype == np.float32
        assert np.median(np.abs(depth - expected)) < 0.01  # same scene, same metric depth
        real.reset()
        assert real.get_joint_positions(ARM_JOINTS) == pytest.approx([0.0, 0.0], abs=1e-6)
