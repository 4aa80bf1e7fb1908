"""VQA with an active virtual camera: move a crop window (or a pan/tilt/zoom camera) so a VQA model answers better."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import cv2
import numpy as np
from gymnasium import spaces

from envs.errors import InvalidArgumentError, check_choice
from envs.rewards import make_reward
from envs.tasks.base import EpisodeEvaluator, TaskSettings, VantageEnv, side_by_side
from envs.worlds.vqa_questions import ClevrFolder, generate_questions, label_far_small, oracle_window
from envs.worlds.vqa_scenes import IMAGE_SIZE, LADDERS, VQAScenes, scene_rng

__all__ = ["ACTIONS", "ANSWER_RULES", "VQACameraEnv", "VQACameraSettings", "VQAEvaluator", "VQAModel"]

ACTIONS = ("left", "right", "up", "down", "zoom_in", "zoom_out", "null")
CAMERAS = ("crop", "ptz")
MOVES = ("coarse", "paper")
REWARDS = ("gain",)
ANSWER_RULES = ("last", "most_confident", "average", "oracle_frame")
MIN_WINDOW = 1 / 16


class VQAModel(Protocol):
    """What the task needs of a VQA model (:class:`perception.vqa.VQALearner` is one)."""

    answers: Sequence[str]

    def tokenize(self, question: str) -> tuple[list[int], int]: ...

    def __call__(self, views: np.ndarray, tokens: Sequence[Sequence[int]]) -> np.ndarray: ...


@dataclass(frozen=True)
class VQACameraSettings(TaskSettings):
    """The tunable settings of :class:`VQACameraEnv` (see its docstring)."""

    camera: str = "crop"
    moves: str = "coarse"
    reward: str = "gain"
    steps: int = 5
    image_size: int = 64
    max_question_length: int = 32
    dataset: str | None = None
    dataset_split: str | None = None
    scene_seed: int = 0
    n_scenes: int = 1000
    questions_per_scene: int = 10

    def __post_init__(self) -> None:
        check_choice("camera", self.camera, CAMERAS)
        check_choice("moves", self.moves, MOVES)
        check_choice("reward", self.reward, REWARDS)
        self._check_int("steps", 1, 100)
        self._check_int("image_size", 16, 512)
        self._check_int("max_question_length", 4, 256)
        self._check_int("scene_seed", 0)
        self._check_int("n_scenes", 1)
        self._check_int("questions_per_scene", 1, 100)
        if self.dataset is not None and not isinstance(self.dataset, str):
            raise InvalidArgumentError(f"dataset={self.dataset!r} must be a folder path (str) or None")


class VQACameraEnv(VantageEnv):
    """A virtual camera over a high-resolution scene; a frozen VQA model answers a question from its views.

    Reproduces Bozinis, Passalis & Tefas, ICPR 2020 (OpenDR D4.1 Sec. 2.7; ``shared/specs/vqa-virtual-camera.md``).
    An episode is one (image, question, correct answers) triple and ``steps`` (``N_T``, 5) moves.

    **Episodes**: generated (default) — scene ``i`` (uniform in ``[0, n_scenes)``) of ``scene_seed`` is placed in
    the MuJoCo world (:mod:`envs.worlds.vqa_scenes`) and rendered at 1024 x 1024, and one of its
    ``questions_per_scene`` balanced questions (:mod:`envs.worlds.vqa_questions`) is asked — or, with
    ``dataset=PATH``, a question of a CLEVR-format folder (``vantage data vqa`` writes them; CLEVR itself is read
    too). ``reset(options={"index": k})`` asks question ``k`` (generated: scene ``k // questions_per_scene``).

    **Cameras** (``camera``): ``"crop"`` (the paper) — a window over the one render, resized (area resampling
    through a 2x image pyramid) to ``image_size``; ``"ptz"`` — the ``ptz`` camera of the MuJoCo scene pointed
    at the window centre's direction (pan from its horizontal, tilt from its vertical pixel offset) with the
    window's field of view, re-rendered every step at 256 px and area-resized, so objects occlude one another
    as a real camera sees them. ``ptz`` needs generated scenes or a folder with Vantage scene graphs.

    **Actions** ``Discrete(7)``: ``0 left, 1 right, 2 up, 3 down, 4 zoom_in, 5 zoom_out, 6 null``. What the paper
    leaves open, decided here: the window starts as the whole image (the paper's ``x^(0) = x``) and keeps the
    image's aspect ratio; its side is ``f`` times the image's, ``f = max((1 - dz)^k, 1/16)`` at zoom level ``k``
    (zoom in: ``k + 1``; zoom out: ``k - 1``; ``k`` in ``[0, K]``, ``K`` the first level at 1/16, so zoom-out
    undoes zoom-in exactly and the zoom is bounded at 16x); zoom is about the window centre; after every move
    the window is shifted back inside the image (never clipped in size). ``moves="paper"``: ``dz = 4 %`` and
    pans of ``floor(0.1 min(W, H))`` px; with 5 steps that reaches at most ``0.96^5 = 0.82`` of the view, too
    little to resolve a 3 px object, so the default ``moves="coarse"`` uses ``dz = 50 %`` (K = 4) and pans of a
    quarter of the window's shorter side. Anything but one integer in ``[0, 7)`` raises
    :class:`~envs.errors.InvalidActionError`.

    **Observation** ``Dict(view=Box(0, 255, (64, 64, 3), uint8), question=Box(0, V - 1, (32,), int64),
    camera=Box(0, 1, (4,), float32))``: the camera view at the VQA input size; ``camera`` = ``[x, y, f, t]``, the
    window centre over the image width and height, the window's share ``f`` of the image side and the moves made
    over ``steps``; and the question's token ids (the VQA model's tokenizer; 0-padded; words
    outside its vocabulary become the unknown id 1 and are counted in ``info["unknown_words"]``; longer questions
    are cut at ``max_question_length``).

    **Reward** (``reward="gain"``, :class:`~envs.rewards.GainReward` over the signal ``confidence``):
    ``r_t = c(view_t) - c(view_{t-1})``, the change of the VQA model's probability of the correct answer; with
    several correct answers the largest of their increases (the signal then accumulates those increases from
    the best correct answer's initial probability). ``info["reward_confidence"]`` equals the reward.

    **End**: the episode terminates after ``steps`` moves; the answer is the argmax of the answer probabilities
    averaged over the episode's ``steps + 1`` views (the first view included). The final ``info`` also holds the
    answer of every rule in :data:`ANSWER_RULES` (last view, most confident view, average, oracle frame: right
    if any view's answer is) in ``answer_<rule>`` / ``correct_<rule>``.

    **info** every step: ``question``, ``answers`` (correct), ``family``, ``far_small``, ``index``, ``answer``
    and ``correct`` (the average rule so far), ``view_answer``, ``confidence`` (the view's top probability),
    ``confidence_correct`` (per step, the correct answer's probability), ``window`` ``[x0, y0, x1, y1]`` px,
    ``zoom_level``, ``pan``/``tilt`` (ptz, rad), ``oracle_window``, ``unknown_words``, ``action_name``,
    ``reward_confidence``.

    Args:
        vqa: the VQA model (:class:`VQAModel`); ``gymnasium.make`` loads the shipped one
            (:func:`envs.registration.make_vqa_env`).
        backend: ``"mujoco"`` (the world has no Webots version).
        render_mode: ``None`` or ``"rgb_array"`` (the image with the window drawn, beside the view).
        corruption: ``{"view": {...}}`` camera faults (:mod:`envs.observables`), seen by the agent and the VQA model.
        **settings: :class:`VQACameraSettings` fields — ``camera``, ``moves``, ``reward``, ``steps``,
            ``image_size``, ``max_question_length``, ``dataset``, ``dataset_split``, ``scene_seed``,
            ``n_scenes``, ``questions_per_scene``.

    Version history: v0 — initial release.
    """

    settings_class = VQACameraSettings
    reset_options = ("index",)

    def __init__(self, vqa: VQAModel | None = None, backend: str = "mujoco", render_mode: str | None = None,
                 corruption: Mapping[str, Mapping[str, Any]] | None = None, **settings: Any) -> None:
        super().__init__(backend, render_mode, corruption, **settings)
        if vqa is None or not callable(vqa) or not hasattr(vqa, "tokenize") or not hasattr(vqa, "answers"):
            raise InvalidArgumentError("vqa must be a VQA model (tokenize, answers, __call__(views, tokens)); "
                                       "gymnasium.make('vantage/VQAVirtualCamera-v0') loads the shipped one")
        if backend != "mujoco":
            raise InvalidArgumentError(f"backend={backend!r}: the VQA task runs on 'mujoco' only")
        s = self.settings
        self.vqa = vqa
        self.answers = list(vqa.answers)
        self._answer_index = {a: i for i, a in enumerate(self.answers)}
        self.folder = ClevrFolder(s.dataset, s.dataset_split) if s.dataset is not None else None
        if (self.folder is not None and s.camera == "ptz" and not all(
                "3d_coords" in o for sc in self.folder.scenes.values() for o in sc["objects"])) or (
                self.folder is not None and s.camera == "ptz" and not self.folder.scenes):
            raise InvalidArgumentError(f"camera='ptz' re-renders scenes: dataset {s.dataset} has no Vantage scene "
                                       f"graphs (3d_coords); use camera='crop'")
        # Opened in every mode (compiling the model is cheap; nothing renders in crop mode on a dataset), so the
        # base class's episode start and close work the same way.
        self.world = VQAScenes()
        self.sim = self.world.sim
        self.dz, self.levels = LADDERS[s.moves]
        self.reward_scheme = make_reward(s.reward, ("confidence",))
        vocab = int(getattr(vqa, "tokenizer", None).size) if hasattr(vqa, "tokenizer") else 2 ** 15
        self.action_space = spaces.Discrete(len(ACTIONS))
        self.observation_space = spaces.Dict({
            "view": spaces.Box(0, 255, (s.image_size, s.image_size, 3), np.uint8),
            "question": spaces.Box(0, vocab - 1, (s.max_question_length,), np.int64),
            "camera": spaces.Box(0.0, 1.0, (4,), np.float32)})
        # The camera's view as a sensor: ``corruption={"view": {...}}`` (noise, dropout, delay) changes what both the
        # agent and the VQA model see, as a faulty camera would.
        self._make_observables({"view": ("rgb", lambda: self._raw_view)})
        self._raw_view = np.zeros((s.image_size, s.image_size, 3), np.uint8)
        self._image: np.ndarray | None = None
        self._pyramid: list[np.ndarray] = []
        self._scene_cache: tuple[int, dict[str, Any], list[dict[str, Any]], np.ndarray | None] | None = None

    # -- episodes ------------------------------------------------------------------------------------------
    def _episode(self, index: int | None) -> tuple[np.ndarray | None, dict[str, Any], dict[str, Any] | None]:
        s = self.settings
        if self.folder is not None:
            k = int(self.np_random.integers(len(self.folder))) if index is None else index
            if not 0 <= k < len(self.folder):
                raise InvalidArgumentError(f"reset option index={index!r} must be in [0, {len(self.folder)})")
            q = dict(self.folder.questions[k], index=k, answers=self.folder.answers(k))
            scene = self.folder.scene(k)
            image = self.folder.image(k, min_side=s.image_size) if s.camera == "crop" else None
            if scene is not None and s.camera == "ptz":
                self.world.place(scene["objects"])
            return image, q, scene
        total = s.n_scenes * s.questions_per_scene
        k = int(self.np_random.integers(total)) if index is None else index
        if not 0 <= k < total:
            raise InvalidArgumentError(f"reset option index={index!r} must be in [0, {total}) (n_scenes x "
                                       f"questions_per_scene)")
        scene_index, qi = divmod(k, s.questions_per_scene)
        if self._scene_cache is None or self._scene_cache[0] != scene_index:
            scene = self.world.scene(s.scene_seed, scene_index)
            questions = generate_questions(scene, scene_rng(s.scene_seed, scene_index + 1_000_000_007),
                                           s.questions_per_scene)
            image = self.world.render() if s.camera == "crop" else None
            self._scene_cache = (scene_index, scene, questions, image)
        elif s.camera == "ptz":
            self.world.place(self._scene_cache[1]["objects"])
        _, scene, questions, image = self._scene_cache
        q = dict(questions[qi], index=k, answers=[questions[qi]["answer"]])
        return image, q, scene

    def reset(self, *, seed: int | None = None, options: Mapping[str, Any] | None = None
              ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        options = self._start_episode(seed, options)
        index = options.get("index")
        if index is not None and (isinstance(index, bool) or not isinstance(index, int | np.integer)):
            raise InvalidArgumentError(f"reset option index={index!r} must be an integer")
        image, q, scene = self._episode(None if index is None else int(index))
        self._image = image
        if image is not None:
            if not (self._pyramid and self._pyramid[0] is image):
                # Questions of one scene share its (cached) image: build its pyramid once, not once per episode.
                self._pyramid = [image]
                while min(self._pyramid[-1].shape[:2]) >= 4 * self.settings.image_size:
                    p = self._pyramid[-1]
                    self._pyramid.append(cv2.resize(p, (p.shape[1] // 2, p.shape[0] // 2),
                                                    interpolation=cv2.INTER_AREA))
            self._h, self._w = image.shape[:2]
        else:
            self._h = self._w = IMAGE_SIZE
        tokens, unknown = self.vqa.tokenize(str(q["question"]))
        self._tokens = list(tokens)[: self.settings.max_question_length]
        self._question = np.zeros(self.settings.max_question_length, np.int64)
        self._question[: len(self._tokens)] = self._tokens
        self._q = q
        self._correct = [self._answer_index[a] for a in q["answers"] if a in self._answer_index]
        far = bool(q.get("far_small", False))
        if scene is not None and "referred" in q and "far_small" not in q:
            far = label_far_small(scene, q["referred"])[0]
        self._far = far
        self._oracle = ([round(v, 2) for v in oracle_window(scene, q.get("referred", []), (self._h, self._w))]
                        if scene is not None and "bbox" in (scene["objects"][0] if scene["objects"] else {})
                        else [0.0, 0.0, float(self._w), float(self._h)])
        self._unknown = int(unknown)
        self._level, self._cx, self._cy = 0, self._w / 2, self._h / 2
        self._t = 0
        self._probs: list[np.ndarray] = []
        view = self._sense()
        probs = self._ask(view)
        self._signal = float(max((probs[i] for i in self._correct), default=0.0))
        self.reward_scheme.reset({"confidence": self._signal})
        return self._obs(view), self._info(probs, "reset", {})

    # -- camera --------------------------------------------------------------------------------------------
    def _fraction(self) -> float:
        return max((1 - self.dz) ** self._level, MIN_WINDOW)

    def window(self) -> tuple[float, float, float, float]:
        """The window ``(x0, y0, x1, y1)`` in pixels of the full image."""
        f = self._fraction()
        hw, hh = f * self._w / 2, f * self._h / 2
        return self._cx - hw, self._cy - hh, self._cx + hw, self._cy + hh

    def _clamp(self) -> None:
        f = self._fraction()
        self._cx = float(np.clip(self._cx, f * self._w / 2, self._w - f * self._w / 2))
        self._cy = float(np.clip(self._cy, f * self._h / 2, self._h - f * self._h / 2))

    def _move(self, action: str) -> None:
        f = self._fraction()
        if self.settings.moves == "paper":
            pan = math.floor(0.1 * min(self._w, self._h))
        else:
            pan = 0.25 * f * min(self._w, self._h)
        if action == "left":
            self._cx -= pan
        elif action == "right":
            self._cx += pan
        elif action == "up":
            self._cy -= pan
        elif action == "down":
            self._cy += pan
        elif action == "zoom_in":
            self._level = min(self._level + 1, self.levels)
        elif action == "zoom_out":
            self._level = max(self._level - 1, 0)
        self._clamp()

    def _ptz_angles(self) -> tuple[float, float]:
        focal = 0.5 * self._h / math.tan(math.radians(45.0) / 2)
        return math.atan((self._w / 2 - self._cx) / focal), math.atan((self._h / 2 - self._cy) / focal)

    def _view(self) -> np.ndarray:
        size = self.settings.image_size
        if self.settings.camera == "ptz":
            pan, tilt = self._ptz_angles()
            self.world.point_ptz(pan, tilt)
            frame = self.world.render_ptz(self.settings.moves, self._level)
            return cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA)
        return self.view_of(self.window())

    def view_of(self, window: Sequence[float]) -> np.ndarray:
        """The crop view of any window ``(x0, y0, x1, y1)`` of this episode's image (the oracle crop's view)."""
        size = self.settings.image_size
        if self._image is None:
            raise InvalidArgumentError("view_of() needs camera='crop' and a reset episode")
        x0, y0, x1, y1 = (float(v) for v in window)
        level = 0
        while level + 1 < len(self._pyramid) and (x1 - x0) / 2 ** (level + 1) >= size and (
                y1 - y0) / 2 ** (level + 1) >= size:
            level += 1
        scale = 2 ** level
        image = self._pyramid[level]
        a, b = max(0, round(x0 / scale)), max(0, round(y0 / scale))
        c = min(image.shape[1], max(a + 1, round(x1 / scale)))
        d = min(image.shape[0], max(b + 1, round(y1 / scale)))
        part = image[b:d, a:c]
        interp = cv2.INTER_AREA if part.shape[0] > size else cv2.INTER_LINEAR
        return cv2.resize(part, (size, size), interpolation=interp)

    def _sense(self) -> np.ndarray:
        self._raw_view = self._view()
        return self._observe("view")

    def _ask(self, view: np.ndarray) -> np.ndarray:
        probs = np.asarray(self.vqa(view[None], [self._tokens]), np.float64)[0]
        self._probs.append(probs)
        return probs

    def _obs(self, view: np.ndarray) -> dict[str, np.ndarray]:
        # The view alone does not say where the window is or how many moves are left; without them a
        # memoryless policy cannot tell "zoomed into the far band" from "a close-up scene" (the state is Markov).
        camera = (self._cx / self._w, self._cy / self._h, self._fraction(), self._t / self.settings.steps)
        return {"view": view, "question": self._question.copy(), "camera": np.asarray(camera, np.float32)}

    # -- step ----------------------------------------------------------------------------------------------
    def step(self, action: Any) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        index = self.decode_discrete(action, ACTIONS)
        if self._image is None and self.settings.camera == "crop":
            raise InvalidArgumentError("call reset() before step()")
        self._move(ACTIONS[index])
        self._t += 1
        view = self._sense()
        probs = self._ask(view)
        previous = self._probs[-2]
        gain = max((probs[i] - previous[i] for i in self._correct), default=0.0)
        self._signal += float(gain)
        reward, terms = self.reward_scheme({"confidence": self._signal})
        terminated = self._t >= self.settings.steps
        info = self._info(probs, ACTIONS[index], {f"reward_{k}": v for k, v in terms.items()})
        if terminated:
            info.update(self._final())
        return self._obs(view), float(reward), terminated, False, info

    def _label(self, probs: np.ndarray) -> str:
        return self.answers[int(np.argmax(probs))]

    def _final(self) -> dict[str, Any]:
        stack = np.stack(self._probs)
        best = int(np.argmax(stack.max(1)))
        views = [self._label(p) for p in stack]
        rules = {"last": views[-1], "most_confident": views[best], "average": self._label(stack.mean(0))}
        correct = set(self._q["answers"])
        oracle = next((a for a in views if a in correct), rules["average"])
        rules["oracle_frame"] = oracle
        out: dict[str, Any] = {}
        for rule, answer in rules.items():
            out[f"answer_{rule}"] = answer
            out[f"correct_{rule}"] = answer in correct
        return out

    def _info(self, probs: np.ndarray, action: str, terms: Mapping[str, float]) -> dict[str, Any]:
        mean = np.mean(self._probs, 0)
        answer = self._label(mean)
        info = {"question": str(self._q["question"]), "answers": list(self._q["answers"]),
                "family": str(self._q.get("template_filename", "")), "far_small": self._far,
                "index": int(self._q["index"]), "answer": answer, "correct": answer in self._q["answers"],
                "view_answer": self._label(probs), "confidence": float(probs.max()),
                "confidence_correct": float(max((probs[i] for i in self._correct), default=0.0)),
                "window": [round(v, 2) for v in self.window()], "zoom_level": self._level,
                "oracle_window": list(self._oracle), "unknown_words": self._unknown, "step": self._t,
                "action_name": action}
        if self.settings.camera == "ptz":
            pan, tilt = self._ptz_angles()
            info["pan"], info["tilt"] = round(pan, 6), round(tilt, 6)
        info.update(terms)
        return info

    # -- rendering -----------------------------------------------------------------------------------------
    def render(self) -> np.ndarray | None:
        if self.render_mode is None:
            return super().render()
        base = self._pyramid[-1] if self._image is not None else self.world.render()
        overview = cv2.resize(base, (256, 256), interpolation=cv2.INTER_AREA).copy()
        x0, y0, x1, y1 = (v * 256 / self._w for v in self.window())
        cv2.rectangle(overview, (int(x0), int(y0)), (int(x1) - 1, int(y1) - 1), (255, 255, 0), 2)
        return side_by_side(overview, self._view())

    def close(self) -> None:
        world = getattr(self, "world", None)
        if world is not None:
            world.close()
            self.world = None
            self.sim = None


class VQAEvaluator(EpisodeEvaluator):
    """Accuracy of every answer rule, overall and on the far-small split, per question family."""

    trace_key = "confidence_correct"

    def start(self, info: Mapping[str, Any]) -> None:
        self._last = dict(info)

    def step(self, info: Mapping[str, Any]) -> None:
        self._last = dict(info)

    def finish(self) -> dict[str, Any]:
        info = self._last
        return {"far_small": bool(info.get("far_small", False)), "family": info.get("family", ""),
                **{f"correct_{r}": bool(info.get(f"correct_{r}", info.get("correct", False))) for r in ANSWER_RULES}}

    def summarize(self, episodes: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        out = super().summarize(episodes)
        far = [e for e in episodes if e["far_small"]]
        for rule in ANSWER_RULES:
            out[f"accuracy_{rule}"] = float(np.mean([e[f"correct_{rule}"] for e in episodes]))
            out[f"accuracy_{rule}_far_small"] = float(np.mean([e[f"correct_{rule}"] for e in far])) if far else None
        out["accuracy"] = out["accuracy_average"]
        out["far_small_episodes"] = len(far)
        return out

    def format_table(self, rows: Sequence[tuple[str, Mapping[str, Any]]]) -> str:
        lines = ["| policy | " + " | ".join(ANSWER_RULES) + " | far-small (average) | episodes |",
                 "|---|" + "---|" * (len(ANSWER_RULES) + 2)]
        for label, s in rows:
            far = s.get("accuracy_average_far_small")
            lines.append(f"| {label} | " + " | ".join(f"{100 * s[f'accuracy_{r}']:.1f}" for r in ANSWER_RULES)
                         + f" | {'-' if far is None else f'{100 * far:.1f}'} | {s['episodes']} |")
        return "\n".join(lines)

