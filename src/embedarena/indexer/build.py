"""Build one Elasticsearch index per model: mapping, streamed bulk load, atomic alias swap.

Each build writes a new physical index (`<alias>-<utc time>-<fingerprint[:8]>`); only when every
document is in and the count matches the corpus does the alias move to it, in one
`_aliases` call, so a failed rebuild leaves the old index serving. The index `_meta` records
what built it, so a later eval can refuse an index built by another model.

Field names follow langchain-elasticsearch's ElasticsearchStore (`text`, `vector`, `metadata`)
so its users can open our indexes directly.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Literal

from embedarena import __version__
from embedarena.data.types import Corpus
from embedarena.errors import ConfigError, IndexMismatchError, SearchBackendError
from embedarena.indexer.analysis import SEGMENTED_FIELD, AnalysisChain, check_chain, get_chain
from embedarena.indexer.es import Target, es_errors
from embedarena.names import index_slug

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

    from embedarena.embedders.base import Embedder

# field names live in `fields` (no import cycle); other modules still import them from here
from embedarena.indexer.fields import DOC_ID_FIELD, META_FIELD, TEXT_FIELD, VECTOR_FIELD

IndexType = Literal["hnsw", "int8_hnsw", "flat", "int8_flat"]
Similarity = Literal["cosine", "dot_product", "l2_norm", "max_inner_product"]
ProgressFn = Callable[[int], None]


@dataclass(frozen=True)
class IndexOptions:
    """How vectors are indexed. `flat` is exact brute force (fine for label corpora)."""

    type: IndexType = "hnsw"
    similarity: Similarity | None = None  # None: cosine, or dot_product for normalised vectors
    m: int | None = None
    ef_construction: int | None = None
    shards: int = 1
    replicas: int = 0
    text_analyzer: str = "standard"

    def to_es(self) -> dict[str, Any]:
        opts: dict[str, Any] = {"type": self.type}
        if self.type in ("hnsw", "int8_hnsw"):
            if self.m is not None:
                opts["m"] = self.m
            if self.ef_construction is not None:
                opts["ef_construction"] = self.ef_construction
        elif self.m is not None or self.ef_construction is not None:
            raise ConfigError(f"m / ef_construction only apply to hnsw indexes, not {self.type}")
        return opts


@dataclass
class BuildResult:
    alias: str
    index: str
    docs: int
    reused: bool
    seconds: float
    meta: dict[str, Any] = field(default_factory=dict)
    deleted_old: list[str] = field(default_factory=list)
    #: A line for the user when the row has no index of its own (a hybrid).
    note: str | None = None


def alias_for(model_name: str, prefix: str = "embedarena-") -> str:
    """The alias of a model's index: the prefix plus the one naming rule (`embedarena.names`)."""
    return f"{prefix}{index_slug(model_name)}"


def doc_uid(doc_id: str) -> str:
    """ES `_id` from a corpus id: ids may hold `<>:` or be long Chinese passages, so hash them."""
    return hashlib.sha1(doc_id.encode("utf-8")).hexdigest()


def dense_mapping(dim: int, similarity: str, options: IndexOptions,
                  meta: dict[str, Any]) -> dict[str, Any]:
    """Mapping for a dense-vector index (pure: tests assert on it)."""
    return {
        "_meta": meta,
        "dynamic": "false",
        "properties": {
            TEXT_FIELD: {"type": "text", "analyzer": options.text_analyzer},
            VECTOR_FIELD: {
                "type": "dense_vector", "dims": dim, "index": True,
                "similarity": similarity, "index_options": options.to_es(),
            },
            DOC_ID_FIELD: {"type": "keyword"},
            META_FIELD: {"type": "object", "enabled": False},
        },
    }


def lexical_mapping(analyzer: str | AnalysisChain, meta: dict[str, Any]) -> dict[str, Any]:
    """Mapping for the BM25 row: the same label text, analysed, no vectors.

    A client-side chain (jieba) adds `text_seg` (its space-joined tokens, `whitespace`
    analyzer) and leaves `text` on `standard`, so LangChain readers still see plain text.
    """
    chain = analyzer if isinstance(analyzer, AnalysisChain) else get_chain(analyzer)
    props: dict[str, Any] = {
        TEXT_FIELD: {"type": "text",
                     "analyzer": "standard" if chain.client_side else chain.analyzer},
        DOC_ID_FIELD: {"type": "keyword"},
        META_FIELD: {"type": "object", "enabled": False},
    }
    if chain.client_side:
        props[SEGMENTED_FIELD] = {"type": "text", "analyzer": chain.analyzer}
    return {"_meta": meta, "dynamic": "false", "properties": props}


def index_settings(options: IndexOptions) -> dict[str, Any]:
    return {"number_of_shards": options.shards, "number_of_replicas": options.replicas,
            "refresh_interval": "-1"}


def choose_similarity(embedder: Embedder, options: IndexOptions) -> str:
    if options.similarity:
        return options.similarity
    return "dot_product" if getattr(embedder, "normalized", False) else "cosine"


# -- reading what is there -------------------------------------------------------------------
def alias_target(client: Elasticsearch, alias: str) -> str | None:
    """The physical index behind an alias, None when the alias does not exist."""
    if not client.indices.exists_alias(name=alias):
        if client.indices.exists(index=alias):
            raise ConfigError(
                f"'{alias}' is a concrete index, not an embedarena alias; delete it or choose "
                "another index prefix"
            )
        return None
    names = list(client.indices.get_alias(name=alias).keys())
    return sorted(names)[-1] if names else None


def index_meta(client: Elasticsearch, alias: str) -> dict[str, Any] | None:
    index = alias_target(client, alias)
    if index is None:
        return None
    mapping = client.indices.get_mapping(index=index)[index]["mappings"]
    return dict(mapping.get("_meta") or {}, index=index)


def check_compatible(meta: dict[str, Any], fingerprint: str, alias: str,
                     corpus_sha: str | None = None) -> None:
    """Refuse to evaluate a model against an index that another model (or corpus) built."""
    built = meta.get("fingerprint")
    if built != fingerprint:
        raise IndexMismatchError(
            f"index '{alias}' was built by model '{meta.get('model', '?')}' with fingerprint "
            f"{str(built)[:16]}…, but this model's fingerprint is {fingerprint[:16]}…; rebuild it "
            f"with `embedarena index build` (or use the matching model)"
        )
    if corpus_sha is not None and meta.get("corpus_sha256") != corpus_sha:
        raise IndexMismatchError(
            f"index '{alias}' was built from another corpus ({meta.get('corpus_source', '?')}); "
            "rebuild it for this corpus"
        )


def is_current(meta: dict[str, Any] | None, fingerprint: str, corpus: Corpus,
               settings_key: str) -> bool:
    return (meta is not None and meta.get("fingerprint") == fingerprint
            and meta.get("corpus_sha256") == corpus.sha256()
            and meta.get("settings_key") == settings_key
            and int(meta.get("doc_count", -1)) == len(corpus))


# -- building --------------------------------------------------------------------------------
@dataclass
class Builder:
    """Builds (or reuses) the index for one model. One instance per (client, target)."""

    client: Elasticsearch
    target: Target
    chunk_size: int = 256
    embed_batch: int = 256
    max_retries: int = 5

    def build_dense(self, alias: str, model_name: str, embedder: Embedder, corpus: Corpus,
                    options: IndexOptions, model_public: dict[str, Any] | None = None,
                    force: bool = False, progress: ProgressFn | None = None,
                    keep_old: bool = False) -> BuildResult:
        similarity = choose_similarity(embedder, options)
        settings_key = _settings_key({"kind": "dense", "similarity": similarity,
                                      "options": options.__dict__})
        fp = embedder.fingerprint
        reused = None if force else self._reusable(alias, fp, corpus, settings_key)
        if reused is not None:
            return reused
        meta = self._meta(model_name, fp, corpus, settings_key, model_public, {
            "kind": "dense", "dim": embedder.dim, "similarity": similarity,
            "index_options": options.to_es(),
        })
        mapping = dense_mapping(embedder.dim, similarity, options, meta)

        def actions() -> Iterator[dict[str, Any]]:
            for start in range(0, len(corpus), self.embed_batch):
                ids = corpus.ids[start:start + self.embed_batch]
                texts = corpus.texts[start:start + self.embed_batch]
                vecs = embedder.embed_documents(texts)
                if vecs.shape != (len(texts), embedder.dim):
                    raise SearchBackendError(
                        f"embedder '{model_name}' returned shape {vecs.shape} for {len(texts)} "
                        f"texts (expected dim {embedder.dim})")
                for j, (doc_id, text) in enumerate(zip(ids, texts)):
                    yield self._action(corpus, start + j, doc_id, text,
                                       {VECTOR_FIELD: vecs[j].tolist()})

        return self._build(alias, mapping, options, corpus, actions(), meta, progress, keep_old)

    def build_lexical(self, alias: str, model_name: str, analyzer: str, corpus: Corpus,
                      options: IndexOptions, force: bool = False,
                      progress: ProgressFn | None = None, keep_old: bool = False
                      ) -> BuildResult:
        chain = get_chain(analyzer)
        fp = lexical_fingerprint(analyzer)
        settings_key = _settings_key({"kind": "bm25", "analyzer": analyzer,
                                      "shards": options.shards})
        reused = None if force else self._reusable(alias, fp, corpus, settings_key)
        if reused is not None:
            return reused
        check_chain(self.client, self.target, chain)
        meta = self._meta(model_name, fp, corpus, settings_key, {"type": "bm25",
                          "analyzer": analyzer}, {"kind": "bm25", "analyzer": analyzer,
                                                  "analysis": chain.fingerprint_payload()})
        mapping = lexical_mapping(chain, meta)

        def acts() -> Iterator[dict[str, Any]]:
            for i, (d, t) in enumerate(zip(corpus.ids, corpus.texts)):
                extra = {SEGMENTED_FIELD: chain.segment(t)} if chain.client_side else {}
                yield self._action(corpus, i, d, t, extra)

        return self._build(alias, mapping, options, corpus, acts(), meta, progress, keep_old,
                           extra_settings=chain.settings)

    # -- internals -----------------------------------------------------------------------
    def _reusable(self, alias: str, fingerprint: str, corpus: Corpus,
                  settings_key: str) -> BuildResult | None:
        """The alias's index when it was built by this fingerprint, corpus and settings."""
        with es_errors(self.target, f"index {alias}"):
            meta = index_meta(self.client, alias)
        if meta is None or not is_current(meta, fingerprint, corpus, settings_key):
            return None
        return BuildResult(alias, meta["index"], int(meta["doc_count"]), True, 0.0, meta)

    def _meta(self, model_name: str, fp: str, corpus: Corpus, settings_key: str,
              model_public: dict[str, Any] | None, extra: dict[str, Any]) -> dict[str, Any]:
        return {
            "embedarena_version": __version__,
            "model": model_name,
            "model_settings": model_public or {},
            "fingerprint": fp,
            "corpus_sha256": corpus.sha256(),
            "corpus_source": corpus.source,
            "doc_count": len(corpus),
            "settings_key": settings_key,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **extra,
        }

    @staticmethod
    def _action(corpus: Corpus, i: int, doc_id: str, text: str,
                extra: dict[str, Any]) -> dict[str, Any]:
        md = dict(corpus.metadata[i]) if corpus.metadata else {}
        md[DOC_ID_FIELD] = doc_id
        return {"_id": doc_uid(doc_id), "_source": {
            TEXT_FIELD: text, DOC_ID_FIELD: doc_id, META_FIELD: md, **extra}}

    def _build(self, alias: str, mapping: dict[str, Any], options: IndexOptions,
               corpus: Corpus, actions: Iterator[dict[str, Any]], meta: dict[str, Any],
               progress: ProgressFn | None, keep_old: bool,
               extra_settings: dict[str, Any] | None = None) -> BuildResult:
        from elasticsearch import helpers

        if len(set(corpus.ids)) != len(corpus.ids):
            raise ConfigError(f"corpus {corpus.source} has duplicate ids; ids must be unique")
        t0 = time.monotonic()
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S%f")
        index = f"{alias}-{stamp}-{meta['fingerprint'].split(':')[-1][:8]}".lower()
        with es_errors(self.target, f"create index {index}"):
            self.client.indices.create(index=index, mappings=mapping,
                                       settings={**index_settings(options),
                                                 **(extra_settings or {})})
        ok = False
        try:
            failures: list[str] = []
            n_ok = 0
            with es_errors(self.target, f"bulk load {index}"):
                for success, item in helpers.streaming_bulk(
                    self.client, actions, index=index, chunk_size=self.chunk_size,
                    max_retries=self.max_retries, initial_backoff=1, max_backoff=30,
                    raise_on_error=False, raise_on_exception=False,
                ):
                    if success:
                        n_ok += 1
                        if progress is not None:
                            progress(1)
                    else:
                        op = next(iter(item.values()))
                        err = op.get("error", {})
                        reason = err.get("reason", err) if isinstance(err, dict) else err
                        failures.append(f"{op.get('_id')}: {reason}")
            if failures:
                raise SearchBackendError(
                    f"{len(failures)} of {len(corpus)} documents failed to index into {index}; "
                    f"first: {failures[0]}")
            with es_errors(self.target, f"finish {index}"):
                self.client.indices.put_settings(index=index,
                                                 settings={"refresh_interval": "1s"})
                self.client.indices.refresh(index=index)
                count = int(self.client.count(index=index)["count"])
            if count != len(corpus) or n_ok != len(corpus):
                raise SearchBackendError(
                    f"index {index} holds {count} documents after loading {n_ok}, but the corpus "
                    f"has {len(corpus)}; the alias was not switched")
            deleted = self._swap_alias(alias, index, keep_old)
            ok = True
            return BuildResult(alias, index, count, False, time.monotonic() - t0,
                               dict(meta, index=index), deleted)
        finally:
            if not ok:
                self.client.indices.delete(index=index, ignore_unavailable=True)

    def _swap_alias(self, alias: str, index: str, keep_old: bool) -> list[str]:
        with es_errors(self.target, f"alias {alias}"):
            old = alias_target(self.client, alias)
            olds = (list(self.client.indices.get_alias(name=alias).keys())
                    if old is not None else [])
            acts: list[dict[str, Any]] = [{"remove": {"index": o, "alias": alias}} for o in olds]
            acts.append({"add": {"index": index, "alias": alias}})
            self.client.indices.update_aliases(actions=acts)
            if not keep_old:
                for o in olds:
                    self.client.indices.delete(index=o, ignore_unavailable=True)
        return [] if keep_old else olds


def lexical_fingerprint(analyzer: str) -> str:
    """Fingerprint of a BM25 chain (see `embedarena.indexer.analysis.chain_fingerprint`)."""
    from embedarena.indexer.analysis import chain_fingerprint

    return chain_fingerprint(get_chain(analyzer))


def _settings_key(obj: dict[str, Any]) -> str:
    import json

    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def list_indexes(client: Elasticsearch, prefix: str = "embedarena-") -> list[dict[str, Any]]:
    """Every embedarena alias with its physical index and `_meta` (for `index list`)."""
    out = []
    aliases = client.indices.get_alias(index=f"{prefix}*", allow_no_indices=True,
                                       ignore_unavailable=True)
    for index, body in sorted(aliases.items()):
        mapping = client.indices.get_mapping(index=index)[index]["mappings"]
        meta = mapping.get("_meta") or {}
        names = list((body.get("aliases") or {}).keys())
        out.append({"alias": names[0] if names else None, "index": index, **meta})
    return out


def delete_index(client: Elasticsearch, alias: str) -> list[str]:
    """Delete an alias and every physical index behind it."""
    if not client.indices.exists_alias(name=alias):
        raise ConfigError(f"no embedarena index named '{alias}'")
    names = list(client.indices.get_alias(name=alias).keys())
    for n in names:
        client.indices.delete(index=n)
    return names
