"""Questions on VQA scene graphs: templates, CLEVR functional programs, answer balancing, the far-small split,
and CLEVR-format folders (writing them with ``vantage data vqa``, reading them for ``dataset=PATH``).

**Families** (``question_family_index``): ``exist``, ``count``, ``query_color``, ``query_shape``,
``query_material``, ``query_size``, ``compare_attribute`` (same colour/shape/material/size of two objects),
``compare_count`` (more A than B), ``relate_count`` and ``relate_exist`` (left of / right of / in front of /
behind an object). Each question carries CLEVR's program (``function``, ``inputs``, ``value_inputs``), and
:func:`execute` runs it on a scene graph; the answer stored is the program's result on the scene.

**Balancing against the prior**: CLEVR rejects questions whose answer is over-represented for its template. Here
the answer is drawn first, uniformly from the family's answers (yes/no; counts 0-3; the attribute's values), and
the question is searched for that answer (up to 40 tries; otherwise another family is drawn), so every family's
answers are near-uniform whatever the scenes' statistics, and scene ``i`` of a seed always gets the same
questions (no state is carried between scenes).

**Far-small split**: a question's *referred objects* are the objects its program singles out (the ``unique``
nodes and the sets counted, tested or compared). It is ``far_small`` when it refers to at least one object and
every referred object's box is under ``FAR_SMALL_PX`` (6) pixels on its longer side at the 64 px whole-image
view (96 px of the 1024 px render).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from common.io import atomic_write_bytes, atomic_write_json, prepare_output
from envs.errors import InvalidArgumentError
from envs.worlds.vqa_scenes import COLORS, IMAGE_SIZE, MATERIALS, SHAPES, SIZES, VQAScenes, scene_rng

__all__ = ["ATTRIBUTES", "FAMILIES", "FAR_SMALL_PX", "ClevrFolder", "execute", "generate_questions",
           "generate_vqa_dataset", "label_far_small", "oracle_window"]

ATTRIBUTES: dict[str, tuple[str, ...]] = {"size": tuple(SIZES), "color": tuple(COLORS), "material": MATERIALS,
                                          "shape": SHAPES}
FAMILIES = ("exist", "count", "query_color", "query_shape", "query_material", "query_size", "compare_attribute",
            "compare_count", "relate_count", "relate_exist")
RELATIONS = {"left": "left of", "right": "right of", "front": "in front of", "behind": "behind"}
COUNTS = ("0", "1", "2", "3")
FAR_SMALL_PX = 6.0
INPUT_SIZE = 64
TRIES = 40
SPLIT_NAMES = ("train", "val", "test")


# -- programs ------------------------------------------------------------------------------------------------
def execute(program: Sequence[Mapping[str, Any]], scene: Mapping[str, Any]) -> tuple[str, list[int]]:
    """Run a CLEVR program on a scene graph: ``(answer, referred object indices)``.

    Raises:
        InvalidArgumentError: an unknown function, or ``unique`` on a set that is not one object.
    """
    objects = scene["objects"]
    values: list[Any] = []
    referred: set[int] = set()
    for node in program:
        fn, args, value = node["function"], [values[i] for i in node.get("inputs", [])], node.get("value_inputs", [])
        if fn == "scene":
            out: Any = list(range(len(objects)))
        elif fn.startswith("filter_"):
            attr = fn[len("filter_"):]
            out = [i for i in args[0] if objects[i][attr] == value[0]]
        elif fn == "unique":
            if len(args[0]) != 1:
                raise InvalidArgumentError(f"unique() on {len(args[0])} objects")
            out = args[0][0]
            referred.add(out)
        elif fn == "relate":
            out = list(scene["relationships"][value[0]][args[0]])
        elif fn in ("count", "exist"):
            referred.update(args[0])
            out = len(args[0]) if fn == "count" else len(args[0]) > 0
        elif fn.startswith("query_"):
            out = objects[args[0]][fn[len("query_"):]]
        elif fn.startswith("equal_"):
            out = args[0] == args[1]
        elif fn == "greater_than":
            out = args[0] > args[1]
        elif fn == "less_than":
            out = args[0] < args[1]
        else:
            raise InvalidArgumentError(f"unknown program function {fn!r}")
        values.append(out)
    result = values[-1]
    answer = ("yes" if result else "no") if isinstance(result, bool) else str(result)
    return answer, sorted(referred)


def _filters(program: list[dict[str, Any]], start: int, spec: Mapping[str, str]) -> int:
    for attr in ("size", "color", "material", "shape"):
        if attr in spec:
            program.append({"function": f"filter_{attr}", "inputs": [start], "value_inputs": [spec[attr]]})
            start = len(program) - 1
    return start


def _scene_filter(program: list[dict[str, Any]], spec: Mapping[str, str]) -> int:
    program.append({"function": "scene", "inputs": [], "value_inputs": []})
    return _filters(program, len(program) - 1, spec)


def _unique(program: list[dict[str, Any]], spec: Mapping[str, str]) -> int:
    start = _scene_filter(program, spec)
    program.append({"function": "unique", "inputs": [start], "value_inputs": []})
    return len(program) - 1


def phrase(spec: Mapping[str, str], plural: bool = False) -> str:
    """``{size} {color} {material} {shape}`` with the attributes ``spec`` names (``thing`` without a shape)."""
    words = [spec[a] for a in ("size", "color", "material") if a in spec]
    noun = spec.get("shape", "thing")
    return " ".join([*words, noun + ("s" if plural else "")])


def _article(words: str) -> str:
    return ("an " if words[0] in "aeiou" else "a ") + words


def _matching(scene: Mapping[str, Any], spec: Mapping[str, str]) -> list[int]:
    return [i for i, o in enumerate(scene["objects"]) if all(o[a] == v for a, v in spec.items())]


def _unique_ref(scene: Mapping[str, Any], index: int, rng: np.random.Generator,
                exclude: Sequence[str] = ()) -> dict[str, str] | None:
    """A random attribute subset naming object ``index`` uniquely, without the ``exclude`` attributes."""
    obj = scene["objects"][index]
    attrs = [a for a in ATTRIBUTES if a not in exclude]
    order = list(rng.permutation(len(attrs)))
    for k in range(1, len(attrs) + 1):
        spec = {attrs[i]: obj[attrs[i]] for i in order[:k]}
        if _matching(scene, spec) == [index]:
            return spec
    return None


def _random_spec(rng: np.random.Generator, scene: Mapping[str, Any], like: bool, most: int = 2) -> dict[str, str]:
    attrs = list(ATTRIBUTES)
    k = int(rng.integers(1, most + 1))
    chosen = [attrs[i] for i in rng.choice(len(attrs), size=k, replace=False)]
    if like and scene["objects"]:
        obj = scene["objects"][int(rng.integers(len(scene["objects"])))]
        return {a: obj[a] for a in chosen}
    return {a: ATTRIBUTES[a][int(rng.integers(len(ATTRIBUTES[a])))] for a in chosen}


def _attempt(family: str, target: str, scene: Mapping[str, Any], rng: np.random.Generator
             ) -> tuple[str, list[dict[str, Any]]] | None:
    """One try at a question of ``family`` whose answer might be ``target``: ``(text, program)`` or ``None``."""
    n = len(scene["objects"])
    program: list[dict[str, Any]] = []
    if family in ("exist", "count"):
        spec = _random_spec(rng, scene, like=rng.random() < 0.6)
        start = _scene_filter(program, spec)
        program.append({"function": family, "inputs": [start], "value_inputs": []})
        text = (f"Is there {_article(phrase(spec))}?" if family == "exist"
                else f"How many {phrase(spec, plural=True)} are there?")
        return text, program
    if family.startswith("query_"):
        attr = family[len("query_"):]
        candidates = [i for i, o in enumerate(scene["objects"]) if o[attr] == target]
        if not candidates:
            return None
        index = candidates[int(rng.integers(len(candidates)))]
        spec = _unique_ref(scene, index, rng, exclude=(attr,))
        if spec is None:
            return None
        node = _unique(program, spec)
        program.append({"function": family, "inputs": [node], "value_inputs": []})
        return f"What {attr} is the {phrase(spec)}?", program
    if family == "compare_attribute":
        if n < 2:
            return None
        attr = list(ATTRIBUTES)[int(rng.integers(len(ATTRIBUTES)))]
        i, j = (int(v) for v in rng.choice(n, size=2, replace=False))
        a, b = _unique_ref(scene, i, rng, exclude=(attr,)), _unique_ref(scene, j, rng, exclude=(attr,))
        if a is None or b is None:
            return None
        first = _unique(program, a)
        program.append({"function": f"query_{attr}", "inputs": [first], "value_inputs": []})
        qa = len(program) - 1
        second = _unique(program, b)
        program.append({"function": f"query_{attr}", "inputs": [second], "value_inputs": []})
        program.append({"function": f"equal_{attr}", "inputs": [qa, len(program) - 1], "value_inputs": []})
        return f"Does the {phrase(a)} have the same {attr} as the {phrase(b)}?", program
    if family == "compare_count":
        a = _random_spec(rng, scene, like=True, most=1)
        b = _random_spec(rng, scene, like=True, most=1)
        if a == b:
            return None
        first = _scene_filter(program, a)
        program.append({"function": "count", "inputs": [first], "value_inputs": []})
        ca = len(program) - 1
        second = _scene_filter(program, b)
        program.append({"function": "count", "inputs": [second], "value_inputs": []})
        program.append({"function": "greater_than", "inputs": [ca, len(program) - 1], "value_inputs": []})
        return f"Are there more {phrase(a, True)} than {phrase(b, True)}?", program
    # relate_count / relate_exist
    anchor = int(rng.integers(n))
    ref = _unique_ref(scene, anchor, rng)
    if ref is None:
        return None
    relation = list(RELATIONS)[int(rng.integers(len(RELATIONS)))]
    node = _unique(program, ref)
    program.append({"function": "relate", "inputs": [node], "value_inputs": [relation]})
    spec = _random_spec(rng, scene, like=rng.random() < 0.6, most=1) if rng.random() < 0.8 else {}
    start = _filters(program, len(program) - 1, spec)
    fn = "count" if family == "relate_count" else "exist"
    program.append({"function": fn, "inputs": [start], "value_inputs": []})
    what = phrase(spec, plural=True) if fn == "count" else _article(phrase(spec))
    text = (f"How many {what} are {RELATIONS[relation]} the {phrase(ref)}?" if fn == "count"
            else f"Is there {what} {RELATIONS[relation]} the {phrase(ref)}?")
    return text, program


def family_answers(family: str) -> tuple[str, ...]:
    """The answers a family's questions are balanced over."""
    if family in ("count", "relate_count"):
        return COUNTS
    if family.startswith("query_"):
        return ATTRIBUTES[family[len("query_"):]]
    return ("yes", "no")


def label_far_small(scene: Mapping[str, Any], referred: Sequence[int], input_size: int = INPUT_SIZE,
                    threshold: float = FAR_SMALL_PX, image_size: int = IMAGE_SIZE) -> tuple[bool, float]:
    """``(far_small, largest referred box side in pixels of the input-size whole view)``."""
    if not referred:
        return False, 0.0
    scale = input_size / image_size
    sides = [max(b[2] - b[0], b[3] - b[1]) * scale for b in (scene["objects"][i]["bbox"] for i in referred)]
    return bool(max(sides) < threshold), float(max(sides))


def oracle_window(scene: Mapping[str, Any], referred: Sequence[int], image_size: tuple[int, int],
                  margin: float = 0.5, minimum: float = 1 / 16) -> tuple[float, float, float, float]:
    """A ground-truth square window ``(x0, y0, x1, y1)`` around the referred objects' boxes (the oracle crop).

    The union box grows by ``margin`` of its side on every side, is made square, never smaller than ``minimum``
    of the image's shorter side nor larger than the image, and is shifted inside it. No referred object: the
    whole image.
    """
    h, w = image_size
    if not referred or "bbox" not in scene["objects"][0]:
        return 0.0, 0.0, float(w), float(h)
    boxes = np.array([scene["objects"][i]["bbox"] for i in referred], float)
    x0, y0 = boxes[:, 0].min(), boxes[:, 1].min()
    x1, y1 = boxes[:, 2].max(), boxes[:, 3].max()
    side = max(x1 - x0, y1 - y0) * (1 + 2 * margin)
    side = float(np.clip(side, minimum * min(h, w), min(h, w)))
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left = float(np.clip(cx - side / 2, 0, w - side))
    top = float(np.clip(cy - side / 2, 0, h - side))
    return left, top, left + side, top + side


def generate_questions(scene: Mapping[str, Any], rng: np.random.Generator, n: int) -> list[dict[str, Any]]:
    """``n`` balanced questions on ``scene`` (CLEVR entries without the image fields)."""
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    draws = 0
    while len(out) < n:
        draws += 1
        if draws > 50 * n:  # a small scene has run out of new questions: allow repeats rather than loop
            seen.clear()
        family = FAMILIES[int(rng.integers(len(FAMILIES)))]
        answers = family_answers(family)
        target = answers[int(rng.integers(len(answers)))]
        for _ in range(TRIES):
            made = _attempt(family, target, scene, rng)
            if made is None:
                continue
            text, program = made
            answer, referred = execute(program, scene)
            if answer == target and text not in seen:
                seen.add(text)
                far, px = label_far_small(scene, referred)
                out.append({"question": text, "answer": answer, "program": program,
                            "question_family_index": FAMILIES.index(family), "template_filename": family,
                            "referred": referred, "far_small": far, "referred_px": round(px, 2)})
                break
    return out


# -- CLEVR folders -------------------------------------------------------------------------------------------
def _files(split: str) -> dict[str, str]:
    return {"scenes": f"scenes/CLEVR_{split}_scenes.json", "questions": f"questions/CLEVR_{split}_questions.json"}


def generate_vqa_dataset(out: str | Path, scenes: int, seed: int = 0, split: str = "train",
                         questions_per_scene: int = 10, overwrite: bool = False,
                         progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Render ``scenes`` scenes with questions into a CLEVR-format folder ``out``.

    Layout: ``images/<split>/CLEVR_<split>_<index:06d>.png`` (1024 x 1024), ``scenes/CLEVR_<split>_scenes.json``,
    ``questions/CLEVR_<split>_questions.json``. Scene ``i`` depends only on ``(seed, i)``. Every argument and the
    output folder are checked before anything is written; existing files need ``overwrite``.
    """
    import cv2

    if isinstance(scenes, bool) or not isinstance(scenes, int) or scenes < 1:
        raise InvalidArgumentError(f"scenes={scenes!r} must be an integer >= 1")
    if isinstance(questions_per_scene, bool) or not isinstance(questions_per_scene, int) or not (
            1 <= questions_per_scene <= 100):
        raise InvalidArgumentError(f"questions_per_scene={questions_per_scene!r} must be an integer in [1, 100]")
    if split not in SPLIT_NAMES:
        raise InvalidArgumentError(f"split={split!r} must be one of {', '.join(SPLIT_NAMES)}")
    out = Path(out)
    prepare_output(out, [*list(_files(split).values()), f"images/{split}"], overwrite=overwrite, kind=None)
    world = VQAScenes()
    scene_list: list[dict[str, Any]] = []
    questions: list[dict[str, Any]] = []
    try:
        for index in range(scenes):
            graph = world.scene(seed, index)
            image = world.render()
            name = f"CLEVR_{split}_{index:06d}.png"
            _ok, png = cv2.imencode(".png", image[..., ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 1])
            atomic_write_bytes(out / "images" / split / name, png.tobytes())
            scene_list.append({**graph, "image_filename": name, "split": split})
            rng = scene_rng(seed, index + 1_000_000_007)
            for q in generate_questions(graph, rng, questions_per_scene):
                questions.append({"image_index": index, "image_filename": name, "split": split,
                                  "question_index": len(questions), **q})
            if progress is not None:
                progress(index + 1, scenes)
    finally:
        world.close()
    info = {"split": split, "seed": seed, "scenes": scenes, "generator": "vantage vqa_scenes v0",
            "image_size": [IMAGE_SIZE, IMAGE_SIZE], "far_small_px": FAR_SMALL_PX, "input_size": INPUT_SIZE}
    atomic_write_json(out / _files(split)["scenes"], {"info": info, "scenes": scene_list}, sort_keys=False)
    atomic_write_json(out / _files(split)["questions"], {"info": info, "questions": questions}, sort_keys=False)
    far = sum(q["far_small"] for q in questions)
    return {"out": str(out), "split": split, "scenes": scenes, "questions": len(questions), "far_small": far}


class ClevrFolder:
    """Episodes (image, question, answers, scene graph) from a CLEVR-format folder.

    Reads ``questions/CLEVR_<split>_questions.json`` (required: ``image_filename``, ``question``, and ``answer``
    or a list ``answers``), ``scenes/CLEVR_<split>_scenes.json`` (optional: without it there is no far-small
    label and no oracle window) and ``images/<split>/``. ``split=None`` takes the only split present.
    Decoded images are kept in a small cache (``cache`` images).

    Raises:
        InvalidArgumentError: the folder is missing, is not CLEVR-format (the message says what is missing),
            or a question lacks a field.
    """

    def __init__(self, path: str | Path, split: str | None = None, cache: int = 8) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise InvalidArgumentError(f"dataset={str(path)!r} is not a folder (expected a CLEVR-format folder: "
                                       f"images/<split>/, questions/CLEVR_<split>_questions.json)")
        found = sorted(p.name[len("CLEVR_"):-len("_questions.json")]
                       for p in (self.path / "questions").glob("CLEVR_*_questions.json"))
        if not found:
            raise InvalidArgumentError(f"dataset {self.path} is not CLEVR-format: no questions/CLEVR_<split>_"
                                       f"questions.json")
        if split is None:
            if len(found) > 1:
                raise InvalidArgumentError(f"dataset {self.path} holds splits {found}; choose one with dataset_split")
            split = found[0]
        elif split not in found:
            raise InvalidArgumentError(f"dataset {self.path} has no split {split!r}; it holds {found}")
        self.split = split
        try:
            questions = json.loads((self.path / _files(split)["questions"]).read_text())["questions"]
        except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as exc:
            raise InvalidArgumentError(f"{self.path / _files(split)['questions']} is not CLEVR questions JSON "
                                       f"({type(exc).__name__}: {exc})") from exc
        for k, q in enumerate(questions):
            missing = [f for f in ("image_filename", "question") if f not in q]
            if missing or ("answer" not in q and "answers" not in q):
                raise InvalidArgumentError(f"question {k} of {self.path} lacks {missing or ['answer']}")
        if not questions:
            raise InvalidArgumentError(f"dataset {self.path} has no questions in split {split!r}")
        self.questions = questions
        scenes_file = self.path / _files(split)["scenes"]
        self.scenes: dict[str, dict[str, Any]] = {}
        if scenes_file.is_file():
            try:
                self.scenes = {s["image_filename"]: s for s in json.loads(scenes_file.read_text())["scenes"]}
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise InvalidArgumentError(f"{scenes_file} is not CLEVR scenes JSON ({exc})") from exc
        self.images = self.path / "images" / split
        if not self.images.is_dir():
            raise InvalidArgumentError(f"dataset {self.path} is not CLEVR-format: no images/{split}/ folder")
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache

    def __len__(self) -> int:
        return len(self.questions)

    def answers(self, index: int) -> list[str]:
        """The correct answers of question ``index``."""
        q = self.questions[index]
        return [str(a) for a in q["answers"]] if "answers" in q else [str(q["answer"])]

    def scene(self, index: int) -> dict[str, Any] | None:
        """The scene graph of question ``index``'s image, if the folder has scenes."""
        return self.scenes.get(self.questions[index]["image_filename"])

    def image(self, index: int, min_side: int = 1) -> np.ndarray:
        """The RGB image of question ``index``.

        Raises:
            InvalidArgumentError: the file is missing or unreadable, or its shorter side is under ``min_side``.
        """
        import cv2

        name = self.questions[index]["image_filename"]
        if name in self._cache:
            self._cache.move_to_end(name)
            return self._cache[name]
        path = self.images / name
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise InvalidArgumentError(f"image {path} is missing or not an image")
        if min(bgr.shape[:2]) < min_side:
            raise InvalidArgumentError(f"image {path} is {bgr.shape[1]}x{bgr.shape[0]}; the VQA camera needs at "
                                       f"least {min_side} px on the shorter side")
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)  # a strided copy of a 1024 x 1024 image costs ~5 ms
        self._cache[name] = rgb
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return rgb
