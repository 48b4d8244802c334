"""`BM25Row`: Elasticsearch BM25 over the label text, analysed by one named chain."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from embedarena.evaluation.rows.base import IndexedRow, Row, RowContext, register_row
from embedarena.evaluation.runner import run_bm25
from embedarena.indexer.build import Builder, BuildResult, lexical_fingerprint
from embedarena.indexer.lexical import BM25Spec

if TYPE_CHECKING:
    from embedarena.data.types import Corpus, QuerySet
    from embedarena.evaluation.run import Run


@register_row(BM25Spec)
class BM25Row(IndexedRow):
    spec: BM25Spec

    def __init__(self, spec: BM25Spec, ctx: RowContext,
                 members: Mapping[str, Row] | None = None) -> None:
        super().__init__(spec, ctx)

    @property
    def analyzer(self) -> str:
        return self.spec.analyzer

    @property
    def fingerprint(self) -> str:
        return lexical_fingerprint(self.analyzer)

    def _build(self, builder: Builder, corpus: Corpus, force: bool, keep_old: bool,
               tick: Any) -> BuildResult:
        return builder.build_lexical(self._alias, self.name, self.analyzer, corpus,
                                     self.ctx.index, force=force, progress=tick,
                                     keep_old=keep_old)

    def _search(self, queries: QuerySet, depth: int, corpus_sha: str | None, checks: bool,
                tick: Any) -> Run:
        return run_bm25(self.ctx.client, self.ctx.target, self._alias, self.name,
                        self.analyzer, queries, depth, self.ctx.msearch_batch, tick, corpus_sha)
