"""Hybrid rows: each member row searched once at `candidates` depth, then fused
client-side (`embedarena.evaluation.fusion`), or ES's native `rrf` retriever where the node
has it and the members allow it.

The native path needs the rank-rrf module (detected, never assumed) *and* both members in one
index: our dense indexes keep the label text in a `standard`-analysed `text` field, so a
`standard`-chain BM25 member plus one dense member can run as one `rrf` retriever request on
the dense index, with the same BM25 statistics as the BM25 row's own index.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from embedarena.errors import ConfigError, SearchBackendError
from embedarena.evaluation.fusion import FusionParams, fuse_runs
from embedarena.evaluation.rows.base import Row, RowContext, register_row
from embedarena.evaluation.rows.bm25 import BM25Row
from embedarena.evaluation.rows.dense import DenseRow
from embedarena.indexer.build import BuildResult
from embedarena.specs import ModelSpec, register_spec

if TYPE_CHECKING:
    from embedarena.data.types import Corpus, QuerySet
    from embedarena.evaluation.run import Run


@register_spec(key="hybrid", forms=())
class HybridSpec(ModelSpec):
    """A hybrid row: fuse, per query, the ranked lists of other model entries (by name).

    `candidates` is how deep each member is searched before fusing (deeper than the eval depth,
    so a document one member ranks 30th can still be lifted). `engine: native` asks for ES's
    `rrf` retriever (needs the rank-rrf module, a `standard`-chain BM25 member and one dense
    member); `auto` uses it only where the node has it, `client` never.
    """

    type: Literal["hybrid"] = "hybrid"
    hybrid: list[str] = Field(min_length=2)
    fusion: Literal["rrf", "weighted"] = "rrf"
    k: int = Field(default=60, ge=0, le=100_000)
    weights: list[float] | None = None
    normalize: Literal["minmax", "zscore"] = "minmax"
    candidates: int = Field(default=100, ge=1, le=10_000)
    engine: Literal["auto", "client", "native"] = "auto"

    @classmethod
    def default_name(cls, data: dict[str, Any]) -> str | None:
        members = data.get("hybrid")
        if isinstance(members, list) and members and all(isinstance(m, str) for m in members):
            return "+".join(members)
        return None

    @model_validator(mode="after")
    def _consistent(self) -> HybridSpec:
        if len(set(self.hybrid)) != len(self.hybrid):
            raise ValueError(f"hybrid members repeat: {self.hybrid}")
        if self.name in self.hybrid:
            raise ValueError("a hybrid cannot be its own member")
        if self.weights is not None:
            if len(self.weights) != len(self.hybrid):
                raise ValueError(f"{len(self.weights)} weights for {len(self.hybrid)} members")
            if any(w < 0 for w in self.weights) or not any(w > 0 for w in self.weights):
                raise ValueError("weights must be >= 0 with at least one > 0")
        if self.engine == "native" and self.fusion != "rrf":
            raise ValueError("engine: native supports fusion: rrf only")
        return self

    def depends_on(self) -> list[str]:
        return list(self.hybrid)

    def check_dependency(self, dep: ModelSpec) -> None:
        if isinstance(dep, HybridSpec):
            raise ValueError(f"model '{self.name}': member '{dep.name}' is itself a hybrid; "
                             "list its members instead")

    def fusion_params(self) -> FusionParams:
        """The `FusionParams` this entry asks for."""
        return FusionParams(self.fusion, self.k,
                            tuple(self.weights) if self.weights is not None else None,
                            self.normalize)


@register_row(HybridSpec)
class HybridRow:
    """Fuses the runs of its member rows (other entries of the experiment, by name)."""

    spec: HybridSpec

    def __init__(self, spec: HybridSpec, ctx: RowContext, members: Mapping[str, Row]) -> None:
        self.spec = spec
        self.ctx = ctx
        self.members = resolve_members(spec, members)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def alias(self) -> str | None:
        return None

    @property
    def fingerprint(self) -> str:
        from embedarena.embedders.base import settings_fingerprint

        return settings_fingerprint("hybrid", self.spec.public_dict())

    def build(self, corpus: Corpus, *, force: bool = False,
              keep_old: bool = False) -> BuildResult:
        """Its members' indexes (each built once per run); it has none of its own."""
        built = [m.build(corpus, force=force, keep_old=keep_old) for m in self.members]
        return BuildResult("", "", len(corpus), all(b.reused for b in built), 0.0,
                           {"kind": "hybrid", "members": [b.alias for b in built]},
                           note="hybrid row, searches its members' indexes")

    def stats(self) -> dict[str, Any]:
        return {}

    def search(self, queries: QuerySet, depth: int, *, corpus_sha: str | None = None,
               checks: bool = True) -> Run:
        from embedarena.indexer.capabilities import detect

        spec = self.spec
        candidates = max(spec.candidates, depth)
        plan = native_plan(spec, self.members, True)  # what the members allow, node aside
        if not isinstance(plan, str) and spec.engine != "client":
            # only then ask the node (hybrids of in-process rows never connect)
            caps = detect(*self.ctx.es(spec.name))
            plan = native_plan(spec, self.members, caps.native_rrf)
            if isinstance(plan, str) and caps.retriever_block:  # module there, licence not
                plan = caps.retriever_block
        meta: dict[str, Any] = {"candidates": candidates,
                                "member_fingerprints": {m.name: m.fingerprint
                                                        for m in self.members}}
        if spec.engine == "native" and isinstance(plan, str):
            raise ConfigError(f"hybrid '{spec.name}': engine native is not possible: {plan}")
        if spec.engine != "client" and not isinstance(plan, str):
            try:
                run = native_rrf_run(self.ctx, spec, plan[0], plan[1], queries, depth,
                                     candidates, corpus_sha)
                run.meta.update(meta)
                return run
            except SearchBackendError as e:
                if spec.engine == "native":
                    raise
                meta["native_rrf_failed"] = str(e)
        elif isinstance(plan, str):
            meta["engine_reason"] = plan
        runs = member_runs(self.members, queries, candidates, corpus_sha)
        run = fuse_runs(runs, spec.fusion_params(), depth, spec.name,
                        {"engine": "client", **meta})
        run.meta["model_settings"] = spec.public_dict()
        # each member's own latency, index size and API tokens (the fused row has no index)
        run.meta["members_cost"] = {
            m.name: {k: r.meta[k] for k in ("latency", "index_size", "api") if k in r.meta}
            for m, r in zip(self.members, runs, strict=True)}
        return run


def resolve_members(spec: HybridSpec, rows: Mapping[str, Row]) -> list[Row]:
    """The member rows, by name; an unknown or hybrid member is a clear error."""
    out = []
    for name in spec.hybrid:
        r = rows.get(name)
        if r is None:
            raise ConfigError(f"hybrid '{spec.name}': member '{name}' is not a model of this "
                              f"experiment; models: {', '.join(rows) or 'none'}")
        if isinstance(r, HybridRow):
            raise ConfigError(f"hybrid '{spec.name}': member '{name}' is itself a hybrid; "
                              "list its members instead")
        out.append(r)
    return out


def native_plan(spec: HybridSpec, members: Sequence[Row], native_rrf: bool
                ) -> tuple[BM25Row, DenseRow] | str:
    """(bm25 member, dense member) when the native `rrf` retriever can serve this hybrid,
    else the reason it cannot (shown in run metadata and errors)."""
    if spec.fusion != "rrf":
        return "native fusion is RRF only"
    if spec.weights is not None and len(set(spec.weights)) > 1:
        return "the rrf retriever has no per-member weights"
    if not native_rrf:
        return "the node has no rank-rrf module (rrf retriever)"
    lex: list[BM25Row] = [m for m in members if isinstance(m, BM25Row)]
    dense: list[DenseRow] = [m for m in members if isinstance(m, DenseRow)]
    if len(members) != 2 or len(lex) != 1 or len(dense) != 1:
        return "native RRF needs exactly one BM25 and one dense member"
    if lex[0].analyzer != "standard":
        return (f"BM25 member '{lex[0].name}' uses chain '{lex[0].analyzer}'; the dense index's "
                "text field is analysed with 'standard' only")
    return lex[0], dense[0]


def member_runs(members: Sequence[Row], queries: QuerySet, candidates: int,
                corpus_sha: str | None = None) -> list[Run]:
    """Each member searched once, `candidates` deep (checks off: the member rows have them)."""
    return [m.search(queries, candidates, corpus_sha=corpus_sha, checks=False)
            for m in members]


def native_rrf_run(ctx: RowContext, spec: HybridSpec, lexical: BM25Row, dense: DenseRow,
                   queries: QuerySet, depth: int, candidates: int,
                   corpus_sha: str | None) -> Run:
    """One `rrf` retriever request per query on the dense member's index."""
    from embedarena.evaluation.runner import embed_query_set, to_run
    from embedarena.indexer.build import check_compatible, index_meta
    from embedarena.indexer.es import es_errors
    from embedarena.indexer.search import msearch_batches, rrf_retriever_body

    alias = str(dense.alias)
    with es_errors(ctx.target, f"index {alias}"):
        meta = index_meta(ctx.client, alias)
    if meta is None:
        raise SearchBackendError(f"no index '{alias}': build it first")
    check_compatible(meta, dense.embedder.fingerprint, alias, corpus_sha)
    from embedarena.evaluation.costs import es_index_size, latency_meta

    embed_times: list[tuple[int, float]] = []
    vectors = embed_query_set(dense.embedder, queries, dense.name, embed_times)
    bodies = [rrf_retriever_body(q.text, v, depth, spec.k, candidates, ctx.num_candidates)
              for q, v in zip(queries, vectors)]
    search_times: dict[str, list[float]] = {}
    hits = msearch_batches(ctx.client, ctx.target, alias, bodies, ctx.msearch_batch, None,
                           timings=search_times)
    sizes = [min(ctx.msearch_batch, len(bodies) - s)
             for s in range(0, len(bodies), ctx.msearch_batch)]
    return to_run(spec.name, queries, hits, {
        "search": "hybrid", "engine": "native-rrf", "members": [lexical.name, dense.name],
        "k": depth, "fusion": "rrf", "fusion_params": spec.fusion_params().to_dict(),
        "index": meta["index"], "model_settings": spec.public_dict(),
        "latency": latency_meta(embed_times, search_times.get("batch", []),
                                search_times.get("took_ms"), sizes,
                                "elasticsearch took per rrf search in _msearch rounds"),
        "index_size": es_index_size(ctx.client, ctx.target, meta["index"])})
