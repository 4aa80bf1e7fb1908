"""The VQA learner: a FiLM-conditioned CNN (default) or MUTAN (Tucker) fusion, on two named inputs.

Inputs: ``image`` (RGB, resized to ``image_size``, ``(x/255 - 0.5)/0.5``, NCHW) and ``question`` (int64 token
ids, 0-padded; :class:`perception.vqa.tokenizer.Tokenizer`). Outputs: ``logits`` over the answer vocabulary,
``image_features`` (the question-independent stem's map, ``(N, 64, 8, 8)``: the ``x~`` of the paper's fused
map) and ``question_embedding`` (the GRU's last state at the question's last token, ``(N, 128)``: ``q``).

* ``arch="film"`` (FiLM, Perez et al. 2018): stem conv 3->32->64 (64 -> 16 px), then two 3x3 conv blocks whose
  feature maps are scaled and shifted per channel by linear maps of ``q`` (``(1 + gamma) * x + beta``), with
  x/y coordinate channels, max- and mean-pooled into an MLP classifier.
* ``arch="mutan"`` (Ben-younes et al. 2017, the paper's VQA model): the stem map through one more conv,
  flattened to a 256-d image vector ``v``; ``z = sum_r (W_v^r tanh(W_v v)) * (W_q^r tanh(W_q q))`` over rank
  ``R = 5`` and a linear classifier.

The learner is also the environment's VQA callable (``envs.tasks.vqa_camera``): :meth:`tokenize` a question,
:attr:`answers`, and :meth:`__call__` views + tokens -> answer probabilities.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from perception.errors import InvalidArgumentError
from perception.learner import Learner
from perception.specs import ArrayPreprocessing, ImagePreprocessing, TensorSpec
from perception.vqa.data import VIEW_KINDS, ViewSet, make_views
from perception.vqa.tokenizer import PAD, Tokenizer

__all__ = ["ARCHS", "VQALearner", "VQANet"]

ARCHS = ("film", "mutan")
FEATURES, QDIM = 64, 128


class VQANet(nn.Module):
    """The network behind :class:`VQALearner` (see the module docstring)."""

    def __init__(self, arch: str, vocab: int, answers: int, image_size: int = 64) -> None:
        super().__init__()
        self.arch = arch
        self.embed = nn.Embedding(vocab, 64, padding_idx=PAD)
        self.gru = nn.GRU(64, QDIM, batch_first=True)
        self.stem = nn.Sequential(nn.Conv2d(3, 24, 3, 2, 1), nn.ReLU(), nn.Conv2d(24, FEATURES, 3, 2, 1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(8)
        if arch == "film":
            self.conv1 = nn.Conv2d(FEATURES + 2, 64, 3, 2, 1)
            self.conv2 = nn.Conv2d(64 + 2, 64, 3, 1, 1)
            self.film = nn.Linear(QDIM, 4 * 64)
            self.head = nn.Sequential(nn.Linear(128 + QDIM, 256), nn.ReLU(), nn.Linear(256, answers))
        else:
            self.conv1 = nn.Conv2d(FEATURES + 2, 64, 3, 2, 1)
            self.image_fc = nn.Linear(64 * 8 * 8, 256)
            rank, dim = 5, 160
            self.v_proj, self.q_proj = nn.Linear(256, dim), nn.Linear(QDIM, dim)
            self.v_core, self.q_core = nn.Linear(dim, rank * 256), nn.Linear(dim, rank * 256)
            self.rank = rank
            self.head = nn.Linear(256, answers)

    @staticmethod
    def _coords(x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        ys = torch.linspace(-1, 1, h).view(1, 1, h, 1).expand(n, 1, h, w)
        xs = torch.linspace(-1, 1, w).view(1, 1, 1, w).expand(n, 1, h, w)
        return torch.cat([x, xs, ys], 1)

    def encode_question(self, question: torch.Tensor) -> torch.Tensor:
        """``q``: the GRU state at each question's last token."""
        out, _ = self.gru(self.embed(question))
        last = (question != PAD).sum(1).clamp(min=1) - 1
        return out.gather(1, last.view(-1, 1, 1).expand(-1, 1, out.shape[2])).squeeze(1)

    def answer(self, image: torch.Tensor, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits, image_features)`` of images and question embeddings (the question encoded once per
        episode by the environment's callable)."""
        stem = self.stem(image)
        features = self.pool(stem)
        if self.arch == "film":
            gamma1, beta1, gamma2, beta2 = self.film(q).view(-1, 4, 64, 1, 1).unbind(1)
            x = F.relu((1 + gamma1) * self.conv1(self._coords(stem)) + beta1)
            x = F.relu((1 + gamma2) * self.conv2(self._coords(x)) + beta2) + x
            return self.head(torch.cat([x.amax((2, 3)), x.mean((2, 3)), q], 1)), features
        x = F.relu(self.conv1(self._coords(stem)))
        v = F.relu(self.image_fc(x.flatten(1)))
        vt = self.v_core(torch.tanh(self.v_proj(v))).view(-1, self.rank, 256)
        qt = self.q_core(torch.tanh(self.q_proj(q))).view(-1, self.rank, 256)
        return self.head(F.relu((vt * qt).sum(1))), features

    def forward(self, image: torch.Tensor, question: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        q = self.encode_question(question)
        logits, features = self.answer(image, q)
        return logits, features, q


class VQALearner(Learner):
    """Answers questions about images (toolkit learner interface; two named inputs).

    Args:
        arch: ``"film"`` (default) or ``"mutan"``.
        image_size: side of the square network input (64).
        vocab: question words (ids from 2; empty: built from the training questions by :meth:`fit`).
        answers: answer vocabulary (empty: built by :meth:`fit`).
        max_length: longest question in tokens (longer ones are cut).
        seed: initialisation seed.
    """

    name = "vqa"
    version = "1"
    role = "visual question answering"

    def __init__(self, arch: str = "film", image_size: int = 64, vocab: Sequence[str] = (),
                 answers: Sequence[str] = (), max_length: int = 32, seed: int = 0) -> None:
        if arch not in ARCHS:
            raise InvalidArgumentError(f"arch={arch!r} is not a VQA architecture; choose from {', '.join(ARCHS)}")
        if isinstance(image_size, bool) or not isinstance(image_size, int) or not 32 <= image_size <= 512:
            raise InvalidArgumentError(f"image_size={image_size!r} must be an integer in [32, 512]")
        super().__init__(arch=arch, image_size=image_size, vocab=list(vocab), answers=list(answers),
                         max_length=max_length, seed=seed)
        self.tokenizer = Tokenizer(self.config["vocab"], max_length)
        self._q_cache: tuple[bytes, torch.Tensor] | None = None

    def build_network(self) -> torch.nn.Module:
        torch.manual_seed(self.config["seed"])
        return VQANet(self.config["arch"], len(self.config["vocab"]) + 2, max(1, len(self.config["answers"])),
                      self.config["image_size"])

    def input_specs(self) -> list[TensorSpec]:
        size = self.config["image_size"]
        return [TensorSpec.image("image", ImagePreprocessing(size=(size, size))),
                TensorSpec("question", [-1, -1], "int64", "question token ids, padded with 0",
                           ArrayPreprocessing("int64", pad_value=0),
                           value_range=[0, len(self.config["vocab"]) + 2])]

    def output_spec(self) -> list[TensorSpec]:
        return [TensorSpec("logits", [-1, max(1, len(self.config["answers"]))], "float32", "answer logits"),
                TensorSpec("image_features", [-1, FEATURES, 8, 8], "float32", "question-independent image map"),
                TensorSpec("question_embedding", [-1, QDIM], "float32", "question embedding")]

    # -- the environment's callable ------------------------------------------------------------------------
    @property
    def answers(self) -> list[str]:
        """The answer vocabulary, in logit order."""
        return list(self.config["answers"])

    def tokenize(self, question: str) -> tuple[list[int], int]:
        """``(token ids, unknown words)`` of ``question``."""
        return self.tokenizer.encode(question)

    def __call__(self, views: np.ndarray | Sequence[np.ndarray], tokens: Sequence[Sequence[int]]) -> np.ndarray:
        """Answer probabilities ``(N, answers)`` of uint8 RGB ``views`` and token-id lists.

        On the torch runtime the question embedding of the last token lists asked is reused (an episode asks
        one question over several views); other runtimes run the whole graph.
        """
        feeds = self.preprocess({"image": views, "question": [list(t) for t in tokens]})
        if self.runtime_name == "torch":
            key = feeds["question"].tobytes() + bytes(feeds["question"].shape)
            with torch.no_grad():
                self.net.eval()
                if self._q_cache is None or self._q_cache[0] != key:
                    self._q_cache = (key, self.net.encode_question(torch.from_numpy(feeds["question"])))
                logits = self.net.answer(torch.from_numpy(feeds["image"]), self._q_cache[1])[0].numpy()
        else:
            logits = self.run_network(feeds)["logits"]
        z = logits - logits.max(1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(1, keepdims=True)

    def infer(self, inputs: Any) -> list[dict[str, Any]]:
        """``{"image": [RGB images], "question": [texts]}`` -> ``[{"answer", "confidence"}]`` per sample."""
        questions = inputs["question"]
        tokens = [self.tokenize(q)[0] if isinstance(q, str) else list(q) for q in questions]
        probs = self(inputs["image"], tokens)
        return [{"answer": self.answers[int(p.argmax())], "confidence": float(p.max())} for p in probs]

    # -- training ------------------------------------------------------------------------------------------
    def _encode(self, views: ViewSet) -> tuple[np.ndarray, np.ndarray]:
        tokens = [self.tokenize(q)[0] for q in views.questions]
        longest = max(len(t) for t in tokens)
        tok = np.zeros((len(tokens), longest), np.int64)
        for i, t in enumerate(tokens):
            tok[i, :len(t)] = t
        index = {a: i for i, a in enumerate(self.answers)}
        labels = np.array([index.get(a, -1) for a in views.answers])
        return tok, labels

    def fit(self, dataset: str | Path | ViewSet, epochs: int = 8, batch_size: int = 128, lr: float = 2e-3,
            seed: int = 0, progress: bool = True, val: str | Path | ViewSet | None = None) -> dict[str, Any]:
        """Train on a CLEVR folder's views (whole, oracle and random windows; :func:`make_views`).

        A learner made without ``vocab``/``answers`` takes them from the training questions (its network is
        rebuilt). Adam with cosine decay; returns ``{"loss": per-epoch losses, "seconds", "views"}`` plus
        validation accuracy per epoch when ``val`` is given.
        """
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise InvalidArgumentError(f"epochs={epochs!r} must be an integer >= 1")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 2:
            raise InvalidArgumentError(f"batch_size={batch_size!r} must be an integer >= 2")
        views = dataset if isinstance(dataset, ViewSet) else make_views(dataset, self.config["image_size"], seed=seed)
        if not self.config["vocab"] or not self.config["answers"]:
            self.config["vocab"] = Tokenizer.build(views.questions).words
            self.config["answers"] = sorted(set(views.answers))
            self.tokenizer = Tokenizer(self.config["vocab"], self.config["max_length"])
            self.net = self.build_network()
            self._runtime = None
        tok, labels = self._encode(views)
        keep = labels >= 0
        images = self.input_specs()[0].preprocessing(views.images[keep])
        x, t, y = torch.from_numpy(images), torch.from_numpy(tok[keep]), torch.from_numpy(labels[keep])
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        opt = torch.optim.Adam(self.net.parameters(), lr=lr)
        steps = epochs * max(1, len(y) // batch_size)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
        history, val_history, start = [], [], time.time()
        for epoch in range(epochs):
            self.net.train()
            order = rng.permutation(len(y))
            losses = []
            for b in range(len(y) // batch_size):
                idx = torch.from_numpy(order[b * batch_size:(b + 1) * batch_size])
                logits, _, _ = self.net(x[idx], t[idx])
                loss = F.cross_entropy(logits, y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                losses.append(float(loss.detach()))
            history.append(float(np.mean(losses)) if losses else float("nan"))
            if val is not None:
                val_history.append(self.eval(val)["accuracy"])
            if progress:
                extra = f", val accuracy {val_history[-1]}" if val_history else ""
                print(f"epoch {epoch + 1}/{epochs}: loss {history[-1]:.4f}{extra} ({time.time() - start:.0f} s)",
                      flush=True)
        self.net.eval()
        self.saved_identity = None
        self._q_cache = None
        summary = {"loss": history, "seconds": time.time() - start, "views": len(y)}
        if val_history:
            summary["val_accuracy"] = val_history
        return summary

    def eval(self, dataset: str | Path | ViewSet, batch_size: int = 256, **kwargs: Any) -> dict[str, Any]:
        """Accuracy per view kind (``whole``, ``oracle``, ``random``), overall and on the far-small split, and per
        question family on whole images."""
        views = dataset if isinstance(dataset, ViewSet) else make_views(dataset, self.config["image_size"],
                                                                         kinds=("whole", "oracle"), seed=1)
        tok, labels = self._encode(views)
        pred = np.empty(len(labels), np.int64)
        with torch.no_grad():
            self.net.eval()
            for s in range(0, len(labels), batch_size):
                images = torch.from_numpy(self.input_specs()[0].preprocessing(views.images[s:s + batch_size]))
                pred[s:s + batch_size] = self.net(images, torch.from_numpy(tok[s:s + batch_size]))[0].argmax(1).numpy()
        correct = pred == labels
        accuracy: dict[str, Any] = {}
        for k, kind in enumerate(VIEW_KINDS):
            mask = views.kind == k
            if mask.any():
                far = mask & views.far_small
                accuracy[kind] = {"all": round(float(correct[mask].mean()), 4),
                                  "far_small": round(float(correct[far].mean()), 4) if far.any() else None,
                                  "n": int(mask.sum()), "n_far_small": int(far.sum())}
        whole = views.kind == 0
        families = sorted(set(views.family))
        per_family = {f: round(float(correct[whole & (np.array(views.family) == f)].mean()), 4) for f in families
                      if (whole & (np.array(views.family) == f)).any()}
        return {"accuracy": accuracy, "per_family_whole": per_family}
