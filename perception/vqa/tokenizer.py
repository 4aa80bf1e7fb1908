"""Word tokens of questions: lower-case words and ``?``; 0 pads, 1 is the unknown word."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

__all__ = ["PAD", "UNK", "Tokenizer"]

PAD, UNK = 0, 1
_WORD = re.compile(r"[a-z0-9]+|\?")


class Tokenizer:
    """Maps question text to token ids with a fixed vocabulary (ids 2 and up; 0 pad, 1 unknown).

    Args:
        words: the vocabulary, in id order from 2.
        max_length: questions longer than this are cut (counted by :meth:`encode`).
    """

    def __init__(self, words: Sequence[str], max_length: int = 32) -> None:
        self.words = list(words)
        self.ids = {w: i + 2 for i, w in enumerate(self.words)}
        self.max_length = int(max_length)

    @classmethod
    def build(cls, questions: Iterable[str], max_length: int = 32) -> Tokenizer:
        """A vocabulary of every word in ``questions``, sorted."""
        return cls(sorted({w for q in questions for w in _WORD.findall(q.lower())}), max_length)

    @property
    def size(self) -> int:
        """Number of ids (vocabulary + pad + unknown)."""
        return len(self.words) + 2

    def encode(self, question: str) -> tuple[list[int], int]:
        """``(ids, unknown words)``; at least one id, at most ``max_length``. Never raises on odd text."""
        words = _WORD.findall(str(question).lower()) or ["?"]
        ids = [self.ids.get(w, UNK) for w in words][: self.max_length]
        return ids, sum(i == UNK for i in ids)
