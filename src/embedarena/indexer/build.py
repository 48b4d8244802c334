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
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Literal

from embedarena import __version__
from embedarena.data.types import Corpus
from embedarena.errors import (
    ConfigError,
    EmbedderError,
    IndexMismatchError,
    SearchBackendError,
    batch_label,
    naming_batch,
)
from embedarena.indexer.analysis import SEGMENTED_FIELD, AnalysisChain, check_chain, get_chain
from embedarena.indexer.es import Target, es_errors
from embedarena.indexer.locks import (
    LOCK_INDEX,
    BuildClaim,
    alias_lock,
    forget_claim,
    live_claims,
)
from embedarena.names import index_slug
from embedarena.progress import current

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

    from embedarena.embedders.base import Embedder

# field names live in `fields` (no import cycle); other modules still import them from here
from embedarena.indexer.fields import DOC_ID_FIELD, META_FIELD, TEXT_FIELD, VECTOR_FIELD

IndexType = Literal["hnsw", "int8_hnsw", "bbq_hnsw", "flat", "int8_flat", "bbq_flat",
                    "bbq_disk"]
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
        if self.type in ("hnsw", "int8_hnsw", "bbq_hnsw"):
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
    #: Orphaned partial indexes of this alias removed before the build (killed builds).
    pruned: list[str] = field(default_factory=list)


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
    """Settings a new index is created (and loaded) with: no refresh and no replicas, which
    `Builder` restores to `options.replicas` (and a 1 s refresh) once every document is in."""
    return {"number_of_shards": options.shards, "number_of_replicas": 0,
            "refresh_interval": "-1"}


def wait_status(options: IndexOptions, data_nodes: int) -> str:
    """The health an index can reach: green when every replica has a node of its own."""
    return "green" if options.replicas < max(data_nodes, 1) else "yellow"


def choose_similarity(embedder: Embedder, options: IndexOptions) -> str:
    if options.similarity:
        return options.similarity
    return "dot_product" if getattr(embedder, "normalized", False) else "cosine"


# -- reading what is there -------------------------------------------------------------------
def alias_indexes(client: Elasticsearch, alias: str) -> list[str]:
    """Every physical index behind an alias (sorted; [] when the alias does not exist)."""
    if not client.indices.exists_alias(name=alias):
        if client.indices.exists(index=alias):
            raise ConfigError(
                f"'{alias}' is a concrete index, not an embedarena alias; delete it or choose "
                "another index prefix"
            )
        return []
    return sorted(client.indices.get_alias(name=alias).keys())


def alias_target(client: Elasticsearch, alias: str) -> str | None:
    """The physical index behind an alias, None when the alias does not exist.

    An alias on more than one index (left by a pre-lock concurrent build) would return every
    hit once per index: refused, naming the command that repairs it.
    """
    names = alias_indexes(client, alias)
    if len(names) > 1:
        raise SearchBackendError(
            f"alias {alias} points at {len(names)} indexes ({', '.join(names)}), so every hit "
            f"would count {len(names)} times; `embedarena index build` for this model repairs "
            f"it (or `embedarena index delete {alias} --yes`)")
    return names[0] if names else None


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
    #: Seconds to wait for the restored replicas to be assigned before the alias moves.
    health_timeout: float = 120.0
    #: Called with the new index just before the alias lock is taken (tests force races here).
    before_swap: Callable[[str], None] | None = None

    def build_dense(self, alias: str, model_name: str, embedder: Embedder, corpus: Corpus,
                    options: IndexOptions, model_public: dict[str, Any] | None = None,
                    force: bool = False, progress: ProgressFn | None = None,
                    keep_old: bool = False) -> BuildResult:
        from embedarena.indexer.capabilities import check_index_type, detect

        # a type the node lacks (bbq_disk on 8.x or under a basic licence) is refused before
        # anything is embedded
        caps = detect(self.client, self.target)
        check_index_type(options.type, caps.version, caps.license)
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
            import numpy as np

            total = -(-len(corpus) // self.embed_batch)
            for start in range(0, len(corpus), self.embed_batch):
                ids = corpus.ids[start:start + self.embed_batch]
                texts = corpus.texts[start:start + self.embed_batch]
                # an embedder error names the batch and its first id (issue 12)
                with naming_batch(model_name, batch_label(
                        "document", start // self.embed_batch + 1, total, start, len(texts),
                        ids)):
                    vecs = embedder.embed_documents(texts)
                    if vecs.shape != (len(texts), embedder.dim):
                        raise EmbedderError(f"returned shape {vecs.shape} for {len(texts)} "
                                            f"texts (expected dim {embedder.dim})")
                    if not np.isfinite(vecs).all():
                        raise EmbedderError("returned NaN or infinite values")
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
        """The alias's index when it was built by this fingerprint, corpus and settings.

        An alias on several indexes is repaired here: it keeps the newest current and
        complete one and drops the others, or (none current) the build replaces them all."""
        with es_errors(self.target, f"index {alias}"):
            if len(alias_indexes(self.client, alias)) > 1:
                return self._repair(alias, fingerprint, corpus, settings_key)
            meta = index_meta(self.client, alias)
        if meta is None or not is_current(meta, fingerprint, corpus, settings_key):
            return None
        return BuildResult(alias, meta["index"], int(meta["doc_count"]), True, 0.0, meta)

    def _repair(self, alias: str, fingerprint: str, corpus: Corpus,
                settings_key: str) -> BuildResult | None:
        with alias_lock(self.client, alias):
            names = alias_indexes(self.client, alias)
            if len(names) < 2:  # repaired meanwhile by another builder
                meta = index_meta(self.client, alias)
                if meta is None or not is_current(meta, fingerprint, corpus, settings_key):
                    return None
                return BuildResult(alias, meta["index"], int(meta["doc_count"]), True, 0.0,
                                   meta)
            keep = None
            for name in reversed(names):  # newest first: the names end in their build time
                meta = dict(_mapping_meta(self.client, name), index=name)
                if (is_current(meta, fingerprint, corpus, settings_key)
                        and int(self.client.count(index=name)["count"]) == len(corpus)):
                    keep = meta
                    break
            if keep is None:
                return None  # nothing to keep: the build's swap replaces every one of them
            drop = [n for n in names if n != keep["index"]]
            resp = self.client.indices.update_aliases(
                actions=[{"remove_index": {"index": n}} for n in drop])
            check_aliases_response(resp, alias)
        current().note(f"alias {alias} pointed at {len(names)} indexes; kept {keep['index']} "
                       f"(current, {len(corpus)} docs), deleted {', '.join(drop)}",
                       level="warning")
        return BuildResult(alias, keep["index"], len(corpus), True, 0.0, keep, drop)

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
        with es_errors(self.target, f"prune {alias}"):
            pruned = prune_orphans(self.client, alias=alias)
        if pruned:
            current().note(f"deleted {len(pruned)} orphaned partial index(es) of {alias} "
                           f"(killed builds): {', '.join(pruned)}", level="warning")
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S%f")
        index = f"{alias}-{stamp}-{meta['fingerprint'].split(':')[-1][:8]}".lower()
        claim = BuildClaim(self.client, alias, index)  # before the index exists: never an orphan
        with es_errors(self.target, f"create index {index}"):
            claim.acquire()
            try:
                self.client.indices.create(index=index, mappings=mapping,
                                           settings={**index_settings(options),
                                                     **(extra_settings or {})})
            except BaseException:
                claim.release()
                raise
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
                self.client.indices.put_settings(
                    index=index, settings={"refresh_interval": "1s",
                                           "number_of_replicas": options.replicas})
                nodes = int(self.client.cluster.health()["number_of_data_nodes"])
                want = wait_status(options, nodes)
                health = self.client.options(
                    request_timeout=self.health_timeout + 10).cluster.health(
                    index=index, wait_for_status=want,
                                                    timeout=f"{int(self.health_timeout)}s")
                if health.get("timed_out"):
                    raise SearchBackendError(
                        f"index {index} did not become {want} within {self.health_timeout:.0f} "
                        f"s (status {health.get('status')}, {health.get('unassigned_shards')} "
                        "unassigned shards); the alias was not switched")
                self.client.indices.refresh(index=index)
                count = int(self.client.count(index=index)["count"])
            if count != len(corpus) or n_ok != len(corpus):
                raise SearchBackendError(
                    f"index {index} holds {count} documents after loading {n_ok}, but the corpus "
                    f"has {len(corpus)}; the alias was not switched")
            if self.before_swap is not None:
                self.before_swap(index)
            deleted = self._swap_alias(alias, index, meta, keep_old)
            return BuildResult(alias, index, count, False, time.monotonic() - t0,
                               dict(meta, index=index), deleted, pruned=pruned)
        except BaseException as e:
            # never raises, and never deletes an index that an alias points at
            if not self._discard(index) and isinstance(e, SearchBackendError):
                raise type(e)(f"{e}; the partial index {index} could not be removed now: the "
                              f"next build of {alias} (or `embedarena index prune`) removes it"
                              ) from None
            raise
        finally:
            claim.release()

    def _discard(self, index: str) -> bool:
        """Delete a failed build's index unless an alias points at it; False when the node
        could not be asked (the index is then an orphan for the next prune)."""
        from elastic_transport import TransportError
        from elasticsearch import ApiError, NotFoundError

        try:
            body = self.client.indices.get_alias(index=index).get(index) or {}
            if not body.get("aliases"):
                self.client.indices.delete(index=index, ignore_unavailable=True)
        except NotFoundError:
            pass
        except (ApiError, TransportError):
            return False
        return True

    def _swap_alias(self, alias: str, index: str, meta: dict[str, Any],
                    keep_old: bool) -> list[str]:
        """Under the alias lock: attach `index` and detach (and, unless `keep_old`, delete)
        every index the alias pointed at, in one `_aliases` call that fails as a whole if any
        of them has changed meanwhile."""
        with es_errors(self.target, f"alias {alias}"), alias_lock(self.client, alias):
            built = _mapping_meta(self.client, index)
            if (built.get("fingerprint"), built.get("created")) != \
                    (meta["fingerprint"], meta["created"]):
                raise SearchBackendError(f"index {index} was replaced while it was built "
                                         "(deleted by hand?); the alias was not switched")
            olds = [o for o in alias_indexes(self.client, alias) if o != index]
            acts: list[dict[str, Any]] = []
            for o in olds:
                if keep_old:  # marked first, so a prune never takes it for an orphan
                    _mark_kept(self.client, o)
                    acts.append({"remove": {"index": o, "alias": alias, "must_exist": True}})
                else:  # detached and deleted in the same atomic call
                    acts.append({"remove_index": {"index": o}})
            acts.append({"add": {"index": index, "alias": alias}})
            check_aliases_response(self.client.indices.update_aliases(actions=acts), alias)
        return [] if keep_old else olds


def check_aliases_response(resp: Any, alias: str) -> None:
    """An `_aliases` call can answer 200 with `errors: true` (per-action results): refuse."""
    body = getattr(resp, "body", resp)
    if not isinstance(body, dict):
        return
    if body.get("errors") or body.get("acknowledged") is False:
        bad = [r for r in body.get("action_results") or [] if r.get("status", 200) >= 300]
        what = "; ".join(f"{r.get('action', {}).get('type')} "
                         f"{','.join(r.get('action', {}).get('indices') or [])}: "
                         f"{(r.get('error') or {}).get('reason', r.get('status'))}"
                         for r in bad) or "not acknowledged"
        raise SearchBackendError(f"alias {alias}: the alias update failed in part ({what}); "
                                 f"`embedarena index list` shows where it points now")


def _mapping_meta(client: Elasticsearch, index: str) -> dict[str, Any]:
    body = client.indices.get_mapping(index=index)
    return dict(next(iter(body.values()))["mappings"].get("_meta") or {})


def _mark_kept(client: Elasticsearch, index: str) -> None:
    """Record in its `_meta` that an index was detached on purpose (`--keep-old`)."""
    meta = _mapping_meta(client, index)
    meta["kept"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    client.indices.put_mapping(index=index, meta=meta)


def lexical_fingerprint(analyzer: str) -> str:
    """Fingerprint of a BM25 chain (see `embedarena.indexer.analysis.chain_fingerprint`)."""
    from embedarena.indexer.analysis import chain_fingerprint

    return chain_fingerprint(get_chain(analyzer))


def _settings_key(obj: dict[str, Any]) -> str:
    import json

    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


#: `<alias>-<20-digit UTC time>-<fingerprint[:8]>`: the physical indexes a build writes.
PHYSICAL = re.compile(r"^(?P<alias>.+)-\d{20}-[a-z0-9]+$")


def index_states(client: Elasticsearch, pattern: str) -> list[dict[str, Any]]:
    """Every index matching `pattern` (the lock index aside) with its aliases, `_meta`, live
    document count and state: `serving` (an alias points at it), `building` (a live build
    owns it), `kept` (detached by `--keep-old`), `orphan` (a killed build's partial index) or
    `other` (not named like a build's index)."""
    aliases = client.indices.get_alias(index=pattern, allow_no_indices=True,
                                       ignore_unavailable=True)
    names = sorted(n for n in aliases if n != LOCK_INDEX)
    if not names:
        return []
    mappings = client.indices.get_mapping(index=pattern, allow_no_indices=True,
                                          ignore_unavailable=True)
    claims = live_claims(client, names)
    out = []
    for name in names:
        meta = dict((mappings.get(name) or {}).get("mappings", {}).get("_meta") or {})
        attached = sorted((aliases[name] or {}).get("aliases") or {})
        if attached:
            state = "serving"
        elif name in claims:
            state = "building"
        elif meta.get("kept"):
            state = "kept"
        elif PHYSICAL.match(name):
            state = "orphan"
        else:
            state = "other"
        out.append({**meta, "index": name, "aliases": attached,
                    "alias": attached[0] if attached else None, "state": state,
                    "live_doc_count": int(client.count(index=name)["count"])})
    return out


def list_indexes(client: Elasticsearch, prefix: str = "embedarena-") -> list[dict[str, Any]]:
    """Every physical index under the prefix with its alias, `_meta`, state and live count
    (for `index list`; `doc_count` is the planned count from `_meta`)."""
    return index_states(client, f"{prefix}*")


def prune_orphans(client: Elasticsearch, *, alias: str | None = None,
                  prefix: str = "embedarena-", dry_run: bool = False) -> list[str]:
    """Delete the partial indexes that killed builds left: named like a build's index (of
    `alias`, or of any alias under `prefix`), no alias on them, no live build owning them,
    not kept with `--keep-old`. Returns their names."""
    rows = index_states(client, f"{alias}-*" if alias is not None else f"{prefix}*")
    gone = []
    for r in rows:
        m = PHYSICAL.match(r["index"])
        if r["state"] != "orphan" or m is None or (alias is not None and m["alias"] != alias):
            continue
        if not dry_run:
            client.indices.delete(index=r["index"], ignore_unavailable=True)
            forget_claim(client, r["index"])
        gone.append(r["index"])
    return gone


def delete_index(client: Elasticsearch, name: str) -> list[str]:
    """Delete an alias and every physical index behind it, or one physical index by name (not
    one an alias points at, nor one a live build is writing)."""
    if client.indices.exists_alias(name=name):
        with alias_lock(client, name):
            names = alias_indexes(client, name)
            for n in names:
                client.indices.delete(index=n, ignore_unavailable=True)
        return names
    rows = [] if name == LOCK_INDEX else [r for r in index_states(client, name)
                                         if r["index"] == name]
    if not rows or not (PHYSICAL.match(name) or rows[0].get("fingerprint")):
        raise ConfigError(f"no embedarena index named '{name}'")
    row = rows[0]
    if row["state"] == "serving":
        raise ConfigError(f"index {name} serves alias {', '.join(row['aliases'])}; delete the "
                          f"alias with its index: `embedarena index delete "
                          f"{row['aliases'][0]} --yes`")
    if row["state"] == "building":
        claim = live_claims(client, [name])[name]
        raise ConfigError(f"index {name} is being built by pid {claim.get('pid')} on "
                          f"{claim.get('host')}; stop that build (it removes its index)")
    client.indices.delete(index=name)
    forget_claim(client, name)
    return [name]
