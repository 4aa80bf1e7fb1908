"""The fusion encoder's network: per-modality encoders, a configurable fusion, a latent, and the heads its
self-supervised objectives train.

Inputs are raw sensor arrays (the network normalises them itself, so the ONNX graph takes what the robot
reads): ``rgb`` ``(N, S, S, 3)`` 0-255, ``depth`` ``(N, S, S, 1)`` metres, ``wrench`` ``(N, 32, 6)`` N / N m,
``proprio`` ``(N, 15)``, and ``mask`` ``(N, M)``: 1 where a modality is present, 0 where it is dropped.

* **encoders**: a small CNN per image (4 strided convolutions), a causal 1-D convolution over the force window
  (left-padded, so a feature never sees a later sample), an MLP for proprioception; each gives ``F = 64``
  features;
* **fusion** (``concat`` | ``sum`` | ``product``) of the features of the present modalities (dropped ones are
  zeros in a concatenation, left out of a sum, ones in a product), with the mask appended, then an MLP to the
  latent (``latent`` wide, 128 by default);
* **heads**: contact (logit), next tool pose given the action, time alignment (logit), and one decoder per
  modality reconstructing a coarse copy of it (images pooled to 16 x 16) from the latent.

``forward`` returns the latent of the present modalities and, per modality, the *leave-one-out* reconstruction
error (natural log): modality ``m`` decoded from the latent of the others. A corrupted sensor disagrees with
what the others predict for it, so its error rises more than the rest; the learner turns these errors into detections.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["FUSIONS", "MODALITIES", "FusionEncoderNet"]

MODALITIES = ("rgb", "depth", "wrench", "proprio")
FUSIONS = ("concat", "sum", "product")
FEATURES = 64
POOL = 16  # side of the reconstructed images
POSE_SIZE = 5  # tool position (3) and sin/cos of its yaw: what the next-pose head predicts


class _ImageEncoder(nn.Module):
    def __init__(self, channels: int, size: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(channels, 16, 5, 2, 2), nn.ReLU(), nn.Conv2d(16, 32, 3, 2, 1), nn.ReLU(),
            nn.Conv2d(32, 32, 3, 2, 1), nn.ReLU(), nn.Conv2d(32, 32, 3, 2, 1), nn.ReLU())
        side = -(-size // 16)
        self.out = nn.Linear(32 * side * side, FEATURES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.out(self.conv(x).flatten(1)))


class _CausalConv(nn.Module):
    def __init__(self, inputs: int, outputs: int, kernel: int, dilation: int) -> None:
        super().__init__()
        self.pad = (kernel - 1) * dilation
        self.conv = nn.Conv1d(inputs, outputs, kernel, dilation=dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(nn.functional.pad(x, (self.pad, 0))))


class _ForceEncoder(nn.Module):
    def __init__(self, window: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(_CausalConv(6, 32, 5, 1), _CausalConv(32, 32, 5, 2), _CausalConv(32, 32, 5, 4))
        self.out = nn.Linear(64, FEATURES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x.transpose(1, 2))  # (N, 32, T)
        return torch.relu(self.out(torch.cat([h[:, :, -1], h.mean(2)], 1)))


def _mlp(inputs: int, hidden: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, outputs))


class FusionEncoderNet(nn.Module):
    """See the module docstring.

    Args:
        modalities: the modalities it takes, in input order (a subset of :data:`MODALITIES`).
        fusion: ``concat``, ``sum`` or ``product``.
        latent: latent width.
        image_size: side of the square images.
        window: force samples per window.
        proprio: proprioception size.
        action: action size the next-pose head takes (shorter actions are zero-padded).
    """

    def __init__(self, modalities: Sequence[str] = MODALITIES, fusion: str = "concat", latent: int = 128,
                 image_size: int = 64, window: int = 32, proprio: int = 15, action: int = 4) -> None:
        super().__init__()
        self.modalities = tuple(modalities)
        self.fusion = fusion
        self.latent_size = latent
        encoders = {"rgb": lambda: _ImageEncoder(3, image_size), "depth": lambda: _ImageEncoder(1, image_size),
                    "wrench": lambda: _ForceEncoder(window), "proprio": lambda: _mlp(proprio, 64, FEATURES)}
        self.encoders = nn.ModuleDict({m: encoders[m]() for m in self.modalities})
        n = len(self.modalities)
        width = (n * FEATURES if fusion == "concat" else FEATURES) + n
        self.fuse = _mlp(width, 256, latent)
        sizes = {"rgb": 3 * POOL * POOL, "depth": POOL * POOL, "wrench": window * 6, "proprio": proprio}
        self.target_sizes = [sizes[m] for m in self.modalities]
        self.decoders = nn.ModuleDict({m: _mlp(latent, 256, sizes[m]) for m in self.modalities})
        self.contact = nn.Linear(latent, 1)
        self.next_pose = _mlp(latent + action, 128, POSE_SIZE)
        self.align = _mlp(latent, 64, 1)
        # Normalisation of the raw inputs, set from the training data (Learner.fit) and saved with the weights.
        self.register_buffer("wrench_mean", torch.zeros(6))
        self.register_buffer("wrench_std", torch.ones(6))
        self.register_buffer("proprio_mean", torch.zeros(proprio))
        self.register_buffer("proprio_std", torch.ones(proprio))
        self.register_buffer("depth_mean", torch.tensor(0.8))
        self.register_buffer("depth_std", torch.tensor(0.3))

    # -- pieces ----------------------------------------------------------------------------------------
    def normalise(self, inputs: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Raw inputs (in :attr:`modalities` order) -> the normalised network inputs, by modality."""
        out = {}
        for name, x in zip(self.modalities, inputs):
            if name == "rgb":
                out[name] = x.permute(0, 3, 1, 2) / 255.0 - 0.5
            elif name == "depth":
                out[name] = (x.permute(0, 3, 1, 2) - self.depth_mean) / self.depth_std
            elif name == "wrench":
                # Signed log: linear for small forces, logarithmic for the tens of newtons of a blocked push.
                z = (x - self.wrench_mean) / self.wrench_std
                out[name] = torch.sign(z) * torch.log1p(torch.abs(z))
            else:
                out[name] = (x - self.proprio_mean) / self.proprio_std
        return out

    def targets(self, normalised: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """What each decoder reconstructs: pooled images, the normalised force window and proprioception."""
        out = []
        for name in self.modalities:
            x = normalised[name]
            if name in ("rgb", "depth"):
                x = nn.functional.adaptive_avg_pool2d(x, POOL)
            out.append(x.flatten(1))
        return out

    def features(self, normalised: dict[str, torch.Tensor]) -> torch.Tensor:
        """``(N, M, F)`` per-modality features."""
        return torch.stack([self.encoders[m](normalised[m]) for m in self.modalities], 1)

    def fuse_features(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The latent of the modalities ``mask`` keeps."""
        m = mask.unsqueeze(2)
        if self.fusion == "concat":
            fused = (features * m).flatten(1)
        elif self.fusion == "sum":
            fused = (features * m).sum(1)
        else:
            fused = torch.prod(torch.tanh(features) * m + (1.0 - m), 1)
        return torch.tanh(self.fuse(torch.cat([fused, mask], 1)))  # bounded: the compensation pull cannot run off

    def reconstruction_errors(self, features: torch.Tensor, mask: torch.Tensor, targets: Sequence[torch.Tensor],
                              normalised: dict[str, torch.Tensor] | None = None, leave_out: bool = True
                              ) -> torch.Tensor:
        """``(N, M)``: each modality's mean squared error when decoded from the latent of the others (or, with
        ``leave_out=False``, from the latent of all the modalities ``mask`` keeps).

        With ``normalised`` (detection), image predictions are upsampled and compared with the full-resolution
        input: pixel noise that the 16 x 16 pooling would average away then counts in full.
        """
        errors = []
        full = None if leave_out else self.fuse_features(features, mask)
        for i, name in enumerate(self.modalities):
            if leave_out:
                keep = mask * (1.0 - nn.functional.one_hot(torch.tensor(i), len(self.modalities)).to(mask.dtype))
                prediction = self.decoders[name](self.fuse_features(features, keep))
            else:
                prediction = self.decoders[name](full)
            if normalised is not None and name in ("rgb", "depth"):
                image = normalised[name]
                coarse = prediction.reshape(-1, image.shape[1], POOL, POOL)  # -1: the batch stays dynamic in ONNX
                fine = nn.functional.interpolate(coarse, size=tuple(image.shape[2:]), mode="bilinear",
                                                 align_corners=False)
                errors.append(((fine - image) ** 2).flatten(1).mean(1))
            else:
                errors.append(((prediction - targets[i]) ** 2).mean(1))
        return torch.stack(errors, 1)

    def forward_log_errors(self, errors: torch.Tensor) -> torch.Tensor:
        """Errors on a log scale (what detection compares; also keeps the exported outputs of similar size)."""
        return torch.log(errors + 1e-6)

    def detection_errors(self, features: torch.Tensor, mask: torch.Tensor, normalised: dict[str, torch.Tensor]
                         ) -> torch.Tensor:
        """``(N, 2M)`` log errors: leave-one-out (a sensor that disagrees with the others), then self
        reconstruction (a reading unlike anything seen in training: the autoencoder cannot reproduce noise)."""
        targets = self.targets(normalised)
        return self.forward_log_errors(torch.cat([
            self.reconstruction_errors(features, mask, targets, normalised),
            self.reconstruction_errors(features, mask, targets, normalised, leave_out=False)], 1))

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(*modalities, mask)`` -> ``(latent (N, latent), log errors (N, 2M): leave-one-out, then self)``."""
        *raw, mask = inputs
        normalised = self.normalise(raw)
        features = self.features(normalised)
        latent = self.fuse_features(features, mask)
        return latent, self.detection_errors(features, mask, normalised)
