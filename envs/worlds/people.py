"""People and furniture for generated worlds, as MJCF snippets every world builder can assemble.

* :func:`head_mesh_xml` — an ellipsoidal head mesh with equirectangular texture coordinates matching
  :func:`envs.worlds.identities.paint_head_texture`;
* :func:`human_xml` — one standing person (legs, shoes, torso, arms, neck, textured head) as a static root
  body ``human_<name>`` with a child body ``head_<name>`` whose frame is the head ellipsoid's centre;
* :func:`furniture_xml` — tables, shelves, sofas, chairs, plants and cabinets as static root bodies
  ``furniture_<k>``.

Everything starts parked under the floor (z = :data:`PARK_Z`); a task or scene sampler places what it uses,
and the backend's ``hide_below`` keeps the rest out of every camera. All geoms are visual only
(``contype=0``): people and furniture are posed, not simulated.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from envs.worlds.identities import FaceIdentity

PARK_Z = -30.0
#: Backends hide root bodies at or below this height (``MujocoBackend(hide_below=...)``).
HIDE_BELOW = PARK_Z / 2


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
