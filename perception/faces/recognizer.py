"""A compact face-embedding network with a CosFace margin, a one-shot gallery and calibrated confidence.

Network: a MobileFaceNet-like stack (depthwise-separable blocks, a global depthwise "GDC" layer, linear +
BatchNorm) mapping a 64 x 64 RGB face crop to an L2-normalised embedding (64-d by default, ~50 k parameters).
Training uses the CosFace loss (Wang et al., 2018: ``s * (cos(theta_y) - m)``) over the training identities.

Gallery: :meth:`FaceRecognizerLearner.enroll` adds an identity from *one* image (embedding of the crop and its
mirror, averaged and renormalised) — the mean embedding is the class weight, so enrolling needs no
retraining. Recognition takes cosine similarities to every gallery entry; the confidence is the softmax of
similarities divided by a temperature fitted on validation crops (temperature scaling, Guo et al., 2017),
and the answer is ``"unknown"`` when the best similarity is below a threshold chosen on held-out identities
(open-set rejection).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from common.io import atomic_path
from perception.errors import EnrollmentError, InvalidArgumentError
from perception.faces.dataset import FaceDataset
from perception.faces.detector import conv_bn, dw_block
from perception.faces.margin import MARGIN_LOSSES, MarginHead
from perception.faces.verification import open_set_report
from perception.learner import Learner
from perception.progress import Progress
from perception.specs import ImagePreprocessing, TensorSpec, check_image
from perception.training import TorchFitMixin, TrainingCheckpoint, check_fit_settings, warmup_cosine

UNKNOWN = "unknown"
#: Least fraction of an enrolment box's area that must lie inside the image; the box is then clipped to the image,
#: as the detector's boxes are, so that enrolment and recognition crop alike. The same 60 % as the dataset's
#: visibility rule: a face mostly outside the frame is not a usable reference.
MIN_BOX_INSIDE = 0.6
#: distance bins (m) and |yaw| bins (degrees) of the accuracy curves
DISTANCE_BINS = (0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 12.0, 20.0)
YAW_BINS = (0, 15, 30, 45, 60, 75, 90, 120, 150, 180)


def check_box(box: Any, image_shape: tuple[int, ...], what: str = "face box") -> np.ndarray:
    """``box`` (x0, y0, x1, y1 pixels) as float64, clipped to the image, if it is a usable face box.

    A box must be four finite numbers with x1 > x0 and y1 > y0, and at least :data:`MIN_BOX_INSIDE` of its area
    must lie inside the image; the part outside is then clipped off.

    Raises:
        EnrollmentError: the box is malformed, not finite, empty, or mostly outside the image.
    """
    try:
        b = np.asarray(box, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise EnrollmentError(f"{what} must be 4 numbers (x0, y0, x1, y1 pixels), got {box!r}") from None
    if b.shape != (4,) or not np.all(np.isfinite(b)):
        raise EnrollmentError(f"{what} must be 4 finite numbers (x0, y0, x1, y1 pixels), got {box!r}")
    x0, y0, x1, y1 = (float(v) for v in b)
    if x1 <= x0 or y1 <= y0:
        raise EnrollmentError(f"{what} ({x0:g}, {y0:g}, {x1:g}, {y1:g}) has no area: it needs x1 > x0 and y1 > y0 "
                              f"(boxes are x0, y0, x1, y1 in pixels)")
    h, w = image_shape[:2]
    cx0, cy0, cx1, cy1 = max(x0, 0.0), max(y0, 0.0), min(x1, float(w)), min(y1, float(h))
    inside = max(cx1 - cx0, 0.0) * max(cy1 - cy0, 0.0) / ((x1 - x0) * (y1 - y0))
    if inside < MIN_BOX_INSIDE:
        raise EnrollmentError(f"only {inside:.0%} of {what} ({x0:g}, {y0:g}, {x1:g}, {y1:g}) lies inside the "
                              f"{w} x {h} image; at least {MIN_BOX_INSIDE:.0%} must (pass the face's box in this "
                              f"image's pixels)")
    return np.array([cx0, cy0, cx1, cy1], np.float64)  # float64: a box inside the image crops exactly as given


def crop_face(image: np.ndarray, box: np.ndarray | tuple, size: int = 64, margin: float = 1.15) -> np.ndarray:
    """Square crop of ``size`` px centred on ``box`` (x0, y0, x1, y1), side ``margin`` x the box's longer side.

    Parts outside the image are filled by replicating the border, so faces at the frame edge still crop.
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    side = max(x1 - x0, y1 - y0, 1.0) * margin
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    scale = size / side
    M = np.array([[scale, 0, size / 2 - scale * cx], [0, scale, size / 2 - scale * cy]], np.float32)
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.warpAffine(image, M, (size, size), flags=interp, borderMode=cv2.BORDER_REPLICATE)


class FaceEmbeddingNet(nn.Module):
    """MobileFaceNet-like embedding network for 64 x 64 crops; outputs unit-norm embeddings."""

    def __init__(self, embedding_dim: int = 64, width: int = 32) -> None:
        super().__init__()
        c1, c2, c3, c4 = width, 2 * width, 3 * width, 4 * width
        self.features = nn.Sequential(
            conv_bn(3, c1, 3, 2),  # 32 x 32
            dw_block(c1, c1),
            dw_block(c1, c2, 2),  # 16 x 16
            dw_block(c2, c2),
            dw_block(c2, c3, 2),  # 8 x 8
            dw_block(c3, c3),
            dw_block(c3, c4, 2),  # 4 x 4
            conv_bn(c4, c4, 4, groups=c4, act=False),  # global depthwise conv instead of average pooling
        )
        # conv_bn pads k // 2; the GDC layer must not pad, so replace its conv.
        self.features[-1][0] = nn.Conv2d(c4, c4, 4, 1, 0, groups=c4, bias=False)
        self.embed = nn.Linear(c4, embedding_dim, bias=False)
        self.bn = nn.BatchNorm1d(embedding_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.bn(self.embed(torch.flatten(self.features(x), 1)))
        return F.normalize(z, dim=1)


class CosFaceHead(MarginHead):
    """The CosFace head (kept under its old name; :class:`perception.faces.margin.MarginHead` also does ArcFace)."""

    def __init__(self, embedding_dim: int, n_classes: int, scale: float = 30.0, margin: float = 0.35) -> None:
        super().__init__(embedding_dim, n_classes, scale, margin, "cosface")


@dataclass
class Recognition:
    """The answer for one face: identity (or ``"unknown"``), calibrated confidence, best cosine similarity."""

    identity: str
    confidence: float
    similarity: float
    scores: dict[str, float] = field(default_factory=dict)  # calibrated probability per gallery identity
    #: the gallery identity nearest by cosine, before the unknown threshold (rank-1 identification); read from the
    #: similarities, not from ``scores``, whose float32 probabilities can tie where the similarities do not
    nearest: str = ""


class FaceRecognizerLearner(TorchFitMixin, Learner):
    """Face recogniser with a one-shot gallery (see the module docstring).

    Args:
        embedding_dim: embedding size.
        width: channel multiplier.
        crop_size: side of the square input crop.
        margin: margin ``m`` of the loss.
        scale: logit scale ``s`` of the loss.
        loss: ``"cosface"`` or ``"arcface"`` (:mod:`perception.faces.margin`).
    """

    name = "face_recognizer"
    version = "1"
    role = "face recogniser"

    def __init__(self, embedding_dim: int = 64, width: int = 32, crop_size: int = 64, margin: float = 0.35,
                 scale: float = 30.0, loss: str = "cosface") -> None:
        if embedding_dim < 8 or width < 4:
            raise InvalidArgumentError(f"embedding_dim must be >= 8 and width >= 4, got {embedding_dim}, {width}")
        if loss not in MARGIN_LOSSES:
            raise InvalidArgumentError(f"loss must be one of {', '.join(MARGIN_LOSSES)}, got {loss!r}")
        if crop_size != 64:
            raise InvalidArgumentError(f"crop_size must be 64 (the GDC layer is sized for it), got {crop_size}")
        extra = {} if loss == "cosface" else {"loss": loss}  # saved configs of CosFace models stay as they were
        super().__init__(embedding_dim=embedding_dim, width=width, crop_size=crop_size, margin=margin, scale=scale,
                         **extra)
        self.gallery_names: list[str] = []
        self.gallery = np.zeros((0, embedding_dim), np.float32)
        self.temperature = 0.05
        self.threshold = 0.5

    @property
    def crop_size(self) -> int:
        """Side of the square face crop the network takes."""
        return int(self.preprocessing.size[0])

    def build_network(self) -> nn.Module:
        return FaceEmbeddingNet(self.config["embedding_dim"], self.config["width"])

    def input_specs(self) -> list[TensorSpec]:
        size = self.config["crop_size"]
        pre = ImagePreprocessing(size=(size, size), extra={"crop_margin": 1.15, "crop": "square on the face box"})
        return [TensorSpec.image("input", pre)]

    def output_spec(self) -> list[TensorSpec]:
        return [TensorSpec("embedding", [-1, self.config["embedding_dim"]], "float32", "L2-normalised embedding")]

    def extra_state(self) -> dict[str, Any]:
        return {"gallery_names": self.gallery_names, "gallery": self.gallery.tolist(),  # float32 -> JSON float is exact
                "temperature": self.temperature, "threshold": self.threshold}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.gallery_names = list(state.get("gallery_names", []))
        gallery = np.asarray(state.get("gallery", []), np.float32).reshape(-1, self.config["embedding_dim"])
        if len(gallery) != len(self.gallery_names):
            from perception.errors import ManifestError

            raise ManifestError(f"gallery has {len(gallery)} embeddings for {len(self.gallery_names)} names")
        self.gallery = gallery
        self.temperature = float(state.get("temperature", self.temperature))
        self.threshold = float(state.get("threshold", self.threshold))

    # -- embeddings and gallery --------------------------------------------------------------------
    def embed(self, crops: list[np.ndarray] | np.ndarray, batch_size: int = 128) -> np.ndarray:
        """Unit-norm embeddings ``(N, D)`` of RGB face crops (any size; resized to the input size)."""
        crops = [crops] if isinstance(crops, np.ndarray) and crops.ndim == 3 else list(crops)
        if not crops:
            return np.zeros((0, self.gallery.shape[1]), np.float32)
        for i, c in enumerate(crops):
            check_image(c, f"face crop {i}")
        out = [self.run_network(self.preprocess({"input": crops[i:i + batch_size]}))["embedding"]
               for i in range(0, len(crops), batch_size)]
        return np.concatenate(out).astype(np.float32)

    def enroll(self, name: str, image: np.ndarray, box: np.ndarray | tuple | None = None,
               detector: Learner | None = None, replace: bool = False) -> np.ndarray:
        """Add identity ``name`` from one image (or replace it, with ``replace=True``); no retraining.

        Args:
            name: identity name (``"unknown"`` is reserved).
            image: RGB ``uint8`` image: a whole frame with ``box`` or ``detector``, else an already-cropped face.
            box: face box in ``image`` (x0, y0, x1, y1 pixels): finite, with positive area, and at least
                :data:`MIN_BOX_INSIDE` of it inside the image (the rest is clipped off, as the detector's boxes
                are).
            detector: used to find the face when ``box`` is not given (the largest face is enrolled).
            replace: replace the embedding of an identity already in the gallery.

        Returns:
            The enrolled (mean, renormalised) embedding.

        Raises:
            EnrollmentError: the name is reserved, empty or already enrolled (without ``replace``), the box is
                unusable, or the detector finds no face.
        """
        if not isinstance(name, str) or not name or name == UNKNOWN:
            raise EnrollmentError(f"identity name {name!r} is reserved or empty; use a non-empty string other than "
                                  f"{UNKNOWN!r}")
        if name in self.gallery_names and not replace:
            raise EnrollmentError(f"identity {name!r} is already enrolled; pass replace=True to replace its "
                                  f"embedding, or remove({name!r}) it first")
        check_image(image, f"enrolment image for {name!r}")
        if box is not None:
            box = check_box(box, image.shape, f"the enrolment box for {name!r}")
        elif detector is not None:
            dets = detector.infer(image)
            if len(dets) == 0:
                raise EnrollmentError(f"no face found in the enrolment image for {name!r} (shape {image.shape}); "
                                      f"pass a box or a closer, frontal image")
            areas = (dets.boxes[:, 2] - dets.boxes[:, 0]) * (dets.boxes[:, 3] - dets.boxes[:, 1])
            box = check_box(dets.boxes[int(np.argmax(areas))], image.shape, f"the detected face of {name!r}")
        crop = crop_face(image, box, self.crop_size) if box is not None else image
        emb = self.embed([crop, np.ascontiguousarray(crop[:, ::-1])]).mean(0)
        emb /= max(float(np.linalg.norm(emb)), 1e-9)
        if name in self.gallery_names:
            self.gallery[self.gallery_names.index(name)] = emb
        else:
            self.gallery_names.append(name)
            self.gallery = np.vstack([self.gallery, emb[None]])
        return emb

    def remove(self, name: str) -> None:
        """Remove ``name`` from the gallery."""
        if name not in self.gallery_names:
            from common.errors import UnknownNameError

            raise UnknownNameError("gallery identity", name, self.gallery_names)
        i = self.gallery_names.index(name)
        del self.gallery_names[i]
        self.gallery = np.delete(self.gallery, i, axis=0)

    def match(self, embeddings: np.ndarray) -> list[Recognition]:
        """Nearest gallery identity, calibrated confidence and unknown rejection for each embedding."""
        if not self.gallery_names:
            raise EnrollmentError("the gallery is empty: enroll() identities before recognising")
        sims = np.asarray(embeddings, np.float32) @ self.gallery.T
        logits = sims / self.temperature
        probs = np.exp(logits - logits.max(1, keepdims=True))
        probs /= probs.sum(1, keepdims=True)
        out = []
        for s, p in zip(sims, probs):
            k = int(np.argmax(s))
            name = self.gallery_names[k] if s[k] >= self.threshold else UNKNOWN
            out.append(Recognition(name, float(p[k]), float(s[k]),
                                   {n: float(v) for n, v in zip(self.gallery_names, p)}, self.gallery_names[k]))
        return out

    def infer(self, inputs: np.ndarray | list[np.ndarray]) -> Recognition | list[Recognition]:
        """Recognise one face crop (RGB ``uint8``) or a list of crops."""
        single = isinstance(inputs, np.ndarray) and inputs.ndim == 3
        results = self.match(self.embed([inputs] if single else inputs))
        return results[0] if single else results

    def recognize(self, image: np.ndarray, boxes: np.ndarray) -> list[Recognition]:
        """Recognise the faces at ``boxes`` in a frame."""
        check_image(image)
        crops = [crop_face(image, b, self.crop_size) for b in np.asarray(boxes).reshape(-1, 4)]
        return self.match(self.embed(crops)) if crops else []

    # -- data --------------------------------------------------------------------------------------
    @staticmethod
    def _crops(dataset: FaceDataset, identities: set[int] | None, min_height: float, size: int, margin: float,
               max_frames: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Crops of visible faces of ``identities``: ``(crops, identity, frame index)``."""
        crops, ids, frames = [], [], []
        for n, (img, label) in enumerate(dataset):
            if max_frames is not None and n >= max_frames:
                break
            for f in label.faces:
                wanted = identities is None or f.identity in identities
                if f.visible and (f.box[3] - f.box[1]) >= min_height and wanted:
                    crops.append(crop_face(img, f.box, size, margin))
                    ids.append(f.identity)
                    frames.append(n)
        if not crops:
            return np.zeros((0, size, size, 3), np.uint8), np.zeros(0, int), np.zeros(0, int)
        return np.stack(crops), np.array(ids), np.array(frames)

    def enroll_gallery(self, dataset: FaceDataset, identities: list[int]) -> None:
        """Enrol ``identities`` of ``dataset``'s world from its frontal 1 m reference frame each."""
        names = dataset.identity_names
        for idx, image, label in dataset.gallery(identities):
            self.enroll(names[idx], image, label.box)

    def calibration_inputs(self, dataset: FaceDataset | str | Path, samples: int) -> list[dict[str, np.ndarray]]:
        """``samples`` face crops (visible faces of the first frames), preprocessed in batches, for int8
        calibration: the recogniser sees crops, not frames."""
        dataset = dataset if isinstance(dataset, FaceDataset) else FaceDataset(dataset)
        # Frames hold about one usable face each, often fewer: read a few times as many frames as crops wanted.
        crops, _, _ = self._crops(dataset, None, 8.0, self.crop_size, 1.15, max_frames=4 * samples)
        if not len(crops):
            raise InvalidArgumentError(f"no visible faces for calibration in the first {4 * samples} frames of "
                                       f"{dataset.root}")
        return self._batches(list(crops[:samples]))

    # -- training ----------------------------------------------------------------------------------
    def fit(self, dataset: FaceDataset | str | Path, epochs: int = 20, batch_size: int = 64, lr: float = 3e-3,
            seed: int = 0, max_frames: int | None = None, progress: bool = True, min_height: float = 8.0,
            enroll: bool = True, checkpoint: str | Path | None = None, calibration: str | None = None,
            target_far: float = 0.005) -> dict[str, Any]:
        """Train on the training identities' faces, then enrol the gallery and calibrate.

        ``dataset`` may also be a face bank (:mod:`perception.faces.bank`, thousands of identities): then
        :func:`perception.faces.bank_training.fit_bank` trains on all its views, enrols the gallery stored with it
        and calibrates on the bank ``calibration`` (gallery and held-out identities) for a false-accept rate of
        ``target_far`` (``max_frames`` and ``min_height`` do not apply).

        Held-out identities (``dataset.heldout_identities``) are never trained on; the first half of them
        calibrates the unknown threshold, the second half is left for open-set evaluation.

        Args:
            dataset: a :class:`FaceDataset` or its folder.
            epochs: passes over the training crops.
            batch_size: crops per step.
            lr: peak AdamW learning rate (warm-up then cosine decay).
            seed: split, shuffling and augmentation seed.
            max_frames: use only the first frames.
            progress: report progress on stderr (a bar on a terminal; elsewhere a line per epoch and every 30 s).
            min_height: faces shorter than this (pixels) are not used.
            enroll: enrol the training identities' gallery and calibrate after training.
            checkpoint: file for per-epoch checkpoints; an existing one is resumed, and it is deleted at the end.
            calibration: face bank folder that calibrates a model trained on a face bank.
            target_far: share of held-out identities' views the calibrated threshold may accept (face banks).

        Returns:
            ``{"loss": per-epoch losses, "seconds", "crops", "temperature", "threshold"}``.
        """
        from perception.faces.bank import FaceBank, open_face_data

        check_fit_settings(epochs, batch_size, lr, max_frames, min_batch=2)  # before reading the dataset
        dataset = dataset if isinstance(dataset, FaceDataset | FaceBank) else open_face_data(dataset)
        if isinstance(dataset, FaceBank):
            from perception.faces.bank_training import fit_bank

            return fit_bank(self, dataset, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, progress=progress,
                            enroll=enroll, checkpoint=checkpoint, calibration=calibration, target_far=target_far)
        if enroll:  # enrolment needs the dataset's gallery: fail now, not after the training it would follow
            dataset.gallery(dataset.config.train_identities)
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        train_ids = dataset.config.train_identities
        heldout = dataset.heldout_identities
        calib_unknown = set(heldout[: max(1, len(heldout) // 2)])
        size = self.config["crop_size"]
        big = size + size // 8  # room for translation jitter
        crops, ids, frames = self._crops(dataset, set(train_ids) | calib_unknown, min_height, big,
                                         1.15 * big / size, max_frames)
        if len(crops) < batch_size:
            raise InvalidArgumentError(f"only {len(crops)} usable face crops in {dataset.root}; need >= {batch_size}")
        # Hold out 10 % of frames for calibration; unknown-identity crops are calibration-only.
        val_frame = rng.random(frames.max() + 1) < 0.1
        known = np.isin(ids, train_ids)
        train_mask = known & ~val_frame[frames]
        label_of = {i: k for k, i in enumerate(train_ids)}
        x_all = crops[train_mask]
        y_all = np.array([label_of[i] for i in ids[train_mask]])
        def batch(idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
            ox, oy = rng.integers(0, big - size + 1, 2)
            x = torch.from_numpy(x_all[idx, oy:oy + size, ox:ox + size].astype(np.float32))
            x = x.permute(0, 3, 1, 2) / 127.5 - 1.0
            flip = torch.from_numpy(rng.random(len(idx)) < 0.5)
            x[flip] = x[flip].flip(3)
            x = x * torch.from_numpy(rng.uniform(0.7, 1.3, (len(idx), 1, 1, 1)).astype(np.float32))
            if rng.random() < 0.5:  # simulate distant faces: downsample then upsample the whole batch
                low = int(rng.integers(12, size))
                x = F.interpolate(F.interpolate(x, size=(low, low), mode="area"), size=(size, size),
                                  mode="bilinear", align_corners=False)
            return x.clamp(-1, 1), torch.from_numpy(y_all[idx])

        history, seconds, _ = self._train_margin(len(x_all), len(train_ids), batch, epochs=epochs,
                                                 batch_size=batch_size, lr=lr, rng=rng, checkpoint=checkpoint,
                                                 progress=progress, desc="fit face_recognizer", data=dataset)
        summary: dict[str, Any] = {"loss": history, "seconds": seconds, "crops": len(x_all)}
        if enroll:
            self.gallery_names, self.gallery = [], np.zeros((0, self.config["embedding_dim"]), np.float32)
            self.enroll_gallery(dataset, train_ids)
            m = (big - size) // 2
            val = ~train_mask
            emb = self.embed(list(crops[val, m:m + size, m:m + size]))
            names = [dataset.identity_names[i] for i in ids[val]]
            self.calibrate(emb, names)
            summary.update(temperature=self.temperature, threshold=self.threshold)
        return summary

    def _train_margin(self, n_samples: int, n_classes: int,
                      batch: Callable[[np.ndarray], tuple[torch.Tensor, torch.Tensor]], *, epochs: int,
                      batch_size: int, lr: float, rng: np.random.Generator, checkpoint: str | Path | None,
                      progress: bool, desc: str, data: Any) -> tuple[list[float], float, int]:
        """The margin-loss loop both training sources share (frame datasets here, face banks in
        ``bank_training``): ``batch(indices)`` assembles one ``(input, class)`` batch. Returns the per-epoch mean
        losses, the seconds trained and the steps per epoch."""
        head = MarginHead(self.config["embedding_dim"], n_classes, self.config["scale"], self.config["margin"],
                          self.config.get("loss", "cosface"))
        net = self.net
        opt = torch.optim.AdamW(list(net.parameters()) + list(head.parameters()), lr=lr, weight_decay=5e-4)
        steps_per_epoch = max(1, n_samples // batch_size)
        sched = warmup_cosine(opt, epochs * steps_per_epoch)
        ckpt = TrainingCheckpoint(checkpoint, {"net": net, "head": head, "opt": opt, "sched": sched}, rng)
        done, history = ckpt.resume()
        start = time.time()
        bar = Progress(epochs * steps_per_epoch, initial=done * steps_per_epoch, desc=desc, unit="step",
                       enabled=progress)
        net.train()
        for epoch in range(done, epochs):
            order = rng.permutation(n_samples)
            losses: list[float] = []
            for b in range(steps_per_epoch):
                x, y = batch(order[b * batch_size:(b + 1) * batch_size])
                self._optimizer_step(head(net(x), y), opt, sched, losses, bar)
            history.append(float(np.mean(losses)))
            ckpt.save(epoch + 1, history)
            bar.log(f"epoch {epoch + 1}/{epochs} done, mean loss {history[-1]:.4f} ({bar.status()})")
        self._finish_fit(net, ckpt, bar, data)
        return history, time.time() - start, steps_per_epoch

    def calibrate(self, embeddings: np.ndarray, names: list[str]) -> None:
        """Fit the softmax temperature on enrolled-identity queries and the unknown threshold on all queries.

        Args:
            embeddings: query embeddings ``(N, D)``.
            names: true identity per query; names not in the gallery are unknowns (open-set negatives).
        """
        sims = np.asarray(embeddings) @ self.gallery.T
        enrolled = np.array([n in self.gallery_names for n in names])
        if enrolled.any():
            target = np.array([self.gallery_names.index(n) for n, e in zip(names, enrolled) if e])
            s = sims[enrolled]
            best_t, best_nll = self.temperature, np.inf
            for t in np.geomspace(0.005, 1.0, 60):
                z = s / t
                z = z - z.max(1, keepdims=True)
                nll = float(np.mean(np.log(np.exp(z).sum(1)) - z[np.arange(len(target)), target]))
                if nll < best_nll:
                    best_t, best_nll = float(t), nll
            self.temperature = best_t
        if enrolled.any() and (~enrolled).any():
            top = sims.max(1)
            correct = enrolled & (np.array(self.gallery_names)[sims.argmax(1)] == np.array(names))
            best, best_score = self.threshold, -1.0
            for thr in np.linspace(0.0, 1.0, 201):
                # Balanced open-set accuracy: known faces named correctly vs unknown faces rejected.
                score = (0.5 * np.mean(correct[enrolled] & (top[enrolled] >= thr))
                         + 0.5 * np.mean(top[~enrolled] < thr))
                if score > best_score:
                    best, best_score = float(thr), float(score)
            self.threshold = best

    # -- evaluation --------------------------------------------------------------------------------
    def eval(self, dataset: FaceDataset | str | Path, max_frames: int | None = None, out_dir: str | Path | None = None,
             progress: bool = False) -> dict[str, Any]:
        """Identification accuracy of the frame's subject, with curves over distance and yaw.

        A frame whose subject face is not visible (turned away, occluded, out of frame) counts as a miss:
        that is what the active-perception agent must fix. Enrolled-subject frames give accuracy; frames whose
        subject is a held-out identity in the second half of the held-out list (never used in calibration)
        give the open-set rejection rate.

        Returns:
            ``frontal_3m_identification`` (rank-1 identification among the enrolled gallery of visible subjects
            with |yaw| <= 30 and distance <= 3 m, the unknown threshold not applied), ``frontal_3m_accuracy``
            (the same faces named correctly *and* accepted by the unknown threshold), ``visible_accuracy``, ``accuracy``
            (all frames), ``mean_correct_confidence``, per-bin ``by_distance`` / ``by_yaw`` lists, and
            ``open_set`` (rejection of unknowns and acceptance of knowns within 3 m, frontal). Writes
            ``recognition_curves.png`` into ``out_dir`` when given.
        """
        from perception.faces.bank import FaceBank, open_face_data

        dataset = dataset if isinstance(dataset, FaceDataset | FaceBank) else open_face_data(dataset)
        if isinstance(dataset, FaceBank):
            from perception.faces.bank_training import eval_bank

            return eval_bank(self, dataset, max_frames, out_dir)
        heldout = dataset.heldout_identities
        unknown_ids = set(heldout[max(1, len(heldout) // 2):])
        names = dataset.identity_names
        rows = []  # (distance, |yaw|, visible, enrolled, correct, rejected, confidence of truth, rank-1 correct)
        crops, where = [], []
        for n, (img, label) in enumerate(tqdm(dataset, disable=not progress, desc="eval face_recognizer")):
            if max_frames is not None and n >= max_frames:
                break
            face = next((f for f in label.faces if f.identity == label.subject), None)
            if face is None:
                continue
            enrolled = names[face.identity] in self.gallery_names
            if not enrolled and face.identity not in unknown_ids:
                continue
            rows.append([face.distance, abs(face.yaw), face.visible, enrolled, False, False, 0.0, False])
            if face.visible:
                crops.append(crop_face(img, face.box, self.crop_size))
                where.append((len(rows) - 1, names[face.identity]))
        emb = self.embed(crops)
        results = self.match(emb) if crops else []
        for (r, truth), res in zip(where, results):
            rows[r][4] = res.identity == truth
            rows[r][5] = res.identity == UNKNOWN
            rows[r][6] = res.scores.get(truth, 0.0) if res.identity == truth else 0.0
            rows[r][7] = res.nearest == truth
        a = np.array(rows, dtype=float).reshape(-1, 8)
        dist, yaw, vis, enr, cor, rej, conf, rank1 = a.T
        vis, enr, cor, rej, rank1 = vis > 0, enr > 0, cor > 0, rej > 0, rank1 > 0

        def acc(mask: np.ndarray) -> float | None:
            return float(cor[mask].mean()) if mask.any() else None

        frontal = enr & (yaw <= 30) & (dist <= 3.0)
        by_distance = [{"range_m": [lo, hi], "accuracy": acc(enr & (dist >= lo) & (dist < hi)),
                        "frontal_accuracy": acc(enr & (dist >= lo) & (dist < hi) & (yaw <= 30)),
                        "mean_confidence": float(conf[enr & (dist >= lo) & (dist < hi)].mean())
                        if (enr & (dist >= lo) & (dist < hi)).any() else None,
                        "n": int((enr & (dist >= lo) & (dist < hi)).sum())}
                       for lo, hi in pairwise(DISTANCE_BINS)]
        by_yaw = [{"range_deg": [lo, hi], "accuracy_within_3m": acc(enr & (yaw >= lo) & (yaw < hi) & (dist <= 3)),
                   "accuracy": acc(enr & (yaw >= lo) & (yaw < hi)), "n": int((enr & (yaw >= lo) & (yaw < hi)).sum())}
                  for lo, hi in pairwise(YAW_BINS)]
        unk = ~enr & vis & (yaw <= 30) & (dist <= 3)
        metrics = {
            "frontal_3m_identification": float(rank1[frontal & vis].mean()) if (frontal & vis).any() else None,
            "frontal_3m_accuracy": acc(frontal & vis),
            "frontal_3m_n": int((frontal & vis).sum()),
            "visible_accuracy": acc(enr & vis),
            "accuracy": acc(enr),
            "mean_correct_confidence": float(conf[enr].mean()) if enr.any() else None,
            "by_distance": by_distance,
            "by_yaw": by_yaw,
            "open_set": {"unknown_rejection_rate": float(rej[unk].mean()) if unk.any() else None,
                         "unknown_n": int(unk.sum()),
                         "known_acceptance_rate": float((~rej[frontal & vis]).mean())
                         if (frontal & vis).any() else None,
                         "threshold": self.threshold},
            "temperature": self.temperature,
            "gallery_size": len(self.gallery_names),
            "runtime": self.runtime_name,
        }
        # The field's figures over the same visible subject faces (frame labels record no pitch, so
        # close_range_acceptance needs a face bank).
        seen = [r for r, _ in where]
        column = {n: k for k, n in enumerate(self.gallery_names)}
        truth = np.array([column.get(t, -1) for _, t in where], int)
        report = open_set_report(emb @ self.gallery.T if crops else np.zeros((0, len(self.gallery_names))), truth,
                                 self.threshold, dist[seen], yaw[seen])
        metrics.update({k: report[k] for k in ("tar_at_far_1e-2", "tar_at_far_1e-3", "open_set_rejection",
                                               "close_range_acceptance", "verification")})
        if out_dir is not None:
            plot_curves(metrics, Path(out_dir) / "recognition_curves.png")
        return metrics


def plot_curves(metrics: dict[str, Any], path: Path) -> Path:
    """Accuracy over distance and over yaw, as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    d = metrics["by_distance"]
    centres = [np.sqrt(b["range_m"][0] * b["range_m"][1]) for b in d]
    ax1.plot(centres, [b["accuracy"] if b["accuracy"] is not None else np.nan for b in d], "o-", label="all yaw")
    ax1.plot(centres, [b["frontal_accuracy"] if b["frontal_accuracy"] is not None else np.nan for b in d], "s-",
             label="|yaw| <= 30")
    ax1.set_xscale("log")
    ax1.set_xlabel("distance (m)")
    ax1.set_ylabel("identification accuracy")
    ax1.set_ylim(0, 1.02)
    ax1.legend()
    y = metrics["by_yaw"]
    yc = [(b["range_deg"][0] + b["range_deg"][1]) / 2 for b in y]
    ax2.plot(yc, [b["accuracy_within_3m"] if b["accuracy_within_3m"] is not None else np.nan for b in y], "o-",
             label="distance <= 3 m")
    ax2.plot(yc, [b["accuracy"] if b["accuracy"] is not None else np.nan for b in y], "s-", label="all distances")
    ax2.set_xlabel("|yaw| from frontal (deg)")
    ax2.set_ylim(0, 1.02)
    ax2.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path
