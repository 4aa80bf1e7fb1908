"""Fusion controllers: the latent and end-to-end extractors, PPO training on them, and the fusion benchmark."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import envs  # noqa: F401  (registers the environments)
from agents.fusion_benchmark import conditions, run_fusion_benchmark
from agents.fusion_policies import FusionEndToEndExtractor, FusionLatentExtractor, set_fusion_switches
from agents.training import TrainConfig, load_agent, train
from common.errors import OutputExistsError
from envs.errors import InvalidArgumentError
from perception.fusion import FusionEncoderLearner, write_dataset

SIZE = 16


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fusion encoder fitted briefly on data from the environment at 16 px."""
    torch.set_num_threads(1)
    env = gym.make("vantage/PegInsertion-v0", image_size=SIZE)
    rows: dict[str, list] = {k: [] for k in ("rgb", "depth", "wrench", "proprio", "action", "next_proprio",
                                             "episode", "step")}
    rng = np.random.default_rng(0)
    for episode in range(3):
        obs, _ = env.reset(seed=episode)
        for step in range(20):
            action = rng.uniform(-1, 1, 3).astype(np.float32)
            nxt, *_ = env.step(action)
            for key in ("rgb", "depth", "wrench", "proprio"):
                rows[key].append(obs[key])
            rows["action"].append(np.append(action, 0))
            rows["next_proprio"].append(nxt["proprio"])
            rows["episode"].append(episode)
            rows["step"].append(step)
            obs = nxt
    env.close()
    root = tmp_path_factory.mktemp("fusion")
    data = write_dataset(root / "data", {k: np.asarray(v) for k, v in rows.items()}, {})
    learner = FusionEncoderLearner(image_size=SIZE, latent=32)
    learner.fit(data, epochs=2, batch_size=16, progress=False)
    return learner.save(root / "encoder")


def test_latent_extractor_masks_missing_and_flags(encoder: Path) -> None:
    env = gym.make("vantage/PegInsertion-v0", image_size=SIZE, failures="missing:depth")
    obs, _ = env.reset(seed=0)
    env.close()
    extractor = FusionLatentExtractor(env.observation_space, encoder=encoder)
    assert not any(p.requires_grad for p in extractor.parameters())
    batch = {k: torch.as_tensor(v[None]) for k, v in obs.items()}
    features = extractor(batch)
    assert features.shape == (1, extractor.features_dim) and extractor.last_missing[0].tolist() == [0, 1, 0, 0]
    extractor.compensate = False
    uncompensated = extractor(batch)
    assert not torch.allclose(features, uncompensated)


def test_an_encoder_that_does_not_fit_the_environment_is_refused(encoder: Path) -> None:
    space = gym.make("vantage/PegInsertion-v0").observation_space  # 64 px images, the encoder takes 16 px
    with pytest.raises(InvalidArgumentError, match="fusion encoder input 'rgb' has shape"):
        FusionLatentExtractor(space, encoder=encoder)
    reduced = gym.spaces.Dict({k: v for k, v in space.spaces.items() if k != "wrench"})
    with pytest.raises(InvalidArgumentError, match=r"\['wrench'\] not observed"):
        FusionLatentExtractor(reduced, encoder=encoder)


def test_ppo_trains_on_the_latent_and_end_to_end(encoder: Path, tmp_path: Path) -> None:
    for preset, kwargs in (("fusion-latent", {"encoder": str(encoder)}),
                           ("fusion-end-to-end", {"normalisation": str(encoder)})):
        config = TrainConfig(task="fusion", steps=64, n_envs=1, seed=0, preset=preset, checkpoint_every=64,
                             env_kwargs={"image_size": SIZE, "backend": "mujoco"},
                             agent_overrides={"n_steps": 32, "batch_size": 16, "n_epochs": 1,
                                              "policy_kwargs": {"features_extractor_kwargs": kwargs}})
        train(config, tmp_path / preset, progress_bar=False, log=lambda _: None)
        _, model = load_agent(tmp_path / preset)
        extractor = model.policy.features_extractor
        assert isinstance(extractor, FusionLatentExtractor if preset == "fusion-latent" else FusionEndToEndExtractor)
        set_fusion_switches(model.policy, compensate=False, detect=False)
        assert not extractor.compensate and not extractor.detect


def test_benchmark_json_shape_with_the_scripted_policy(tmp_path: Path) -> None:
    only = ["all", "missing:depth", "missing:depth:no_compensation", "noise:wrench", "noise:wrench:no_detection"]
    result = run_fusion_benchmark(tmp_path / "bench", {}, episodes=2, policies=["scripted"], only=only,
                                  video=True, progress=False)
    saved = json.loads((tmp_path / "bench" / "fusion.json").read_text())
    assert saved["success_rate"]["scripted"].keys() == set(only)
    assert saved["success_rate"]["scripted"]["all"] == result["success_rate"]["scripted"]["all"]
    assert saved["same_as"]["scripted"] == {"missing:depth:no_compensation": "missing:depth",
                                            "noise:wrench:no_detection": "noise:wrench"}
    assert (tmp_path / "bench" / "fusion.png").is_file() and (tmp_path / "bench" / "fusion_insertion.mp4").is_file()
    with pytest.raises(OutputExistsError, match=r"already holds fusion\.json"):
        run_fusion_benchmark(tmp_path / "bench", {}, episodes=2, policies=["scripted"], only=["all"])


def test_condition_names_follow_the_issue() -> None:
    names = conditions()
    assert "all" in names and "missing:rgb" in names and "missing:rgb:no_compensation" in names
    assert "noise:wrench" in names and "frozen:depth:no_detection" in names and "dropout:proprio" in names
    assert len(names) == 1 + 4 * 2 + 3 * 4 * 2
    with pytest.raises(InvalidArgumentError, match="unknown condition 'smoke:rgb'"):
        run_fusion_benchmark("out", {}, episodes=1, policies=["scripted"], only=["smoke:rgb"])
    with pytest.raises(InvalidArgumentError, match="needs its training run"):
        run_fusion_benchmark("out", {}, episodes=1, policies=["latent_ppo"])
