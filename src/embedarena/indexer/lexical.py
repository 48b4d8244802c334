"""The `bm25` model entry: a lexical row over the same label text, one per analysis chain.

Its settings are the chain name (`embedarena.indexer.analysis`); the Elasticsearch row
(`embedarena.evaluation.rows.bm25`) and in-process BM25 mining both read it, so
`bm25:jieba` means one tokenizer everywhere.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, Field, field_validator

from embedarena.specs import ModelSpec, register_spec


@register_spec(prefixes=("bm25",), names={"bm25": {}}, forms=("bm25[:<chain>]",))
class BM25Spec(ModelSpec):
    """`type: bm25`: lexical baseline; the indexer builds a text index with this analysis
    chain (`embedarena.indexer.analysis`: standard, cjk-bigram, jieba, jieba-search, bigram,
    or any ES built-in analyzer name). `chain` is accepted as another name for `analyzer`."""

    type: Literal["bm25"] = "bm25"
    analyzer: str = Field(default="standard", validation_alias=AliasChoices("analyzer", "chain"))

    @field_validator("analyzer")
    @classmethod
    def _analyzer_ok(cls, v: str) -> str:
        v = v.strip()
        if not v or any(c.isspace() or c in ",/\\\"" for c in v):
            raise ValueError(f"analyzer {v!r} is not a chain or analyzer name")
        return v

    @classmethod
    def default_name(cls, data: dict[str, Any]) -> str | None:
        analyzer = data.get("analyzer") or data.get("chain") or "standard"
        return "bm25" if analyzer == "standard" else f"bm25-{analyzer}"


    @classmethod
    def from_inline(cls, rest: str) -> dict[str, Any]:
        return {"analyzer": rest}
