"""`FaissDenseRow`: an embedder spec under `index.backend: faiss`, searched in process.

The "no Elasticsearch at hand" row: the corpus is encoded through the embedding cache (a
re-run reads the vectors back instead of encoding again), put into a faiss index
(`embedarena.indexer.faiss_index`: `flat` exact by default, `hnsw` or `ivf`) kept in memory
for this run, and searched into the same `Run` a `DenseRow` gives, scored by the same metric
code. It is registered for the `faiss` backend, so `create_row` picks it for embedder specs
there and nothing else changes.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from embedarena.embedders.base import EmbedderSpec, embed_batch
from embedarena.errors import ConfigError, IndexMismatchError
from embedarena.evaluation.rows.base import register_row
from embedarena.evaluation.rows.dense import EmbedderRow
from embedarena.evaluation.runner import run_faiss
from embedarena.indexer.build import BuildResult, choose_similarity

if TYPE_CHECKING:
    from embedarena.data.types import Corpus, QuerySet
    from embedarena.evaluation.run import Run
    from embedarena.indexer.faiss_index import FaissIndex

EMBED_BATCH = 256


@register_row(EmbedderSpec, backend="faiss")
class FaissDenseRow(EmbedderRow):
    """Any embedder spec: cached vectors in an in-process faiss index, rebuilt per run."""

    _index: FaissIndex | None = None
    _ids: list[str]
    _texts: list[str]
    _corpus_sha: str | None = None

    @property
    def alias(self) -> str | None:
        return None  # no Elasticsearch index

    def _make(self, corpus: Corpus, force: bool, keep_old: bool, tick: Any) -> BuildResult:
        """Encode (cache first) and add; `force`/`keep_old` have nothing to act on, since no
        index outlives the run."""
        from embedarena.indexer.faiss_index import FaissIndex, FaissOptions

        if len(set(corpus.ids)) != len(corpus.ids):
            raise ConfigError(f"corpus {corpus.source} has duplicate ids; ids must be unique")
        t0 = time.monotonic()
        dim = self.embedder.dim
        parts = []
        total = -(-len(corpus) // EMBED_BATCH)
        for start in range(0, len(corpus), EMBED_BATCH):
            texts = corpus.texts[start:start + EMBED_BATCH]
            vecs = embed_batch(self.embedder, "document", texts, start=start,
                               number=start // EMBED_BATCH + 1, total=total,
                               ids=corpus.ids[start:start + EMBED_BATCH], name=self.name)
            parts.append(vecs)
            tick(len(texts))
        vectors = np.concatenate(parts) if parts else np.zeros((0, dim), np.float32)
        similarity = choose_similarity(self.embedder, self.ctx.index)
        index = FaissIndex(vectors, similarity, self.ctx.faiss or FaissOptions())
        self._index, self._ids, self._texts = index, list(corpus.ids), list(corpus.texts)
        self._corpus_sha = corpus.sha256()
        meta = {"kind": "dense", "backend": "faiss", "index_type": index.description,
                "faiss": index.settings(), "similarity": similarity, "dim": dim,
                "fingerprint": self.fingerprint, "corpus_sha256": self._corpus_sha,
                "doc_count": len(corpus)}
        return BuildResult("", f"faiss {index.description}", len(corpus), False,
                           time.monotonic() - t0, meta,
                           note=f"in-process faiss {index.description} index ({index.where}, "
                                f"{similarity}) over {len(corpus)} vectors, kept for this run")

    def _search(self, queries: QuerySet, depth: int, corpus_sha: str | None, checks: bool,
                tick: Any) -> Run:
        if self._index is None:
            raise ConfigError(f"model '{self.name}': index backend faiss keeps its index in "
                              "memory for one run, so it needs the corpus (corpus: in the "
                              "experiment, --corpus for eval)")
        if corpus_sha is not None and corpus_sha != self._corpus_sha:
            raise IndexMismatchError(f"model '{self.name}': its faiss index was built from "
                                     "another corpus; rebuild it for this corpus")
        return run_faiss(self._index, self._ids, self._texts, self.name, self.embedder,
                         queries, depth, tick, check_ann=checks)
