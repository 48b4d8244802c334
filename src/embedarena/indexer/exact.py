"""Exact (brute-force) dense search in process: the one implementation behind the ANN check
of HNSW rows and hard-negative mining.

Scores follow the similarity Elasticsearch was asked for (cosine on normalised vectors, dot
product, negative squared L2 distance), so an exact top-k here is the ground truth an HNSW
search approximates. Backends: `numpy` (float64, stable order: ties keep document order, so
the reference is the same on every machine), `faiss` (faiss-gpu when installed and a GPU is
there) and `torch` (CUDA when available) for large pools; `auto` picks faiss, then torch,
then numpy.
"""

from __future__ import annotations

import importlib.util
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
    """The exact top `k` documents per query by `similarity`."""
    if similarity not in SIMILARITIES:
        raise ValueError(f"unknown similarity {similarity!r}")
    if backend not in ("auto", "numpy", "faiss", "torch"):
        raise ConfigError(f"exact search backend is auto, numpy, faiss or torch, not {backend!r}")
    k = min(k, docs.shape[0])
    if backend == "faiss" and not faiss_available():
        raise ConfigError("backend faiss asked for, but faiss is not installed "
                          "(pip install faiss-cpu, or faiss-gpu-cu12 on a GPU machine)")
    if backend in ("auto", "faiss") and faiss_available():
        return _faiss(queries, docs, k, similarity, use_gpu)
    if backend == "torch" or (backend == "auto" and importlib.util.find_spec("torch")):
        return _torch(queries, docs, k, similarity, use_gpu)
    return _numpy(queries, docs, k, similarity)


def _numpy(queries: np.ndarray, docs: np.ndarray, k: int, similarity: str) -> ExactResult:
    d = np.asarray(docs, dtype=np.float64)
    q = np.asarray(queries, dtype=np.float64)
    if similarity == "cosine":
        d, q = _unit(d), _unit(q)
    if similarity == "l2_norm":
        sims = -(np.sum(q**2, axis=1)[:, None] - 2 * q @ d.T + np.sum(d**2, axis=1)[None, :])
    else:
        sims = q @ d.T
    # stable sort on (-sim, position) keeps ties deterministic
    idx = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return ExactResult(np.take_along_axis(sims, idx, axis=1), idx, "numpy")


def _faiss(queries: np.ndarray, docs: np.ndarray, k: int, similarity: str,
           use_gpu: bool) -> ExactResult:
    import faiss

    d = np.ascontiguousarray(docs, dtype=np.float32)
    q = np.ascontiguousarray(queries, dtype=np.float32)
    if similarity == "cosine":
        d, q = _unit(d).astype(np.float32), _unit(q).astype(np.float32)
    index: Any = (faiss.IndexFlatL2(d.shape[1]) if similarity == "l2_norm"
                  else faiss.IndexFlatIP(d.shape[1]))
    where = "faiss-cpu"
    if use_gpu and hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0:
        index = faiss.index_cpu_to_all_gpus(index)
        where = "faiss-gpu"
    index.add(d)
    s, i = index.search(q, k)
    if similarity == "l2_norm":
        s = -s
    return ExactResult(s, i, where)


def _torch(queries: np.ndarray, docs: np.ndarray, k: int, similarity: str,
           use_gpu: bool) -> ExactResult:
    import torch

    dev = "cuda" if use_gpu and torch.cuda.is_available() else "cpu"
    d = torch.from_numpy(np.ascontiguousarray(docs, dtype=np.float32)).to(dev)
    if similarity == "cosine":
        d = torch.nn.functional.normalize(d, dim=1)
    d_sq = (d * d).sum(dim=1) if similarity == "l2_norm" else None
    out_s, out_i = [], []
    for start in range(0, queries.shape[0], 1024):
        q = torch.from_numpy(np.ascontiguousarray(queries[start:start + 1024],
                                                  dtype=np.float32)).to(dev)
        if similarity == "cosine":
            q = torch.nn.functional.normalize(q, dim=1)
        sims = q @ d.T
        if d_sq is not None:
            sims = 2 * sims - d_sq[None, :] - (q * q).sum(dim=1)[:, None]
        top = torch.topk(sims, k, dim=1)
        out_s.append(top.values.cpu().numpy())
        out_i.append(top.indices.cpu().numpy())
    if not out_s:
        return ExactResult(np.zeros((0, k), np.float32), np.zeros((0, k), np.int64),
                           f"torch-{dev}")
    return ExactResult(np.concatenate(out_s), np.concatenate(out_i), f"torch-{dev}")
