"""VQA task agents: the fused-map extractor on a frozen VQA model, the baselines, Rainbow and PPO on the task."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from agents.vqa_policies import (
    VQA_PPO_PRESETS,
    VQA_RAINBOW_PRESETS,
    RandomMovesPolicy,
    RulePolicy,
    VQAFusionExtractor,
    WholeImagePolicy,
)
from envs.tasks.vqa_camera import ACTIONS, VQACameraEnv
from perception.vqa import VQALearner
from tests.envs.test_vqa_camera import write_clevr

WORDS = ["is", "there", "a", "red", "cube", "zorblax", "widget", "?"]


@pytest.fixture
def setup(tmp_path: Path) -> tuple[VQACameraEnv, Path]:
    model = VQALearner(vocab=WORDS, answers=["yes", "no", "blue"])
    folder = model.save(tmp_path / "vqa")
    env = VQACameraEnv(vqa=model, dataset=str(write_clevr(tmp_path / "clevr")))
    return env, folder


def test_the_extractor_fuses_frozen_vqa_features_with_a_learned_projection(setup: tuple) -> None:
    env, folder = setup
    extractor = VQAFusionExtractor(env.observation_space, vqa_dir=str(folder))
    obs, _ = env.reset(seed=0)
    batch = {"view": torch.as_tensor(obs["view"][None]).permute(0, 3, 1, 2).float() / 255,
             "question": torch.as_tensor(obs["question"][None]).float(),
             "camera": torch.as_tensor(obs["camera"][None])}
    out = extractor(batch)
    assert out.shape == (1, 64 * 8 * 8 + 4) and extractor.features_dim == 4100
    # the window state rides along: the whole image at the start, no move made yet
    torch.testing.assert_close(out[0, -4:], torch.tensor([0.5, 0.5, 1.0, 0.0]))
    trainable = {n for n, p in extractor.named_parameters() if p.requires_grad}
    assert trainable == {"w.weight", "w.bias"}  # the VQA model stays frozen
    # u = x~ * (W q): the frozen stem's map, scaled per channel by the projected question.
    net = VQALearner.load(folder).net
    view = torch.as_tensor(obs["view"][None]).permute(0, 3, 1, 2).float() / 255
    tokens = torch.as_tensor(obs["question"][None])
    expected = net.pool(net.stem((view - 0.5) / 0.5)) * extractor.w(net.encode_question(tokens))[:, :, None, None]
    torch.testing.assert_close(out[:, :-4], expected.flatten(1))


def test_baselines() -> None:
    whole, rule, rand = WholeImagePolicy(), RulePolicy(), RandomMovesPolicy(seed=3)
    assert {whole.predict(None)[0] for _ in range(5)} == {ACTIONS.index("null")}
    moves = [ACTIONS[rule.predict(None, episode_start=np.array([k == 0]))[0]] for k in range(5)]
    assert moves == ["zoom_in", "up", "zoom_in", "left", "right"]
    assert ACTIONS[rule.predict(None, episode_start=np.array([True]))[0]] == "zoom_in"  # a new episode restarts
    a = [RandomMovesPolicy(seed=3).predict(None)[0] for _ in range(1)]
    assert a == [rand.predict(None)[0]] and 0 <= a[0] < len(ACTIONS)


@pytest.mark.parametrize("algo", ["rainbow", "ppo"])
def test_agents_build_and_step_on_the_task_with_the_paper_head(setup: tuple, algo: str) -> None:
    from stable_baselines3.common.vec_env import DummyVecEnv

    env, folder = setup
    vec = DummyVecEnv([lambda: env])
    kwargs = {"features_extractor_class": VQAFusionExtractor, "features_extractor_kwargs": {"vqa_dir": str(folder)}}
    torch.set_num_threads(1)
    if algo == "rainbow":
        from agents.rainbow import Rainbow

        preset = VQA_RAINBOW_PRESETS["vqa"]
        assert preset["gamma"] == 0.99 and preset["policy_kwargs"]["net_arch"] == [512]
        model = Rainbow.from_preset("vqa", vec, learning_starts=20, buffer_size=200, seed=0,
                                    policy_kwargs={**kwargs, "net_arch": [512]})
    else:
        from agents.ppo import make_ppo

        assert VQA_PPO_PRESETS["vqa"]["policy"] == "MultiInputPolicy"
        model = make_ppo(vec, "vqa", overrides={"n_steps": 32, "batch_size": 16, "policy_kwargs": kwargs}, seed=0)
    stem = [p.clone() for p in model.policy.parameters() if not p.requires_grad]
    model.learn(64)
    assert stem and all(torch.equal(a, b) for a, b in zip(stem, [p for p in model.policy.parameters()
                                                                 if not p.requires_grad]))
    action, _ = model.predict(env.reset(seed=1)[0], deterministic=True)
    assert 0 <= int(action) < len(ACTIONS)


class RedFractionVQA:
    """A VQA stand-in whose confidence in "yes" is the view's share of red pixels (x 4, capped): zooming onto the
    red square near the image centre raises it. Tokens come from a real (untrained) VQA model."""

    def __init__(self, model: VQALearner) -> None:
        self.model, self.answers, self.tokenizer = model, model.answers, model.tokenizer

    def tokenize(self, question: str) -> tuple[list[int], int]:
        return self.model.tokenize(question)

    def __call__(self, views: np.ndarray, tokens: list) -> np.ndarray:
        red = ((views[..., 0] > 150) & (views[..., 1] < 80)).mean((1, 2))
        yes = np.clip(0.05 + 4 * red, 0, 0.95)
        return np.stack([yes, (1 - yes) / 2, (1 - yes) / 2], 1)


@pytest.mark.slow
def test_rainbow_learns_to_look_at_the_red_square(tmp_path: Path) -> None:
    import json

    import cv2
    from stable_baselines3.common.vec_env import DummyVecEnv

    from agents.rainbow import Rainbow

    model = VQALearner(vocab=WORDS, answers=["yes", "no", "blue"])
    folder = model.save(tmp_path / "vqa")
    root = tmp_path / "red"
    (root / "images" / "train").mkdir(parents=True)
    (root / "questions").mkdir()
    questions = []
    for i in range(8):
        image = np.full((256, 256, 3), 128, np.uint8)
        x, y = 116 + i, 120 - i
        image[y:y + 16, x:x + 16] = (220, 20, 20)
        cv2.imwrite(str(root / "images" / "train" / f"{i}.png"), image[..., ::-1])
        questions.append({"image_filename": f"{i}.png", "question": "Is there a red cube?", "answer": "yes"})
    (root / "questions" / "CLEVR_train_questions.json").write_text(json.dumps({"questions": questions}))

    def make() -> VQACameraEnv:
        return VQACameraEnv(vqa=RedFractionVQA(VQALearner.load(folder)), dataset=str(root))

    torch.set_num_threads(1)
    kwargs = {"features_extractor_class": VQAFusionExtractor, "features_extractor_kwargs": {"vqa_dir": str(folder)},
              "net_arch": [512]}
    agent = Rainbow.from_preset("vqa", DummyVecEnv([make]), seed=0, learning_starts=300, learning_rate=5e-4,
                                target_update_interval=250, policy_kwargs=kwargs)
    agent.learn(3000)

    def mean_return(act) -> float:
        env, total = make(), 0.0
        for k in range(8):
            obs, _ = env.reset(seed=k, options={"index": k})
            done = False
            while not done:
                obs, reward, done, _, _ = env.step(act(obs))
                total += reward
        return total / 8

    learned = mean_return(lambda obs: int(agent.predict(obs, deterministic=True)[0]))
    rng = np.random.default_rng(0)
    random = mean_return(lambda obs: int(rng.integers(len(ACTIONS))))
    # Zooming in all the way is worth ~0.9; the random policy's moves cancel out.
    assert learned > random + 0.4, (learned, random)
