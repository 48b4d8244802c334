"""A tiny deterministic embedder for indexer tests: hashed character bigrams.

Not a stand-in for Elasticsearch (that is always the real node); it only keeps indexer tests
independent of torch. Similar strings share bigrams, so nearest neighbours are meaningful.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np


class BigramEmbedder:
    def __init__(self, dim: int = 32, salt: str = "", normalized: bool = True,
                 fail_after: int | None = None) -> None:
        self.name = f"bigram{dim}{salt}"
        self.dim = dim
        self.salt = salt
        self.normalized = normalized
        self.similarity = "dot_product" if normalized else "cosine"
        self.fail_after = fail_after
        self.calls = 0

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(f"bigram|{self.dim}|{self.salt}|{self.normalized}".encode()
                              ).hexdigest()

    def _one(self, text: str) -> np.ndarray:
        v = np.zeros(self.dim, dtype=np.float32)
        t = f"^{text}$"
        for a, b in zip(t, t[1:]):
            h = int(hashlib.md5(f"{self.salt}{a}{b}".encode()).hexdigest(), 16)
            v[h % self.dim] += 1.0 if (h >> 8) % 2 else -1.0
        n = np.linalg.norm(v)
        if n == 0:
            v[0] = 1.0
            n = 1.0
        return v / n if self.normalized else v

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise RuntimeError("model crashed mid-build")
        return np.stack([self._one(t) for t in texts]).astype(np.float32)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self._one(t) for t in texts]).astype(np.float32)
