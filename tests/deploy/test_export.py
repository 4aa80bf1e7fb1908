"""Policy export: parity with the torch policies, bundles and their manifests, precisions, refusals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from gymnasium import spaces
from stable_baselines3 import PPO

from agents.export import export_policy, policy_inputs, policy_parity, reference_outputs
from agents.export_bundle import export_bundle
from agents.rainbow import Rainbow
from common.errors import InvalidArgumentError, OutputExistsError, UnknownNameError
from deploy.bundle import load_bundle
from deploy.inference import OnnxSession
from tests.fakes import DictObsEnv


@pytest.mark.parametrize("name", ["tracking_ppo", "tracking_rainbow", "face_ppo", "face_rainbow"])
def test_bundle_parity_with_the_torch_policy(bundles: dict[str, Path], name: str) -> None:
    bundle = load_bundle(bundles[name])
    parity = bundle.manifest["parity"]["fp32"]["policy"]
    assert parity["samples"] == 64
    assert parity["argmax_agreement"] == 1.0 and parity["predict_agreement"] == 1.0
    assert parity["max_abs_diff"] <= 1e-4
    assert parity["max_score_regret"] == 0.0
    assert bundle.actions["decode"] == ("q_values" if name.endswith("rainbow") else "logits")
    assert bundle.actions["sampling"] is name.endswith("ppo")
    (image,) = bundle.policy["inputs"]
    assert image["dtype"] == "uint8" and image["layout"] == "NHWC" and image["shape"][0] == -1
    # Dynamic batch: the graph takes 3 frames at once as well as 1.
    session = OnnxSession(bundle.root / "policy.onnx")
    frames = np.random.default_rng(0).integers(0, 256, (3, *image["shape"][1:]), dtype=np.uint8)
    assert next(iter(session.run({"obs": frames}).values())).shape[0] == 3


def test_face_bundle_holds_the_perception_chain(bundles: dict[str, Path]) -> None:
    bundle = load_bundle(bundles["face_ppo"])
    chain = bundle.perception
    assert chain["chain"] == "deploy.faces:FaceChain" and chain["trigger"] == {"actions": ["recognize"],
                                                                                "every_step": False}
    names = [m["name"] for m in chain["models"]]
    assert names == ["detector", "recognizer"]
    for model in chain["models"]:
        assert (bundle.root / model["files"]["fp32"]).is_file()
        assert model["files"]["fp32"] in bundle.manifest["files"]
    assert bundle.actions["names"] == ["recognize", "forward", "backward", "arc_left", "arc_right"]
    assert bundle.actions["default_mode"] == "sample"  # the face agent runs sampled (its task spec says so)
    tracking = load_bundle(bundles["tracking_ppo"])
    assert tracking.perception is None and tracking.actions["default_mode"] == "argmax"
    assert tracking.actions["values"][0] == [-6.28, -6.28]  # wheel speeds (rad/s) of action 0


def test_fp16_and_int8_bundles(runs: dict[str, Path], tmp_path: Path) -> None:
    fp16 = export_bundle(runs["tracking_ppo"], tmp_path / "fp16", precision="fp16", samples=64,
                         calibration_samples=32)
    assert fp16["parity"]["fp16"]["policy"]["max_abs_diff"] <= 1e-2
    assert fp16["parity"]["fp16"]["policy"]["argmax_agreement"] >= 0.9
    int8 = export_bundle(runs["tracking_ppo"], tmp_path / "int8", precision="int8", samples=64,
                         calibration_samples=32)
    bundle = load_bundle(tmp_path / "int8")
    assert bundle.precision == "int8" and bundle.precisions() == ["fp32", "int8"]
    policy = int8["parity"]["int8"]["policy"]
    assert policy["qdq_nodes"]["QuantizeLinear"] > 0 and policy["samples"] == 64
    # The agreement is measured, not assumed: recompute it from the quantized graph on ONNX Runtime.
    calibration = np.load(bundle.root / "calibration" / "policy.npz")
    assert calibration["obs"].shape == (32, 48, 48, 3) and calibration["obs"].dtype == np.uint8
    from agents.training import load_agent

    model = load_agent(runs["tracking_ppo"])[1]
    obs = list(calibration["obs"])
    again = policy_parity(bundle.root / "policy.int8.onnx", bundle.policy["inputs"], obs,
                          reference_outputs(model, "ppo", obs))
    assert 0.0 <= again["argmax_agreement"] <= 1.0 and again["samples"] == 32


def test_face_int8_quantizes_the_perception_models_too(runs: dict[str, Path], tmp_path: Path) -> None:
    manifest = export_bundle(runs["face_ppo"], tmp_path / "b", precision="int8", samples=64, calibration_samples=16)
    for name in ("policy", "detector", "recognizer"):
        assert (tmp_path / "b" / f"{name}.int8.onnx").is_file()
    assert manifest["parity"]["int8"]["detector"]["samples"] > 0
    assert set(manifest["calibration"]) == {"policy", "detector", "recognizer"}


@pytest.mark.parametrize("algo", ["ppo", "rainbow"])
def test_dict_observations_export_one_input_per_key(algo: str, tmp_path: Path) -> None:
    env = DictObsEnv()
    if algo == "ppo":
        model = PPO("MultiInputPolicy", env, n_steps=16, batch_size=16, seed=0, device="cpu")
    else:
        model = Rainbow("MultiInputPolicy", env, learning_starts=8, buffer_size=100, batch_size=8, seed=0)
    entry = export_policy(model, algo, env, tmp_path / "policy.onnx")
    names = {i["name"]: (i["kind"], i["dtype"]) for i in entry["inputs"]}
    assert names == {"vec": ("vector", "float32"), "mode": ("discrete", "int64")}
    observations = []
    obs, _ = env.reset(seed=0)
    for _ in range(40):
        observations.append(obs)
        obs, *_ = env.step(env.action_space.sample())
    inputs = policy_inputs(model, env.observation_space)
    parity = policy_parity(tmp_path / "policy.onnx", inputs, observations, reference_outputs(model, algo,
                                                                                               observations))
    assert parity["argmax_agreement"] == 1.0 and parity["max_abs_diff"] <= 1e-5


def test_continuous_ppo_exports_a_clipped_gaussian(tmp_path: Path) -> None:
    import gymnasium as gym

    env = gym.make("Pendulum-v1")
    model = PPO("MlpPolicy", env, n_steps=16, batch_size=16, seed=0, device="cpu")
    entry = export_policy(model, "ppo", env, tmp_path / "policy.onnx")
    assert entry["outputs"] == ["action", "mean", "log_std"]
    obs = [env.observation_space.sample() for _ in range(32)]
    parity = policy_parity(tmp_path / "policy.onnx", policy_inputs(model, env.observation_space), obs,
                           reference_outputs(model, "ppo", obs))
    assert parity["action_agreement"] == 1.0 and parity["max_abs_diff"] <= 1e-5


def test_unsupported_spaces_and_algorithms_are_named(runs: dict[str, Path], tmp_path: Path) -> None:
    class Fake:
        observation_space = spaces.MultiDiscrete([3, 4])

    with pytest.raises(InvalidArgumentError, match=r"MultiDiscrete.*supports Box"):
        policy_inputs(Fake(), spaces.MultiDiscrete([3, 4]))
    edited = tmp_path / "run"
    shutil.copytree(runs["tracking_ppo"], edited)
    config = json.loads((edited / "config.json").read_text())
    (edited / "config.json").write_text(json.dumps({**config, "algo": "sac"}))
    with pytest.raises(UnknownNameError, match=r"'sac'.*ppo, rainbow"):
        export_bundle(edited, tmp_path / "bundle")
    assert not (tmp_path / "bundle").exists()
    with pytest.raises(UnknownNameError, match="precision 'int4'"):
        export_bundle(runs["tracking_ppo"], tmp_path / "bundle", precision="int4")


def test_export_never_writes_over_a_bundle_without_overwrite(runs: dict[str, Path], bundles: dict[str, Path],
                                                             tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    shutil.copytree(bundles["tracking_ppo"], out)
    before = (out / "manifest.json").read_bytes()
    with pytest.raises(OutputExistsError, match="already holds a bundle; pass --overwrite"):
        export_bundle(runs["tracking_ppo"], out, samples=8, calibration_samples=4)
    assert (out / "manifest.json").read_bytes() == before
    export_bundle(runs["tracking_ppo"], out, samples=8, calibration_samples=4, overwrite=True)
    assert load_bundle(out).manifest["parity"]["fp32"]["policy"]["samples"] == 8
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]  # no staging folder left behind
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="holds other files"):
        export_bundle(runs["tracking_ppo"], other, overwrite=True)
    assert sorted(p.name for p in other.iterdir()) == ["notes.txt"]
