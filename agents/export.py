"""Policy export: the deterministic action path of a PPO or Rainbow agent as one ONNX graph, with parity.

The graph takes what the environment gives (uint8 HWC frames, float vectors, integer codes; a ``Dict``
observation as one named input per key) and does the policy's own preprocessing inside: channel order
(HWC -> CHW, as SB3's ``VecTransposeImage`` did in training), scaling to ``[0, 1]``, one-hot codes of discrete
observations, then the features and the actor (PPO: action logits, or for continuous actions the Gaussian mean,
clipped to the action bounds, and ``log_std``) or the Q-head (Rainbow: expected Q-values, noisy layers at their
mean weights). The batch dimension is dynamic, the opset and the TorchScript exporter are pinned
(:func:`perception.export.export_onnx`: torch 2.13's default dynamo exporter fails on SB3's distribution code).

Parity is measured on observations drawn from the environment (the agent acting, sampled, from seeded starts
apart from the evaluation seeds): the ONNX outputs against the torch policy's, and the ONNX argmax against
``model.predict(obs, deterministic=True)``. :mod:`agents.export_bundle` writes the bundle around the graph.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.preprocessing import is_image_space
from torch import nn

from common.errors import InvalidArgumentError
from common.seeding import derive_seeds
from perception.export import BATCH_AXIS, EXPORTER, OPSET, export_onnx

__all__ = ["EXPORT_STREAM", "PolicyGraph", "collect_observations", "describe_actions", "export_policy",
           "policy_inputs", "policy_parity", "reference_outputs", "stack_observations"]

#: Seed stream of the episodes parity and calibration observations come from (apart from evaluation seeds).
EXPORT_STREAM = 7_919
SUPPORTED_ALGOS = ("ppo", "rainbow")


def _input_name(key: str | None) -> str:
    return "obs" if key is None else str(key)


def policy_inputs(model: Any, env_space: spaces.Space) -> list[dict[str, Any]]:
    """The graph's inputs, one per observation key: name, dtype, layout, shape, kind.

    Raises:
        InvalidArgumentError: an observation space the export does not support (the message names it and lists
            the supported ones).
    """
    model_space = model.observation_space
    keyed = isinstance(env_space, spaces.Dict)
    pairs = [(k, env_space[k], model_space[k]) for k in env_space] if keyed else [(None, env_space, model_space)]
    out = []
    for key, env_sub, model_sub in pairs:
        name = _input_name(key)
        if isinstance(env_sub, spaces.Box) and is_image_space(model_sub, check_channels=False):
            if len(env_sub.shape) != 3:
                raise InvalidArgumentError(f"observation {name!r}: image space {env_sub} must be (H, W, C)")
            if env_sub.shape == model_sub.shape:  # SB3 transposes channel-last images only
                raise InvalidArgumentError(f"observation {name!r}: channel-first image observations {env_sub.shape} "
                                           f"are not supported; the runner feeds camera frames (H, W, C)")
            h, w, c = env_sub.shape
            out.append({"name": name, "key": key, "kind": "image", "dtype": "uint8", "layout": "NHWC",
                        "shape": [-1, h, w, c], "channels": "RGB" if c == 3 else f"{c} channels",
                        "on_mismatch": "resize", "transpose": True})
        elif isinstance(env_sub, spaces.Box):
            out.append({"name": name, "key": key, "kind": "vector", "dtype": "float32", "layout": "N" + "C" * len(
                env_sub.shape), "shape": [-1, *env_sub.shape], "transpose": False})
        elif isinstance(env_sub, spaces.Discrete):
            out.append({"name": name, "key": key, "kind": "discrete", "dtype": "int64", "layout": "N", "shape": [-1],
                        "n": int(env_sub.n), "start": int(env_sub.start), "transpose": False})
        elif isinstance(env_sub, spaces.MultiBinary):
            out.append({"name": name, "key": key, "kind": "vector", "dtype": "float32", "layout": "NC",
                        "shape": [-1, *np.atleast_1d(env_sub.shape)], "transpose": False})
        else:
            raise InvalidArgumentError(f"observation {name!r} has space {env_sub}; the export supports Box (images "
                                       f"and vectors), Discrete and MultiBinary observations, alone or in a Dict")
    return out


class PolicyGraph(nn.Module):
    """The exported network: raw observations in, logits / Gaussian / Q-values out (see the module doc)."""

    def __init__(self, model: Any, algo: str, inputs: Sequence[Mapping[str, Any]], action_space: spaces.Space) -> None:
        super().__init__()
        self.policy: BasePolicy = model.policy
        self.algo, self.inputs = algo, [dict(i) for i in inputs]
        self.keyed = isinstance(model.observation_space, spaces.Dict)
        self.continuous = isinstance(action_space, spaces.Box)
        if self.continuous:
            self.register_buffer("low", th.as_tensor(action_space.low, dtype=th.float32))
            self.register_buffer("high", th.as_tensor(action_space.high, dtype=th.float32))

    def forward(self, *tensors: th.Tensor) -> tuple[th.Tensor, ...]:
        obs: dict[str, th.Tensor] = {}
        for spec, x in zip(self.inputs, tensors):
            if spec["transpose"]:
                x = x.permute(0, 3, 1, 2)
            if spec["kind"] == "discrete" and spec.get("start", 0):
                x = x - spec["start"]
            obs[spec["key"] if self.keyed else "obs"] = x
        batch = obs if self.keyed else obs["obs"]
        policy = self.policy
        if self.algo == "rainbow":
            return (policy.q_net(batch, use_noise=False),)
        features = BasePolicy.extract_features(policy, batch, policy.pi_features_extractor)
        out = policy.action_net(policy.mlp_extractor.forward_actor(features))
        if not self.continuous:
            return (out,)
        return th.minimum(th.maximum(out, self.low), self.high), out, policy.log_std.expand_as(out)


def _check_supported(model: Any, algo: str, action_space: spaces.Space) -> None:
    if algo not in SUPPORTED_ALGOS:
        raise InvalidArgumentError(f"cannot export a {algo!r} agent; supported algorithms: "
                                   f"{', '.join(SUPPORTED_ALGOS)}")
    if algo == "rainbow" and not isinstance(action_space, spaces.Discrete):
        raise InvalidArgumentError(f"Rainbow acts on Discrete actions; the run's action space is {action_space}")
    if algo == "ppo":
        if not isinstance(action_space, spaces.Discrete | spaces.Box):
            raise InvalidArgumentError(f"PPO action space {action_space} is not supported; the export supports "
                                       f"Discrete (categorical) and Box (diagonal Gaussian) actions")
        if getattr(model.policy, "use_sde", False) or getattr(model.policy, "squash_output", False):
            raise InvalidArgumentError("PPO with gSDE or squashed outputs is not supported; the export supports a "
                                       "diagonal Gaussian without squashing")


def describe_actions(algo: str, env: gym.Env, default_mode: str) -> dict[str, Any]:
    """The manifest's action table: names, values (what each action does, from the task's decoder) and decoding."""
    space, unwrapped = env.action_space, env.unwrapped
    if isinstance(space, spaces.Box):
        return {"kind": "continuous", "algo": algo, "decode": "gaussian", "shape": list(space.shape),
                "low": space.low.tolist(), "high": space.high.tolist(), "sampling": True,
                "default_mode": default_mode,
                "how": "argmax: output 'action' (the mean, clipped in the graph); sample: clip(mean + exp(log_std) "
                       "* N(0, 1), low, high)"}
    n = int(space.n)
    names = list(getattr(unwrapped, "action_names", []) or [])
    values = None
    decoder = getattr(unwrapped, "decode_action", None)
    if callable(decoder):
        try:
            values = [[round(float(v), 6) for v in np.atleast_1d(decoder(i))] for i in range(n)]
        except Exception:  # a decoder that needs episode state: the table keeps the names only
            values = None
    if not names:
        names = [f"{i}" + (f" {tuple(values[i])}" if values else "") for i in range(n)]
    decode = "q_values" if algo == "rainbow" else "logits"
    return {"kind": "discrete", "algo": algo, "decode": decode, "n": n, "names": names, "values": values,
            "sampling": decode == "logits", "default_mode": default_mode if decode == "logits" else "argmax",
            "how": f"output {decode!r}: the action index is its argmax"
                   + ("; sample: a draw from softmax(logits) with a seeded generator" if decode == "logits" else "")}


def export_policy(model: Any, algo: str, env: gym.Env, path: str | Path) -> dict[str, Any]:
    """Write the policy graph to ``path``; returns the manifest's ``policy`` entry (without files)."""
    _check_supported(model, algo, env.action_space)
    inputs = policy_inputs(model, env.observation_space)
    graph = PolicyGraph(model, algo, inputs, env.action_space)
    model.policy.set_training_mode(False)
    # Discrete codes start at the space's ``start`` (the graph subtracts it before the one-hot).
    dummies = [th.full([2, *s["shape"][1:]], s.get("start", 0), dtype=getattr(th, s["dtype"])) for s in inputs]
    if isinstance(env.action_space, spaces.Box):
        outputs = ["action", "mean", "log_std"]
    else:
        outputs = ["q_values" if algo == "rainbow" else "logits"]
    names = [s["name"] for s in inputs]
    export_onnx(graph, dummies, path, input_names=names, output_names=outputs,
                dynamic_axes={n: {0: BATCH_AXIS} for n in [*names, *outputs]})
    return {"inputs": [{k: v for k, v in s.items() if k not in ("key", "transpose")} for s in inputs],
            "outputs": outputs, "opset": OPSET, "exporter": EXPORTER,
            "in_graph": "uint8 HWC frames -> float, CHW, / 255; discrete codes -> one-hot; features and actor"
                        + (" (Gaussian mean clipped to the action bounds)" if isinstance(env.action_space, spaces.Box)
                           else "")}


def collect_observations(model: Any, env: gym.Env, n: int, seed: int = 0, max_episode_steps: int = 250
                         ) -> list[Any]:
    """``n`` observations the agent meets: it acts (sampled actions) from seeded starts of ``env``.

    Episodes are cut after ``max_episode_steps`` so the observations cover many starts.
    """
    out: list[Any] = []
    episode = 0
    while len(out) < n:
        episode_seed = derive_seeds(seed, episode + 1, EXPORT_STREAM)[episode]
        th.manual_seed(episode_seed)
        obs, _ = env.reset(seed=episode_seed)
        for _ in range(max_episode_steps):
            out.append(obs)
            if len(out) >= n:
                break
            action, _ = model.predict(obs, deterministic=False)
            obs, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                break
        episode += 1
    return out


def stack_observations(observations: Sequence[Any], inputs: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """Batched graph inputs (by input name) from a list of environment observations."""
    if inputs and inputs[0].get("key") is None and not isinstance(observations[0], Mapping):
        return {inputs[0]["name"]: np.stack([np.asarray(o) for o in observations]).astype(inputs[0]["dtype"])}
    return {s["name"]: np.stack([np.asarray(o[s.get("key", s["name"])]) for o in observations]).astype(s["dtype"])
            for s in inputs}


def reference_outputs(model: Any, algo: str, observations: Sequence[Any], batch: int = 256
                      ) -> tuple[np.ndarray, np.ndarray]:
    """The torch policy's raw outputs (logits, Q-values or Gaussian means) and ``predict``'s deterministic
    actions for each observation, through SB3's own code path."""
    policy = model.policy
    raws, actions = [], []
    for i in range(0, len(observations), batch):
        chunk = observations[i:i + batch]
        if isinstance(chunk[0], Mapping):
            obs = {k: np.stack([np.asarray(o[k]) for o in chunk]) for k in chunk[0]}
        else:
            obs = np.stack(chunk)
        tensor, _ = policy.obs_to_tensor(obs)
        with th.no_grad():
            if algo == "rainbow":
                raw = policy.q_net(tensor, use_noise=False)
            else:
                features = BasePolicy.extract_features(policy, tensor, policy.pi_features_extractor)
                raw = policy.action_net(policy.mlp_extractor.forward_actor(features))
        raws.append(raw.cpu().numpy())
        actions.append(np.asarray(model.predict(obs, deterministic=True)[0]))
    return np.concatenate(raws), np.concatenate(actions)


def policy_parity(onnx_path: str | Path, inputs: Sequence[Mapping[str, Any]], observations: Sequence[Any],
                  reference: tuple[np.ndarray, np.ndarray], threads: int = 1) -> dict[str, Any]:
    """ONNX Runtime against the torch reference: argmax (or clipped-action) agreement and max |Δ output|.

    Args:
        onnx_path: the policy graph (fp32, fp16 or int8).
        inputs: :func:`policy_inputs`.
        observations: environment observations.
        reference: :func:`reference_outputs` of the same observations.
    """
    from deploy.inference import OnnxSession

    session = OnnxSession(onnx_path, threads=threads)
    feeds = stack_observations(observations, inputs)
    n = len(observations)
    got = [session.run({k: v[i:i + 256] for k, v in feeds.items()}) for i in range(0, n, 256)]
    raw_ref, actions_ref = reference
    if "action" in got[0]:
        mean = np.concatenate([g["mean"] for g in got])
        action = np.concatenate([g["action"] for g in got])
        diff = np.abs(mean.astype(np.float64) - raw_ref)
        action_diff = np.abs(action.astype(np.float64) - actions_ref.reshape(action.shape))
        return {"samples": n, "max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
                "action_max_abs_diff": float(action_diff.max()),
                "action_agreement": float(np.mean(np.all(action_diff <= 1e-3, axis=1)))}
    name = next(iter(got[0]))
    scores = np.concatenate([g[name] for g in got]).astype(np.float64)
    diff = np.abs(scores - raw_ref)
    onnx_actions = scores.argmax(1)
    # How much worse, by the torch policy's own scores, the exported graph's choice is where the two differ: near
    # zero means they disagree only where the policy itself hardly prefers one action.
    regret = raw_ref.max(1) - raw_ref[np.arange(n), onnx_actions]
    return {"samples": n, "output": name, "max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
            "argmax_agreement": float(np.mean(onnx_actions == raw_ref.argmax(1))),
            "predict_agreement": float(np.mean(onnx_actions == actions_ref.reshape(-1))),
            "max_score_regret": float(regret.max())}
