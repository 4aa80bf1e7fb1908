"""The VQA learner: tokenizer, fit on a tiny budget, the environment's callable, save/load, ONNX parity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from perception.errors import InvalidArgumentError
from perception.learner import load_model
from perception.runtime import OnnxRuntime
from perception.vqa import Tokenizer, VQALearner
from perception.vqa.data import ViewSet, crop_view

COLORS = {"red": (220, 30, 30), "blue": (30, 30, 220)}


def tiny_views(n: int = 96, seed: int = 0) -> ViewSet:
    """A square of one colour somewhere on grey; "what color is the square?" -> its colour, "is there a
    square?" -> yes."""
    rng = np.random.default_rng(seed)
    images, questions, answers = [], [], []
    for i in range(n):
        image = np.full((64, 64, 3), 128, np.uint8)
        color = list(COLORS)[i % 2]
        x, y = rng.integers(0, 48, 2)
        image[y:y + 16, x:x + 16] = COLORS[color]
        images.append(image)
        if i % 4 < 2:
            questions.append("What color is the square?")
            answers.append(color)
        else:
            questions.append("Is there a square?")
            answers.append("yes")
    return ViewSet(np.stack(images), questions, answers, np.zeros(n, bool), np.zeros(n, int), ["q"] * n)


def test_tokenizer_maps_unknown_words_and_cuts_long_questions() -> None:
    tok = Tokenizer.build(["What color is the cube?", "Is there a sphere?"], max_length=5)
    ids, unknown = tok.encode("What colour is the cube?")
    assert unknown == 1 and ids[1] == 1 and len(ids) == 5  # "colour" unknown, "?" cut at 5 tokens
    assert tok.encode("")[0] == [tok.ids["?"]]
    assert tok.size == len(tok.words) + 2


@pytest.mark.parametrize("arch", ["film", "mutan"])
def test_fit_reduces_the_loss_on_a_tiny_budget(arch: str) -> None:
    torch.set_num_threads(1)
    model = VQALearner(arch=arch)
    summary = model.fit(tiny_views(), epochs=6, batch_size=16, lr=3e-3, progress=False)
    assert summary["loss"][-1] < 0.7 * summary["loss"][0]
    assert sorted(model.answers) == ["blue", "red", "yes"]
    result = model.infer({"image": list(tiny_views(8, seed=1).images), "question": ["Is there a square?"] * 8})
    assert [r["answer"] for r in result].count("yes") >= 6


def test_the_environment_callable_matches_the_whole_graph() -> None:
    model = VQALearner(vocab=["what", "color", "is", "the", "square", "?"], answers=["red", "blue", "yes"])
    views = tiny_views(4).images
    tokens, unknown = model.tokenize("What color is the triangle?")
    assert unknown == 1
    probs = model(views, [tokens] * 4)
    assert probs.shape == (4, 3) and np.allclose(probs.sum(1), 1)
    again = model(views[:1], [tokens])  # the question embedding is reused: same numbers
    np.testing.assert_allclose(again[0], probs[0], atol=1e-6)
    logits = model.run_network(model.preprocess({"image": views, "question": [tokens] * 4}))["logits"]
    ref = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(probs, ref / ref.sum(1, keepdims=True), atol=1e-6)


@pytest.mark.parametrize("arch", ["film", "mutan"])
def test_two_input_onnx_export_matches_within_1e_4(arch: str, tmp_path: Path) -> None:
    model = VQALearner(arch=arch, vocab=["a", "b", "c"], answers=["x", "y", "z", "w"])
    saved = model.save(tmp_path / "vqa")
    path = model.export(saved)
    rng = np.random.default_rng(0)
    for batch, length in ((1, 3), (5, 9)):
        feeds = {"image": rng.normal(size=(batch, 3, 64, 64)).astype(np.float32),
                 "question": rng.integers(1, 5, (batch, length)).astype(np.int64)}
        feeds["question"][0, -1] = 0  # padding
        ort = OnnxRuntime(path, threads=1, inputs=model.input_specs()).run(feeds)
        ref = model.run_network(feeds)
        for name in ("logits", "image_features", "question_embedding"):
            assert np.abs(ort[name] - ref[name]).max() <= 1e-4
    loaded = load_model(saved)
    feeds = {"image": list(tiny_views(2).images), "question": [[2, 3], [4]]}
    np.testing.assert_array_equal(loaded.run_network(loaded.preprocess(feeds))["logits"],
                                  model.run_network(model.preprocess(feeds))["logits"])
    assert loaded.config["arch"] == arch and loaded.answers == ["x", "y", "z", "w"]


def test_bad_settings_are_named() -> None:
    with pytest.raises(InvalidArgumentError, match="arch='vit'"):
        VQALearner(arch="vit")
    with pytest.raises(InvalidArgumentError, match="epochs=0"):
        VQALearner().fit(tiny_views(), epochs=0)


def test_crop_view_resizes_windows_to_the_input() -> None:
    image = np.zeros((100, 200, 3), np.uint8)
    image[:, 100:] = 255
    view = crop_view(image, (100, 0, 200, 100), 32)
    assert view.shape == (32, 32, 3) and view.min() == 255
