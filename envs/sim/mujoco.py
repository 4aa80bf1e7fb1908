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

Articulated bodies (``worlds/mujoco/arm2.xml`` is the small example):

* **Joints** are the named ``hinge`` and ``slide`` joints, except those of planar entities. Their limits are
  the MJCF ``range`` of limited joints. :meth:`MujocoBackend.set_joint_positions` writes ``qpos``, zeroes the
  joints' ``qvel`` and recomputes the kinematics.
* **Actuators** are the named MJCF actuators; a control is written to ``data.ctrl``, where MuJoCo keeps it
  until it is replaced (``mj_resetData`` zeroes it on reset). Its meaning is the actuator's: a ``position``
  actuator's control is its joint target, a ``motor``'s its torque. The range is ``ctrlrange`` when the
  actuator is control-limited.
* **Force/torque sensors**: a site carrying both an MJCF ``force`` and a ``torque`` sensor is one, named after
  the site. MuJoCo measures the interaction wrench between the site's body (the child side, everything
  below it included) and its parent, in the site frame, torque about the site: a load hanging below the site
  reads ``fz = +m g`` when the site's z axis points up. ``read_force_torque(name, substeps=True)`` returns the
  readings of the state after every substep of the last :meth:`MujocoBackend.step` (the sensors MuJoCo
  computes at the start of the next substep, the last row after the final ``mj_forward``); after a reset the
  window repeats the reset state's reading. Only worlds with such sensors record: the others step exactly
  as before.
* **Sites** are the named MJCF sites; :meth:`MujocoBackend.site_jacobian` is ``mj_jacSite``'s translational and
  rotational Jacobians, stacked, at the joints' degrees of freedom.
* **Depth**: :meth:`MujocoBackend.render_depth` is the distance along the camera's optical axis (the camera's
  -z), in metres, as :meth:`~envs.sim.base.SimBackend.project` gives for points; pixels that see nothing read
  the far clipping distance.
"""

from __future__ import annotations

import ctypes.util
import os
from collections.abc import Mapping, Sequence
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
from envs.sim.base import Pose, SimBackend, check_controls, check_joint_values, check_names


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

        self._joints = self._index_joints()
        self._actuators = {
            mujoco.mj_id2name(self.model, mujoco.mjtObj.mjOBJ_ACTUATOR, i): i
            for i in range(self.model.nu)
            if mujoco.mj_id2name(self.model, mujoco.mjtObj.mjOBJ_ACTUATOR, i)
        }
        self._actuator_ranges = {
            name: (tuple(float(v) for v in self.model.actuator_ctrlrange[i])
                   if self.model.actuator_ctrllimited[i] else (-np.inf, np.inf))
            for name, i in self._actuators.items()
        }
        self._sites = {
            mujoco.mj_id2name(self.model, mujoco.mjtObj.mjOBJ_SITE, i): i
            for i in range(self.model.nsite)
            if mujoco.mj_id2name(self.model, mujoco.mjtObj.mjOBJ_SITE, i)
        }
        self._force_torque, self._ft_adr = self._index_force_torque()
        # One row per substep of the last step() for every force/torque sensor; None keeps step() free of
        # any recording in worlds without such sensors (their step() is the training hot path).
        self._ft_window = (
            np.zeros((self.n_substeps, len(self._force_torque), 6)) if self._force_torque else None
        )
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

    def _index_joints(self) -> dict[str, tuple[int, int, int]]:
        """Map joint name -> (joint id, qpos address, dof address) for named hinge and slide joints."""
        m = self.model
        planar_bodies = {body_id for kind, body_id, _ in self._entities.values() if kind == _PLANAR}
        joints = {}
        for joint_id in range(m.njnt):
            name = mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_JOINT, joint_id)
            if not name or int(m.jnt_bodyid[joint_id]) in planar_bodies:
                continue
            if int(m.jnt_type[joint_id]) in (mujoco.mjtJoint.mjJNT_HINGE, mujoco.mjtJoint.mjJNT_SLIDE):
                joints[name] = (joint_id, int(m.jnt_qposadr[joint_id]), int(m.jnt_dofadr[joint_id]))
        return joints

    def _index_force_torque(self) -> tuple[dict[str, int], np.ndarray]:
        """Sites with both a force and a torque sensor: name -> index, and their 6 sensordata addresses each."""
        m = self.model
        by_site: dict[int, dict[int, int]] = {}
        for sensor_id in range(m.nsensor):
            kind = int(m.sensor_type[sensor_id])
            if kind in (mujoco.mjtSensor.mjSENS_FORCE, mujoco.mjtSensor.mjSENS_TORQUE) and (
                int(m.sensor_objtype[sensor_id]) == mujoco.mjtObj.mjOBJ_SITE
            ):
                by_site.setdefault(int(m.sensor_objid[sensor_id]), {})[kind] = int(m.sensor_adr[sensor_id])
        names: dict[str, int] = {}
        addresses: list[int] = []
        for site_id, found in sorted(by_site.items()):
            name = mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_SITE, site_id)
            if name and len(found) == 2:
                names[name] = len(names)
                force, torque = found[mujoco.mjtSensor.mjSENS_FORCE], found[mujoco.mjtSensor.mjSENS_TORQUE]
                addresses += [force, force + 1, force + 2, torque, torque + 1, torque + 2]
        return names, np.array(addresses, dtype=int)

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
        mujoco.mj_resetData(m, self.data)  # also zeroes data.ctrl: held actuator controls are cleared
        self._commands.clear()
        mujoco.mj_forward(m, self.data)
        if self._ft_window is not None:
            self._ft_window[:] = self.data.sensordata[self._ft_adr].reshape(-1, 6)
        if self.hide_below is not None:
            for body_id in range(1, m.nbody):
                if m.body_parentid[body_id] == 0 and m.body_pos[body_id, 2] <= self.hide_below:
                    self._show(body_id, False)

    def step(self) -> None:
        m, d = self.model, self.data
        commanded = [
            (self._entities[name][2], self._yaw0[name], fwd, rate) for name, (fwd, rate) in self._commands.items()
        ]
        window = self._ft_window
        for substep in range(self.n_substeps):
            for adr, yaw0, forward, yaw_rate in commanded:
                # Planar joints are world-aligned; re-project the body-frame command every substep so
                # the robot follows the same arc as a unicycle integrated at the physics rate.
                yaw = d.qpos[adr[2]] + yaw0
                d.qvel[adr[3]] = forward * np.cos(yaw)
                d.qvel[adr[4]] = forward * np.sin(yaw)
                d.qvel[adr[5]] = yaw_rate
            mujoco.mj_step(m, d)
            if window is not None and substep:
                # mj_step computed its sensors before integrating: they describe the previous substep's end.
                window[substep - 1] = d.sensordata[self._ft_adr].reshape(-1, 6)
        if not np.all(np.isfinite(d.qpos)):
            raise SimulatorError(f"MuJoCo state became non-finite at t={d.time:.3f}s in {self.world.name}")
        mujoco.mj_forward(m, d)
        if window is not None:
            window[-1] = d.sensordata[self._ft_adr].reshape(-1, 6)

    def get_pose(self, entity: str) -> Pose:
        _, body_id, _ = self._entity(entity)
        return Pose(self.data.xpos[body_id].copy(), self.data.xquat[body_id].copy())

    def get_frame(self, entity: str) -> tuple[np.ndarray, np.ndarray]:
        _, body_id, _ = self._entity(entity)
        return self.data.xpos[body_id].copy(), self.data.xmat[body_id].reshape(3, 3).copy()

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

    # -- articulated bodies ----------------------------------------------------------------------------
    @property
    def joint_names(self) -> tuple[str, ...]:
        return tuple(self._joints)

    def _joint_addresses(self, joints: Sequence[str]) -> tuple[tuple[str, ...], list[int], list[int]]:
        names = check_names("joint", joints, self._joints)
        return names, [self._joints[n][1] for n in names], [self._joints[n][2] for n in names]

    def get_joint_positions(self, joints: Sequence[str]) -> np.ndarray:
        _, qpos, _ = self._joint_addresses(joints)
        return self.data.qpos[qpos].copy()

    def get_joint_velocities(self, joints: Sequence[str]) -> np.ndarray:
        _, _, dofs = self._joint_addresses(joints)
        return self.data.qvel[dofs].copy()

    def set_joint_positions(self, joints: Sequence[str], values: Sequence[float] | np.ndarray) -> None:
        names, qpos, dofs = self._joint_addresses(joints)
        values = check_joint_values(names, values, *self.joint_limits(names))
        self.data.qpos[qpos] = values
        self.data.qvel[dofs] = 0.0
        mujoco.mj_forward(self.model, self.data)

    def joint_limits(self, joints: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        names = check_names("joint", joints, self._joints)
        low, high = np.full(len(names), -np.inf), np.full(len(names), np.inf)
        for i, name in enumerate(names):
            joint_id = self._joints[name][0]
            if self.model.jnt_limited[joint_id]:
                low[i], high[i] = self.model.jnt_range[joint_id]
        return low, high

    @property
    def actuator_names(self) -> tuple[str, ...]:
        return tuple(self._actuators)

    def set_actuator_controls(self, controls: Mapping[str, float]) -> None:
        for name, value in check_controls(controls, self._actuator_ranges).items():
            self.data.ctrl[self._actuators[name]] = value

    def actuator_ranges(self, actuators: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        names = check_names("actuator", actuators, self._actuators)
        ranges = np.array([self._actuator_ranges[name] for name in names], dtype=np.float64)
        return ranges[:, 0].copy(), ranges[:, 1].copy()

    @property
    def force_torque_names(self) -> tuple[str, ...]:
        return tuple(self._force_torque)

    def read_force_torque(self, name: str, substeps: bool = False) -> np.ndarray:
        index = lookup("force/torque sensor", self._force_torque, name)
        if substeps:
            return self._ft_window[:, index].copy()
        return self.data.sensordata[self._ft_adr[6 * index : 6 * index + 6]].copy()

    @property
    def site_names(self) -> tuple[str, ...]:
        return tuple(self._sites)

    def get_site_pose(self, site: str) -> Pose:
        site_id = lookup("site", self._sites, site)
        quaternion = np.empty(4)
        mujoco.mju_mat2Quat(quaternion, self.data.site_xmat[site_id])
        return Pose(self.data.site_xpos[site_id].copy(), quaternion)

    def site_jacobian(self, site: str, joints: Sequence[str]) -> np.ndarray:
        site_id = lookup("site", self._sites, site)
        _, _, dofs = self._joint_addresses(joints)
        jacp, jacr = np.zeros((3, self.model.nv)), np.zeros((3, self.model.nv))
        mujoco.mj_jacSite(self.model, self.data, jacp, jacr, site_id)
        return np.vstack([jacp[:, dofs], jacr[:, dofs]])

    def close(self) -> None:
        for renderer in self._renderers.values():
            renderer.close()
        self._renderers.clear()
