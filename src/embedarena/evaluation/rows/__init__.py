"""Rows of the comparison table: one per model entry, each able to build and search.

    from embedarena.evaluation.rows import create_row, parse_row_spec
    row = create_row(parse_row_spec("bm25:jieba"), ctx)
    row.build(corpus); run = row.search(queries, depth=10)
"""

from __future__ import annotations

from typing import Any

from embedarena.evaluation.rows.base import (
    IndexedRow,
    Row,
    RowContext,
    create_row,
    register_row,
)
from embedarena.evaluation.rows.bm25 import BM25Row
from embedarena.evaluation.rows.dense import DenseRow, EmbedderRow
from embedarena.evaluation.rows.faiss_dense import FaissDenseRow
from embedarena.evaluation.rows.hybrid import HybridRow, HybridSpec
from embedarena.evaluation.rows.two_stage import TwoStageRow, TwoStageSpec
from embedarena.specs import ModelSpec, parse_spec, spec_types

__all__ = ["BM25Row", "DenseRow", "EmbedderRow", "FaissDenseRow", "HybridRow", "HybridSpec",
           "IndexedRow", "Row",
           "RowContext", "TwoStageRow", "TwoStageSpec", "create_row", "parse_row_spec",
           "register_row", "row_types"]


def _load() -> None:
    from embedarena.embedders.registry import load_builtins

    load_builtins()


def parse_row_spec(obj: Any) -> ModelSpec:
    """A spec of any kind that can be a row (embedders, `bm25`, hybrids, ...)."""
    _load()
    return parse_spec(obj)


def row_types() -> list[str]:
    """Every registered model `type` (for help text and errors)."""
    _load()
    return spec_types()
