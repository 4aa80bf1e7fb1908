"""Training, calibrating and evaluating the face recogniser on face banks (:mod:`perception.faces.bank`).

:func:`fit_bank` trains the embedding with an angular-margin loss (:mod:`perception.faces.margin`) on every view of
a bank's identities — which must all be training identities: the gallery and the held-out identities of the
bank's identity split (``FaceBankConfig.split_gallery``, ``split_heldout``) are refused — then enrols the gallery
from one frontal crop each and calibrates on a second bank of gallery and held-out identities: the softmax
temperature on the gallery's views, the unknown threshold for a target false-accept rate on the held-out
identities' views.
:func:`eval_bank` reports verification (TAR at FAR), identification and open-set figures
(:func:`perception.faces.verification.open_set_report`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from perception.errors import InvalidArgumentError
from perception.faces.bank import GALLERY_CROP, FaceBank
from perception.faces.verification import open_set_report, plot_report, threshold_for_far

if TYPE_CHECKING:
    from perception.faces.recognizer import FaceRecognizerLearner


def centre_crops(crops: np.ndarray) -> np.ndarray:
    """The recogniser's 64 x 64 crops: the middle of a bank's larger crops (same pixel scale, see
    :attr:`FaceBankConfig.crop_margin`)."""
    m = (crops.shape[1] - GALLERY_CROP) // 2
    return np.ascontiguousarray(crops[:, m:m + GALLERY_CROP, m:m + GALLERY_CROP])


def augment(x: torch.Tensor, rng: np.random.Generator, out: int = GALLERY_CROP) -> torch.Tensor:
    """Random scale, shift, rotation and mirror (one affine warp), light, colour and resolution changes.

    ``x`` is a batch of bank crops in [-1, 1], ``(B, 3, S, S)``; the result is ``(B, 3, out, out)``. The shift and
    scale stand for the detector's boxes, which are never exactly the labelled ones.
    """
    b, _, side, _ = x.shape
    base = out / side  # the recogniser's crop is the middle out/side of the bank's crop
    scale = base * rng.uniform(0.9, 1.12, b)
    angle = np.radians(rng.uniform(-8.0, 8.0, b))
    flip = np.where(rng.random(b) < 0.5, -1.0, 1.0)
    shift = rng.uniform(-0.07, 0.07, (b, 2))
    theta = np.zeros((b, 2, 3), np.float32)
    theta[:, 0, 0] = scale * np.cos(angle) * flip
    theta[:, 0, 1] = -scale * np.sin(angle)
    theta[:, 1, 0] = scale * np.sin(angle) * flip
    theta[:, 1, 1] = scale * np.cos(angle)
    theta[:, :, 2] = shift
    grid = F.affine_grid(torch.from_numpy(theta), [b, 3, out, out], align_corners=False)
    y = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    gain = rng.uniform(0.65, 1.35, (b, 1, 1, 1)) * rng.uniform(0.9, 1.1, (b, 3, 1, 1))
    y = (y + 1.0) * torch.from_numpy(gain.astype(np.float32)) - 1.0
    if rng.random() < 0.5:  # distant or blurred faces: down- then up-sample the whole batch
        low = int(rng.integers(10, out))
        y = F.interpolate(F.interpolate(y, size=(low, low), mode="area"), size=(out, out), mode="bilinear",
                          align_corners=False)
    y = y + torch.from_numpy(rng.normal(0.0, 0.02, y.shape).astype(np.float32))
    return y.clamp(-1.0, 1.0)


def _check_training_identities(bank: FaceBank) -> list[int]:
    gallery, heldout = bank.config.split_gallery, bank.config.split_heldout
    ids = bank.identities
    banned = sorted(set(ids) & (set(range(*gallery)) | set(range(*heldout))))
    if bank.config.identity_seed == 0 and banned:
        raise InvalidArgumentError(
            f"face bank {bank.root} holds gallery or held-out identities ({banned[:5]}...): the recogniser is "
            f"never trained on the gallery ({gallery[0]}-{gallery[1] - 1}) or held-out ({heldout[0]}-{heldout[1] - 1}) "
            f"identities; render the training bank from identity {max(gallery[1], heldout[1])} up")
    return ids


def fit_bank(learner: FaceRecognizerLearner, bank: FaceBank, *, epochs: int, batch_size: int, lr: float, seed: int,
             progress: bool, enroll: bool, checkpoint: str | Path | None, calibration: str | Path | None,
             target_far: float) -> dict[str, Any]:
    """Train ``learner`` on ``bank`` (see the module docstring); arguments as :meth:`FaceRecognizerLearner.fit`."""
    if not 0.0 < target_far < 1.0:
        raise InvalidArgumentError(f"target_far must be in (0, 1), got {target_far!r}")
    calib = FaceBank(calibration) if calibration is not None else None  # checked before training
    if enroll:
        bank.gallery()
        if calib is None:
            raise InvalidArgumentError("training on a face bank needs a calibration bank of gallery and held-out "
                                       "identities (--option calibration=PATH), or enroll=false")
    ids = _check_training_identities(bank)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    data = bank.load()
    crops, labels = data["crops"], np.searchsorted(np.asarray(ids), data["identity"])
    if len(crops) < batch_size:
        raise InvalidArgumentError(f"only {len(crops)} views in {bank.root}; need >= {batch_size}")

    def batch(idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        idx = np.sort(idx)
        x = torch.from_numpy(crops[idx]).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        return augment(x, rng), torch.from_numpy(labels[idx]).long()

    history, seconds, steps_per_epoch = learner._train_margin(
        len(crops), len(ids), batch, epochs=epochs, batch_size=batch_size, lr=lr, rng=rng, checkpoint=checkpoint,
        progress=progress, desc="fit face_recognizer (bank)", data=bank)
    summary: dict[str, Any] = {"loss": history, "seconds": seconds, "crops": len(crops),
                               "identities": len(ids), "steps": epochs * steps_per_epoch}
    if enroll and calib is not None:
        enroll_bank_gallery(learner, bank)
        summary.update(calibrate_bank(learner, calib, target_far))
    return summary


def enroll_bank_gallery(learner: FaceRecognizerLearner, bank: FaceBank) -> None:
    """Enrol every gallery identity of ``bank`` from its one frontal crop (replacing the gallery)."""
    learner.gallery_names, learner.gallery = [], np.zeros((0, learner.config["embedding_dim"]), np.float32)
    for identity, crop in zip(*bank.gallery()):
        learner.enroll(bank.name(identity), crop)


def _probes(learner: FaceRecognizerLearner, bank: FaceBank, max_views: int | None = None
            ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Embeddings of ``bank``'s views, each view's gallery column (-1: not enrolled), and the view labels."""
    data = bank.load()
    if max_views is not None:
        data = {k: v[:max_views] for k, v in data.items()}
    emb = learner.embed(centre_crops(data["crops"])) if len(data["crops"]) else np.zeros((0, 1), np.float32)
    column = {name: k for k, name in enumerate(learner.gallery_names)}
    truth = np.array([column.get(bank.name(int(i)), -1) for i in data["identity"]], int)
    return emb, truth, data


def calibrate_bank(learner: FaceRecognizerLearner, bank: FaceBank, target_far: float) -> dict[str, Any]:
    """Fit the temperature on the gallery identities' views of ``bank`` and set the unknown threshold so that at
    most ``target_far`` of the other identities' views would be named as someone in the gallery.

    Raises:
        InvalidArgumentError: ``bank`` has no views of gallery identities or none of other identities.
    """
    emb, truth, data = _probes(learner, bank)
    known = truth >= 0
    unknown = ~known
    if bank.config.identity_seed == 0:  # only held-out identities may calibrate: never a training one
        unknown &= np.isin(data["identity"], list(range(*bank.config.split_heldout)))
    if not known.any() or not unknown.any():
        raise InvalidArgumentError(f"calibration bank {bank.root} needs views of gallery identities and of held-out "
                                   f"identities; it has {int(known.sum())} and {int(unknown.sum())}")
    learner.calibrate(emb[known], [learner.gallery_names[t] for t in truth[known]])
    top = (emb[unknown] @ learner.gallery.T).max(1)
    learner.threshold = float(threshold_for_far(top, target_far))
    return {"temperature": learner.temperature, "threshold": learner.threshold, "target_far": target_far,
            "calibration_unknown_n": int(unknown.sum()), "calibration_known_n": int(known.sum()),
            "calibration_hash": bank.content_hash}


def eval_bank(learner: FaceRecognizerLearner, bank: FaceBank, max_frames: int | None = None,
              out_dir: str | Path | None = None) -> dict[str, Any]:
    """Verification, identification and open-set figures of ``learner`` on ``bank``'s views (the first
    ``max_frames`` views when given); writes ``recognition_curves.png`` (ROC and curves) into ``out_dir``."""
    emb, truth, data = _probes(learner, bank, max_frames)
    if not len(emb):
        raise InvalidArgumentError(f"face bank {bank.root} has no views to evaluate")
    sims = emb @ learner.gallery.T
    report = open_set_report(sims, truth, learner.threshold, data["distance"], data["yaw"], data["pitch"])
    report.update({"views": len(emb), "known_views": int((truth >= 0).sum()),
                   "temperature": learner.temperature, "gallery_size": len(learner.gallery_names),
                   "runtime": learner.runtime_name, "data": "face bank", "data_hash": bank.content_hash})
    if out_dir is not None:
        plot_report(report, Path(out_dir) / "recognition_curves.png")
    if not math.isfinite(report["threshold"]):  # pragma: no cover - thresholds come from finite scores
        raise InvalidArgumentError("the recogniser's threshold is not finite")
    return report
