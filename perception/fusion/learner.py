"""The self-supervised fusion encoder as a toolkit learner (``fusion_encoder``): fit, eval, infer, save, export.

Objectives (each switchable with ``objectives=``; the loss is their sum):

============== ========================================================================================
``contact``    contact or not, from the latent (cross-entropy; labels from force thresholds,
               :func:`perception.fusion.dataset.contact_labels`)
``next_pose``  the tool's next position and yaw given the latent and the action (MSE)
``alignment``  are these sensor streams from the same moment? (cross-entropy; negatives pair the force
               window and proprioception of another sample with the images)
``reconstruction``  each modality decoded from the full latent and from the latent of the others (MSE);
               the leave-one-out errors are what flags a corrupted sensor
``compensation``  one modality dropped at random; L2 pull of the reduced latent to the full one (detached),
               so a missing or flagged sensor can be dropped at run time
============== ========================================================================================

Action-conditioned optical flow (optional in the seeds) is not implemented.

**Detection** (:meth:`FusionEncoderLearner.detect`), two scores per modality: the rise of the log of its
leave-one-out error (images at full resolution) over its median on clean data, in clean standard deviations,
plus its rise minus the mean rise of the others (errors are compared with each other: one bad input raises them
all); and the rise of its self-reconstruction error (noise is not reproducible). A modality is flagged when either
exceeds its threshold, calibrated on clean held-out data for 1 % false positives each, and an all-zero reading
is flagged as missing. **Compensation**: flagged and missing
modalities are masked out and the latent recomputed from the rest (:meth:`FusionEncoderLearner.encode`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from common.errors import check_choice
from perception.errors import InvalidArgumentError
from perception.fusion.dataset import FusionDataset, contact_labels
from perception.fusion.network import FUSIONS, MODALITIES, POSE_SIZE, FusionEncoderNet
from perception.learner import Learner
from perception.progress import Progress
from perception.specs import ArrayPreprocessing, TensorSpec

__all__ = ["OBJECTIVES", "FusionEncoderLearner", "corrupt", "score_errors"]

OBJECTIVES = ("contact", "next_pose", "alignment", "reconstruction", "compensation")
#: Gaussian noise per modality for synthetic corruption (the environment's ``noise`` failure at std 1).
NOISE_SCALE = {"rgb": 60.0, "depth": 0.15, "wrench": 3.0, "proprio": 0.1}
SYNTHETIC = ("noise", "frozen", "zeros")
_POSE_SCALE = np.array([0.01, 0.01, 0.01, 0.05, 0.05], np.float32)


def score_errors(errors: np.ndarray, median: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Detection scores of ``(N, 2M)`` log errors (leave-one-out, then self); see the module docstring."""
    s = errors - median
    count = s.shape[1] // 2
    loo, own = s[:, :count], s[:, count:]
    score = np.maximum(loo / scale[:count], 0.0)
    if count > 1:
        score = score + loo - (loo.sum(1, keepdims=True) - loo) / (count - 1)
    return np.concatenate([score, own / scale[count:]], 1)


def corrupt(arrays: Mapping[str, np.ndarray], modality: str, kind: str, rng: np.random.Generator,
            lag: int = 10) -> dict[str, np.ndarray]:
    """A copy of a batch with ``modality`` corrupted: ``noise`` (Gaussian, :data:`NOISE_SCALE`), ``frozen``
    (the reading ``lag`` samples earlier) or ``zeros``."""
    check_choice("synthetic corruption", kind, SYNTHETIC)
    out = dict(arrays)
    x = np.asarray(arrays[modality])
    if kind == "zeros":
        out[modality] = np.zeros_like(x)
    elif kind == "frozen":
        out[modality] = x[np.maximum(np.arange(len(x)) - lag, 0)]
    else:
        noisy = x.astype(np.float64) + rng.normal(0.0, NOISE_SCALE[modality], x.shape)
        if x.dtype == np.uint8:
            noisy = np.clip(noisy, 0, 255)
        out[modality] = noisy.astype(x.dtype)
    return out


class FusionEncoderLearner(Learner):
    """Self-supervised multimodal encoder with corruption detection and modality compensation.

    Args:
        modalities: the sensors it fuses, in input order (subset of ``rgb, depth, wrench, proprio``).
        fusion: ``concat``, ``sum`` or ``product``.
        latent: latent width.
        image_size: side of the square camera images.
        window: force samples per window.
        proprio: proprioception size.
        action: action size (shorter actions are zero-padded).
        objectives: the self-supervised objectives trained (:data:`OBJECTIVES`).
        seed: initialisation seed.
    """

    name = "fusion_encoder"
    version = "1"
    role = "fusion encoder"

    def __init__(self, modalities: Sequence[str] = MODALITIES, fusion: str = "concat", latent: int = 128,
                 image_size: int = 64, window: int = 32, proprio: int = 15, action: int = 4,
                 objectives: Sequence[str] = OBJECTIVES, seed: int = 0) -> None:
        modalities, objectives = list(modalities), list(objectives)
        if not modalities or len(set(modalities)) != len(modalities):
            raise InvalidArgumentError(f"modalities must be distinct names from {list(MODALITIES)}, got {modalities}")
        for name in modalities:
            check_choice("modality", name, MODALITIES)
        check_choice("fusion", fusion, FUSIONS)
        for name in objectives:
            check_choice("objective", name, OBJECTIVES)
        if not objectives:
            raise InvalidArgumentError(f"at least one objective is needed; objectives: {', '.join(OBJECTIVES)}")
        for key, value, low in (("latent", latent, 8), ("image_size", image_size, 16), ("window", window, 4),
                                ("proprio", proprio, 1), ("action", action, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise InvalidArgumentError(f"{key}={value!r} must be an integer >= {low}")
        self.detection: dict[str, list[float]] = {}
        super().__init__(modalities=modalities, fusion=fusion, latent=latent, image_size=image_size, window=window,
                         proprio=proprio, action=action, objectives=objectives, seed=seed)

    # -- spec -------------------------------------------------------------------------------------------
    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.config["modalities"])

    def build_network(self) -> FusionEncoderNet:
        torch.manual_seed(self.config["seed"])
        c = self.config
        return FusionEncoderNet(c["modalities"], c["fusion"], c["latent"], c["image_size"], c["window"],
                                c["proprio"], c["action"])

    def input_specs(self) -> list[TensorSpec]:
        c = self.config
        s = c["image_size"]
        shapes = {"rgb": ([-1, s, s, 3], "RGB image, 0-255, HWC"), "depth": ([-1, s, s, 1], "depth, metres"),
                  "wrench": ([-1, c["window"], 6], "force/torque window [fx fy fz tx ty tz], N and N m"),
                  "proprio": ([-1, c["proprio"]], "tool position, yaw sin/cos, tool velocity, joint angles")}
        ranges = {"rgb": [0, 255], "depth": [0.3, 1.5], "wrench": [-5, 5], "proprio": [-1, 1]}
        specs = [TensorSpec(m, shapes[m][0], "float32", shapes[m][1], ArrayPreprocessing("float32"),
                            value_range=ranges[m]) for m in self.modalities]
        specs.append(TensorSpec("mask", [-1, len(self.modalities)], "float32",
                                f"1 = modality present, 0 = dropped ({', '.join(self.modalities)})",
                                ArrayPreprocessing("float32"), value_range=[0, 1]))
        return specs

    def output_spec(self) -> list[TensorSpec]:
        return [TensorSpec("latent", [-1, self.config["latent"]], "float32", "fused latent of the present modalities"),
                TensorSpec("errors", [-1, 2 * len(self.modalities)], "float32",
                           "log reconstruction error per modality: from the others (leave-one-out), then from all")]

    def extra_state(self) -> dict[str, Any]:
        return {"detection": self.detection}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.detection = dict(state.get("detection", {}))

    # -- batches ----------------------------------------------------------------------------------------
    def _tensors(self, arrays: Mapping[str, np.ndarray]) -> list[torch.Tensor]:
        return [torch.as_tensor(np.asarray(arrays[m], np.float32)) for m in self.modalities]

    def losses(self, batch: Mapping[str, np.ndarray], rng: np.random.Generator | None = None
               ) -> dict[str, torch.Tensor]:
        """Each enabled objective's loss on a batch of raw arrays (``rgb`` ... ``proprio``, ``action``,
        ``next_proprio``)."""
        rng = rng or np.random.default_rng(0)
        net = self.net
        n, count = len(batch["proprio"]), len(self.modalities)
        normalised = net.normalise(self._tensors(batch))
        features = net.features(normalised)
        full = torch.ones(n, count)
        latent = net.fuse_features(features, full)
        out: dict[str, torch.Tensor] = {}
        objectives = self.config["objectives"]
        if "contact" in objectives:
            labels = torch.as_tensor(contact_labels(batch["wrench"]))
            out["contact"] = torch.nn.functional.binary_cross_entropy_with_logits(net.contact(latent)[:, 0], labels)
        if "next_pose" in objectives:
            action = np.zeros((n, self.config["action"]), np.float32)
            given = np.asarray(batch["action"], np.float32)
            action[:, :given.shape[1]] = given[:, :self.config["action"]]
            target = (np.asarray(batch["next_proprio"], np.float32)[:, :POSE_SIZE]
                      - np.asarray(batch["proprio"], np.float32)[:, :POSE_SIZE]) / _POSE_SCALE
            prediction = net.next_pose(torch.cat([latent, torch.as_tensor(action)], 1))
            out["next_pose"] = torch.nn.functional.mse_loss(prediction, torch.as_tensor(target))
        if "alignment" in objectives and count > 1 and n > 1:
            shift = int(rng.integers(1, n))
            moved = [i for i, m in enumerate(self.modalities) if m in ("wrench", "proprio")] or [count - 1]
            mixed = features.clone()
            mixed[:, moved] = torch.roll(features[:, moved], shift, 0)
            logits = torch.cat([net.align(latent)[:, 0], net.align(net.fuse_features(mixed, full))[:, 0]])
            labels = torch.cat([torch.ones(n), torch.zeros(n)])
            out["alignment"] = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels)
        if "reconstruction" in objectives:
            targets = net.targets(normalised)
            direct = torch.stack([((net.decoders[m](latent) - t) ** 2).mean()
                                  for m, t in zip(self.modalities, targets)])
            out["reconstruction"] = direct.mean() + net.reconstruction_errors(features, full, targets).mean()
        if "compensation" in objectives and count > 1:
            dropped = torch.as_tensor(rng.integers(0, count, n))
            keep = full - torch.nn.functional.one_hot(dropped, count).float()
            out["compensation"] = ((net.fuse_features(features, keep) - latent.detach()) ** 2).mean()
        return out

    # -- training ---------------------------------------------------------------------------------------
    def _set_normalisation(self, arrays: Mapping[str, np.ndarray]) -> None:
        net = self.net
        with torch.no_grad():
            if "wrench" in self.modalities:
                w = np.asarray(arrays["wrench"], np.float64).reshape(-1, 6)
                net.wrench_mean.copy_(torch.as_tensor(w.mean(0)))
                net.wrench_std.copy_(torch.as_tensor(np.maximum(w.std(0), 0.5)))
            if "proprio" in self.modalities:
                p = np.asarray(arrays["proprio"], np.float64)
                net.proprio_mean.copy_(torch.as_tensor(p.mean(0)))
                net.proprio_std.copy_(torch.as_tensor(np.maximum(p.std(0), 1e-2)))
            if "depth" in self.modalities:
                d = np.asarray(arrays["depth"][:: max(1, len(arrays["depth"]) // 200)], np.float64)
                net.depth_mean.fill_(float(d.mean()))
                net.depth_std.fill_(float(max(d.std(), 1e-3)))

    def fit(self, dataset: FusionDataset, epochs: int = 10, batch_size: int = 64, lr: float = 5e-4,
            holdout: float = 0.1, progress: bool = True) -> dict[str, Any]:
        """Train on ``dataset``, then calibrate detection on its held-out episodes.

        Returns:
            ``{"history": per-epoch mean loss per objective, "detection": calibration, "samples": ...}``.
        """
        for key, value, low in (("epochs", epochs, 1), ("batch_size", batch_size, 2)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise InvalidArgumentError(f"{key}={value!r} must be an integer >= {low}")
        if not (isinstance(lr, int | float) and math.isfinite(lr) and lr > 0):
            raise InvalidArgumentError(f"lr={lr!r} must be a positive number")
        if not 0 <= holdout < 1:
            raise InvalidArgumentError(f"holdout={holdout!r} must be in [0, 1)")
        arrays = dataset.arrays
        rng = np.random.default_rng(self.config["seed"])
        train_index, held_index = self._split(dataset, holdout, rng)
        self._set_normalisation({k: v[train_index] for k, v in arrays.items() if k in self.modalities})
        net = self.net
        optimiser = torch.optim.Adam(net.parameters(), lr=lr)
        history: list[dict[str, float]] = []
        batches = math.ceil(len(train_index) / batch_size)
        bar = Progress(epochs * batches, desc="fusion encoder", unit="batch", enabled=progress)
        for _ in range(epochs):
            net.train()
            order = rng.permutation(train_index)
            sums: dict[str, float] = {}
            for start in range(0, len(order), batch_size):
                index = np.sort(order[start:start + batch_size])
                if len(index) < 2:
                    continue
                terms = self.losses({k: v[index] for k, v in arrays.items()}, rng)
                loss = sum(terms.values())
                optimiser.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
                optimiser.step()
                for key, value in terms.items():
                    sums[key] = sums.get(key, 0.0) + value.item() * len(index)
                bar.update(1)
            history.append({k: v / len(train_index) for k, v in sums.items()})
        bar.close()
        net.eval()
        self._runtime = None
        self.saved_identity = None
        self.training_data_hash = dataset.content_hash
        calibration = held_index if len(held_index) else train_index
        self.calibrate({k: v[calibration] for k, v in arrays.items()})
        self.metrics = {"history_first": history[0], "history_last": history[-1], "epochs": epochs,
                        "train_samples": len(train_index), "calibration_samples": len(calibration)}
        return {"history": history, "detection": self.detection, **self.metrics}

    @staticmethod
    def _split(dataset: FusionDataset, holdout: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Training and held-out sample indices; whole episodes are held out."""
        episode = dataset.arrays["episode"]
        episodes = np.unique(episode)
        held = rng.choice(episodes, max(1, round(holdout * len(episodes))), replace=False).tolist() \
            if holdout and len(episodes) > 1 else []
        return np.flatnonzero(~np.isin(episode, held)), np.flatnonzero(np.isin(episode, held))

    def calibrate_on(self, dataset: FusionDataset, holdout: float = 0.1, false_positive_rate: float = 0.02
                     ) -> dict[str, list[float]]:
        """:meth:`calibrate` on the episodes :meth:`fit` held out of ``dataset`` (with the same seed and holdout)."""
        if not 0 < false_positive_rate < 1:
            raise InvalidArgumentError(f"false_positive_rate={false_positive_rate!r} must be in (0, 1)")
        train_index, held_index = self._split(dataset, holdout, np.random.default_rng(self.config["seed"]))
        index = held_index if len(held_index) else train_index
        self.saved_identity = None
        return self.calibrate({k: v[index] for k, v in dataset.arrays.items()}, false_positive_rate)

    # -- detection --------------------------------------------------------------------------------------
    def errors(self, arrays: Mapping[str, np.ndarray], mask: np.ndarray | None = None, batch: int = 256
               ) -> tuple[np.ndarray, np.ndarray]:
        """``(latents, log leave-one-out errors)`` of raw arrays on the selected runtime."""
        n = len(arrays[self.modalities[0]])
        mask = np.ones((n, len(self.modalities)), np.float32) if mask is None else np.asarray(mask, np.float32)
        latents, errors = [], []
        for start in range(0, n, batch):
            feeds = {m: np.asarray(arrays[m][start:start + batch], np.float32) for m in self.modalities}
            feeds["mask"] = mask[start:start + batch]
            out = self.run_network(feeds)
            latents.append(out["latent"])
            errors.append(out["errors"])
        return np.concatenate(latents), np.concatenate(errors)

    def _relative(self, errors: np.ndarray) -> np.ndarray:
        """``(N, 2M)`` detection scores. Leave-one-out half: the log error's rise over its clean median in clean
        standard deviations (when positive) plus its rise relative to the mean rise of the others; self half:
        the rise in clean standard deviations."""
        return score_errors(np.asarray(errors, np.float64), np.asarray(self.detection["median"]),
                            np.asarray(self.detection["scale"]))

    def calibrate(self, arrays: Mapping[str, np.ndarray], false_positive_rate: float = 0.02) -> dict[str, list[float]]:
        """Set the detection thresholds from clean samples (``false_positive_rate`` per modality)."""
        _, errors = self.errors(arrays)
        self.detection = {"median": np.median(errors, 0).tolist(), "scale": np.maximum(errors.std(0), 1e-3).tolist()}
        relative = self._relative(errors)
        # Two scores per modality, each given half the false-positive budget.
        self.detection["threshold"] = np.quantile(relative, 1 - false_positive_rate / 2, axis=0).tolist()
        self.detection["false_positive_rate"] = [false_positive_rate]
        return self.detection

    def detect(self, errors: np.ndarray) -> np.ndarray:
        """``(N, M)`` bool: the modalities one of whose two scores exceeds its threshold.

        Raises:
            InvalidArgumentError: the model was never calibrated (fit, or :meth:`calibrate`).
        """
        if "threshold" not in self.detection:
            raise InvalidArgumentError("this fusion encoder has no detection calibration: fit() or calibrate() it")
        relative = self._relative(np.asarray(errors, np.float64))
        count = len(self.modalities)
        over = relative - np.asarray(self.detection["threshold"])
        # Each modality on its own: a noisy sensor also raises the others' leave-one-out errors a little, so
        # picking only the worst one missed many (47 % vs 100 % of noisy force windows on the training data).
        return np.maximum(over[:, :count], over[:, count:]) > 0

    def encode(self, arrays: Mapping[str, np.ndarray], compensate: bool = True, detect: bool = True
               ) -> dict[str, np.ndarray]:
        """Latents of raw arrays with missing (all-zero) and, with ``detect``, flagged modalities masked out.

        Returns:
            ``latent``, ``errors`` (of the first pass), ``missing`` and ``flagged`` (``(N, M)`` bool).
        """
        n = len(arrays[self.modalities[0]])
        missing = np.stack([~np.asarray(arrays[m]).reshape(n, -1).any(1) for m in self.modalities], 1)
        mask = np.ones((n, len(self.modalities)), np.float32)
        if compensate:
            mask[missing] = 0.0
        latent, errors = self.errors(arrays, mask)
        flagged = np.zeros_like(missing)
        if detect:
            flagged = self.detect(errors) & ~missing
            if compensate and flagged.any():
                mask[flagged] = 0.0
                rows = flagged.any(1)
                latent[rows] = self.errors({m: np.asarray(arrays[m])[rows] for m in self.modalities}, mask[rows])[0]
        return {"latent": latent, "errors": errors, "missing": missing, "flagged": flagged}

    # -- toolkit interface ------------------------------------------------------------------------------
    def eval(self, dataset: FusionDataset, samples: int = 1000, seed: int = 0) -> dict[str, Any]:
        """Losses on ``dataset`` and detection true/false-positive rates on synthetic corruptions of it."""
        rng = np.random.default_rng(seed)
        arrays = dataset.arrays
        index = np.sort(rng.choice(len(dataset), min(samples, len(dataset)), replace=False))
        batch = {k: v[index] for k, v in arrays.items()}
        with torch.no_grad():
            losses = {k: float(v) for k, v in self.losses(batch, rng).items()}
        clean = self.detect(self.errors(batch)[1])
        detection = {}
        for modality in self.modalities:
            for kind in ("noise", "frozen"):
                flags = self.detect(self.errors(corrupt(batch, modality, kind, rng))[1])
                i = self.modalities.index(modality)
                detection[f"{kind}:{modality}"] = {"tpr": float(flags[:, i].mean()), "fpr": float(clean[:, i].mean())}
        return {"losses": losses, "detection": detection, "samples": len(index)}

    def infer(self, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """``encode`` of one observation dict or a dict of batches (compensation and detection on)."""
        arrays = {m: np.asarray(inputs[m], np.float32) for m in self.modalities}
        single = arrays[self.modalities[0]].ndim == len(self.input_specs()[0].shape) - 1
        if single:
            arrays = {m: a[None] for m, a in arrays.items()}
        out = self.encode(arrays)
        return {k: v[0] for k, v in out.items()} if single else out
