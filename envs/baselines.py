"""Hand-written baseline policies with the SB3 ``predict`` signature, for the active-vs-static comparisons.

Each is built from the environment it will run in (``Baseline(env)``); the task specs
(:data:`envs.specs.TASKS`) say which baselines a task has.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from envs.errors import UnknownNameError


class StaticPolicy:
    """A tracker that never moves: both wheels at zero (the "static perception" baseline).

    Works with any action space whose "do nothing" action is known: the centre action of the tracking task's
    discrete grid (``k*(2k+1)+k``) or the zero vector of a continuous space.

    Args:
        env: the environment (or directly its action space).
    """

    def __init__(self, env: gym.Env | gym.Space) -> None:
        action_space = env if isinstance(env, gym.Space) else env.action_space
        if isinstance(action_space, gym.spaces.Discrete):
            side = round(np.sqrt(action_space.n))
            if side * side != action_space.n or side % 2 == 0:
                raise UnknownNameError("static action for Discrete space of size", action_space.n, ["(2k+1)**2"])
            self._action: Any = np.int64((side // 2) * side + side // 2)
        elif isinstance(action_space, gym.spaces.Box):
            self._action = np.zeros(action_space.shape, dtype=action_space.dtype)
        else:
            raise UnknownNameError("action space for StaticPolicy", type(action_space).__name__, ["Discrete", "Box"])

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = True) -> tuple[Any, None]:
        return self._action, None


# -- drone face recognition (vantage/DroneFaceRecognition-v0) ---------------------------------------------
def _face_env(env: gym.Env) -> Any:
    from envs.tasks.face_recognition import DroneFaceEnv

    inner = env.unwrapped
    if not isinstance(inner, DroneFaceEnv):
        raise UnknownNameError("environment for a face-recognition baseline", type(inner).__name__, ["DroneFaceEnv"])
    return inner


class FaceStaticPolicy:
    """The static camera: recognise from the start pose and never move.

    Every action is ``recognize``; :attr:`finished` is True once it has recognised, because every further
    frame from the same pose is the same (evaluation stops there instead of repeating the call).
    """

    def __init__(self, env: gym.Env) -> None:
        inner = _face_env(env)
        self._action = np.int64(inner.action_names.index("recognize"))
        self.finished = False

    def reset(self) -> None:
        self.finished = False

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = True) -> tuple[Any, None]:
        self.finished = True
        return self._action, None


class FaceRulePolicy:
    """The rule-based pipeline: centre the detected face, then approach until the confidence peaks.

    It sees what the perception pipeline sees (:attr:`DroneFaceEnv.last_faces`, the detections of the last
    recognition), never the true poses. Rules, in order (toolkit actions; with the paper's 5 actions only the
    approach is possible, since arcs keep the heading relative to the person):

    1. look: if the last step did not run the recognition pipeline, ``recognize`` (the paper reward runs it
       every step, so no look is needed there);
    2. no face: ``yaw_left`` to search, at most ``max_search`` turns, then give up;
    3. face off-centre by more than ``centre_tolerance`` of the frame: yaw (or move up/down) towards it;
    4. otherwise ``forward`` while the confidence of the answer (0 for ``unknown``) rises; after
       ``patience`` observations below the best, step back as far as it went past the best and stop;
       also stop once the face fills ``max_face_fraction`` of the frame height (too close);
    5. stopped: ``recognize`` from there (:attr:`finished` is True).
    """

    def __init__(self, env: gym.Env, centre_tolerance: float = 0.08, max_search: int = 120, patience: int = 2,
                 max_face_fraction: float = 0.45) -> None:
        self.env = _face_env(env)
        self.names = self.env.action_names
        self.centre_tolerance, self.max_search = float(centre_tolerance), int(max_search)
        self.patience, self.max_face_fraction = int(patience), float(max_face_fraction)
        self.reset()

    def reset(self) -> None:
        self.finished = False
        self._observed_calls = 0
        self._searches = 0
        self._best = -1.0
        self._drops = 0
        self._back = 0

    def _act(self, name: str) -> np.int64:
        return np.int64(self.names.index(name))

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = True) -> tuple[Any, None]:
        if episode_start is not None and bool(np.all(episode_start)):
            self.reset()
        recognize = "recognize" in self.names
        look = self._act("recognize") if recognize else self._act(self.names[0])
        if self.finished:
            return look, None
        if self._back > 0:
            self._back -= 1
            if self._back == 0:
                self.finished = True
            return self._act("backward"), None
        calls = self.env.recognition_calls
        every_step = self.env.reward_name == "paper"
        if calls == self._observed_calls and not every_step:
            return look, None  # rule 1: nothing new seen since the last decision
        self._observed_calls = calls
        if calls == 0:
            return look, None
        faces = self.env.last_faces
        toolkit = "yaw_left" in self.names
        if not faces:
            if toolkit and self._searches < self.max_search:
                self._searches += 1
                return self._act("yaw_left"), None
            self.finished = True
            return look, None
        height, width = self.env.recognition_size
        face = max(faces, key=lambda f: ((f.box[2] - f.box[0]) * (f.box[3] - f.box[1]), f.score))
        x0, y0, x1, y1 = (float(v) for v in face.box)
        dx, dy = ((x0 + x1) / 2 - width / 2) / width, ((y0 + y1) / 2 - height / 2) / height
        if toolkit and abs(dx) > self.centre_tolerance:
            return self._act("yaw_right" if dx > 0 else "yaw_left"), None
        if toolkit and abs(dy) > self.centre_tolerance:
            return self._act("down" if dy > 0 else "up"), None
        if (y1 - y0) / height >= self.max_face_fraction:
            self.finished = True
            return look, None
        confidence = float(face.confidence) if face.identity != "unknown" else 0.0
        if confidence > self._best:
            self._best, self._drops = confidence, 0
        else:
            self._drops += 1
            if self._drops >= self.patience:
                # Each observation below the best came one forward step later: go back that many steps.
                self._back = self._drops - 1
                if self._back == 0:
                    self.finished = True
                return self._act("backward"), None
        return self._act("forward"), None
