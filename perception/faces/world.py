"""A furnished room with textured humans, generated as MJCF and loaded through :class:`MujocoBackend`.

Reusable pieces for any task that needs people with identities (the face dataset here, the drone
face-recognition environment later):

* :func:`head_mesh_xml` — an ellipsoidal head mesh with equirectangular texture coordinates matching
  :func:`perception.faces.identity.paint_head_texture`;
* :func:`human_xml` — one standing person (legs, torso, arms, neck, textured head) as a static root body
  ``human_<name>`` with a child body ``head_<name>`` whose frame is the head ellipsoid's centre;
* :func:`furniture_xml` — tables, shelves, sofas, chairs and plants as static root bodies ``furniture_<k>``;
* :func:`build_face_room` — writes textures + one MJCF file into a folder and returns its path;
* :class:`FaceRoomBackend` — a :class:`MujocoBackend` that can also aim the viewer camera, change the
  lighting, project points and test line-of-sight, which labelling needs.

Entities (body names): ``human_<identity>``, ``head_<identity>`` (child, read-only pose), ``furniture_<k>``,
``viewer`` (carries camera ``face_cam``, looking along its +x). Humans not in a scene are parked under the
floor (z = -30 m), where the floor hides them from any camera in the room.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from envs.sim.base import Pose
from envs.sim.mujoco import MujocoBackend, mujoco
from perception.faces.identity import FaceIdentity, write_textures

PARK_Z = -30.0
CAMERA = "face_cam"
VIEWER = "viewer"
HIDDEN_GROUP = 4  #: geom group no camera draws (MuJoCo shows groups 0-2 by default)


def _fmt(values: np.ndarray) -> str:
    return " ".join(f"{v:.5g}" for v in np.asarray(values).ravel())


def _rgba(colour: tuple[float, float, float] | np.ndarray, alpha: float = 1.0) -> str:
    return _fmt(np.r_[np.asarray(colour, float), alpha])


def head_mesh_xml(name: str, radii: tuple[float, float, float], n_az: int = 32, n_el: int = 16) -> str:
    """An ellipsoid mesh asset ``name`` with texture coordinates (u: azimuth, front at 0.5; v: 0 at the top)."""
    rx, ry, rz = radii
    verts, uv, faces = [], [], []
    for j in range(n_el + 1):
        el = math.pi / 2 - math.pi * j / n_el
        for i in range(n_az + 1):
            az = -math.pi + 2 * math.pi * i / n_az
            verts.append((rx * math.cos(el) * math.cos(az), ry * math.cos(el) * math.sin(az), rz * math.sin(el)))
            uv.append((i / n_az, j / n_el))
    row = n_az + 1
    for j in range(n_el):
        for i in range(n_az):
            a, b, c, d = j * row + i, j * row + i + 1, (j + 1) * row + i, (j + 1) * row + i + 1
            if j > 0:  # skip the degenerate triangles at the poles
                faces.append((a, c, b))
            if j < n_el - 1:
                faces.append((b, c, d))
    return (f'<mesh name="{name}" vertex="{_fmt(np.array(verts))}" face="{_fmt(np.array(faces))}" '
            f'texcoord="{_fmt(np.array(uv))}"/>')


def human_xml(face: FaceIdentity, texture_file: str | Path, pos: tuple[float, float, float] = (0, 0, PARK_Z),
              yaw: float = 0.0) -> tuple[str, str]:
    """MJCF ``(asset, body)`` snippets for one standing person wearing ``face``'s head texture.

    The person faces +x of its body frame; the feet are at the body origin. All geoms are visual only
    (``contype=0``): people are posed, not simulated.
    """
    n = face.name
    H = face.height
    rz = face.head_radii[2]
    head_z = H - rz
    shoulder = 0.80 * H
    asset = (
        f'<texture name="tex_{n}" type="2d" file="{Path(texture_file).resolve()}"/>'
        f'<material name="face_{n}" texture="tex_{n}" specular="0.1" shininess="0.1"/>'
        f'<material name="shirt_{n}" rgba="{_rgba(face.shirt)}"/>'
        f"{head_mesh_xml(f'head_{n}', face.head_radii)}"
    )
    q = f"{math.cos(yaw / 2):.6g} 0 0 {math.sin(yaw / 2):.6g}"
    legs = "".join(
        f'<geom type="capsule" fromto="0 {s * 0.09:.3f} 0.06 0 {s * 0.1:.3f} {0.47 * H:.3f}" size="0.065" '
        f'material="pants"/>' for s in (-1, 1)
    )
    # Shoes point forward: with the face, the cue to which way a person faces that survives a small frame.
    legs += "".join(
        f'<geom type="box" pos="0.07 {s * 0.095:.3f} 0.035" size="0.12 0.05 0.035" rgba="0.12 0.1 0.09 1"/>'
        for s in (-1, 1)
    )
    arms = "".join(
        f'<geom type="capsule" fromto="0 {s * 0.22:.3f} {shoulder:.3f} 0.02 {s * 0.26:.3f} {0.47 * H:.3f}" '
        f'size="0.045" material="shirt_{n}"/>' for s in (-1, 1)
    )
    body = (
        f'<body name="human_{n}" pos="{_fmt(np.array(pos))}" quat="{q}">'
        f"{legs}{arms}"
        f'<geom type="box" pos="0 0 {0.655 * H:.3f}" size="0.11 0.19 {0.16 * H:.3f}" material="shirt_{n}"/>'
        f'<geom type="cylinder" pos="0 0 {(shoulder + head_z - rz) / 2 + 0.01:.3f}" '
        f'size="0.05 {max(0.02, (head_z - rz - shoulder) / 2 + 0.03):.3f}" rgba="{_rgba(face.skin)}"/>'
        f'<body name="head_{n}" pos="0 0 {head_z:.4f}">'
        f'<geom name="headgeom_{n}" type="mesh" mesh="head_{n}" material="face_{n}"/>'
        f"</body></body>"
    )
    return asset, body


_FURNITURE_KINDS = ("table", "shelf", "sofa", "chair", "plant", "cabinet")


def furniture_xml(k: int, rng: np.random.Generator) -> str:
    """One piece of furniture as a static root body ``furniture_<k>`` (parked; a scene places it)."""
    kind = _FURNITURE_KINDS[k % len(_FURNITURE_KINDS)]
    colour = rng.uniform(0.2, 0.85, 3)
    mat = f'rgba="{_rgba(colour)}"'
    if kind == "table":
        w, d, h = rng.uniform(0.6, 1.2), rng.uniform(0.5, 0.9), rng.uniform(0.7, 0.8)
        geoms = f'<geom type="box" pos="0 0 {h:.3f}" size="{w:.3f} {d:.3f} 0.025" {mat}/>' + "".join(
            f'<geom type="cylinder" pos="{sx * (w - 0.05):.3f} {sy * (d - 0.05):.3f} {h / 2:.3f}" '
            f'size="0.03 {h / 2:.3f}" {mat}/>' for sx in (-1, 1) for sy in (-1, 1))
    elif kind == "shelf":
        w, d, h = rng.uniform(0.4, 1.0), rng.uniform(0.2, 0.35), rng.uniform(1.4, 2.2)
        geoms = f'<geom type="box" pos="0 0 {h / 2:.3f}" size="{d:.3f} {w:.3f} {h / 2:.3f}" {mat}/>' + "".join(
            f'<geom type="box" pos="{d + 0.01:.3f} 0 {z:.3f}" size="0.01 {w * 0.9:.3f} 0.12" '
            f'rgba="{_rgba(rng.uniform(0.1, 0.9, 3))}"/>' for z in np.linspace(0.3, h - 0.2, 4))
    elif kind == "sofa":
        w = rng.uniform(0.8, 1.3)
        geoms = (f'<geom type="box" pos="0 0 0.22" size="0.45 {w:.3f} 0.22" {mat}/>'
                 f'<geom type="box" pos="-0.38 0 0.6" size="0.1 {w:.3f} 0.25" {mat}/>')
    elif kind == "chair":
        geoms = (f'<geom type="box" pos="0 0 0.45" size="0.22 0.22 0.03" {mat}/>'
                 f'<geom type="box" pos="-0.2 0 0.75" size="0.02 0.22 0.28" {mat}/>'
                 f'<geom type="cylinder" pos="0 0 0.22" size="0.04 0.22" {mat}/>')
    elif kind == "plant":
        h = rng.uniform(0.8, 1.8)
        geoms = (f'<geom type="cylinder" pos="0 0 0.2" size="0.18 0.2" rgba="0.55 0.3 0.2 1"/>'
                 f'<geom type="cylinder" pos="0 0 {h / 2:.3f}" size="0.02 {h / 2:.3f}" rgba="0.3 0.2 0.1 1"/>'
                 f'<geom type="ellipsoid" pos="0 0 {h:.3f}" size="0.35 0.35 0.45" '
                 f'rgba="{_rgba([0.1, rng.uniform(0.35, 0.6), 0.15])}"/>')
    else:
        w, h = rng.uniform(0.4, 1.0), rng.uniform(0.8, 1.2)
        geoms = f'<geom type="box" pos="0 0 {h / 2:.3f}" size="0.3 {w:.3f} {h / 2:.3f}" {mat}/>'
    return f'<body name="furniture_{k}" pos="0 0 {PARK_Z}">{geoms}</body>'


def room_settings_xml(offwidth: int, offheight: int) -> str:
    """The face room's compiler, timestep, lighting and clipping settings (shared by every face-room world).

    Args:
        offwidth: offscreen buffer width, at least the widest camera.
        offheight: offscreen buffer height, at least the tallest camera.
    """
    return f"""  <compiler angle="radian"/>
  <option timestep="0.01"/>
  <visual>
    <global offwidth="{offwidth}" offheight="{offheight}"/>
    <headlight ambient="0.45 0.45 0.45" diffuse="0.5 0.5 0.5" specular="0 0 0"/>
    <!-- znear/zfar are fractions of the extent: 0.05 m to 80 m, so a face 0.3 m away is not clipped. -->
    <map znear="0.005" zfar="8"/>
  </visual>
  <statistic extent="10" center="0 0 1"/>
"""


def build_face_room(identities: list[FaceIdentity], folder: str | Path, *, n_furniture: int = 12,
                    room_size: float = 24.0, camera_size: tuple[int, int] = (240, 320), fovy: float = 50.0,
                    seed: int = 0) -> Path:
    """Write the face room (textures + ``face_room.xml``) into ``folder`` and return the MJCF path.

    Args:
        identities: the people in the world (all parked until a scene places them).
        folder: output folder; textures already there are reused.
        n_furniture: number of furniture bodies (parked until placed).
        room_size: side of the square room in metres (walls at +-room_size/2).
        camera_size: ``(height, width)`` of ``face_cam``.
        fovy: vertical field of view of ``face_cam`` in degrees.
        seed: furniture shapes and colours.
    """
    folder = Path(folder)
    textures = write_textures(identities, folder / "textures")
    rng = np.random.default_rng(seed)
    assets, bodies = [], []
    for face in identities:
        a, b = human_xml(face, textures[face.name])
        assets.append(a)
        bodies.append(b)
    furniture = [furniture_xml(k, rng) for k in range(n_furniture)]
    half = room_size / 2
    height, width = camera_size
    walls = "".join(
        f'<geom type="box" pos="{x:.2f} {y:.2f} 1.5" size="{sx:.2f} {sy:.2f} 1.5" material="wall"/>'
        for x, y, sx, sy in ((0, half, half, 0.1), (0, -half, half, 0.1), (half, 0, 0.1, half), (-half, 0, 0.1, half))
    )
    lights = "".join(
        f'<light name="ceiling_{i}" pos="{x:.1f} {y:.1f} 3.2" dir="0 0 -1" diffuse="0.4 0.4 0.4" '
        f'attenuation="1 0 0" castshadow="false"/>'
        # One ceiling light: each extra light costs ~5 ms per 320x240 frame in software rendering.
        for i, (x, y) in enumerate(((0.0, 0.0),))
    )
    xml = f"""<mujoco model="vantage_face_room">
{room_settings_xml(max(width, 320), max(height, 240))}  <asset>
    <texture name="floor_tex" type="2d" builtin="checker" rgb1="0.55 0.5 0.45" rgb2="0.45 0.42 0.38" width="256"
             height="256"/>
    <material name="floor" texture="floor_tex" texrepeat="{room_size / 2:.0f} {room_size / 2:.0f}"/>
    <texture name="wall_tex" type="2d" builtin="flat" rgb1="0.8 0.78 0.72" width="64" height="64"
             mark="random" random="0.05" markrgb="0.7 0.68 0.6"/>
    <material name="wall" texture="wall_tex" texrepeat="8 2"/>
    <material name="pants" rgba="0.15 0.15 0.25 1"/>
    {"".join(assets)}
  </asset>
  <default><geom contype="0" conaffinity="0"/></default>
  <worldbody>
    {lights}
    <geom name="floor" type="plane" size="{half:.2f} {half:.2f} 3" material="floor"/>
    {walls}
    <body name="{VIEWER}" pos="0 0 1.5">
      <camera name="{CAMERA}" xyaxes="0 -1 0 0 0 1" fovy="{fovy}" resolution="{width} {height}"/>
    </body>
    {"".join(bodies)}
    {"".join(furniture)}
  </worldbody>
</mujoco>
"""
    path = folder / "face_room.xml"
    path.write_text(xml)
    return path


def look_at_quaternion(eye: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Quaternion ``(w, x, y, z)`` turning +x towards ``target - eye`` with no roll."""
    d = np.asarray(target, float) - np.asarray(eye, float)
    d = d / max(np.linalg.norm(d), 1e-9)
    yaw = math.atan2(d[1], d[0])
    pitch = -math.asin(float(np.clip(d[2], -1, 1)))
    qy = np.array([math.cos(yaw / 2), 0, 0, math.sin(yaw / 2)])
    qp = np.array([math.cos(pitch / 2), 0, math.sin(pitch / 2), 0])
    w1, x1, y1, z1 = qy
    w2, x2, y2, z2 = qp
    return np.array([w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2, w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
                     w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2, w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2])


class FaceRoomBackend(MujocoBackend):
    """:class:`MujocoBackend` with parked bodies hidden, plus camera aiming and line-of-sight for labelling."""

    def __init__(self, world: str | Path, **kwargs) -> None:
        super().__init__(world, hide_below=PARK_Z / 2, **kwargs)

    def look_at(self, eye: np.ndarray, target: np.ndarray, body: str = VIEWER) -> None:
        """Move the camera-carrying ``body`` to ``eye`` and point its +x at ``target``."""
        self.set_pose(body, Pose.look_at(eye, target))

    def park(self, body: str) -> None:
        """Hide a static root body under the floor."""
        self.set_pose(body, Pose(np.array([0.0, 0.0, PARK_Z])))

    def line_of_sight(self, start: np.ndarray, end: np.ndarray, target_body: str) -> bool:
        """Whether the first thing a ray from ``start`` hits towards ``end`` belongs to ``target_body``."""
        fraction, body = self.ray_cast(start, end)
        return body is None or body == target_body or fraction >= 0.98

    def project(self, points: np.ndarray, camera: str = CAMERA) -> tuple[np.ndarray, np.ndarray]:
        return super().project(points, camera)

    def camera_frame(self, camera: str = CAMERA) -> tuple[np.ndarray, np.ndarray]:
        return super().camera_frame(camera)
