"""The peg-in-hole world: a Franka Emika Panda holding a peg above a hole block (``worlds/mujoco/peg_*.xml``).

The Panda is built from its published kinematics (Franka Emika's datasheet and the MuJoCo Menagerie
``franka_emika_panda`` model, Apache-2.0: link offsets 0.333 / 0.316 / 0.0825 / 0.384 / 0.088 / 0.107 m, joint
limits below) with capsule geometry instead of meshes (``worlds/mujoco/assets/panda/README.md`` says why).
Every link but the peg is gravity-compensated (``gravcomp``), as the real arm's controller does, so the joint
position servos are a pure joint-space spring: that spring is the arm's compliance when the peg touches.

Names (both simulators): joints ``joint1`` .. ``joint7``, position actuators ``actuator1`` .. ``actuator7``,
sites ``flange`` (the hand's mounting face), ``peg_ft`` (where the peg meets the hand, carrying the 6-axis
force/torque sensor ``peg_ft``, MJCF ``peg_ft_force`` + ``peg_ft_torque``) and ``peg_tip``; entities ``hole_block``
(static, placed by the task) and ``peg``; cameras ``scene_camera`` (fixed, RGB + depth) and ``overview``.

A world is generated per peg shape and clearance (:func:`world_xml`); the three shapes at the default clearance
are written to ``worlds/mujoco/peg_<shape>.xml`` by ``python -m envs.worlds.peg_insertion`` and other clearances
to a cache folder on first use (:func:`world_file`). The hole is a regular polygon (16 sides for the round peg,
4 for the square, 3 for the triangle) of box walls whose inradius is the peg's plus half the clearance.
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from envs.errors import InvalidArgumentError, check_choice
from envs.sim import SimBackend, make_backend, worlds_dir

__all__ = [
    "ACTUATORS",
    "BLOCK_HALF",
    "BLOCK_HEIGHT",
    "CAMERA",
    "DEFAULT_CLEARANCE",
    "FLANGE",
    "FT_SENSOR",
    "HOLE_BLOCK",
    "HOME",
    "JOINTS",
    "JOINT_LIMITS",
    "OVERVIEW",
    "PEG",
    "PEG_INRADIUS",
    "PEG_LENGTH",
    "PEG_MASS",
    "PEG_SHAPES",
    "PEG_TIP",
    "open_peg_world",
    "webots_xml",
    "world_file",
    "world_xml",
]

JOINTS = tuple(f"joint{i}" for i in range(1, 8))
ACTUATORS = tuple(f"actuator{i}" for i in range(1, 8))
#: Franka Emika Panda joint limits (rad), from its datasheet.
JOINT_LIMITS = ((-2.8973, 2.8973), (-1.7628, 1.7628), (-2.8973, 2.8973), (-3.0718, -0.0698),
                (-2.8973, 2.8973), (-0.0175, 3.7525), (-2.8973, 2.8973))
#: The ready pose: the hand points straight down about 0.5 m in front of the base.
HOME = (0.0, 0.2, 0.0, -2.2, 0.0, 2.4, 0.7853981633974483)
FLANGE, FT_SENSOR, PEG_TIP = "flange", "peg_ft", "peg_tip"
HOLE_BLOCK, PEG = "hole_block", "peg"
CAMERA, OVERVIEW = "scene_camera", "overview"

PEG_SHAPES = ("round", "square", "triangle")
PEG_INRADIUS = 0.012  #: m, the peg's inscribed radius (every shape)
PEG_LENGTH = 0.08  #: m
PEG_MASS = 0.1  #: kg
DEFAULT_CLEARANCE = 0.004  #: m, hole inradius minus peg inradius, times two
BLOCK_HALF = 0.06  #: m, half side of the square hole block
BLOCK_HEIGHT = 0.05  #: m
_HOLE_SIDES = {"round": 16, "square": 4, "triangle": 3}
_TIMESTEP = 0.0015625  # 32 substeps per 0.05 s control step: the 32 x 6 force window

# (pos, quat, mass, capsule fromto, radius) of links 1-7; the offsets are the Panda's published ones.
_LINKS = (
    ("0 0 0.333", "1 0 0 0", 4.97, "0 0 -0.19 0 0 0", 0.06),
    ("0 0 0", "1 -1 0 0", 0.646, "0 0 0 0 -0.3 0", 0.06),
    ("0 -0.316 0", "1 1 0 0", 3.228, "0 0 -0.12 0.08 0 0", 0.055),
    ("0.0825 0 0", "1 1 0 0", 3.587, "0 0 0 -0.08 0.1 0", 0.055),
    ("-0.0825 0.384 0", "1 -1 0 0", 1.225, "0 0 -0.25 0 0 0", 0.05),
    ("0 0 0", "1 1 0 0", 1.666, "0 0 0 0.088 0 0", 0.045),
    ("0.088 0 0", "1 1 0 0", 0.735, "0 0 0 0 0 0.08", 0.04),
)
_KP = (600, 600, 500, 500, 300, 300, 200)  # N m/rad: soft enough that a blocked peg pushes with tens of newtons


def _peg_geom(shape: str) -> tuple[str, str]:
    """(asset XML, geom XML) of the peg, its top at the body origin and its axis along +z."""
    half = PEG_LENGTH / 2
    common = f'name="peg_geom" pos="0 0 {half}" material="peg_mat" contype="1" conaffinity="1" ' \
             f'condim="4" friction="0.3 0.005 0.0001" mass="{PEG_MASS}"'
    if shape == "round":
        return "", f'<geom type="cylinder" size="{PEG_INRADIUS} {half}" {common}/>'
    if shape == "square":
        return "", f'<geom type="box" size="{PEG_INRADIUS} {PEG_INRADIUS} {half}" {common}/>'
    circum = 2 * PEG_INRADIUS  # equilateral triangle: circumradius = 2 x inradius; one vertex along +x
    corners = [(circum * math.cos(2 * math.pi * k / 3), circum * math.sin(2 * math.pi * k / 3)) for k in range(3)]
    vertices = " ".join(f"{x:.6f} {y:.6f} {z:.6f}" for z in (-half, half) for x, y in corners)
    return f'<mesh name="triangle_peg" vertex="{vertices}"/>', f'<geom type="mesh" mesh="triangle_peg" {common}/>'


def _hole_walls(shape: str, clearance: float) -> str:
    """Box walls whose inner faces form the regular polygon the peg slides into, in the block's frame; a peg
    whose frame has the block's yaw fits (the triangle peg has a vertex along its +x, so its hole's edges face
    60, 180 and 300 degrees)."""
    sides = _HOLE_SIDES[shape]
    inner = PEG_INRADIUS + clearance / 2
    thickness = 0.02
    # Each wall runs past the polygon's inner corners, far enough to close them, not so far as to stick out.
    half_length = inner * math.tan(math.pi / sides) + 0.6 * thickness
    walls = []
    offset = math.pi / sides if shape == "triangle" else 0.0  # the triangle's edges face away from its vertices
    for k in range(sides):
        angle = 2 * math.pi * k / sides + offset
        radius = inner + thickness / 2
        x, y = radius * math.cos(angle), radius * math.sin(angle)
        walls.append(f'<geom name="wall_{k}" type="box" pos="{x:.6f} {y:.6f} {BLOCK_HEIGHT / 2}" '
                     f'euler="0 0 {angle:.6f}" size="{thickness / 2} {half_length:.6f} {BLOCK_HEIGHT / 2}" '
                     f'material="block_mat" contype="1" conaffinity="1"/>')
    # The rest of the block: four slabs around the walls, flush with the block's outer faces.
    edge = max(inner / math.cos(math.pi / sides) + 0.001, inner + thickness / 2)  # clear of the hole's corners
    outer = BLOCK_HALF
    slab = (outer - edge) / 2
    for k, (sx, sy) in enumerate(((1, 0), (-1, 0), (0, 1), (0, -1))):
        cx, cy = sx * (outer - slab), sy * (outer - slab)
        hx, hy = (slab, outer) if sx else (outer, slab)
        walls.append(f'<geom name="slab_{k}" type="box" pos="{cx:.6f} {cy:.6f} {BLOCK_HEIGHT / 2}" '
                     f'size="{hx:.6f} {hy:.6f} {BLOCK_HEIGHT / 2}" material="block_mat" contype="1" conaffinity="1"/>')
    return "\n      ".join(walls)


def world_xml(shape: str = "round", clearance: float = DEFAULT_CLEARANCE, image_size: int = 64) -> str:
    """The MJCF text of the world for ``shape`` and ``clearance`` (metres, diametral), cameras ``image_size`` px.

    Raises:
        UnknownNameError: an unknown peg shape.
        InvalidArgumentError: a clearance outside [0.0005, 0.02] m or an image size outside [16, 128].
    """
    check_choice("peg shape", shape, PEG_SHAPES)
    if isinstance(clearance, bool) or not isinstance(clearance, int | float) or not 0.0005 <= clearance <= 0.02:
        raise InvalidArgumentError(f"clearance={clearance!r} must be a number of metres in [0.0005, 0.02]")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or not 16 <= image_size <= 128:
        raise InvalidArgumentError(f"image_size={image_size!r} must be an integer in [16, 128]")
    peg_asset, peg_geom = _peg_geom(shape)
    links = []
    for i, (pos, quat, mass, fromto, radius) in enumerate(_LINKS, start=1):
        low, high = JOINT_LIMITS[i - 1]
        links.append(
            f'<body name="link{i}" pos="{pos}" quat="{quat}" gravcomp="1">\n'
            f'<inertial pos="0 0 0" mass="{mass}" diaginertia="0.02 0.02 0.01"/>\n'
            f'<joint name="joint{i}" range="{low} {high}"/>\n'
            f'<geom type="capsule" fromto="{fromto}" size="{radius}" material="{"arm_mat" if i % 2 else "arm2_mat"}"/>')
    hand = (
        '<body name="hand" pos="0 0 0.107" quat="0.9238795 0 0 -0.3826834" gravcomp="1">\n'
        '<inertial pos="0 0 0.03" mass="0.73" diaginertia="0.001 0.0025 0.0017"/>\n'
        '<site name="flange" size="0.005"/>\n'
        '<geom type="box" pos="0 0 0.03" size="0.02 0.09 0.03" material="arm2_mat"/>\n'
        '<geom type="box" pos="0 0.02 0.08" size="0.008 0.01 0.02" material="finger_mat"/>\n'
        '<geom type="box" pos="0 -0.02 0.08" size="0.008 0.01 0.02" material="finger_mat"/>\n'
        f'<body name="peg" pos="0 0 0.06">\n'
        f'<site name="{FT_SENSOR}" size="0.004"/>\n'
        f'{peg_geom}\n'
        f'<site name="{PEG_TIP}" pos="0 0 {PEG_LENGTH}" size="0.004"/>\n'
        '</body>\n</body>')
    chain = "\n".join(links) + "\n" + hand + "\n" + "</body>\n" * len(links)
    return f"""<!--
  Peg-in-hole world (generated by envs/worlds/peg_insertion.py: do not edit; rerun
  python -m envs.worlds.peg_insertion). Peg {shape}, diametral clearance {clearance * 1000:.2f} mm.
  Panda kinematics and joint limits: Franka Emika datasheet / MuJoCo Menagerie franka_emika_panda (Apache-2.0);
  capsule geometry. Peg: inradius {PEG_INRADIUS} m, length {PEG_LENGTH} m, {PEG_MASS} kg, hanging below the
  force/torque site peg_ft (z down along the peg), so at rest with the peg vertical the sensor reads
  f = (0, 0, -{PEG_MASS * 9.81:.4f}) N in the site frame (the hand holds the peg up against gravity, which in the
  site frame points along +z). Timestep {_TIMESTEP} s: 32 substeps per 0.05 s control step.
-->
<mujoco model="vantage_peg_{shape}">
  <compiler angle="radian" autolimits="true"/>
  <option timestep="{_TIMESTEP}" gravity="0 0 -9.81" integrator="implicitfast" cone="elliptic" impratio="5"/>
  <visual>
    <global offwidth="{max(image_size, 128)}" offheight="{max(image_size, 128)}"/>
    <headlight ambient="0.4 0.4 0.4" diffuse="0.5 0.5 0.5" specular="0 0 0"/>
  </visual>
  <asset>
    <texture name="table_tex" type="2d" builtin="checker" rgb1="0.55 0.5 0.45" rgb2="0.48 0.44 0.40"
             width="64" height="64"/>
    <material name="table_mat" texture="table_tex" texrepeat="8 8"/>
    <material name="arm_mat" rgba="0.92 0.92 0.92 1"/>
    <material name="arm2_mat" rgba="0.25 0.25 0.28 1"/>
    <material name="finger_mat" rgba="0.15 0.15 0.15 1"/>
    <material name="peg_mat" rgba="0.9 0.55 0.1 1"/>
    <material name="block_mat" rgba="0.2 0.45 0.8 1"/>
    {peg_asset}
  </asset>
  <default>
    <geom contype="0" conaffinity="0"/>
    <joint type="hinge" axis="0 0 1" damping="2" armature="0.1"/>
    <position forcelimited="true"/>
  </default>
  <worldbody>
    <light name="lamp" pos="0.4 0 1.5" dir="0 0 -1" diffuse="0.6 0.6 0.6" castshadow="false"/>
    <geom name="table" type="plane" size="1.5 1.5 0.05" material="table_mat" contype="1" conaffinity="1"/>
    <camera name="{CAMERA}" pos="0.95 0 0.5" xyaxes="0 1 0 -0.7071 0 0.7071" fovy="45"
            resolution="{image_size} {image_size}"/>
    <camera name="{OVERVIEW}" pos="1.2 -0.9 0.8" xyaxes="0.6 0.8 0 -0.36 0.27 0.89" fovy="50"
            resolution="{max(image_size, 128)} {max(image_size, 128)}"/>
    <body name="{HOLE_BLOCK}" pos="0.5 0 0">
      {_hole_walls(shape, clearance)}
    </body>
    <body name="link0">
      <geom type="cylinder" pos="0 0 0.07" size="0.08 0.07" material="arm_mat"/>
      {chain}
    </body>
  </worldbody>
  <contact>
    <exclude body1="link7" body2="peg"/>
  </contact>
  <actuator>
{chr(10).join(f'    <position name="actuator{i}" joint="joint{i}" kp="{kp}" dampratio="1" forcerange="-87 87" '
              f'ctrlrange="{JOINT_LIMITS[i - 1][0]} {JOINT_LIMITS[i - 1][1]}"/>' for i, kp in enumerate(_KP, 1))}
  </actuator>
  <sensor>
    <force name="{FT_SENSOR}_force" site="{FT_SENSOR}"/>
    <torque name="{FT_SENSOR}_torque" site="{FT_SENSOR}"/>
  </sensor>
</mujoco>
"""


def _axis_angle(quat: str) -> str:
    """Webots ``rotation`` (axis x y z, angle) of an MJCF ``quat`` (w x y z, not necessarily normalised)."""
    w, x, y, z = (float(v) for v in quat.split())
    norm = math.sqrt(w * w + x * x + y * y + z * z)
    w, x, y, z = w / norm, x / norm, y / norm, z / norm
    s = math.sqrt(max(1.0 - w * w, 0.0))
    if s < 1e-9:
        return "0 0 1 0"
    return f"{x / s:.6f} {y / s:.6f} {z / s:.6f} {2 * math.acos(max(-1.0, min(1.0, w))):.6f}"


def webots_xml(shape: str = "round", clearance: float = DEFAULT_CLEARANCE, image_size: int = 64) -> str:
    """The Webots R2023b world with the same names as :func:`world_xml` (explicit joints, not the Panda PROTO,
    whose device names differ): the Robot ``panda`` is the extern supervisor; joints are DEF'd ``HingeJoint``s
    ``joint1`` .. ``joint7`` with motors ``actuator1`` .. ``actuator7``; sites are DEF'd ``Pose`` nodes; the peg is
    a ``TouchSensor`` ``peg_ft`` of type ``force-3d`` (Webots has no torque sensor); ``scene_camera`` has its
    ``RangeFinder`` twin ``scene_camera_depth``. The hole block is the static Solid ``hole_block``."""
    world_xml(shape, clearance, image_size)  # the same checks
    half = PEG_LENGTH / 2
    peg_geometry = {"round": f"Cylinder {{ height {PEG_LENGTH} radius {PEG_INRADIUS} }}",
                    "square": f"Box {{ size {2 * PEG_INRADIUS} {2 * PEG_INRADIUS} {PEG_LENGTH} }}",
                    "triangle": f"Cylinder {{ height {PEG_LENGTH} radius {2 * PEG_INRADIUS} subdivision 3 }}"}[shape]
    walls = []
    sides = _HOLE_SIDES[shape]
    inner, thickness = PEG_INRADIUS + clearance / 2, 0.02
    half_length = inner * math.tan(math.pi / sides) + 0.6 * thickness
    offset = math.pi / sides if shape == "triangle" else 0.0
    for k in range(sides):
        angle = 2 * math.pi * k / sides + offset
        r = inner + thickness / 2
        walls.append(f"Pose {{ translation {r * math.cos(angle):.6f} {r * math.sin(angle):.6f} {BLOCK_HEIGHT / 2} "
                     f"rotation 0 0 1 {angle:.6f} children [ Shape {{ appearance PBRAppearance {{ "
                     f"baseColor 0.2 0.45 0.8 roughness 1 metalness 0 }} geometry Box {{ size {thickness} "
                     f"{2 * half_length:.6f} {BLOCK_HEIGHT} }} }} ] }}")
    body = (f"Pose {{ children [ Shape {{ appearance PBRAppearance {{ baseColor 0.9 0.55 0.1 roughness 1 "
            f"metalness 0 }} geometry {peg_geometry} }} ] translation 0 0 {half} }}")
    inner_most = (
        f"DEF hand Solid {{ translation 0 0 0.107 rotation {_axis_angle('0.9238795 0 0 -0.3826834')} name \"hand\" "
        f"children [ DEF {FLANGE} Pose {{ }} Pose {{ translation 0 0 0.03 children [ Shape {{ appearance "
        f"PBRAppearance {{ baseColor 0.25 0.25 0.28 roughness 1 metalness 0 }} geometry Box {{ size 0.04 0.18 0.06 }} "
        f"}} ] }} DEF {PEG} TouchSensor {{ translation 0 0 0.06 name \"{FT_SENSOR}\" type \"force-3d\" children [ "
        f"DEF {FT_SENSOR} Pose {{ }} DEF {PEG_TIP} Pose {{ translation 0 0 {PEG_LENGTH} }} {body} ] "
        f"boundingObject Pose {{ translation 0 0 {half} children [ {peg_geometry} ] }} physics Physics {{ density -1 "
        f"mass {PEG_MASS} }} }} ] physics Physics {{ density -1 mass 0.73 }} }}")
    node = inner_most
    for i in range(len(_LINKS), 0, -1):
        pos, quat, mass, _, radius = _LINKS[i - 1]
        low, high = JOINT_LIMITS[i - 1]
        w, x, y, z = (float(v) for v in quat.split())
        n = math.sqrt(w * w + x * x + y * y + z * z)
        w, x, y, z = w / n, x / n, y / n, z / n
        axis = (2 * (x * z + w * y), 2 * (y * z - w * x), 1 - 2 * (x * x + y * y))  # the body's z in its parent
        node = (f"DEF joint{i} HingeJoint {{ jointParameters HingeJointParameters {{ axis {axis[0]:.6f} {axis[1]:.6f} "
                f"{axis[2]:.6f} anchor {pos} minStop {low} maxStop {high} dampingConstant 2 }} device [ "
                f"RotationalMotor {{ name \"actuator{i}\" minPosition {low} maxPosition {high} maxTorque 87 }} "
                f"PositionSensor {{ name \"joint{i}_sensor\" }} ] endPoint DEF link{i} Solid {{ translation {pos} "
                f"rotation {_axis_angle(quat)} name \"link{i}\" children [ Shape {{ appearance PBRAppearance {{ "
                f"baseColor 0.92 0.92 0.92 roughness 1 metalness 0 }} geometry Sphere {{ radius {radius} }} }} "
                f"{node} ] "
                f"physics Physics {{ density -1 mass {mass} }} }} }}")
    # Webots cameras look along +x: turned 180 degrees about z, then 45 degrees down (as worlds/webots/arm2.wbt).
    camera = (f"translation 0.95 0 0.5 rotation -0.382683 0 0.92388 3.141593 fieldOfView 0.785398 "
              f"width {image_size} height {image_size}")
    return f"""#VRML_SIM R2023b utf8
# Peg-in-hole world, Webots R2023b (generated by envs/worlds/peg_insertion.py: do not edit; rerun
# python -m envs.worlds.peg_insertion). Peg {shape}, diametral clearance {clearance * 1000:.2f} mm. Same names as
# worlds/mujoco/peg_{shape}.xml; spheres stand in for the links' capsules (visual only). The camera looks along +x
# rotated 45 degrees down, like the MJCF one; untested here (no Webots on the build machines).

WorldInfo {{
  info [
    "Vantage peg-in-hole: Panda joints, peg force sensor, RGB + depth"
  ]
  title "Vantage peg insertion"
  basicTimeStep 1.5625
  coordinateSystem "ENU"
  randomSeed 0
}}
Viewpoint {{
  orientation 0 0 1 3.14159
  position 1.6 0 0.6
}}
Background {{
  skyColor [
    0.4 0.45 0.5
  ]
}}
DirectionalLight {{
  direction 0 0 -1
  castShadows FALSE
}}
Solid {{
  name "table"
  children [
    Shape {{
      appearance PBRAppearance {{
        baseColor 0.52 0.49 0.43
        roughness 1
        metalness 0
      }}
      geometry Plane {{
        size 3 3
      }}
    }}
  ]
  boundingObject Plane {{
    size 3 3
  }}
}}
DEF {HOLE_BLOCK} Solid {{
  translation 0.5 0 0
  name "{HOLE_BLOCK}"
  children [
    {chr(10).join("    " + w for w in walls).strip()}
  ]
}}
Robot {{
  name "panda"
  controller "<extern>"
  supervisor TRUE
  children [
    {node}
    Camera {{
      name "{CAMERA}"
      {camera}
    }}
    RangeFinder {{
      name "{CAMERA}_depth"
      {camera}
      minRange 0.05
      maxRange 2
    }}
  ]
}}
"""


def _default_file(shape: str) -> Path:
    return worlds_dir() / "mujoco" / f"peg_{shape}.xml"


def world_file(shape: str = "round", clearance: float = DEFAULT_CLEARANCE, image_size: int = 64) -> Path:
    """The MJCF file of the world: the shipped one at the defaults, else a generated copy in a cache folder.

    The cache (``$VANTAGE_CACHE`` or the system temporary folder) is keyed by the file's content, so it is
    written once and never goes stale.
    """
    text = world_xml(shape, clearance, image_size)
    shipped = _default_file(shape)
    if shipped.is_file() and shipped.read_text() == text:
        return shipped
    cache = Path(os.environ.get("VANTAGE_CACHE", tempfile.gettempdir())) / "vantage_worlds"
    path = cache / f"peg_{shape}_{hashlib.sha256(text.encode()).hexdigest()[:16]}.xml"
    if not path.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return path


def open_peg_world(backend: str, shape: str = "round", clearance: float = DEFAULT_CLEARANCE, image_size: int = 64,
                   **kwargs: Any) -> SimBackend:
    """Open the peg-in-hole world on ``backend`` (Webots: the shipped ``worlds/webots/peg_<shape>.wbt``, default
    clearance and image size only)."""
    if backend == "webots":
        return make_backend(backend, f"peg_{shape}", **kwargs)
    return make_backend(backend, world_file(shape, clearance, image_size), **kwargs)


if __name__ == "__main__":
    for name in PEG_SHAPES:
        _default_file(name).write_text(world_xml(name))
        webots = worlds_dir() / "webots" / f"peg_{name}.wbt"
        webots.write_text(webots_xml(name))
        print(f"wrote {_default_file(name)} and {webots}")
