"""PPO on the fused latent: SB3 features extractors for ``vantage/PegInsertion-v0``'s ``Dict`` observations.

* :class:`FusionLatentExtractor` runs a saved fusion encoder (``perception/fusion``), frozen by default, with
  its run-time **compensation** (a modality that reads all zeros is masked out) and **detection** (a modality
  whose leave-one-out reconstruction error stands out is masked out, and the latent recomputed from the rest);
  both can be switched off (:func:`set_fusion_switches`) for the benchmark's ablations.
* :class:`FusionEndToEndExtractor` is the same network, freshly initialised and trained by PPO alone (the
  baseline without self-supervised pretraining); it masks all-zero modalities like the other.

Both output the latent and the (normalised, masked) proprioception.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import torch as th
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

from envs.errors import InvalidArgumentError
from envs.specs import ASSETS
from perception.fusion.learner import FusionEncoderLearner
from perception.fusion.network import FusionEncoderNet
from perception.learner import load_model

__all__ = ["DEFAULT_ENCODER", "FUSION_PPO_PRESETS", "FusionEndToEndExtractor", "FusionLatentExtractor",
           "check_encoder_modalities", "set_fusion_switches"]

DEFAULT_ENCODER = ASSETS / "models" / "fusion_encoder"


def check_encoder_modalities(encoder: FusionEncoderLearner, observation_space: gym.spaces.Space) -> None:
    """Raise naming the modalities an encoder takes that the environment does not observe (or shapes that differ)."""
    if not isinstance(observation_space, gym.spaces.Dict):
        raise InvalidArgumentError(f"the fusion encoder needs a Dict observation, got {observation_space}")
    missing = [m for m in encoder.modalities if m not in observation_space.spaces]
    if missing:
        raise InvalidArgumentError(f"fusion encoder modalities {list(encoder.modalities)} do not match the "
                                   f"environment's {list(observation_space.spaces)}: {missing} not observed")
    for spec in encoder.input_specs()[:-1]:
        shape, wanted = tuple(observation_space.spaces[spec.name].shape), tuple(spec.shape[1:])
        channel_first = (wanted[-1], *wanted[:-1]) if len(wanted) == 3 else wanted  # SB3 transposes images
        if shape not in (wanted, channel_first):
            raise InvalidArgumentError(f"fusion encoder input {spec.name!r} has shape {spec.shape[1:]}; the "
                                       f"environment observes {list(shape)}")


class _FusionExtractor(BaseFeaturesExtractor):
    """Shared forward: raw Dict tensors -> (latent, masked normalised proprioception)."""

    net: FusionEncoderNet

    def __init__(self, observation_space: gym.spaces.Dict, net: FusionEncoderNet,
                 detection: dict[str, list[float]] | None) -> None:
        super().__init__(observation_space, net.latent_size + 15)
        self.modalities = net.modalities
        self.compensate, self.detect = True, detection is not None
        self.set_detection(detection)
        self.last_flags: th.Tensor | None = None
        self.last_missing: th.Tensor | None = None

    def set_detection(self, detection: dict[str, list[float]] | None) -> None:
        """Use a calibration (``FusionEncoderLearner.detection``); it lives in the encoder folder, not in the
        policy's weights, so recalibrating the encoder recalibrates every policy built on it."""
        count = 2 * len(self.modalities)
        self.median = th.tensor(detection["median"]) if detection else th.zeros(count)
        self.scale = th.tensor(detection["scale"]) if detection else th.ones(count)
        self.threshold = th.tensor(detection["threshold"]) if detection else th.zeros(count)

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any) -> None:
        # Policies saved before the calibration moved out of the weights carry it as buffers: skip them.
        for name in ("median", "threshold"):
            state_dict.pop(prefix + name, None)
        super()._load_from_state_dict(state_dict, prefix, *args)

    def _raw(self, observations: dict[str, th.Tensor]) -> list[th.Tensor]:
        out = []
        for m in self.modalities:
            x = observations[m].float()
            if m in ("rgb", "depth") and x.shape[1] in (1, 3) and x.shape[-1] not in (1, 3):
                x = x.permute(0, 2, 3, 1)  # SB3 hands images channel-first
            out.append(x)
        return out

    def forward(self, observations: dict[str, th.Tensor]) -> th.Tensor:
        raw = self._raw(observations)
        n = raw[0].shape[0]
        missing = th.stack([~(x.reshape(n, -1) != 0).any(1) for x in raw], 1)
        mask = th.ones(n, len(self.modalities))
        if self.compensate:
            mask = mask * (~missing).float()
        net = self.net
        normalised = net.normalise(raw)
        features = net.features(normalised)
        latent = net.fuse_features(features, mask)
        flags = th.zeros_like(missing)
        if self.detect:
            with th.no_grad():
                s = net.detection_errors(features, mask, normalised) - self.median  # as FusionEncoderLearner.detect
                count = len(self.modalities)
                loo, own = s[:, :count], s[:, count:]
                score = th.clamp(loo / self.scale[:count], min=0.0)
                if count > 1:
                    score = score + loo - (loo.sum(1, keepdim=True) - loo) / (count - 1)
                over = th.maximum(score - self.threshold[:count], own / self.scale[count:] - self.threshold[count:])
                flags = (over > 0) & ~missing
            if self.compensate and bool(flags.any()):
                mask = mask * (~flags).float()
                latent = net.fuse_features(features, mask)
        self.last_flags, self.last_missing = flags, missing
        if "proprio" in self.modalities:
            i = self.modalities.index("proprio")
            proprio = normalised["proprio"] * mask[:, i:i + 1]
        else:
            proprio = th.zeros(n, 15)
        return th.cat([latent, proprio], 1)


class FusionLatentExtractor(_FusionExtractor):
    """A saved fusion encoder's latent (frozen unless ``fine_tune``), with compensation and detection.

    Args:
        observation_space: the environment's ``Dict`` space (checked against the encoder's modalities).
        encoder: folder of a saved ``fusion_encoder`` model.
        fine_tune: train the encoder's fusion layers with PPO (its modality encoders stay frozen).
    """

    def __init__(self, observation_space: gym.spaces.Dict, encoder: str | Path = DEFAULT_ENCODER,
                 fine_tune: bool = False) -> None:
        model = load_model(encoder)
        if not isinstance(model, FusionEncoderLearner):
            raise InvalidArgumentError(f"{encoder} holds a {model.name} model, not a fusion_encoder")
        check_encoder_modalities(model, observation_space)
        super().__init__(observation_space, model.net, model.detection or None)
        self.net = model.net
        for name, parameter in self.net.named_parameters():
            parameter.requires_grad = bool(fine_tune) and name.startswith("fuse.")
        self.encoder_path = str(encoder)


class FusionEndToEndExtractor(_FusionExtractor):
    """The fusion network trained from scratch by PPO (no self-supervised pretraining, no detection).

    Args:
        observation_space: the environment's ``Dict`` space.
        normalisation: a saved fusion encoder whose input normalisation (data statistics, not weights) is
            copied, so both policies see inputs on the same scale; ``None`` keeps the network's defaults.
        seed: initialisation seed.
    """

    def __init__(self, observation_space: gym.spaces.Dict, normalisation: str | Path | None = DEFAULT_ENCODER,
                 seed: int = 0) -> None:
        th.manual_seed(seed)
        net = FusionEncoderNet(image_size=observation_space["rgb"].shape[1])  # (S, S, 3), or (3, S, S) from SB3
        if normalisation is not None and Path(normalisation).is_dir():
            source = load_model(normalisation).net.state_dict()
            net.load_state_dict({k: v for k, v in source.items() if k.endswith(("_mean", "_std"))}, strict=False)
        super().__init__(observation_space, net, None)
        self.net = net


def set_fusion_switches(policy: Any, compensate: bool = True, detect: bool = True) -> None:
    """Switch a fusion policy's run-time compensation and detection (every fusion extractor it holds)."""
    for module in policy.modules():
        if isinstance(module, _FusionExtractor):
            module.compensate = bool(compensate)
            module.detect = bool(detect) and isinstance(module, FusionLatentExtractor)


_COMMON: dict[str, Any] = {
    "policy": "MultiInputPolicy",
    "learning_rate": 3e-4,
    "n_steps": 512,
    "batch_size": 128,
    "n_epochs": 5,
    "gamma": 0.98,
    "gae_lambda": 0.95,
    "clip_range": 0.2,
    "ent_coef": 0.0,
    "vf_coef": 0.5,
    "max_grad_norm": 0.5,
}
#: PPO presets of the fusion task (merged into :data:`agents.ppo.PPO_PRESETS`).
FUSION_PPO_PRESETS: dict[str, dict[str, Any]] = {
    "fusion-latent": {**_COMMON, "policy_kwargs": {
        "features_extractor_class": FusionLatentExtractor, "features_extractor_kwargs": {},
        "net_arch": {"pi": [128, 128], "vf": [128, 128]}, "normalize_images": False, "log_std_init": -0.7}},
    "fusion-end-to-end": {**_COMMON, "policy_kwargs": {
        "features_extractor_class": FusionEndToEndExtractor, "features_extractor_kwargs": {},
        "net_arch": {"pi": [128, 128], "vf": [128, 128]}, "normalize_images": False, "log_std_init": -0.7}},
}
