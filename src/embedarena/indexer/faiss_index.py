"""In-process faiss indexes for embedder rows under `index.backend: faiss`.

`flat` is the one exact search (`embedarena.indexer.exact`, a faiss Flat index with its tie
rule); `hnsw` (graph: `m`, `ef_construction`, `ef_search`) and `ivf` (inverted lists: `nlist`,
`nprobe`) are faiss's approximate indexes. faiss-gpu is used where the type has a GPU version
(flat, ivf; faiss has no GPU HNSW). Nothing is saved: the vectors come from the embedding
cache, so rebuilding the index in the next run costs an `add`, not an encode.

Scores are put on Elasticsearch's scale (`es_scores`), so a faiss run and an ES run of the
same model can be swapped downstream (calibrate thresholds, weighted fusion, reports).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from embedarena.errors import ConfigError
from embedarena.indexer.exact import (
    GPU_MAX_K,
    ExactIndex,
    ExactResult,
    faiss_available,
    prepare,
    sort_ties,
)

FaissType = Literal["flat", "hnsw", "ivf"]
FAISS_TYPES: tuple[str, ...] = ("flat", "hnsw", "ivf")


@dataclass(frozen=True)
class FaissOptions:
    """Which faiss index and its parameters. The HNSW defaults are Elasticsearch's (m 16,
    ef_construction 100), so switching an experiment's backend keeps its graph settings."""

    type: FaissType = "flat"
    m: int = 16
    ef_construction: int = 100
    ef_search: int = 100
    """HNSW candidate list at search time (the experiment's `num_candidates`; at least k)."""
    nlist: int | None = None
    """IVF lists; default about 4·√n, at most n/39 (k-means wants 39 points per centroid)."""
    nprobe: int | None = None
    """IVF lists visited per query; default min(nlist, 10) (faiss's own 1 misses most)."""
    use_gpu: bool = True

    def lists(self, n: int) -> int:
        if self.nlist is not None:
            return self.nlist
        return max(1, min(int(4 * math.sqrt(max(n, 1))), n // 39))

    def probes(self, n: int) -> int:
        return min(self.lists(n), self.nprobe if self.nprobe is not None else 10)

    def describe(self, n: int) -> str:
        """faiss's factory spelling plus the search-time knobs, e.g. `HNSW16 (efC 100, efS 100)`."""
        if self.type == "hnsw":
            return f"HNSW{self.m} (efConstruction {self.ef_construction}, " \
                   f"efSearch {self.ef_search})"
        if self.type == "ivf":
            return f"IVF{self.lists(n)},Flat (nprobe {self.probes(n)})"
        return "Flat"


class FaissIndex:
    """The corpus vectors in one faiss index, kept in memory for the run."""

    def __init__(self, docs: np.ndarray, similarity: str,
                 options: FaissOptions | None = None) -> None:
        if not faiss_available():
            raise ConfigError("index backend faiss needs faiss: pip install faiss-cpu (or "
                              "faiss-gpu-cu12 on a GPU machine)")
        self.options = options or FaissOptions()
        if self.options.type not in FAISS_TYPES:
            raise ConfigError(f"faiss index type is one of {', '.join(FAISS_TYPES)}, not "
                              f"{self.options.type!r}")
        self.similarity = similarity
        self.n = int(docs.shape[0])
        self.docs = prepare(docs, similarity)
        self._exact: ExactIndex | None = None
        self._ann: Any = None
        self._ann_cpu: Any = None
        if self.options.type == "flat":
            self._exact = ExactIndex(self.docs, similarity, "faiss", self.options.use_gpu)
            self.where = self._exact.backend
        else:
            self._ann, self.where = self._build_ann()
        self.description = self.options.describe(self.n)

    @property
    def exact(self) -> bool:
        return self.options.type == "flat"

    def _build_ann(self) -> tuple[Any, str]:
        import faiss

        o, dim = self.options, int(self.docs.shape[1])
        metric = faiss.METRIC_L2 if self.similarity == "l2_norm" else faiss.METRIC_INNER_PRODUCT
        index: Any
        if o.type == "hnsw":
            index = faiss.IndexHNSWFlat(dim, o.m, metric)
            index.hnsw.efConstruction = o.ef_construction
            index.add(self.docs)
            return index, "faiss-cpu"  # faiss has no GPU HNSW
        quantizer = faiss.IndexFlatL2(dim) if metric == faiss.METRIC_L2 else \
            faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, o.lists(self.n), metric)
        index.train(self.docs)
        index.add(self.docs)
        index.nprobe = o.probes(self.n)  # copied along to a GPU clone
        self._quantizer = quantizer  # the IVF index borrows it
        self._ann_cpu = index  # answers searches deeper than faiss-gpu's largest k
        if o.use_gpu and hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0:
            return faiss.index_cpu_to_all_gpus(index), "faiss-gpu"
        return index, "faiss-cpu"

    def settings(self) -> dict[str, Any]:
        """For run metadata: the options the type uses (the resolved IVF sizes) and where it
        ran (faiss-gpu, or faiss-cpu: no GPU build or no GPU, or HNSW)."""
        opts = asdict(self.options)
        used = {"flat": (), "hnsw": ("m", "ef_construction", "ef_search"),
                "ivf": ("nlist", "nprobe")}[self.options.type]
        out: dict[str, Any] = {"description": self.description, "where": self.where,
                               "type": self.options.type, "use_gpu": self.options.use_gpu,
                               **{k: opts[k] for k in used}}
        if self.options.type == "ivf":
            out.update(nlist=self.options.lists(self.n), nprobe=self.options.probes(self.n))
        return out

    def memory_bytes(self) -> int:
        """Size of the index in memory: the float32 vectors of an exact index, the
        serialised faiss index (vectors plus HNSW graph or IVF lists) of an approximate one."""
        if self._ann is None:
            return int(self.docs.nbytes)
        import faiss

        cpu = self._ann_cpu if self._ann_cpu is not None else self._ann
        return int(faiss.serialize_index(cpu).nbytes)

    def search(self, queries: np.ndarray, k: int) -> ExactResult:
        """Row i: the best `k` documents for query i by similarity (inner product, or minus
        the squared L2 distance); -1 pads rows an approximate index could not fill."""
        if self._exact is not None:
            return self._exact.search(queries, k)
        k = min(k, self.n)
        q = prepare(queries, self.similarity)
        index = self._ann
        if self.options.type == "hnsw":
            index.hnsw.efSearch = max(self.options.ef_search, k)
        elif k > GPU_MAX_K:
            index = self._ann_cpu
        s, i = index.search(q, k)
        if self.similarity == "l2_norm":
            s = -s
        s, i = sort_ties(s, i)  # deterministic order among equal scores here too
        return ExactResult(s, i, self.where)

    def exact_search(self, queries: np.ndarray, k: int) -> ExactResult:
        """The exact answer over the same vectors (what an approximate type is checked
        against)."""
        if self._exact is None:
            self._exact = ExactIndex(self.docs, self.similarity, "faiss", self.options.use_gpu)
        return self._exact.search(queries, k)


def es_scores(sims: np.ndarray, similarity: str) -> np.ndarray:
    """Similarities as Elasticsearch scores a kNN hit (same order, ES's formulas): cosine and
    dot_product (1 + s) / 2, max_inner_product 1 / (1 - s) below 0 else s + 1, l2_norm
    1 / (1 + d²) (`sims` holds -d² there)."""
    s = np.asarray(sims, dtype=np.float64)
    if similarity in ("cosine", "dot_product"):
        return (1.0 + s) / 2.0
    if similarity == "max_inner_product":
        return np.where(s < 0, 1.0 / (1.0 - np.minimum(s, 0.0)), s + 1.0)
    if similarity == "l2_norm":
        return 1.0 / (1.0 - s)
    raise ValueError(f"unknown similarity {similarity!r}")
