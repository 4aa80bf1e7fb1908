"""The face room: one builder for the furnished room with procedurally faced people, used two ways.

Faces cannot be downloaded, so people wear procedurally generated identities
(:mod:`envs.worlds.identities`), and their head textures have to be painted before a simulator can load
the world. The room is therefore *generated*, deterministically, from seeds:

* :func:`build_face_recognition_world` writes the drone face-recognition task's world, three files:

  - ``mujoco/<name>.xml`` — room, furniture, people and the drone, as MJCF;
  - ``webots/<name>.wbt`` — the same bodies converted geom by geom from the compiled MuJoCo model (boxes,
    cylinders, capsules, spheres, ellipsoids, the textured head meshes), so both simulators show the same
    scene under the same entity names;
  - ``<name>.layout.json`` beside each world — what a task needs to know about the world without asking a
    simulator (:class:`FaceWorldLayout`: people, furniture footprints, room size, camera names). Collision
    checks use it, so they behave the same on both backends.

* :func:`build_face_room` writes the room the perception datasets are rendered in (a ``viewer`` body
  carrying ``face_cam`` instead of the drone; :mod:`envs.worlds.face_scenes` samples scenes in it).

Both go through :func:`room_mjcf`, so walls, floor, light and render settings are written once.
``python -m envs.worlds.face_room`` regenerates the shipped task world (``worlds/*/face_recognition.*``,
textures in ``assets/textures/faces``); the same arguments always give byte-identical files.

Entities: ``drone`` (carries ``nav_camera``, ``rec_camera`` and ``chase_camera``, all looking along its +x),
``human_<identity>`` (feet at the body origin, facing +x), ``furniture_<k>``, and in the dataset room
``viewer`` (carries ``face_cam``). People and furniture start parked under the floor (z = -30 m); a task
places the ones an episode uses, and :func:`open_face_world` hides the parked ones from every camera.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from common.io import atomic_write_text
from envs.errors import InvalidArgumentError, UnknownNameError, WorldFileError
from envs.sim import BACKENDS, make_backend, world_path
from envs.sim.base import SimBackend
from envs.worlds.identities import FaceIdentity, face_centre, generate_identities, write_textures
from envs.worlds.people import HIDE_BELOW, PARK_Z, furniture_xml, human_xml

WORLD_NAME = "face_recognition"
NAV_CAMERA, REC_CAMERA, CHASE_CAMERA = "nav_camera", "rec_camera", "chase_camera"
DRONE = "drone"
#: Defaults of the shipped world. The recognition camera matches the renders the face models were trained
#: on (320 x 240, 50 degree vertical field of view); the navigation camera is the small CPU-training frame.
NAV_SIZE: tuple[int, int] = (96, 128)
REC_SIZE: tuple[int, int] = (240, 320)
FOVY_DEG = 50.0
ROOM_SIZE = 24.0
WALL_HEIGHT = 3.0
CAMERA_X = 0.15  # cameras sit at the drone's nose so its own frame never shows in them
#: The dataset room's camera body and camera.
VIEWER, FACE_CAM = "viewer", "face_cam"


@dataclass(frozen=True)
class FaceWorldLayout:
    """What a task knows about a face-recognition world (read from ``<world>.layout.json``).

    Attributes:
        room_half_size: inner half-width of the square room (m); walls stand at +-this.
        wall_height: height of the walls (m).
        people: ``{identity: {"entity", "height", "face_offset", "radius"}}``; ``face_offset`` is the face
            centre in the person's body frame (m), ``radius`` the person's collision radius.
        furniture: ``{entity: {"half_extents": [hx, hy], "height": h}}`` footprints in the body frame.
        drone_radius: collision radius of the drone (m).
        cameras: ``{"nav": name, "rec": name, "chase": name}``.
        identity_seed: seed the identities were generated from.
    """

    room_half_size: float
    wall_height: float
    people: dict[str, dict[str, Any]]
    furniture: dict[str, dict[str, Any]]
    drone_radius: float
    cameras: dict[str, str]
    identity_seed: int

    @classmethod
    def load(cls, world: str | Path) -> FaceWorldLayout:
        """The layout beside ``world`` (``<stem>.layout.json``); raises if it is missing or malformed."""
        path = layout_path(world)
        if not path.is_file():
            raise WorldFileError(f"face world {world} has no layout file {path}; regenerate it with "
                                 "`python -m envs.worlds.face_room`")
        try:
            payload = json.loads(path.read_text())
            return cls(**payload)
        except (json.JSONDecodeError, TypeError) as exc:
            raise WorldFileError(f"layout file {path} is malformed: {exc}") from exc

    def collides(self, position: np.ndarray, radius: float, placed: Iterable[tuple[str, np.ndarray]]) -> bool:
        """Whether a sphere of ``radius`` at ``(x, y, z)`` overlaps a wall, the floor, the space above the
        walls, or one of the ``placed`` people and furniture (``(entity, [x, y, yaw])``).

        People are vertical cylinders of their ``radius`` up to their height, furniture its footprint box up
        to its height, each grown by ``radius``.
        """
        x, y, z = (float(v) for v in position[:3])
        half = self.room_half_size
        if abs(x) > half - radius or abs(y) > half - radius or z < radius or z > self.wall_height:
            return True
        for entity, (ox, oy, oyaw) in placed:
            if entity.startswith("human_"):
                person = self.people[entity.removeprefix("human_")]
                if math.hypot(x - ox, y - oy) < person["radius"] + radius and z < person["height"] + radius:
                    return True
                continue
            item = self.furniture[entity]
            c, s = math.cos(oyaw), math.sin(oyaw)
            lx, ly = c * (x - ox) + s * (y - oy), -s * (x - ox) + c * (y - oy)
            hx, hy = item["half_extents"]
            if abs(lx) < hx + radius and abs(ly) < hy + radius and z < item["height"] + radius:
                return True
        return False


def layout_path(world: str | Path) -> Path:
    """``<folder>/<stem>.layout.json`` for a world file."""
    world = Path(world)
    return world.with_name(f"{world.stem}.layout.json")


def resolve_world(world: str | Path, backend: str) -> Path:
    """The world file of ``world`` (a name or a path) for ``backend``, after checking its layout loads."""
    if backend not in BACKENDS:
        raise UnknownNameError("backend", backend, BACKENDS)
    path = Path(world)
    if path.suffix != BACKENDS[backend]:
        path = world_path(str(world), backend)
    if not path.is_file():
        raise WorldFileError(f"{backend} world file not found: {path}")
    FaceWorldLayout.load(path)
    return path


def open_face_world(backend: str, world: str | Path = WORLD_NAME, **kwargs: Any
                    ) -> tuple[SimBackend, FaceWorldLayout]:
    """Load a face-recognition world on ``backend``, with its layout.

    On MuJoCo, parked people and furniture are hidden from every camera (``hide_below``): software
    rasterisation would otherwise still pay for them under the floor.
    """
    path = resolve_world(world, backend)
    if backend == "mujoco":
        kwargs = {"hide_below": HIDE_BELOW, **kwargs}
    return make_backend(backend, path, **kwargs), FaceWorldLayout.load(path)


# -- generation ----------------------------------------------------------------------------------------
def _fmt(values: Any) -> str:
    return " ".join(f"{float(v):.6g}" for v in np.asarray(values, dtype=float).ravel())


def room_settings_xml(offwidth: int, offheight: int) -> str:
    """The face room's compiler, timestep, lighting and clipping settings.

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


def _walls(half: float, outside: bool) -> list[tuple[float, float, float, float]]:
    """``(x, y, half_x, half_y)`` of the four 0.2 m thick walls of a room of half-width ``half``."""
    if outside:  # inner faces at +-half: the room is exactly 2 * half across inside
        return [(0, half + 0.1, half + 0.2, 0.1), (0, -half - 0.1, half + 0.2, 0.1),
                (half + 0.1, 0, 0.1, half + 0.2), (-half - 0.1, 0, 0.1, half + 0.2)]
    return [(0, half, half, 0.1), (0, -half, half, 0.1), (half, 0, 0.1, half), (-half, 0, 0.1, half)]


def room_mjcf(*, model: str, header: str, room_size: float, walls_outside: bool, textured_walls: bool,
              offscreen: tuple[int, int], assets: str, bodies: str) -> str:
    """The MJCF text of a face room: settings, floor, walls, one ceiling light, then ``bodies``.

    Args:
        model: MJCF model name.
        header: an XML comment (or nothing) placed after the ``<mujoco>`` line.
        room_size: side of the square room (m).
        walls_outside: walls' inner faces at ``+-room_size / 2`` (the task world); otherwise the walls are
            centred there (the dataset room, kept as it was so its datasets repeat).
        textured_walls: faintly speckled walls (the dataset room) instead of plain ones.
        offscreen: ``(width, height)`` of the offscreen buffer.
        assets: extra ``<asset>`` children (people's textures and meshes, materials).
        bodies: ``<worldbody>`` children after floor, walls and light (cameras, people, furniture).
    """
    half = room_size / 2
    floor = half + 0.2 if walls_outside else half
    if textured_walls:
        wall_material = ('    <texture name="wall_tex" type="2d" builtin="flat" rgb1="0.8 0.78 0.72" width="64" '
                         'height="64"\n             mark="random" random="0.05" markrgb="0.7 0.68 0.6"/>\n'
                         '    <material name="wall" texture="wall_tex" texrepeat="8 2"/>')
    else:
        wall_material = '    <material name="wall" rgba="0.8 0.78 0.72 1"/>'

    walls = "".join(
        f'<geom name="wall_{i}" type="box" pos="{x:.2f} {y:.2f} {WALL_HEIGHT / 2}" '
        f'size="{sx:.2f} {sy:.2f} {WALL_HEIGHT / 2}" material="wall"/>'
        for i, (x, y, sx, sy) in enumerate(_walls(half, walls_outside))
    )
    return f"""<mujoco model="{model}">
{header}{room_settings_xml(*offscreen)}  <asset>
    <texture name="floor_tex" type="2d" builtin="checker" rgb1="0.55 0.5 0.45" rgb2="0.45 0.42 0.38" width="256"
             height="256"/>
    <material name="floor" texture="floor_tex" texrepeat="{half:.0f} {half:.0f}"/>
{wall_material}
    <material name="pants" rgba="0.15 0.15 0.25 1"/>
    {assets}
  </asset>
  <default><geom contype="0" conaffinity="0"/></default>
  <worldbody>
    <!-- One ceiling light: each extra light costs ~5 ms per 320x240 frame in software rendering. -->
    <light name="ceiling_0" pos="0 0 3.2" dir="0 0 -1" diffuse="0.4 0.4 0.4" attenuation="1 0 0"
           castshadow="false"/>
    <geom name="floor" type="plane" size="{floor:.2f} {floor:.2f} 3" material="floor"/>
    {walls}
    {bodies}
  </worldbody>
</mujoco>
"""


def _people_xml(identities: list[FaceIdentity], textures: Mapping[str, Path]) -> tuple[str, str]:
    assets, bodies = [], []
    for face in identities:
        a, b = human_xml(face, textures[face.name])
        assets.append(a)
        bodies.append(b)
    return "".join(assets), "".join(bodies)


def build_face_room(identities: list[FaceIdentity], folder: str | Path, *, n_furniture: int = 12,
                    room_size: float = ROOM_SIZE, camera_size: tuple[int, int] = (240, 320),
                    fovy: float = FOVY_DEG, seed: int = 0) -> Path:
    """Write the dataset room (textures + ``face_room.xml``) into ``folder`` and return the MJCF path.

    Args:
        identities: the people in the world (all parked until a scene places them).
        folder: output folder; textures already there are reused.
        n_furniture: number of furniture bodies (parked until placed).
        room_size: side of the square room in metres.
        camera_size: ``(height, width)`` of ``face_cam``.
        fovy: vertical field of view of ``face_cam`` in degrees.
        seed: furniture shapes and colours.
    """
    folder = Path(folder)
    textures = write_textures(identities, folder / "textures")
    rng = np.random.default_rng(seed)
    assets, people = _people_xml(identities, textures)
    furniture = "".join(furniture_xml(k, rng) for k in range(n_furniture))
    height, width = camera_size
    viewer = (f'<body name="{VIEWER}" pos="0 0 1.5">\n      <camera name="{FACE_CAM}" xyaxes="0 -1 0 0 0 1" '
              f'fovy="{fovy}" resolution="{width} {height}"/>\n    </body>')
    xml = room_mjcf(model="vantage_face_room", header="", room_size=room_size, walls_outside=False,
                    textured_walls=True, offscreen=(max(width, 320), max(height, 240)), assets=assets,
                    bodies=f"{viewer}\n    {people}\n    {furniture}")
    return atomic_write_text(folder / "face_room.xml", xml)


def _drone_world_mjcf(people_xml: tuple[str, str], furniture: str, textures_rel: str, nav: tuple[int, int],
                      rec: tuple[int, int], fovy: float, room_size: float) -> str:
    assets, people = people_xml
    cam = 'xyaxes="0 -1 0 0 0 1"'
    pitch = 0.35  # the chase view looks down at the drone from behind
    chase = f'xyaxes="0 -1 0 {math.sin(pitch):.6f} 0 {math.cos(pitch):.6f}"'
    header = f"""  <!-- Generated by `python -m envs.worlds.face_room` (envs/worlds/face_room.py); do not edit by hand.
       Drone active face recognition. Entity and camera names match worlds/webots/{WORLD_NAME}.wbt.
       Entities: drone (teleported by the task; carries nav_camera {nav[1]}x{nav[0]}, rec_camera {rec[1]}x{rec[0]},
       chase_camera), human_<identity> (face textures in {textures_rel}), furniture_<k>. People and furniture
       are parked at z = {PARK_Z:g} m until a task places them. Geoms are visual only: the task checks
       collisions against the layout file, identically on every backend. -->
"""
    drone = f"""<body name="{DRONE}" pos="0 0 1.5">
      <geom type="box" size="0.1 0.06 0.03" material="drone_body"/>
      <geom type="cylinder" pos="0.1 0.1 0.03" size="0.07 0.005" material="rotor"/>
      <geom type="cylinder" pos="0.1 -0.1 0.03" size="0.07 0.005" material="rotor"/>
      <geom type="cylinder" pos="-0.1 0.1 0.03" size="0.07 0.005" material="rotor"/>
      <geom type="cylinder" pos="-0.1 -0.1 0.03" size="0.07 0.005" material="rotor"/>
      <camera name="{NAV_CAMERA}" pos="{CAMERA_X} 0 0" {cam} fovy="{fovy:g}" resolution="{nav[1]} {nav[0]}"/>
      <camera name="{REC_CAMERA}" pos="{CAMERA_X} 0 0" {cam} fovy="{fovy:g}" resolution="{rec[1]} {rec[0]}"/>
      <camera name="{CHASE_CAMERA}" pos="-1.6 0 0.6" {chase} fovy="60" resolution="320 240"/>
    </body>"""
    materials = ('<material name="drone_body" rgba="0.2 0.2 0.22 1"/>\n    '
                 '<material name="rotor" rgba="0.6 0.6 0.65 1"/>\n    ')
    return room_mjcf(model=f"vantage_{WORLD_NAME}", header=header, room_size=room_size, walls_outside=True,
                     textured_walls=False, offscreen=(max(rec[1], 480), max(rec[0], 240)),
                     assets=materials + assets, bodies=f"{drone}\n    {people}\n    {furniture}")


def _footprint(model: Any, body_id: int) -> tuple[list[float], float]:
    """Axis-aligned half extents (x, y) in the body frame and the top height of a body's geoms."""
    import mujoco

    lo, hi = np.full(3, np.inf), np.full(3, -np.inf)
    for g in np.flatnonzero(model.geom_bodyid == body_id):
        size, pos, kind = model.geom_size[g], model.geom_pos[g], int(model.geom_type[g])
        if kind == mujoco.mjtGeom.mjGEOM_BOX or kind == mujoco.mjtGeom.mjGEOM_ELLIPSOID:
            half = size.copy()
        elif kind == mujoco.mjtGeom.mjGEOM_CYLINDER:
            half = np.array([size[0], size[0], size[1]])
        else:  # a rotated or unusual shape: its bounding sphere is a safe over-estimate
            half = np.full(3, model.geom_rbound[g])
        lo, hi = np.minimum(lo, pos - half), np.maximum(hi, pos + half)
    return [float(max(abs(lo[0]), abs(hi[0]))), float(max(abs(lo[1]), abs(hi[1])))], float(hi[2])


def _quat_to_axis_angle(q: np.ndarray) -> str:
    q = np.asarray(q, float) / np.linalg.norm(q)
    if q[0] < 0:
        q = -q
    s = float(np.linalg.norm(q[1:]))
    if s < 1e-9:
        return "0 0 1 0"
    return f"{_fmt(q[1:] / s)} {2 * math.atan2(s, q[0]):.6g}"


def _wbt_appearance(rgba: np.ndarray, texture_url: str | None = None) -> str:
    tex = f' baseColorMap ImageTexture {{ url [ "{texture_url}" ] }}' if texture_url else ""
    colour = "1 1 1" if texture_url else _fmt(rgba[:3])
    return f"PBRAppearance {{ baseColor {colour}{tex} roughness 1 metalness 0 }}"


def _wbt_geom(model: Any, g: int, texture_url: str | None) -> str:
    """One MuJoCo geom as a Webots ``Pose { Shape }`` in its body's frame."""
    import mujoco

    kind, size = int(model.geom_type[g]), model.geom_size[g]
    mat = int(model.geom_matid[g])
    rgba = model.mat_rgba[mat] if mat >= 0 else model.geom_rgba[g]
    appearance = _wbt_appearance(rgba, texture_url if kind == mujoco.mjtGeom.mjGEOM_MESH else None)
    if kind == mujoco.mjtGeom.mjGEOM_BOX:
        shape = f"Shape {{ appearance {appearance} geometry Box {{ size {_fmt(2 * size)} }} }}"
    elif kind == mujoco.mjtGeom.mjGEOM_CYLINDER:  # Webots cylinders and capsules lie along z, like MuJoCo's
        shape = (f"Shape {{ appearance {appearance} geometry Cylinder {{ radius {size[0]:.6g} "
                 f"height {2 * size[1]:.6g} }} }}")
    elif kind == mujoco.mjtGeom.mjGEOM_CAPSULE:
        shape = (f"Shape {{ appearance {appearance} geometry Capsule {{ radius {size[0]:.6g} "
                 f"height {2 * size[1]:.6g} }} }}")
    elif kind == mujoco.mjtGeom.mjGEOM_SPHERE:
        shape = f"Shape {{ appearance {appearance} geometry Sphere {{ radius {size[0]:.6g} }} }}"
    elif kind == mujoco.mjtGeom.mjGEOM_ELLIPSOID:
        shape = (f"Transform {{ scale {_fmt(size)} children [ Shape {{ appearance {appearance} "
                 f"geometry Sphere {{ radius 1 subdivision 3 }} }} ] }}")
    elif kind == mujoco.mjtGeom.mjGEOM_MESH:
        mesh = int(model.geom_dataid[g])
        v0, nv = int(model.mesh_vertadr[mesh]), int(model.mesh_vertnum[mesh])
        f0, nf = int(model.mesh_faceadr[mesh]), int(model.mesh_facenum[mesh])
        t0, nt = int(model.mesh_texcoordadr[mesh]), int(model.mesh_texcoordnum[mesh])
        faces = model.mesh_face[f0:f0 + nf]
        uv = model.mesh_texcoord[t0:t0 + nt].copy()
        uv[:, 1] = 1.0 - uv[:, 1]  # MuJoCo's v runs down the image, VRML's up
        face_uv = model.mesh_facetexcoord[f0:f0 + nf]
        index = " ".join(f"{a} {b} {c} -1" for a, b, c in faces)
        tindex = " ".join(f"{a} {b} {c} -1" for a, b, c in face_uv)
        shape = (f"Shape {{ appearance {appearance} geometry IndexedFaceSet {{ "
                 f"coord Coordinate {{ point [ {_fmt(model.mesh_vert[v0:v0 + nv])} ] }} "
                 f"texCoord TextureCoordinate {{ point [ {_fmt(uv)} ] }} "
                 f"coordIndex [ {index} ] texCoordIndex [ {tindex} ] creaseAngle 1.2 }} }}")
    else:
        raise WorldFileError(f"geom type {kind} of geom {g} has no Webots conversion")
    return (f"Pose {{ translation {_fmt(model.geom_pos[g])} rotation {_quat_to_axis_angle(model.geom_quat[g])} "
            f"children [ {shape} ] }}")


def _wbt_body(model: Any, body_id: int, textures: Mapping[str, str], indent: str = "    ") -> str:
    import mujoco

    name = mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_BODY, body_id)
    texture = textures.get(name.split("_", 1)[1]) if name.startswith("head_") else None
    parts = [_wbt_geom(model, g, texture) for g in np.flatnonzero(model.geom_bodyid == body_id)]
    for child in np.flatnonzero(model.body_parentid == body_id):
        if child != body_id:
            parts.append(_wbt_body(model, int(child), textures, indent + "  "))
    children = f"\n{indent}  ".join(parts)
    pose = f"translation {_fmt(model.body_pos[body_id])} rotation {_quat_to_axis_angle(model.body_quat[body_id])}"
    if model.body_parentid[body_id] == 0:
        return (f'DEF {name} Solid {{\n{indent}{pose}\n{indent}name "{name}"\n{indent}children [\n'
                f"{indent}  {children}\n{indent}]\n}}")
    return f"Pose {{ {pose} children [\n{indent}  {children}\n{indent}] }}"


def _webots_world(model: Any, textures: Mapping[str, str], nav: tuple[int, int], rec: tuple[int, int],
                  fovy_deg: float, room_size: float) -> str:
    import mujoco

    half = room_size / 2

    def hfov(size: tuple[int, int]) -> float:  # Webots' fieldOfView is horizontal
        return 2 * math.atan(math.tan(math.radians(fovy_deg) / 2) * size[1] / size[0])

    chase_hfov = 2 * math.atan(math.tan(math.radians(60) / 2) * 320 / 240)
    roots = [b for b in range(1, model.nbody)
             if model.body_parentid[b] == 0 and mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_BODY, b) != DRONE]
    bodies = "\n".join(_wbt_body(model, b, textures) for b in roots)
    walls = "\n".join(
        f'Solid {{ translation {x:.2f} {y:.2f} {WALL_HEIGHT / 2} name "wall_{i}" children [ Shape {{ appearance '
        f'PBRAppearance {{ baseColor 0.8 0.78 0.72 roughness 1 metalness 0 }} geometry Box {{ size {2 * sx:.2f} '
        f'{2 * sy:.2f} {WALL_HEIGHT} }} }} ] }}'
        for i, (x, y, sx, sy) in enumerate(_walls(half, outside=True))
    )
    pitch = 0.35
    return f"""#VRML_SIM R2023b utf8
# Generated by `python -m envs.worlds.face_room` (envs/worlds/face_room.py); do not edit by hand.
# Drone active face recognition (Webots R2023b). Entity and camera names match
# worlds/mujoco/{WORLD_NAME}.xml; every body is converted geom by geom from the compiled MuJoCo model.
#
# Entities (top-level DEF names, reached with Supervisor.getFromDef)
#   drone            the extern Supervisor; the task teleports it (no physics), so it is a static entity
#   human_<identity> standing people wearing generated face textures; parked at z = {PARK_Z:g} until placed
#   furniture_<k>    tables, shelves, sofas, chairs, plants, cabinets; parked at z = {PARK_Z:g} until placed
# Cameras (devices of the drone, looking along its +x with +z up)
#   nav_camera       {nav[1]}x{nav[0]} navigation camera (the observation), {fovy_deg:g} degree vertical field of view
#   rec_camera       {rec[1]}x{rec[0]} recognition camera, same optics; rendered only when the task recognises
#   chase_camera     320x240 view from behind and above the drone, for videos
# Collisions are checked by the task against {WORLD_NAME}.layout.json, so nothing here has a boundingObject.
# Units: metres, radians, seconds.

WorldInfo {{
  info [
    "Vantage drone active face recognition"
  ]
  title "Vantage face recognition"
  gravity 0
  basicTimeStep 10
  coordinateSystem "ENU"
  randomSeed 0
}}
Viewpoint {{
  orientation 0 1 0 1.5708
  position 0 0 30
}}
Background {{
  skyColor [
    0.4 0.45 0.5
  ]
}}
DirectionalLight {{
  ambientIntensity 0.6
  direction 0.2 0.1 -1
  intensity 1
  castShadows FALSE
}}
PointLight {{
  location 0 0 3.2
  intensity 0.6
  castShadows FALSE
}}
Solid {{
  name "floor"
  children [
    Shape {{
      appearance PBRAppearance {{ baseColor 0.5 0.46 0.42 roughness 1 metalness 0 }}
      geometry Plane {{ size {room_size + 0.4:.2f} {room_size + 0.4:.2f} }}
    }}
  ]
}}
{walls}
DEF {DRONE} Robot {{
  translation 0 0 1.5
  rotation 0 0 1 0
  name "{DRONE}"
  controller "<extern>"
  supervisor TRUE
  children [
    Shape {{
      appearance PBRAppearance {{ baseColor 0.2 0.2 0.22 roughness 1 metalness 0 }}
      geometry Box {{ size 0.2 0.12 0.06 }}
    }}
    Camera {{
      translation {CAMERA_X} 0 0
      name "{NAV_CAMERA}"
      fieldOfView {hfov(nav):.6f}
      width {nav[1]}
      height {nav[0]}
    }}
    Camera {{
      translation {CAMERA_X} 0 0
      name "{REC_CAMERA}"
      fieldOfView {hfov(rec):.6f}
      width {rec[1]}
      height {rec[0]}
    }}
    # Pitched down {pitch} rad about +y: the MuJoCo camera's
    # xyaxes "0 -1 0 {math.sin(pitch):.6f} 0 {math.cos(pitch):.6f}".
    Camera {{
      translation -1.6 0 0.6
      rotation 0 1 0 {pitch}
      name "{CHASE_CAMERA}"
      fieldOfView {chase_hfov:.6f}
      width 320
      height 240
    }}
  ]
}}
{bodies}
"""


def build_face_recognition_world(worlds_root: str | Path, textures_dir: str | Path, *, name: str = WORLD_NAME,
                                 n_people: int = 10, n_furniture: int = 12, identity_seed: int = 0,
                                 furniture_seed: int = 0, room_size: float = ROOM_SIZE,
                                 nav_size: tuple[int, int] = NAV_SIZE, rec_size: tuple[int, int] = REC_SIZE,
                                 fovy_deg: float = FOVY_DEG) -> dict[str, Path]:
    """Write ``<worlds_root>/mujoco/<name>.xml``, ``<worlds_root>/webots/<name>.wbt`` and their layouts.

    Args:
        worlds_root: folder holding ``mujoco/`` and ``webots/`` (created if missing).
        textures_dir: where the identities' head textures go (reused if present); the worlds refer to them
            by relative path.
        name: world name (file stem).
        n_people: identities ``0 .. n_people-1`` of :func:`envs.worlds.identities.generate_identities`
            (the face recogniser's gallery holds identities 0-49, so keep ``n_people <= 50`` to recognise them).
        n_furniture: furniture bodies.
        identity_seed: seed of the identities (the shipped face models use 0).
        furniture_seed: seed of the furniture shapes and colours.
        room_size: side of the square room (m).
        nav_size: ``(height, width)`` of the navigation camera.
        rec_size: ``(height, width)`` of the recognition camera.
        fovy_deg: vertical field of view of both drone cameras (degrees).

    Returns:
        ``{"mujoco": path, "webots": path}``.
    """
    import mujoco

    if not 1 <= n_people <= 60 or n_furniture < 0:
        raise InvalidArgumentError(f"n_people={n_people} must be in [1, 60] and n_furniture={n_furniture} >= 0")
    root = Path(worlds_root)
    mj_dir, wb_dir = root / "mujoco", root / "webots"
    mj_dir.mkdir(parents=True, exist_ok=True)
    wb_dir.mkdir(parents=True, exist_ok=True)
    identities = generate_identities(n_people, seed=identity_seed)
    textures = write_textures(identities, textures_dir)
    tex_abs = Path(textures_dir).resolve()

    people = {}
    for face in identities:
        rz = face.head_radii[2]
        centre = face_centre(face.head_radii)
        people[face.name] = {
            "entity": f"human_{face.name}",
            "height": round(float(face.height), 4),
            # head body sits at height - rz (envs.worlds.people.human_xml)
            "face_offset": [round(float(centre[0]), 4), 0.0, round(float(face.height - rz + centre[2]), 4)],
            "radius": 0.3,
        }
    rng = np.random.default_rng(furniture_seed)
    furniture = "".join(furniture_xml(k, rng) for k in range(n_furniture))
    # Worlds refer to textures relative to themselves, so the repository can live anywhere.
    mj_rel = os.path.relpath(tex_abs, mj_dir.resolve())
    xml = _drone_world_mjcf(_people_xml(identities, textures), furniture, mj_rel, nav_size, rec_size, fovy_deg,
                            room_size)
    xml = xml.replace(f'file="{tex_abs}/', f'file="{mj_rel}/')
    mj_path = mj_dir / f"{name}.xml"
    atomic_write_text(mj_path, xml)

    try:
        model = mujoco.MjModel.from_xml_path(str(mj_path))
    except ValueError as exc:  # pragma: no cover - the generator writes valid MJCF
        raise WorldFileError(f"generated world {mj_path} does not compile: {exc}") from exc
    furniture_table = {}
    for k in range(n_furniture):
        body = model.body(f"furniture_{k}").id
        half, top = _footprint(model, body)
        furniture_table[f"furniture_{k}"] = {"half_extents": [round(v, 4) for v in half], "height": round(top, 4)}
    wb_rel = os.path.relpath(tex_abs, wb_dir.resolve())
    wb_textures = {face.name: f"{wb_rel}/{textures[face.name].name}" for face in identities}
    wb_path = wb_dir / f"{name}.wbt"
    atomic_write_text(wb_path, _webots_world(model, wb_textures, nav_size, rec_size, fovy_deg, room_size))

    layout = {
        "room_half_size": room_size / 2,
        "wall_height": WALL_HEIGHT,
        "people": people,
        "furniture": furniture_table,
        "drone_radius": 0.25,
        "cameras": {"nav": NAV_CAMERA, "rec": REC_CAMERA, "chase": CHASE_CAMERA},
        "identity_seed": identity_seed,
    }
    text = json.dumps(layout, indent=1, sort_keys=True) + "\n"
    for path in (mj_path, wb_path):
        atomic_write_text(layout_path(path), text)
    return {"mujoco": mj_path, "webots": wb_path}


if __name__ == "__main__":  # pragma: no cover - regenerates the shipped world
    repo = Path(__file__).resolve().parents[2]
    written = build_face_recognition_world(repo / "worlds", repo / "assets" / "textures" / "faces")
    print("\n".join(str(p) for p in written.values()))
