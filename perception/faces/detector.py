"""A small anchor-free single-stage face detector (CenterNet-style), trained on simulator renders.

Network (``width`` w, default 16; ~60 k parameters): a depthwise-separable backbone down to stride 16, a
light FPN back to stride 4, and one head giving per cell of the stride-4 grid

=========  ======================================================================
channel    meaning
=========  ======================================================================
0          face-centre heatmap (sigmoid)
1, 2       log(width / 4), log(height / 4) of the box in input pixels
3, 4       sub-cell offset of the centre (sigmoid, 0..1)
=========  ======================================================================

The input is the frame resized to ``input_size`` (height x width; default 128 x 160, the shipped model uses
the full 240 x 320 so that a 24 px face is 6 cells of the grid tall rather than 3), RGB,
``(x/255 - 0.5) / 0.5``. Boxes come back in the original frame's pixels. Training uses the penalty-reduced
focal loss of CenterNet (Zhou et al., 2019) on the heatmap and L1 on size and offset at face centres; faces
marked ``ignore`` (and faces under ``min_height`` input pixels tall) are masked out of the heatmap loss, so
they count as neither positives nor negatives.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from perception.errors import InvalidArgumentError
from perception.faces.dataset import FaceDataset
from perception.learner import Learner
from perception.metrics import average_precision, nms
from perception.progress import Progress
from perception.specs import ImagePreprocessing, TensorSpec, check_image
from perception.training import TorchFitMixin, TrainingCheckpoint, check_fit_settings, warmup_cosine

STRIDE = 4
ALL_FACES_MIN_PX = 8.0  #: smallest face (frame pixels) that ``eval``'s all-faces AP counts


def conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    """Conv (no bias) + BatchNorm + ReLU."""
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def dw_block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    """Depthwise 3x3 + pointwise 1x1 (MobileNet block)."""
    return nn.Sequential(conv_bn(cin, cin, 3, stride, groups=cin), conv_bn(cin, cout, 1))


class CenterFaceNet(nn.Module):
    """Backbone + FPN + head; see the module docstring for the output channels."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        c1, c2, c3, c4 = width, 2 * width, 3 * width, 4 * width
        self.stem = conv_bn(3, c1, 3, 2)
        self.s4 = nn.Sequential(dw_block(c1, c2, 2), dw_block(c2, c2))
        self.s8 = nn.Sequential(dw_block(c2, c3, 2), dw_block(c3, c3))
        self.s16 = nn.Sequential(dw_block(c3, c4, 2), dw_block(c4, c4), dw_block(c4, c4))
        self.lat8 = conv_bn(c3, c2, 1)
        self.lat16 = conv_bn(c4, c2, 1)
        self.smooth = dw_block(c2, c2)
        self.head = nn.Sequential(conv_bn(c2, c2, 3), nn.Conv2d(c2, 5, 1))
        with torch.no_grad():  # start the heatmap near the face prior (CenterNet's -2.19 = logit(0.1))
            self.head[-1].bias[0] = -2.19

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f4 = self.s4(self.stem(x))
        f8 = self.s8(f4)
        f16 = self.s16(f8)
        p8 = self.lat8(f8) + F.interpolate(self.lat16(f16), scale_factor=2.0, mode="nearest")
        p4 = self.smooth(f4 + F.interpolate(p8, scale_factor=2.0, mode="nearest"))
        out = self.head(p4)
        return torch.cat([torch.sigmoid(out[:, :1]), out[:, 1:3], torch.sigmoid(out[:, 3:5])], 1)


@dataclass
class FaceDetections:
    """Faces found in one image: boxes ``(N, 4)`` as x0, y0, x1, y1 pixels, scores ``(N,)``."""

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray | None = None  # (N, 5, 2) when the model predicts them (YuNet)

    def __len__(self) -> int:
        return len(self.scores)


def _max_pool3(heat: np.ndarray) -> np.ndarray:
    padded = np.pad(heat, ((0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    h, w = heat.shape[1:]
    return np.max([padded[:, i:i + h, j:j + w] for i in range(3) for j in range(3)], axis=0)


def decode_centernet(out: np.ndarray, frame_sizes: list[tuple[int, int]], input_size: tuple[int, int],
                     score_threshold: float, nms_iou: float = 0.4, top_k: int = 50) -> list[FaceDetections]:
    """Turn raw network output ``(N, 5, h, w)`` into per-image detections in frame pixels."""
    results = []
    heat = out[:, 0]
    peaks = (heat == _max_pool3(heat)) & (heat >= score_threshold)
    in_h, in_w = input_size
    for n, (fh, fw) in enumerate(frame_sizes):
        ys, xs = np.nonzero(peaks[n])
        scores = heat[n, ys, xs]
        if len(scores) > top_k:
            keep = np.argsort(-scores)[:top_k]
            ys, xs, scores = ys[keep], xs[keep], scores[keep]
        cx = (xs + out[n, 3, ys, xs]) * STRIDE
        cy = (ys + out[n, 4, ys, xs]) * STRIDE
        bw = np.exp(np.clip(out[n, 1, ys, xs], -5, 6)) * STRIDE
        bh = np.exp(np.clip(out[n, 2, ys, xs], -5, 6)) * STRIDE
        sx, sy = fw / in_w, fh / in_h
        boxes = np.stack([(cx - bw / 2) * sx, (cy - bh / 2) * sy, (cx + bw / 2) * sx, (cy + bh / 2) * sy], -1)
        boxes = np.clip(boxes, 0, [fw, fh, fw, fh]).astype(np.float32)
        keep = nms(boxes, scores, nms_iou) if len(scores) else np.zeros(0, np.int64)
        results.append(FaceDetections(boxes[keep], scores[keep].astype(np.float32)))
    return results


def _targets(boxes: np.ndarray, ignore: np.ndarray, grid: tuple[int, int], min_height: float
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Heatmap ``(h, w)``, heatmap loss mask, regression target ``(4, h, w)`` and its mask for input-pixel boxes."""
    gh, gw = grid
    heat = np.zeros((gh, gw), np.float32)
    mask = np.ones((gh, gw), np.float32)
    reg = np.zeros((4, gh, gw), np.float32)
    reg_mask = np.zeros((gh, gw), np.float32)
    yy, xx = np.mgrid[0:gh, 0:gw]
    for (x0, y0, x1, y1), ign in zip(boxes, ignore):
        w, h = x1 - x0, y1 - y0
        if ign or h < min_height or w <= 0:
            mask[max(0, int(y0 / STRIDE)):int(np.ceil(y1 / STRIDE)) + 1,
                 max(0, int(x0 / STRIDE)):int(np.ceil(x1 / STRIDE)) + 1] = 0.0
            continue
        cx, cy = (x0 + x1) / 2 / STRIDE, (y0 + y1) / 2 / STRIDE
        ix, iy = min(int(cx), gw - 1), min(int(cy), gh - 1)
        sigma = max(0.5, min(w, h) / STRIDE / 6.0)
        heat = np.maximum(heat, np.exp(-((xx - ix) ** 2 + (yy - iy) ** 2) / (2 * sigma**2)))
        heat[iy, ix] = 1.0
        reg[:, iy, ix] = [np.log(w / STRIDE), np.log(h / STRIDE), cx - ix, cy - iy]
        reg_mask[iy, ix] = 1.0
    mask = np.maximum(mask, (heat > 0.3).astype(np.float32))
    return heat, mask, reg, reg_mask


def focal_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced pixel-wise focal loss, normalised by the number of centres."""
    pred = pred.clamp(1e-5, 1 - 1e-5)
    pos = target.eq(1).float()
    pos_loss = -torch.log(pred) * (1 - pred) ** 2 * pos
    neg_loss = -torch.log(1 - pred) * pred**2 * (1 - target) ** 4 * (1 - pos) * mask
    return (pos_loss.sum() + neg_loss.sum()) / pos.sum().clamp(min=1.0)


class FaceDetectorLearner(TorchFitMixin, Learner):
    """Anchor-free face detector (see the module docstring).

    Args:
        width: channel multiplier of the network.
        input_size: network input ``(height, width)``; both multiples of 16.
        score_threshold: minimum heatmap score of a detection.
        nms_iou: IoU above which overlapping detections are merged.
    """

    name = "face_detector"
    version = "1"
    role = "face detector"

    def __init__(self, width: int = 16, input_size: tuple[int, int] | list[int] = (128, 160),
                 score_threshold: float = 0.35, nms_iou: float = 0.4) -> None:
        input_size = (int(input_size[0]), int(input_size[1]))
        if input_size[0] % 16 or input_size[1] % 16 or min(input_size) < 32:
            raise InvalidArgumentError(f"input_size must be multiples of 16 and >= 32, got {input_size}")
        if width < 4:
            raise InvalidArgumentError(f"width must be >= 4, got {width}")
        if not 0.0 < score_threshold < 1.0:
            raise InvalidArgumentError(f"score_threshold must be in (0, 1), got {score_threshold}")
        super().__init__(width=width, input_size=list(input_size), score_threshold=score_threshold, nms_iou=nms_iou)
        self.input_size = input_size
        self.score_threshold = score_threshold
        self.nms_iou = nms_iou

    def build_network(self) -> nn.Module:
        return CenterFaceNet(self.config["width"])

    def input_specs(self) -> list[TensorSpec]:
        return [TensorSpec.image("input", ImagePreprocessing(size=tuple(self.config["input_size"])))]

    def output_spec(self) -> list[TensorSpec]:
        h, w = self.config["input_size"]
        return [TensorSpec("output", [-1, 5, h // STRIDE, w // STRIDE], "float32",
                           "heatmap (sigmoid), log w/4, log h/4, offset x, offset y on the stride-4 grid")]

    # -- inference -------------------------------------------------------------------------------
    def infer(self, inputs: np.ndarray | list[np.ndarray]) -> FaceDetections | list[FaceDetections]:
        """Detect faces in one RGB ``uint8 (H, W, 3)`` image (or a list): boxes in that image's pixels."""
        single = isinstance(inputs, np.ndarray) and inputs.ndim == 3
        images = [inputs] if single else list(inputs)
        if not images:
            raise InvalidArgumentError("infer() got an empty list of images")
        for i, img in enumerate(images):
            check_image(img, f"image {i}")
        out = self.run_network(self.preprocess({"input": images}))["output"]
        dets = decode_centernet(out, [img.shape[:2] for img in images], self.input_size, self.score_threshold,
                                self.nms_iou)
        return dets[0] if single else dets

    def calibration_inputs(self, dataset: FaceDataset | str | Path, samples: int) -> list[dict[str, np.ndarray]]:
        """The first ``samples`` frames of a face dataset, preprocessed in batches, for int8 calibration."""
        dataset = dataset if isinstance(dataset, FaceDataset) else FaceDataset(dataset)
        frames = [img for _, (img, _) in zip(range(samples), dataset)]
        if not frames:
            raise InvalidArgumentError(f"no frames for calibration in {dataset.root}")
        return self._batches(frames)

    # -- training --------------------------------------------------------------------------------
    def _load(self, dataset: FaceDataset, max_frames: int | None) -> tuple[np.ndarray, list, list]:
        pre = self.preprocessing
        images, boxes, ignores = [], [], []
        for img, label in dataset:
            if max_frames is not None and len(images) >= max_frames:
                break
            h, w = img.shape[:2]
            sx, sy = self.input_size[1] / w, self.input_size[0] / h
            images.append((pre([img])[0].transpose(1, 2, 0) * 127.5 + 127.5).round().astype(np.uint8))
            faces = [f for f in label.faces if f.visible or f.ignore]
            boxes.append(np.array([[f.box[0] * sx, f.box[1] * sy, f.box[2] * sx, f.box[3] * sy] for f in faces],
                                  np.float32).reshape(-1, 4))
            ignores.append(np.array([not f.visible for f in faces], bool))
        return np.stack(images), boxes, ignores

    def fit(self, dataset: FaceDataset | str | Path, epochs: int = 20, batch_size: int = 32, lr: float = 3e-3,
            seed: int = 0, max_frames: int | None = None, progress: bool = True,
            min_height: float = 5.0, checkpoint: str | Path | None = None,
            crop: tuple[int, int] | list[int] | None = (64, 80)) -> dict[str, Any]:
        """Train on a face dataset.

        Args:
            dataset: a :class:`FaceDataset` or its folder.
            epochs: passes over the data.
            batch_size: images per step.
            lr: peak AdamW learning rate (warm-up then cosine decay).
            seed: shuffling and augmentation seed.
            max_frames: use only the first frames (small-budget runs and tests).
            progress: report progress on stderr (a bar on a terminal; elsewhere a line per epoch and every 30 s).
            min_height: faces shorter than this many *input* pixels are ignored (too small to learn).
            checkpoint: file for per-epoch checkpoints; an existing one is resumed, and it is deleted at the end.
            crop: train on random ``(height, width)`` windows of the input (multiples of 16; 70 % centred
                near a face) instead of whole frames: a quarter of the compute per sample on a shared CPU,
                and more positives per step. ``None`` trains on whole frames.

        Returns:
            ``{"loss": per-epoch mean losses, "seconds": wall time, "frames": n}``.
        """
        check_fit_settings(epochs, batch_size, lr, max_frames)  # before minutes of loading frames
        if crop is not None and (not isinstance(crop, tuple | list) or len(crop) != 2):
            raise InvalidArgumentError(f"crop must be (height, width), multiples of 16, or None, got {crop!r}")
        dataset = dataset if isinstance(dataset, FaceDataset) else FaceDataset(dataset)
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        images, boxes, ignores = self._load(dataset, max_frames)
        n = len(images)
        ch, cw = self.input_size if crop is None else (int(crop[0]), int(crop[1]))
        if ch % 16 or cw % 16 or ch > self.input_size[0] or cw > self.input_size[1]:
            raise InvalidArgumentError(f"crop must be multiples of 16 within the input size {self.input_size}, "
                                       f"got {crop}")
        grid = (ch // STRIDE, cw // STRIDE)
        net = self.net
        opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
        steps = epochs * max(1, n // batch_size)
        sched = warmup_cosine(opt, steps)
        ckpt = TrainingCheckpoint(checkpoint, {"net": net, "opt": opt, "sched": sched}, rng)
        done, history = ckpt.resume()
        start = time.time()
        bar = Progress(steps, initial=done * max(1, n // batch_size), desc="fit face_detector", unit="step",
                       enabled=progress)
        net.train()
        for epoch in range(done, epochs):
            order = rng.permutation(n)
            losses = []
            for b in range(max(1, n // batch_size)):
                idx = order[b * batch_size:(b + 1) * batch_size]
                x = np.empty((len(idx), ch, cw, 3), np.float32)
                tgt = []
                for k, i in enumerate(idx):
                    oy, ox = self._crop_origin(rng, boxes[i], ignores[i], (ch, cw))
                    x[k] = images[i, oy:oy + ch, ox:ox + cw]
                    bx = boxes[i] - np.array([ox, oy, ox, oy], np.float32)
                    cx, cy = (bx[:, 0] + bx[:, 2]) / 2, (bx[:, 1] + bx[:, 3]) / 2
                    # A face whose centre falls outside the window is masked, not a negative.
                    ign = ignores[i] | (cx < 0) | (cx >= cw) | (cy < 0) | (cy >= ch)
                    if rng.random() < 0.5:  # horizontal flip
                        x[k] = x[k, :, ::-1]
                        bx[:, [0, 2]] = cw - bx[:, [2, 0]]
                    x[k] = np.clip(x[k] * rng.uniform(0.7, 1.3) + rng.uniform(-20, 20), 0, 255)
                    tgt.append(_targets(bx, ign, grid, min_height))
                xt = torch.from_numpy((x / 127.5 - 1.0).transpose(0, 3, 1, 2).copy())
                heat, mask, reg, reg_mask = (torch.from_numpy(np.stack(t)) for t in zip(*tgt))
                out = net(xt)
                loss_heat = focal_loss(out[:, 0], heat, mask)
                npos = reg_mask.sum().clamp(min=1.0)
                loss_size = (F.l1_loss(out[:, 1:3], reg[:, :2], reduction="none") * reg_mask[:, None]).sum() / npos
                loss_off = (F.l1_loss(out[:, 3:5], reg[:, 2:], reduction="none") * reg_mask[:, None]).sum() / npos
                loss = loss_heat + 0.5 * loss_size + loss_off
                self._optimizer_step(loss, opt, sched, losses, bar)
            history.append(float(np.mean(losses)))
            ckpt.save(epoch + 1, history)
            bar.log(f"epoch {epoch + 1}/{epochs} done, mean loss {history[-1]:.4f} ({bar.status()})")
        self._finish_fit(net, ckpt, bar, dataset)
        return {"loss": history, "seconds": time.time() - start, "frames": n}

    def _crop_origin(self, rng: np.random.Generator, boxes: np.ndarray, ignore: np.ndarray,
                     crop: tuple[int, int]) -> tuple[int, int]:
        """Top-left corner (multiple of the stride) of a training window, near a face 70 % of the time."""
        ch, cw = crop
        H, W = self.input_size
        faces = np.flatnonzero(~ignore)
        if len(faces) and rng.random() < 0.7:
            x0, y0, x1, y1 = boxes[faces[rng.integers(len(faces))]]
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            ox = np.clip(cx - rng.uniform(0.15, 0.85) * cw, 0, W - cw)
            oy = np.clip(cy - rng.uniform(0.15, 0.85) * ch, 0, H - ch)
        else:
            ox, oy = rng.uniform(0, W - cw + 1e-6), rng.uniform(0, H - ch + 1e-6)
        return int(oy // STRIDE * STRIDE), int(ox // STRIDE * STRIDE)

    # -- evaluation ------------------------------------------------------------------------------
    def eval(self, dataset: FaceDataset | str | Path, min_face: float = 24.0, max_frames: int | None = None,
             batch_size: int = 16, progress: bool = False) -> dict[str, Any]:
        """AP@0.5 on a dataset for faces at least ``min_face`` px tall.

        Size ranges follow COCO: faces outside the range are ignored (a detection on one is neither a hit nor
        a false positive), and so are unmatched detections smaller than the range.

        Returns:
            ``ap50`` (faces >= ``min_face`` px), ``ap50_strict`` (the same, but every unmatched detection of any
            size counts as a false positive), ``ap50_all`` (every visible face >= 8 px), precision and recall at
            the best-F1 threshold, the number of faces, and mean batch-1 latency on the current runtime.
        """
        dataset = dataset if isinstance(dataset, FaceDataset) else FaceDataset(dataset)
        images: list[np.ndarray] = []
        gts, gts_all = [], []
        for img, label in dataset:
            if max_frames is not None and len(images) >= max_frames:
                break
            faces = [f for f in label.faces if f.visible or f.ignore]
            box = np.array([f.box for f in faces], np.float32).reshape(-1, 4)
            height = box[:, 3] - box[:, 1]
            visible = np.array([f.visible for f in faces], bool)
            gts.append((box, ~visible | (height < min_face)))
            gts_all.append((box, ~visible | (height < ALL_FACES_MIN_PX)))
            images.append(img)
        dets: list[FaceDetections] = []
        latency = []
        old_threshold = self.score_threshold
        self.score_threshold = min(0.05, old_threshold)  # AP integrates over all operating points
        try:
            for start in tqdm(range(0, len(images), batch_size), disable=not progress, desc="eval face_detector"):
                t = time.perf_counter()
                batch = self.infer(images[start:start + batch_size])
                latency.append((time.perf_counter() - t) / len(batch))
                dets.extend(batch)
        finally:
            self.score_threshold = old_threshold
        pairs = [(d.boxes, d.scores) for d in dets]
        ap = average_precision(pairs, gts, min_height=min_face)
        ap_strict = average_precision(pairs, gts)
        ap_all = average_precision(pairs, gts_all, min_height=ALL_FACES_MIN_PX)
        return {"ap50": ap["ap"], "precision": ap["precision"], "recall": ap["recall"], "n_faces": ap["n_gt"],
                "ap50_strict": ap_strict["ap"],
                "ap50_all": ap_all["ap"], "n_faces_all": ap_all["n_gt"], "min_face_px": min_face,
                "frames": len(images), "ms_per_image": 1000 * float(np.mean(latency)) if latency else None,
                "runtime": self.runtime_name, "score_threshold_best_f1": ap.get("best_f1_score_threshold")}
