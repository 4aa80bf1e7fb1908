"""The VQA virtual-camera task: question programs, balancing, far-small labels, camera geometry, reward, datasets."""

from __future__ import annotations

import json
import math
import warnings
from collections import Counter
from pathlib import Path

import cv2
import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs  # noqa: F401  (registers the environments)
from envs.errors import InvalidActionError, InvalidArgumentError, UnknownNameError
from envs.tasks.vqa_camera import ACTIONS, MIN_WINDOW, VQACameraEnv, VQAEvaluator
from envs.worlds.vqa_questions import (
    FAMILIES,
    execute,
    family_answers,
    generate_questions,
    label_far_small,
    oracle_window,
)
from tests.fakes import FakeVQA


def obj(shape: str, color: str, material: str, size: str, x: float, depth: float, box: list[float]) -> dict:
    return {"shape": shape, "color": color, "material": material, "size": size, "3d_coords": [x, depth, 0.3],
            "rotation": 0.0, "bbox": box}


def graph(objects: list[dict]) -> dict:
    """A scene graph with CLEVR relationships from the objects' ground coordinates (x right, y away)."""
    rel = {}
    for name, axis, sign in (("left", 0, -1), ("right", 0, 1), ("front", 1, -1), ("behind", 1, 1)):
        rel[name] = [[j for j, o in enumerate(objects) if j != i and
                      sign * (o["3d_coords"][axis] - objects[i]["3d_coords"][axis]) > 0] for i in range(len(objects))]
    return {"objects": objects, "relationships": rel}


SCENE = graph([
    obj("cube", "red", "metal", "large", 0.0, 3.0, [400, 500, 600, 700]),       # 0: near, big
    obj("sphere", "blue", "rubber", "small", -2.0, 15.0, [300, 200, 330, 230]),  # 1: far, 30 px
    obj("cylinder", "red", "rubber", "small", 2.0, 10.0, [700, 300, 760, 360]),  # 2: 60 px
    obj("cube", "green", "metal", "small", 1.0, 16.0, [560, 190, 590, 220]),     # 3: far, 30 px
])


def node(fn: str, inputs: list[int] = (), values: list[str] = ()) -> dict:
    return {"function": fn, "inputs": list(inputs), "value_inputs": list(values)}


@pytest.mark.parametrize(("family", "program", "answer", "referred"), [
    ("exist", [node("scene"), node("filter_color", [0], ["red"]), node("exist", [1])], "yes", [0, 2]),
    ("count", [node("scene"), node("filter_size", [0], ["small"]), node("count", [1])], "3", [1, 2, 3]),
    ("query_color", [node("scene"), node("filter_shape", [0], ["sphere"]), node("unique", [1]),
                     node("query_color", [2])], "blue", [1]),
    ("query_shape", [node("scene"), node("filter_color", [0], ["green"]), node("unique", [1]),
                     node("query_shape", [2])], "cube", [3]),
    ("query_material", [node("scene"), node("filter_shape", [0], ["cylinder"]), node("unique", [1]),
                        node("query_material", [2])], "rubber", [2]),
    ("query_size", [node("scene"), node("filter_color", [0], ["blue"]), node("unique", [1]),
                    node("query_size", [2])], "small", [1]),
    ("compare_attribute", [node("scene"), node("filter_shape", [0], ["sphere"]), node("unique", [1]),
                           node("query_material", [2]), node("scene"), node("filter_shape", [4], ["cylinder"]),
                           node("unique", [5]), node("query_material", [6]),
                           node("equal_material", [3, 7])], "yes", [1, 2]),
    ("compare_count", [node("scene"), node("filter_color", [0], ["red"]), node("count", [1]), node("scene"),
                       node("filter_material", [3], ["metal"]), node("count", [4]),
                       node("greater_than", [2, 5])], "no", [0, 2, 3]),
    ("relate_count", [node("scene"), node("filter_color", [0], ["blue"]), node("unique", [1]),
                      node("relate", [2], ["right"]), node("count", [3])], "3", [0, 1, 2, 3]),
    ("relate_exist", [node("scene"), node("filter_color", [0], ["green"]), node("unique", [1]),
                      node("relate", [2], ["behind"]), node("filter_shape", [3], ["sphere"]),
                      node("exist", [4])], "no", [3]),
])
def test_programs_of_every_family_on_a_hand_built_scene(family: str, program: list, answer: str,
                                                         referred: list[int]) -> None:
    assert family in FAMILIES
    assert execute(program, SCENE) == (answer, referred)


def test_unique_on_several_objects_is_an_error() -> None:
    with pytest.raises(InvalidArgumentError, match="unique"):
        execute([node("scene"), node("filter_color", [0], ["red"]), node("unique", [1])], SCENE)


def random_graph(rng: np.random.Generator) -> dict:
    from envs.worlds.vqa_scenes import COLORS, MATERIALS, SHAPES, SIZES

    objects = []
    combos = [(s, c, m, z) for s in SHAPES for c in COLORS for m in MATERIALS for z in SIZES]
    for k in rng.choice(len(combos), size=int(rng.integers(5, 10)), replace=False):
        s, c, m, z = combos[int(k)]
        x0, y0 = rng.uniform(0, 900, 2)
        side = rng.uniform(20, 200)
        objects.append(obj(s, c, m, z, float(rng.uniform(-5, 5)), float(rng.uniform(2, 18)),
                           [x0, y0, x0 + side, y0 + side]))
    return graph(objects)


def test_generated_questions_are_balanced_and_their_programs_give_their_answers() -> None:
    rng = np.random.default_rng(0)
    by_family: dict[str, Counter] = {f: Counter() for f in FAMILIES}
    for _ in range(400):
        scene = random_graph(rng)
        for q in generate_questions(scene, rng, 10):
            assert execute(q["program"], scene) == (q["answer"], q["referred"])
            by_family[q["template_filename"]][q["answer"]] += 1
    for family, counts in by_family.items():
        expected = family_answers(family)
        assert set(counts) <= set(expected)
        # Answer-first sampling: every answer of a family is asked about equally often (Poisson noise aside).
        seen = np.array([counts[a] for a in expected])
        assert seen.min() >= 0.5 * seen.mean() and seen.max() <= 1.6 * seen.mean(), (family, counts)


def test_questions_are_the_same_per_scene_index() -> None:
    scene = random_graph(np.random.default_rng(3))
    a = generate_questions(scene, np.random.default_rng(7), 10)
    b = generate_questions(scene, np.random.default_rng(7), 10)
    assert a == b


def test_far_small_labelling() -> None:
    # 30 px of 1024 is 1.9 px at 64; 60 px is 3.75 px; 200 px is 12.5 px.
    assert label_far_small(SCENE, [1, 3]) == (True, pytest.approx(30 * 64 / 1024))
    assert label_far_small(SCENE, [1, 2])[0] is True
    assert label_far_small(SCENE, [0, 1])[0] is False
    assert label_far_small(SCENE, []) == (False, 0.0)
    assert label_far_small(SCENE, [2], threshold=3.0)[0] is False


def test_oracle_window_is_square_inside_the_image_around_the_objects() -> None:
    x0, y0, x1, y1 = oracle_window(SCENE, [1], (1024, 1024))
    assert x1 - x0 == pytest.approx(y1 - y0) == pytest.approx(64)  # 30 px * 2 = 60 < 1/16 of 1024
    assert x0 <= 300 and x1 >= 330 and y0 <= 200 and y1 >= 230
    x0, y0, x1, y1 = oracle_window(SCENE, [0, 3], (1024, 1024))
    assert x0 >= 0 and y0 >= 0 and x1 <= 1024 and y1 <= 1024
    assert oracle_window(SCENE, [], (768, 1024)) == (0.0, 0.0, 1024.0, 768.0)


# -- the environment on a tiny CLEVR-format folder written here ---------------------------------------------
def write_clevr(root: Path, size: tuple[int, int] = (256, 320), n: int = 3) -> Path:
    rng = np.random.default_rng(0)
    (root / "images" / "val").mkdir(parents=True)
    (root / "questions").mkdir()
    (root / "scenes").mkdir()
    scenes, questions = [], []
    for i in range(n):
        image = rng.integers(0, 255, (*size, 3), dtype=np.uint8)
        name = f"CLEVR_val_{i:06d}.png"
        cv2.imwrite(str(root / "images" / "val" / name), image)
        scenes.append({"image_index": i, "image_filename": name, **SCENE})
        questions.append({"image_index": i, "image_filename": name, "question": "Is there a red cube?",
                          "answer": "yes", "referred": [1], "far_small": True, "template_filename": "exist"})
    questions.append({"image_index": 0, "image_filename": scenes[0]["image_filename"],
                      "question": "Is there a zorblax widget?", "answers": ["no", "blue"]})
    (root / "questions" / "CLEVR_val_questions.json").write_text(json.dumps({"questions": questions}))
    (root / "scenes" / "CLEVR_val_scenes.json").write_text(json.dumps({"scenes": scenes}))
    return root


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return write_clevr(tmp_path / "clevr")


def make(folder: Path, **settings: object) -> VQACameraEnv:
    return VQACameraEnv(vqa=FakeVQA(), dataset=str(folder), **settings)


def test_env_passes_the_gymnasium_checker_on_a_dataset(folder: Path) -> None:
    env = gym.make("vantage/VQAVirtualCamera-v0", vqa=FakeVQA(), dataset=str(folder), render_mode="rgb_array")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped)
    env.reset(seed=0)
    assert env.render().dtype == np.uint8
    env.close()
    env.close()


@pytest.mark.parametrize("moves", ["coarse", "paper"])
def test_window_never_leaves_the_image_and_zoom_is_bounded(folder: Path, moves: str) -> None:
    env = make(folder, moves=moves, steps=100)
    rng = np.random.default_rng(1)
    env.reset(seed=0)
    h, w = 256, 320
    zooms = 0
    for _ in range(25):
        action = int(rng.choice(len(ACTIONS), p=[0.1, 0.1, 0.1, 0.1, 0.45, 0.05, 0.1]))
        _, _, terminated, _, info = env.step(action)
        x0, y0, x1, y1 = info["window"]
        assert x0 >= -1e-6 and y0 >= -1e-6 and x1 <= w + 1e-6 and y1 <= h + 1e-6
        assert (x1 - x0) / w == pytest.approx((y1 - y0) / h, abs=1e-3)  # the image's aspect ratio
        assert (x1 - x0) / w >= MIN_WINDOW - 1e-9
        zooms = max(zooms, info["zoom_level"])
        assert info["zoom_level"] <= env.levels and not terminated
    for _ in range(env.levels + 3):  # zoom in past the limit: the window stops at 1/16 of the image
        _, _, _, _, info = env.step(ACTIONS.index("zoom_in"))
    x0, y0, x1, y1 = info["window"]
    assert info["zoom_level"] == env.levels and (x1 - x0) / w == pytest.approx(MIN_WINDOW, rel=0.01)


def test_zoom_out_undoes_zoom_in_about_the_window_centre(folder: Path) -> None:
    env = make(folder)
    _, info = env.reset(seed=0)
    assert info["window"] == [0.0, 0.0, 320.0, 256.0]
    _, _, _, _, info = env.step(ACTIONS.index("zoom_in"))
    assert info["window"] == [80.0, 64.0, 240.0, 192.0]  # half the side, same centre
    _, _, _, _, info = env.step(ACTIONS.index("left"))
    assert info["window"] == [48.0, 64.0, 208.0, 192.0]  # a quarter of the shorter window side (128 / 4)
    _, _, _, _, info = env.step(ACTIONS.index("zoom_out"))
    assert info["window"] == [0.0, 0.0, 320.0, 256.0]  # shifted back inside the image
    paper = make(folder, moves="paper")
    paper.reset(seed=0)
    paper.step(ACTIONS.index("zoom_in"))
    _, _, _, _, info = paper.step(ACTIONS.index("right"))
    x0, _, x1, _ = info["window"]
    # floor(0.1 * 256) = 25 px to the right from x0 = 6.4 would pass the right edge: it stops there
    assert x1 - x0 == pytest.approx(0.96 * 320) and x1 == pytest.approx(320)


def test_reward_is_the_change_of_the_correct_answers_probability(folder: Path) -> None:
    env = make(folder)
    vqa = FakeVQA()
    obs, info = env.reset(seed=0, options={"index": 0})
    yes = vqa.answers.index("yes")
    previous = vqa.probabilities(obs["view"])[yes]
    assert info["confidence_correct"] == pytest.approx(previous)
    views = [obs["view"]]
    for action in ("zoom_in", "up", "zoom_in", "left", "null"):
        obs, reward, terminated, _, info = env.step(ACTIONS.index(action))
        now = vqa.probabilities(obs["view"])[yes]
        assert reward == pytest.approx(now - previous, abs=1e-12) == info["reward_confidence"]
        previous = now
        views.append(obs["view"])
    assert terminated
    probs = np.stack([vqa.probabilities(v) for v in views])
    assert info["answer_average"] == vqa.answers[int(probs.mean(0).argmax())] == info["answer"]
    assert info["answer_last"] == vqa.answers[int(probs[-1].argmax())]
    assert info["answer_most_confident"] == vqa.answers[int(probs[probs.max(1).argmax()].argmax())]
    assert info["correct_oracle_frame"] == any(vqa.answers[int(p.argmax())] == "yes" for p in probs)


def test_several_correct_answers_reward_the_largest_increase(folder: Path) -> None:
    env = make(folder)
    vqa = FakeVQA()
    obs, info = env.reset(seed=0, options={"index": 3})
    assert info["answers"] == ["no", "blue"]
    assert info["unknown_words"] == 2  # zorblax, widget: the unknown token, counted, no crash
    ids = [vqa.answers.index(a) for a in ("no", "blue")]
    before = vqa.probabilities(obs["view"])[ids]
    obs, reward, _, _, _ = env.step(ACTIONS.index("zoom_in"))
    after = vqa.probabilities(obs["view"])[ids]
    assert reward == pytest.approx(float(np.max(after - before)), abs=1e-12)


def test_bad_input_is_refused_by_name(folder: Path, tmp_path: Path) -> None:
    with pytest.raises(UnknownNameError, match="camera 'fisheye'"):
        make(folder, camera="fisheye")
    with pytest.raises(UnknownNameError, match="reward 'td'"):
        make(folder, reward="td")
    with pytest.raises(InvalidArgumentError, match="not a folder"):
        make(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidArgumentError, match="not CLEVR-format"):
        make(tmp_path / "empty")
    small = write_clevr(tmp_path / "small", size=(40, 40))
    env = make(small)
    with pytest.raises(InvalidArgumentError, match="40x40"):
        env.reset(seed=0)
    env = make(folder)
    env.reset(seed=0)
    for action in (7, -1, 1.5, True, np.array([0, 1])):
        with pytest.raises(InvalidActionError):
            env.step(action)
    with pytest.raises(InvalidArgumentError, match="index=99"):
        env.reset(options={"index": 99})
    flat = write_clevr(tmp_path / "flat", n=1)
    (flat / "scenes" / "CLEVR_val_scenes.json").unlink()
    with pytest.raises(InvalidArgumentError, match="camera='ptz'"):
        make(flat, camera="ptz")
    with pytest.raises(InvalidArgumentError, match="vqa must be"):
        VQACameraEnv(dataset=str(folder))


def test_the_evaluator_reports_every_rule_overall_and_far_small(folder: Path) -> None:
    env = make(folder)
    evaluator = VQAEvaluator()
    records = []
    for k in range(4):
        _, info = env.reset(seed=k, options={"index": k})
        evaluator.start(info)
        done = False
        while not done:
            _, _reward, done, _, info = env.step(ACTIONS.index("zoom_in"))
            evaluator.step(info)
        records.append({"steps": 5, "return_": 0.0, **evaluator.finish()})
    summary = evaluator.summarize(records)
    assert summary["far_small_episodes"] == 3
    assert 0 <= summary["accuracy_oracle_frame"] <= 1
    assert summary["accuracy_oracle_frame"] >= summary["accuracy_average"] - 1e-12
    assert math.isfinite(summary["accuracy_average_far_small"])


def test_generated_scenes_and_the_ptz_camera() -> None:
    env = VQACameraEnv(vqa=FakeVQA(), camera="ptz", n_scenes=3, questions_per_scene=2)
    obs, info = env.reset(seed=0)
    assert obs["view"].shape == (64, 64, 3) and info["pan"] == 0.0 and info["tilt"] == 0.0
    first = obs["view"]
    obs, _, _, _, info = env.step(ACTIONS.index("zoom_in"))
    obs, _, _, _, info = env.step(ACTIONS.index("up"))
    assert info["tilt"] > 0 and not np.array_equal(obs["view"], first)
    crop = VQACameraEnv(vqa=FakeVQA(), n_scenes=3, questions_per_scene=2)
    a, _ = crop.reset(seed=0)
    b, _ = crop.reset(seed=0)
    np.testing.assert_array_equal(a["view"], b["view"])
    # The first ptz view and the whole-image crop show the same scene from the same camera.
    assert np.abs(a["view"].astype(int) - first.astype(int)).mean() < 20
    env.close()
    crop.close()
