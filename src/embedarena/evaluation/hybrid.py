"""Hybrid rows against Elasticsearch: one `_msearch` round per member at `candidates` depth,
then client-side fusion (`embedarena.evaluation.fusion`), or ES's native `rrf` retriever
where the node has it and the members allow it.

The native path needs the rank-rrf module (detected, never assumed) *and* both members in one
index: our dense indexes keep the label text in a `standard`-analysed `text` field, so a
`standard`-chain BM25 member plus one dense member can run as one `rrf` retriever request on
the dense index, with the same BM25 statistics as the BM25 row's own index.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from embedarena.errors import ConfigError, SearchBackendError
from embedarena.evaluation.fusion import fuse_runs

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

    from embedarena.data.types import QuerySet
    from embedarena.embedders.spec import HybridSpec
    from embedarena.evaluation.run import Run
    from embedarena.indexer.es import Target
    from embedarena.pipeline import ModelHandle


def resolve_members(spec: HybridSpec, handles: Mapping[str, ModelHandle]) -> list[ModelHandle]:
    """The member handles, by name; an unknown or hybrid member is a clear error."""
    out = []
    for name in spec.hybrid:
        h = handles.get(name)
        if h is None:
            raise ConfigError(f"hybrid '{spec.name}': member '{name}' is not a model of this "
                              f"experiment; models: {', '.join(handles) or 'none'}")
        if getattr(h.spec, "type", "") == "hybrid":
            raise ConfigError(f"hybrid '{spec.name}': member '{name}' is itself a hybrid; "
                              "list its members instead")
        out.append(h)
    return out


def native_plan(spec: HybridSpec, members: Sequence[ModelHandle], native_rrf: bool
                ) -> tuple[ModelHandle, ModelHandle] | str:
    """(bm25 member, dense member) when the native `rrf` retriever can serve this hybrid,
    else the reason it cannot (shown in run metadata and errors)."""
    if spec.fusion != "rrf":
        return "native fusion is RRF only"
    if spec.weights is not None and len(set(spec.weights)) > 1:
        return "the rrf retriever has no per-member weights"
    if not native_rrf:
        return "the node has no rank-rrf module (rrf retriever)"
    lex = [m for m in members if m.lexical]
    dense = [m for m in members if not m.lexical]
    if len(members) != 2 or len(lex) != 1 or len(dense) != 1:
        return "native RRF needs exactly one BM25 and one dense member"
    if (lex[0].analyzer or "standard") != "standard":
        return (f"BM25 member '{lex[0].name}' uses chain '{lex[0].analyzer}'; the dense index's "
                "text field is analysed with 'standard' only")
    return lex[0], dense[0]


def member_runs(client: Elasticsearch, target: Target, members: Sequence[ModelHandle],
                qs: QuerySet, candidates: int, num_candidates: int = 100,
                msearch_batch: int = 64, corpus_sha: str | None = None,
                progress: Any = None) -> list[Run]:
    """Each member searched once, `candidates` deep (ANN check off: the member rows have it)."""
    from embedarena.pipeline import evaluate_model

    return [evaluate_model(client, target, m, qs, candidates, max(num_candidates, candidates),
                           msearch_batch, corpus_sha=corpus_sha, progress=progress,
                           check_ann=False) for m in members]


def run_hybrid(client: Elasticsearch, target: Target, spec: HybridSpec,
               handles: Mapping[str, ModelHandle], qs: QuerySet, depth: int,
               num_candidates: int = 100, msearch_batch: int = 64,
               corpus_sha: str | None = None, progress: Any = None) -> Run:
    """The hybrid row's run for one query set."""
    from embedarena.indexer.capabilities import detect

    members = resolve_members(spec, handles)
    candidates = max(spec.candidates, depth)
    caps = detect(client, target)
    plan = native_plan(spec, members, caps.native_rrf)
    meta: dict[str, Any] = {"candidates": candidates,
                            "member_fingerprints": {m.name: m.fingerprint for m in members}}
    if spec.engine == "native" and isinstance(plan, str):
        raise ConfigError(f"hybrid '{spec.name}': engine native is not possible: {plan}")
    if spec.engine != "client" and not isinstance(plan, str):
        try:
            run = native_rrf_run(client, target, spec, plan[0], plan[1], qs, depth, candidates,
                                 num_candidates, msearch_batch, corpus_sha, progress)
            run.meta.update(meta)
            return run
        except SearchBackendError as e:
            if spec.engine == "native":
                raise
            meta["native_rrf_failed"] = str(e)
    elif isinstance(plan, str):
        meta["engine_reason"] = plan
    runs = member_runs(client, target, members, qs, candidates, num_candidates, msearch_batch,
                       corpus_sha, progress)
    run = fuse_runs(runs, spec.fusion_params(), depth, spec.name,
                    {"engine": "client", **meta})
    run.meta["model_settings"] = spec.public_dict()
    return run


def native_rrf_run(client: Elasticsearch, target: Target, spec: HybridSpec,
                   lexical: ModelHandle, dense: ModelHandle, qs: QuerySet, depth: int,
                   candidates: int, num_candidates: int, msearch_batch: int,
                   corpus_sha: str | None, progress: Callable[[int], None] | None = None
                   ) -> Run:
    """One `rrf` retriever request per query on the dense member's index."""
    from embedarena.evaluation.runner import _to_run
    from embedarena.indexer.build import check_compatible, index_meta
    from embedarena.indexer.es import es_errors
    from embedarena.indexer.search import msearch_batches, rrf_retriever_body

    assert dense.embedder is not None
    with es_errors(target, f"index {dense.alias}"):
        meta = index_meta(client, dense.alias)
    if meta is None:
        raise SearchBackendError(f"no index '{dense.alias}': build it first")
    check_compatible(meta, dense.embedder.fingerprint, dense.alias, corpus_sha)
    vectors = dense.embedder.embed_queries([q.text for q in qs])
    bodies = [rrf_retriever_body(q.text, v, depth, spec.k, candidates, num_candidates)
              for q, v in zip(qs, vectors)]
    hits = msearch_batches(client, target, dense.alias, bodies, msearch_batch, None)
    return _to_run(spec.name, qs, hits, {
        "search": "hybrid", "engine": "native-rrf", "members": [lexical.name, dense.name],
        "k": depth, "fusion": "rrf", "fusion_params": spec.fusion_params().to_dict(),
        "index": meta["index"],
        "model_settings": spec.public_dict()})
