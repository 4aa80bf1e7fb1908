"""Training views for the VQA model from a CLEVR-format folder: whole images, crops around the referred objects,
and random windows, each with the question and its answer.

Perception reads the folder format only (``questions/CLEVR_<split>_questions.json``, optional
``scenes/CLEVR_<split>_scenes.json``, ``images/<split>/``); it never imports the simulator code that writes it.
The crop here is the environment's (``envs/tasks/vqa_camera.py``): integer window bounds, area resampling.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from perception.errors import InvalidArgumentError

__all__ = ["VIEW_KINDS", "ViewSet", "crop_view", "make_views", "read_clevr"]

VIEW_KINDS = ("whole", "oracle", "random")


def crop_view(image: np.ndarray, window: tuple[float, float, float, float], size: int) -> np.ndarray:
    """The window ``(x0, y0, x1, y1)`` of ``image`` resized to ``size x size`` (area resampling when shrinking)."""
    h, w = image.shape[:2]
    x0, y0 = max(0, round(window[0])), max(0, round(window[1]))
    x1, y1 = min(w, max(x0 + 1, round(window[2]))), min(h, max(y0 + 1, round(window[3])))
    part = image[y0:y1, x0:x1]
    interp = cv2.INTER_AREA if part.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(part, (size, size), interpolation=interp)


def oracle_box(boxes: np.ndarray, image_size: tuple[int, int], margin: float = 0.5,
               minimum: float = 1 / 16) -> tuple[float, float, float, float]:
    """A square window around ``boxes`` grown by ``margin`` of its side, inside the image (the env's oracle)."""
    h, w = image_size
    x0, y0 = boxes[:, 0].min(), boxes[:, 1].min()
    x1, y1 = boxes[:, 2].max(), boxes[:, 3].max()
    side = float(np.clip(max(x1 - x0, y1 - y0) * (1 + 2 * margin), minimum * min(h, w), min(h, w)))
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left = float(np.clip(cx - side / 2, 0, w - side))
    top = float(np.clip(cy - side / 2, 0, h - side))
    return left, top, left + side, top + side


def read_clevr(path: str | Path) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]], Path]:
    """``(questions, scenes by image file, image folder)`` of the only split in a CLEVR-format folder."""
    path = Path(path)
    files = sorted((path / "questions").glob("CLEVR_*_questions.json")) if path.is_dir() else []
    if len(files) != 1:
        raise InvalidArgumentError(f"{path} is not a CLEVR-format folder with one split (expected one "
                                   f"questions/CLEVR_<split>_questions.json, found {len(files)})")
    split = files[0].name[len("CLEVR_"):-len("_questions.json")]
    questions = json.loads(files[0].read_text())["questions"]
    scenes_file = path / "scenes" / f"CLEVR_{split}_scenes.json"
    scenes = ({s["image_filename"]: s for s in json.loads(scenes_file.read_text())["scenes"]}
              if scenes_file.is_file() else {})
    return questions, scenes, path / "images" / split


@dataclass
class ViewSet:
    """Views with their questions and answers: ``images (N, S, S, 3) uint8``, ``questions``, ``answers``,
    ``far_small``, ``kind`` (index into :data:`VIEW_KINDS`), ``family`` (template name)."""

    images: np.ndarray
    questions: list[str]
    answers: list[str]
    far_small: np.ndarray
    kind: np.ndarray
    family: list[str]

    def __len__(self) -> int:
        return len(self.questions)


def make_views(path: str | Path, size: int = 64, kinds: tuple[str, ...] = VIEW_KINDS, seed: int = 0,
               max_questions: int | None = None) -> ViewSet:
    """One view of each kind in ``kinds`` per question of a CLEVR folder.

    ``oracle``: the window around the question's referred objects (jittered by up to a quarter of its side and
    scaled by 0.8-1.5 so the model sees them at many sizes; the whole image when nothing is referred);
    ``random``: a square window of side 1/16-1 of the image at a uniform position.
    """
    questions, scenes, images = read_clevr(path)
    if max_questions is not None:
        questions = questions[:max_questions]
    rng = np.random.default_rng(seed)
    by_image: dict[str, list[dict[str, Any]]] = {}
    for q in questions:
        by_image.setdefault(q["image_filename"], []).append(q)
    out_images, out_q, out_a, out_far, out_kind, out_family = [], [], [], [], [], []
    for name, qs in by_image.items():
        bgr = cv2.imread(str(images / name), cv2.IMREAD_COLOR)
        if bgr is None:
            raise InvalidArgumentError(f"image {images / name} is missing or unreadable")
        image = np.ascontiguousarray(bgr[..., ::-1])
        h, w = image.shape[:2]
        scene = scenes.get(name)
        for q in qs:
            for kind in kinds:
                if kind == "whole":
                    window = (0.0, 0.0, float(w), float(h))
                elif kind == "oracle":
                    referred = q.get("referred", [])
                    if scene is None or not referred:
                        window = (0.0, 0.0, float(w), float(h))
                    else:
                        boxes = np.array([scene["objects"][i]["bbox"] for i in referred], float)
                        x0, y0, x1, y1 = oracle_box(boxes, (h, w), margin=float(rng.uniform(0.2, 0.9)))
                        side = (x1 - x0) * float(rng.uniform(0.8, 1.5))
                        side = float(np.clip(side, min(h, w) / 16, min(h, w)))
                        cx = (x0 + x1) / 2 + float(rng.uniform(-0.25, 0.25)) * side
                        cy = (y0 + y1) / 2 + float(rng.uniform(-0.25, 0.25)) * side
                        left = float(np.clip(cx - side / 2, 0, w - side))
                        top = float(np.clip(cy - side / 2, 0, h - side))
                        window = (left, top, left + side, top + side)
                else:
                    side = min(h, w) * float(np.exp(rng.uniform(np.log(1 / 16), 0)))
                    left, top = float(rng.uniform(0, w - side)), float(rng.uniform(0, h - side))
                    window = (left, top, left + side, top + side)
                out_images.append(crop_view(image, window, size))
                out_q.append(q["question"])
                out_a.append(str(q["answers"][0] if "answers" in q else q["answer"]))
                out_far.append(bool(q.get("far_small", False)))
                out_kind.append(VIEW_KINDS.index(kind))
                out_family.append(str(q.get("template_filename", "")))
    if not out_images:
        raise InvalidArgumentError(f"{path} has no questions")
    return ViewSet(np.stack(out_images), out_q, out_a, np.array(out_far), np.array(out_kind), out_family)
