"""`DenseRow`: an embedder (cached) and its Elasticsearch dense-vector index."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from embedarena.embedders.base import EmbedderSpec
from embedarena.embedders.registry import create_embedder
from embedarena.evaluation.rows.base import IndexedRow, Row, RowContext, register_row
from embedarena.evaluation.runner import run_dense
from embedarena.indexer.build import Builder, BuildResult

if TYPE_CHECKING:
    from embedarena.data.types import Corpus, QuerySet
    from embedarena.embedders.base import Embedder
    from embedarena.evaluation.run import Run


class EmbedderRow(IndexedRow):
    """What the rows of an embedder spec share, wherever their index lives: the embedder
    behind the embedding cache, its fingerprint and the cache counters."""

    spec: EmbedderSpec

    def __init__(self, spec: EmbedderSpec, ctx: RowContext,
                 members: Mapping[str, Row] | None = None, *,
                 embedder: Embedder | None = None) -> None:
        """`embedder` replaces the one the spec describes (an object built in code)."""
        super().__init__(spec, ctx)
        emb = embedder if embedder is not None else create_embedder(spec)
        if ctx.cache:
            from embedarena.embedders.cache import CachedEmbedder

            emb = CachedEmbedder(emb)
        self.embedder: Embedder = emb

    @property
    def fingerprint(self) -> str:
        return self.embedder.fingerprint

    def stats(self) -> dict[str, Any]:
        stats = getattr(self.embedder, "stats", None)
        return {"cache": dict(stats)} if isinstance(stats, dict) else {}


@register_row(EmbedderSpec)
class DenseRow(EmbedderRow):
    """Any embedder spec: vectors from the (cached) embedder in a dense-vector index."""

    def _build(self, builder: Builder, corpus: Corpus, force: bool, keep_old: bool,
               tick: Any) -> BuildResult:
        return builder.build_dense(self._alias, self.name, self.embedder, corpus,
                                   self.ctx.index, model_public=self.spec.public_dict(),
                                   force=force, progress=tick, keep_old=keep_old)

    def _search(self, queries: QuerySet, depth: int, corpus_sha: str | None, checks: bool,
                tick: Any) -> Run:
        return run_dense(self.ctx.client, self.ctx.target, self._alias, self.name,
                         self.embedder, queries, depth, self.ctx.num_candidates,
                         self.ctx.msearch_batch, tick, corpus_sha, check_ann=checks)
