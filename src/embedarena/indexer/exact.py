"""Exact (brute-force) dense search in process: the one implementation behind the ANN check
of HNSW rows and hard-negative mining.

Scores follow the similarity Elasticsearch was asked for (cosine on normalised vectors, dot
product, negative squared L2 distance), so an exact top-k here is the ground truth an HNSW
search approximates. Backends: `numpy` (float64), `faiss` (a Flat index; faiss-gpu when
installed and a GPU is there) and `torch` (CUDA when available) for large pools; `auto` picks
faiss, then torch, then numpy.

One tie rule for every backend: scores descending, equal scores by document position (the
earlier document first). numpy's stable sort gives it directly; faiss Flat returns the *last*
of equal documents first and torch.topk has no order at all, so their answers go through
`stable_top_k`, which re-sorts ties and widens the search where a tie crosses the cutoff. A
reference (ANN check, faiss rows, mining) is then the same run after run.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from embedarena.errors import ConfigError

ExactBackend = Literal["auto", "numpy", "faiss", "torch"]
SIMILARITIES = ("cosine", "dot_product", "max_inner_product", "l2_norm")


@dataclass(frozen=True)
class ExactResult:
    """Row i: the best documents for query i (indices into the docs; -1 pads short rows)."""

    scores: np.ndarray
    indices: np.ndarray
    backend: str


def faiss_available() -> bool:
    return importlib.util.find_spec("faiss") is not None


def _unit(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(n, 1e-12)


def exact_search(queries: np.ndarray, docs: np.ndarray, k: int,
                 similarity: str = "dot_product", backend: ExactBackend = "auto",
                 use_gpu: bool = True) -> ExactResult:
    """The exact top `k` documents per query by `similarity` (ties: earlier document first)."""
    return ExactIndex(docs, similarity, backend, use_gpu).search(queries, k)


def sort_ties(scores: np.ndarray, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row ordered by score descending, then document position (the one tie rule)."""
    if scores.size == 0:
        return scores, indices
    order = np.lexsort((indices, -scores), axis=-1)
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(indices, order, axis=1)


def stable_top_k(top: Callable[[int], tuple[np.ndarray, np.ndarray]], k: int, n: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The top `k` of `n` documents under the tie rule, from an engine that is exact about
    scores but arbitrary among equal ones (`top(j)`: its top j per query).

    Ties are re-sorted by position; where the k-th score still equals the last one fetched,
    the tied group may go on past it, so more is fetched until it ends: the k kept are then
    the earliest of the tied documents, as with numpy's stable sort.
    """
    fetch = min(n, k + max(8, k // 4))
    while True:
        s, i = sort_ties(*top(fetch))
        if fetch >= n or not (s[:, k - 1] == s[:, fetch - 1]).any():
            return s[:, :k], i[:, :k]
        fetch = min(n, fetch * 2)


class ExactIndex:
    """Documents held once, searched many times: a faiss Flat index stays built across query
    sets (faiss rows, the ANN check). `exact_search` is its one-shot form."""

    def __init__(self, docs: np.ndarray, similarity: str = "dot_product",
                 backend: ExactBackend = "auto", use_gpu: bool = True) -> None:
        if similarity not in SIMILARITIES:
            raise ValueError(f"unknown similarity {similarity!r}")
        if backend not in ("auto", "numpy", "faiss", "torch"):
            raise ConfigError(f"exact search backend is auto, numpy, faiss or torch, not "
                              f"{backend!r}")
        if backend == "faiss" and not faiss_available():
            raise ConfigError("backend faiss asked for, but faiss is not installed "
                              "(pip install faiss-cpu, or faiss-gpu-cu12 on a GPU machine)")
        self.similarity = similarity
        self.n = int(docs.shape[0])
        self.dim = int(docs.shape[1]) if docs.ndim == 2 else 0
        self._impl: _Numpy | _Faiss | _Torch
        if backend in ("auto", "faiss") and faiss_available():
            self._impl = _Faiss(docs, similarity, use_gpu)
        elif backend == "torch" or (backend == "auto" and importlib.util.find_spec("torch")):
            self._impl = _Torch(docs, similarity, use_gpu)
        else:
            self._impl = _Numpy(docs, similarity)

    @property
    def backend(self) -> str:
        """Where the search runs: numpy, faiss-cpu, faiss-gpu, torch-cpu or torch-cuda."""
        return self._impl.name

    def search(self, queries: np.ndarray, k: int) -> ExactResult:
        """Row i: the best `k` documents for query i, by score, then document position."""
        k = min(k, self.n)
        nq = int(queries.shape[0])
        if k <= 0 or nq == 0:
            return ExactResult(np.zeros((nq, max(k, 0)), np.float32),
                               np.zeros((nq, max(k, 0)), np.int64), self.backend)
        impl = self._impl
        if isinstance(impl, _Numpy):
            s, i = impl.top(queries, k)
        else:
            s, i = stable_top_k(lambda j: impl.top(queries, j), k, self.n)
        return ExactResult(s, i, self.backend)


class _Numpy:
    """float64 brute force; its stable sort is the tie rule itself."""

    name = "numpy"

    def __init__(self, docs: np.ndarray, similarity: str) -> None:
        d = np.asarray(docs, dtype=np.float64)
        self.docs = _unit(d) if similarity == "cosine" else d
        self.sq = np.sum(self.docs**2, axis=1) if similarity == "l2_norm" else None
        self.similarity = similarity

    def top(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = np.asarray(queries, dtype=np.float64)
        if self.similarity == "cosine":
            q = _unit(q)
        sims = q @ self.docs.T
        if self.sq is not None:
            sims = -(np.sum(q**2, axis=1)[:, None] - 2 * sims + self.sq[None, :])
        # stable sort on (-sim, position) keeps ties deterministic
        idx = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(sims, idx, axis=1), idx


#: faiss-gpu's largest k per search (GPU_MAX_SELECTION_K); beyond it the CPU copy answers.
GPU_MAX_K = 2048


class _Faiss:
    """A faiss Flat index (inner product, or L2 for `l2_norm`), on the GPUs with faiss-gpu."""

    def __init__(self, docs: np.ndarray, similarity: str, use_gpu: bool) -> None:
        import faiss

        self.similarity = similarity
        self.docs = prepare(docs, similarity)
        self.cpu: Any = (faiss.IndexFlatL2(self.docs.shape[1]) if similarity == "l2_norm"
                         else faiss.IndexFlatIP(self.docs.shape[1]))
        self.cpu.add(self.docs)
        self.gpu: Any = None
        if use_gpu and hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0:
            self.gpu = faiss.index_cpu_to_all_gpus(self.cpu)
        self.name = "faiss-gpu" if self.gpu is not None else "faiss-cpu"

    def top(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        index = self.gpu if self.gpu is not None and k <= GPU_MAX_K else self.cpu
        s, i = index.search(prepare(queries, self.similarity), k)
        return (-s if self.similarity == "l2_norm" else s), i


def prepare(x: np.ndarray, similarity: str) -> np.ndarray:
    """What faiss takes: contiguous float32 rows, unit length for cosine."""
    out = np.ascontiguousarray(x, dtype=np.float32)
    if similarity == "cosine":
        out = np.ascontiguousarray(_unit(out), dtype=np.float32)
    return out


class _Torch:
    """Matrix products in chunks of queries, on CUDA when there."""

    def __init__(self, docs: np.ndarray, similarity: str, use_gpu: bool) -> None:
        import torch

        self.dev = "cuda" if use_gpu and torch.cuda.is_available() else "cpu"
        self.name = f"torch-{self.dev}"
        d = torch.from_numpy(np.ascontiguousarray(docs, dtype=np.float32)).to(self.dev)
        if similarity == "cosine":
            d = torch.nn.functional.normalize(d, dim=1)
        self.docs = d
        self.sq = (d * d).sum(dim=1) if similarity == "l2_norm" else None
        self.similarity = similarity

    def top(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        import torch

        out_s, out_i = [], []
        for start in range(0, queries.shape[0], 1024):
            q = torch.from_numpy(np.ascontiguousarray(queries[start:start + 1024],
                                                      dtype=np.float32)).to(self.dev)
            if self.similarity == "cosine":
                q = torch.nn.functional.normalize(q, dim=1)
            sims = q @ self.docs.T
            if self.sq is not None:
                sims = 2 * sims - self.sq[None, :] - (q * q).sum(dim=1)[:, None]
            top = torch.topk(sims, k, dim=1)
            out_s.append(top.values.cpu().numpy())
            out_i.append(top.indices.cpu().numpy())
        return np.concatenate(out_s), np.concatenate(out_i)
