"""Embedded MuJoCo backend: deterministic physics and headless offscreen rendering.

Rendering goes through EGL when ``libEGL`` is present and falls back to OSMesa; ``MUJOCO_GL`` set by the
user wins. Training cameras render without shadows, reflections, skybox or multisampling, which on a
software-EGL CPU machine is the difference between ~1 ms and ~50 ms per small frame.

Entities are MJCF bodies addressed by name. Three kinds are understood:

* **planar** bodies carry a ``slide`` joint along x, a ``slide`` joint along y and a ``hinge`` about z, in
  that order (differential-drive robots); :meth:`MujocoBackend.set_planar_velocity` drives them and
  :meth:`MujocoBackend.set_pose` uses x, y and yaw (their height is fixed by the model);
* **free** bodies carry one free joint;
* **static** bodies carry no joint; :meth:`MujocoBackend.set_pose` moves them in the model and
  :meth:`MujocoBackend.reset` puts them back.

A camera's image size comes from its MJCF ``resolution`` attribute unless ``camera_sizes`` overrides it.

Worlds that keep spare bodies parked out of sight (people and furniture under the floor until a task places
them) pass ``hide_below``: root bodies posed at or below that height are moved to a geom group no camera
draws, because software rasterisation still pays for geometry under the floor.
"""

from __future__ import annotations

import ctypes.util
import os
from pathlib import Path

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


def _choose_gl_backend() -> None:
    # MuJoCo reads MUJOCO_GL once, at import, so the fallback has to be decided before importing it.
    if os.environ.get("MUJOCO_GL"):
        return
    for backend, library in (("egl", "EGL"), ("osmesa", "OSMesa")):
        if ctypes.util.find_library(library):
            os.environ["MUJOCO_GL"] = backend
            return
    os.environ["MUJOCO_GL"] = "egl"


_choose_gl_backend()
try:
    import mujoco
except ImportError as exc:  # pragma: no cover - exercised only without mujoco installed
    raise SimulatorNotAvailableError(
        "the MuJoCo backend needs the 'mujoco' package: pip install mujoco"
    ) from exc

_PLANAR, _FREE, _STATIC = "planar", "free", "static"
HIDDEN_GROUP = 4  #: geom group no camera draws (MuJoCo shows groups 0-2 by default)


class MujocoBackend(SimBackend):
    """A MuJoCo world behind the :class:`~envs.sim.base.SimBackend` interface.

    Args:
        world: path of an MJCF file.
        control_period: seconds per :meth:`step`; must be a whole number of the model's timesteps.
        camera_sizes: optional ``{camera: (height, width)}`` overriding the MJCF resolutions.
        fast_render: turn off shadows, reflections, skybox and multisampling (training cameras).
        hide_below: hide root bodies whose height is at or below this (metres); ``None`` hides nothing.

    Raises:
        WorldFileError: the file is missing or MuJoCo cannot compile it.
        InvalidArgumentError: the control period is not a positive multiple of the model timestep.
    """

    def __init__(
        self,
        world: str | Path,
        control_period: float = 0.05,
        camera_sizes: dict[str, tuple[int, int]] | None = None,
        fast_render: bool = True,
        hide_below: float | None = None,
    ) -> None:
        path = Path(world)
        if not path.is_file():
            raise WorldFileError(f"MuJoCo world file not found: {path}")
        try:
            self.model = mujoco.MjModel.from_xml_path(str(path))
        except ValueError as exc:
            raise WorldFileError(f"MuJoCo could not load world {path}: {exc}") from exc
        self.world = path
        self.data = mujoco.MjData(self.model)

        timestep = float(self.model.opt.timestep)
        substeps = control_period / timestep
        if not np.isfinite(substeps) or substeps < 1 or abs(substeps - round(substeps)) > 1e-6:
            raise InvalidArgumentError(
                f"control_period={control_period!r} must be a positive multiple of the model timestep "
                f"{timestep} s (world {path.name})"
            )
        self.control_period = float(control_period)
        self.n_substeps = round(substeps)

        self._entities = self._index_entities()
        self._initial_body_pos = self.model.body_pos.copy()
        self._initial_body_quat = self.model.body_quat.copy()
        self._yaw0 = {  # heading of each planar body at zero joint angle
            name: Pose(self._initial_body_pos[body_id], self._initial_body_quat[body_id]).yaw
            for name, (kind, body_id, _) in self._entities.items()
            if kind == _PLANAR
        }
        self._commands: dict[str, tuple[float, float]] = {}

        self._cameras = {
            mujoco.mj_id2name(self.model, mujoco.mjtObj.mjOBJ_CAMERA, i): i for i in range(self.model.ncam)
        }
        self._camera_sizes: dict[str, tuple[int, int]] = {}
        for name, cam_id in self._cameras.items():
            width, height = (int(v) for v in self.model.cam_resolution[cam_id])
            self._camera_sizes[name] = (height, width)
        for name, size in (camera_sizes or {}).items():
            self._check_camera(name)
            height, width = size
            if height < 1 or width < 1:
                raise InvalidArgumentError(f"camera size for {name!r} must be positive, got {size}")
            self._camera_sizes[name] = (int(height), int(width))
        if self._camera_sizes:
            # The offscreen framebuffer must hold the largest camera image.
            self.model.vis.global_.offheight = max(self.model.vis.global_.offheight,
                                                   *(h for h, _ in self._camera_sizes.values()))
            self.model.vis.global_.offwidth = max(self.model.vis.global_.offwidth,
                                                  *(w for _, w in self._camera_sizes.values()))
        self.fast_render = fast_render
        if fast_render:
            self.model.vis.quality.offsamples = 0
        self._renderers: dict[tuple[int, int, bool], mujoco.Renderer] = {}

        self._sensors = {
            mujoco.mj_id2name(self.model, mujoco.mjtObj.mjOBJ_SENSOR, i): i for i in range(self.model.nsensor)
        }
        if hide_below is not None and not np.isfinite(hide_below):
            raise InvalidArgumentError(f"hide_below={hide_below!r} must be a finite height or None")
        self.hide_below = hide_below
        self._initial_geom_group = self.model.geom_group.copy()
        self._initial_light_diffuse = self.model.light_diffuse.copy()
        self._initial_head_ambient = self.model.vis.headlight.ambient.copy()
        self._initial_head_diffuse = self.model.vis.headlight.diffuse.copy()
        self._subtree_geoms: dict[int, np.ndarray] = {}
        self.reset()

    # -- indexing --------------------------------------------------------------------------------
    def _index_entities(self) -> dict[str, tuple[str, int, np.ndarray]]:
        """Map body name -> (kind, body id, qpos/qvel addresses)."""
        m = self.model
        entities: dict[str, tuple[str, int, np.ndarray]] = {}
        for body_id in range(1, m.nbody):
            name = mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_BODY, body_id)
            if not name:
                continue
            jnt_start, jnt_num = int(m.body_jntadr[body_id]), int(m.body_jntnum[body_id])
            joints = list(range(jnt_start, jnt_start + jnt_num)) if jnt_start >= 0 else []
            types = [int(m.jnt_type[j]) for j in joints]
            if not joints:
                if m.body_parentid[body_id] == 0 or self._is_static_chain(body_id):
                    entities[name] = (_STATIC, body_id, np.empty(0, dtype=int))
            elif types == [mujoco.mjtJoint.mjJNT_FREE]:
                entities[name] = (_FREE, body_id, np.array([m.jnt_qposadr[joints[0]], m.jnt_dofadr[joints[0]]]))
            elif types == [mujoco.mjtJoint.mjJNT_SLIDE, mujoco.mjtJoint.mjJNT_SLIDE, mujoco.mjtJoint.mjJNT_HINGE]:
                axes = m.jnt_axis[joints]
                if np.allclose(axes, [[1, 0, 0], [0, 1, 0], [0, 0, 1]]):
                    # qpos x, y, yaw then dof x, y, yaw (the same here, kept apart for clarity)
                    adr = [m.jnt_qposadr[j] for j in joints] + [m.jnt_dofadr[j] for j in joints]
                    entities[name] = (_PLANAR, body_id, np.array(adr))
        return entities

    def _is_static_chain(self, body_id: int) -> bool:
        m = self.model
        while body_id != 0:
            if m.body_jntnum[body_id] > 0:
                return False
            body_id = int(m.body_parentid[body_id])
        return True

    def _entity(self, name: str) -> tuple[str, int, np.ndarray]:
        return lookup("entity", self._entities, name)

    def _check_camera(self, name: str) -> int:
        return lookup("camera", self._cameras, name)

    # -- SimBackend ------------------------------------------------------------------------------
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
        return float(self.data.time)

    def reset(self, seed: int | None = None) -> None:
        # MuJoCo itself draws no random numbers; the seed is accepted for interface symmetry.
        m = self.model
        m.body_pos[:] = self._initial_body_pos
        m.body_quat[:] = self._initial_body_quat
        m.light_diffuse[:] = self._initial_light_diffuse
        m.vis.headlight.ambient[:] = self._initial_head_ambient
        m.vis.headlight.diffuse[:] = self._initial_head_diffuse
        m.geom_group[:] = self._initial_geom_group
        mujoco.mj_resetData(m, self.data)
        self._commands.clear()
        mujoco.mj_forward(m, self.data)
        if self.hide_below is not None:
            for body_id in range(1, m.nbody):
                if m.body_parentid[body_id] == 0 and m.body_pos[body_id, 2] <= self.hide_below:
                    self._show(body_id, False)

    def step(self) -> None:
        m, d = self.model, self.data
        commanded = [
            (self._entities[name][2], self._yaw0[name], fwd, rate) for name, (fwd, rate) in self._commands.items()
        ]
        for _ in range(self.n_substeps):
            for adr, yaw0, forward, yaw_rate in commanded:
                # Planar joints are world-aligned; re-project the body-frame command every substep so
                # the robot follows the same arc as a unicycle integrated at the physics rate.
                yaw = d.qpos[adr[2]] + yaw0
                d.qvel[adr[3]] = forward * np.cos(yaw)
                d.qvel[adr[4]] = forward * np.sin(yaw)
                d.qvel[adr[5]] = yaw_rate
            mujoco.mj_step(m, d)
        if not np.all(np.isfinite(d.qpos)):
            raise SimulatorError(f"MuJoCo state became non-finite at t={d.time:.3f}s in {self.world.name}")
        mujoco.mj_forward(m, d)

    def get_pose(self, entity: str) -> Pose:
        _, body_id, _ = self._entity(entity)
        return Pose(self.data.xpos[body_id].copy(), self.data.xquat[body_id].copy())

    def set_pose(self, entity: str, pose: Pose) -> None:
        kind, body_id, adr = self._entity(entity)
        m, d = self.model, self.data
        if kind == _PLANAR:
            base = self._initial_body_pos[body_id]
            d.qpos[adr[0]] = pose.position[0] - base[0]
            d.qpos[adr[1]] = pose.position[1] - base[1]
            d.qpos[adr[2]] = pose.yaw - self._yaw0[entity]
            d.qvel[adr[3:6]] = 0.0
        elif kind == _FREE:
            qadr, dadr = int(adr[0]), int(adr[1])
            d.qpos[qadr : qadr + 3] = pose.position
            d.qpos[qadr + 3 : qadr + 7] = pose.quaternion
            d.qvel[dadr : dadr + 6] = 0.0
        else:
            parent = int(m.body_parentid[body_id])
            if parent != 0:
                raise SimulatorError(f"static entity {entity!r} is nested in another body; pose its root")
            m.body_pos[body_id] = pose.position
            m.body_quat[body_id] = pose.quaternion
        if self.hide_below is not None and m.body_parentid[body_id] == 0:
            self._show(body_id, bool(pose.position[2] > self.hide_below))
        mujoco.mj_forward(m, d)

    def set_planar_velocity(self, entity: str, forward: float, yaw_rate: float) -> None:
        kind, _, _ = self._entity(entity)
        if kind != _PLANAR:
            raise InvalidArgumentError(
                f"entity {entity!r} is {kind}; planar velocity needs slide-x, slide-y, hinge-z joints"
            )
        if not (np.isfinite(forward) and np.isfinite(yaw_rate)):
            raise InvalidArgumentError(
                f"planar velocity for {entity!r} must be finite, got forward={forward}, yaw_rate={yaw_rate}"
            )
        self._commands[entity] = (float(forward), float(yaw_rate))

    def _renderer(self, height: int, width: int, depth: bool) -> mujoco.Renderer:
        key = (height, width, depth)
        renderer = self._renderers.get(key)
        if renderer is None:
            try:
                renderer = mujoco.Renderer(self.model, height=height, width=width)
            except Exception as exc:
                raise SimulatorError(
                    f"could not create a MuJoCo renderer with MUJOCO_GL={os.environ.get('MUJOCO_GL')!r}: "
                    f"{exc}. Install EGL (libegl1) or OSMesa (libosmesa6), or set MUJOCO_GL."
                ) from exc
            if self.fast_render:
                for flag in (mujoco.mjtRndFlag.mjRND_SHADOW, mujoco.mjtRndFlag.mjRND_REFLECTION,
                             mujoco.mjtRndFlag.mjRND_SKYBOX):
                    renderer.scene.flags[flag] = False
            if depth:
                renderer.enable_depth_rendering()
            self._renderers[key] = renderer
        return renderer

    def render(self, camera: str) -> np.ndarray:
        cam_id = self._check_camera(camera)
        height, width = self._camera_sizes[camera]
        renderer = self._renderer(height, width, depth=False)
        renderer.update_scene(self.data, cam_id)
        return renderer.render()

    def render_depth(self, camera: str) -> np.ndarray:
        cam_id = self._check_camera(camera)
        height, width = self._camera_sizes[camera]
        renderer = self._renderer(height, width, depth=True)
        renderer.update_scene(self.data, cam_id)
        return renderer.render().astype(np.float32)

    def camera_shape(self, camera: str) -> tuple[int, int]:
        self._check_camera(camera)
        return self._camera_sizes[camera]

    def camera_fovy(self, camera: str) -> float:
        return float(np.deg2rad(self.model.cam_fovy[self._check_camera(camera)]))

    def read_sensor(self, name: str) -> np.ndarray:
        try:
            sensor_id = self._sensors[name]
        except KeyError:
            raise UnknownNameError("sensor", name, self._sensors) from None
        adr, dim = int(self.model.sensor_adr[sensor_id]), int(self.model.sensor_dim[sensor_id])
        return self.data.sensordata[adr : adr + dim].copy()

    def camera_frame(self, camera: str) -> tuple[np.ndarray, np.ndarray]:
        cam_id = self._check_camera(camera)
        return self.data.cam_xpos[cam_id].copy(), self.data.cam_xmat[cam_id].reshape(3, 3).copy()

    def ray_cast(self, start: np.ndarray, end: np.ndarray) -> tuple[float, str | None]:
        start = np.asarray(start, dtype=np.float64)
        vec = np.asarray(end, dtype=np.float64) - start
        geom = np.array([-1], np.int32)
        fraction = mujoco.mj_ray(self.model, self.data, start, vec, None, 1, -1, geom)
        if fraction < 0 or geom[0] < 0:
            return float("inf"), None
        body = int(self.model.geom_bodyid[geom[0]])
        return float(fraction), mujoco.mj_id2name(self.model, mujoco.mjtObj.mjOBJ_BODY, body)

    def _show(self, body_id: int, visible: bool) -> None:
        geoms = self._subtree_geoms.get(body_id)
        if geoms is None:
            bodies = [b for b in range(self.model.nbody) if b == body_id or self._descends(b, body_id)]
            geoms = self._subtree_geoms[body_id] = np.flatnonzero(np.isin(self.model.geom_bodyid, bodies))
        self.model.geom_group[geoms] = self._initial_geom_group[geoms] if visible else HIDDEN_GROUP

    def _descends(self, body_id: int, root: int) -> bool:
        while body_id != 0:
            body_id = int(self.model.body_parentid[body_id])
            if body_id == root:
                return True
        return False

    def set_visible(self, entity: str, visible: bool) -> None:
        _, body_id, _ = self._entity(entity)
        self._show(body_id, visible)

    def set_lighting(self, scale: float, ambient: float) -> None:
        if not (np.isfinite(scale) and scale >= 0 and np.isfinite(ambient) and 0 <= ambient <= 1):
            raise InvalidArgumentError(f"lighting scale={scale!r} must be >= 0 and ambient={ambient!r} in [0, 1]")
        m = self.model
        m.light_diffuse[:] = self._initial_light_diffuse * scale
        m.vis.headlight.ambient[:] = ambient
        m.vis.headlight.diffuse[:] = self._initial_head_diffuse * scale

    def close(self) -> None:
        for renderer in self._renderers.values():
            renderer.close()
        self._renderers.clear()
