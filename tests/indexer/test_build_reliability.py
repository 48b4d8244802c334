"""Builds that race, die or leave things behind, against the real node: the alias lock, the
compare-and-swap alias update, repair of an alias on several indexes, orphan pruning, and
deleting or listing physical indexes."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

from embedarena.data.types import Corpus
from embedarena.errors import ConfigError, SearchBackendError
from embedarena.evaluation.runner import run_dense
from embedarena.indexer import build as build_mod
from embedarena.indexer.build import (
    Builder,
    BuildResult,
    IndexOptions,
    alias_indexes,
    alias_target,
    check_aliases_response,
    delete_index,
    list_indexes,
    prune_orphans,
)
from embedarena.indexer.es import Target
from embedarena.indexer.locks import LOCK_INDEX, BuildClaim, alias_lock

from .fakes import BigramEmbedder
from .test_build import LABELS

N_BUILDERS = 3


def _target(es_node: Any) -> Target:
    return Target([es_node.url], "basic", False)


def _ids_via_alias(client: Any, alias: str) -> list[str]:
    client.indices.refresh(index=alias)
    hits = client.search(index=alias, size=1000, query={"match_all": {}},
                         source=["doc_id"])["hits"]["hits"]
    return [h["_source"]["doc_id"] for h in hits]


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _race(es_node: Any, alias: str, corpus: Corpus, *, force: bool = False
          ) -> list[BuildResult]:
    """N builders of one alias, held at a barrier after loading, so all swap at once."""
    barrier = threading.Barrier(N_BUILDERS, timeout=120)
    results: list[BuildResult] = []
    errors: list[BaseException] = []

    def one() -> None:
        try:
            b = Builder(es_node.client, _target(es_node), embed_batch=5, chunk_size=4,
                        before_swap=lambda index: barrier.wait())
            results.append(b.build_dense(alias, "bigram", BigramEmbedder(), corpus,
                                         IndexOptions(type="flat"), force=force))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)
            barrier.abort()

    threads = [threading.Thread(target=one) for _ in range(N_BUILDERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    assert not errors, errors
    assert len(results) == N_BUILDERS
    return results


def _assert_one_clean_index(es_node: Any, alias: str, corpus: Corpus,
                            results: list[BuildResult]) -> None:
    client = es_node.client
    behind = alias_indexes(client, alias)
    assert len(behind) == 1, behind
    assert behind[0] in {r.index for r in results}
    ids = _ids_via_alias(client, alias)
    assert sorted(ids) == sorted(corpus.ids)  # the right count and no hit twice
    for r in results:  # every builder's index other than the winner is gone
        if r.index != behind[0]:
            assert not client.indices.exists(index=r.index)
    assert not client.exists(index=LOCK_INDEX, id=f"alias:{alias}")
    for r in results:
        assert not client.exists(index=LOCK_INDEX, id=f"build:{r.index}")
    assert prune_orphans(client, alias=alias, dry_run=True) == []


@pytest.mark.es
def test_concurrent_builds_leave_the_alias_on_exactly_one_index(es_node, es_prefix) -> None:  # noqa: ANN001
    alias = f"{es_prefix}race"
    corpus = Corpus.from_labels(LABELS, source="labels")
    results = _race(es_node, alias, corpus)
    assert all(not r.reused for r in results)
    assert len({r.index for r in results}) == N_BUILDERS  # all three really built and swapped
    _assert_one_clean_index(es_node, alias, corpus, results)

    # a forced rebuild race over an existing index: the old one goes, still one index
    old = alias_target(es_node.client, alias)
    again = _race(es_node, alias, corpus, force=True)
    _assert_one_clean_index(es_node, alias, corpus, again)
    assert not es_node.client.indices.exists(index=old)


@pytest.mark.es
def test_the_barrier_really_forces_the_race(es_node, es_prefix,  # noqa: ANN001
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The control: without the alias lock, the same barrier leaves the alias on several
    indexes (the fault of issue 12), so the test above can fail."""
    monkeypatch.setattr(build_mod, "alias_lock", lambda client, alias: contextlib.nullcontext())
    alias = f"{es_prefix}nolock"
    corpus = Corpus.from_labels(LABELS, source="labels")
    _race(es_node, alias, corpus)
    behind = alias_indexes(es_node.client, alias)
    assert len(behind) > 1
    with pytest.raises(SearchBackendError, match=rf"points at {len(behind)} indexes"):
        alias_target(es_node.client, alias)


@pytest.mark.es
def test_alias_on_two_indexes_is_refused_and_repaired(es_node, es_prefix) -> None:  # noqa: ANN001
    client, target = es_node.client, _target(es_node)
    alias = f"{es_prefix}double"
    emb = BigramEmbedder()
    corpus = Corpus.from_labels(LABELS, source="labels")
    b = Builder(client, target, embed_batch=5, chunk_size=4)
    first = b.build_dense(alias, "bigram", emb, corpus, IndexOptions(type="flat"))
    second = b.build_dense(alias, "bigram", emb, corpus, IndexOptions(type="flat"), force=True,
                           keep_old=True)
    client.indices.update_aliases(actions=[{"add": {"index": first.index, "alias": alias}}])
    assert len(_ids_via_alias(client, alias)) == 2 * len(LABELS)  # the corruption itself

    with pytest.raises(SearchBackendError, match="points at 2 indexes.*index build"):
        run_dense(client, target, alias, "bigram", emb,
                  _queries(), 5, 10)
    calls = emb.calls
    fixed = b.build_dense(alias, "bigram", emb, corpus, IndexOptions(type="flat"))
    assert fixed.reused and fixed.index == second.index and emb.calls == calls
    assert fixed.deleted_old == [first.index] and not client.indices.exists(index=first.index)
    assert alias_indexes(client, alias) == [second.index]
    assert sorted(_ids_via_alias(client, alias)) == sorted(corpus.ids)

    # none of them current (the corpus changed): the build replaces both
    third = b.build_dense(alias, "bigram", emb, corpus, IndexOptions(type="flat"), force=True,
                          keep_old=True)
    client.indices.update_aliases(actions=[{"add": {"index": second.index, "alias": alias}}])
    assert alias_indexes(client, alias) == sorted([second.index, third.index])
    bigger = Corpus.from_labels([*LABELS, "胃炎"], source="labels2")
    rebuilt = b.build_dense(alias, "bigram", emb, bigger, IndexOptions(type="flat"))
    assert not rebuilt.reused and alias_indexes(client, alias) == [rebuilt.index]
    assert sorted(rebuilt.deleted_old) == sorted([second.index, third.index])
    assert not client.indices.exists(index=second.index)


def _queries() -> Any:
    from embedarena.data.types import Query, QuerySet

    return QuerySet("q", [Query("q1", "甲状腺", {"甲状腺结节": 1.0})], source="mem")


def _orphan(client: Any, alias: str, stamp: str = "20200101000000000000") -> str:
    name = f"{alias}-{stamp}-deadbeef"
    client.indices.create(index=name, mappings={"_meta": {"doc_count": 12}})
    client.index(index=name, document={"doc_id": "x"}, refresh=True)
    return name


@pytest.mark.es
def test_builds_prune_their_orphans_but_not_live_or_kept_indexes(es_node, es_prefix) -> None:  # noqa: ANN001
    client, target = es_node.client, _target(es_node)
    alias = f"{es_prefix}orph"
    corpus = Corpus.from_labels(LABELS, source="labels")
    b = Builder(client, target, embed_batch=5, chunk_size=4)
    first = b.build_dense(alias, "bigram", BigramEmbedder(), corpus, IndexOptions(type="flat"))
    orphan = _orphan(client, alias)
    dead = _orphan(client, alias, "20200101000000000001")  # its builder's process is gone
    client.index(index=LOCK_INDEX, id=f"build:{dead}",
                 document={"host": os.uname().nodename, "pid": _dead_pid(), "at": time.time(),
                           "alias": alias, "index": dead})
    live = _orphan(client, alias, "20200101000000000002")
    other = _orphan(client, f"{alias}x")  # another alias's orphan: not this build's business
    states = {r["index"]: r for r in list_indexes(client, es_prefix)}
    assert states[orphan]["state"] == "orphan" and states[orphan]["live_doc_count"] == 1
    assert states[first.index]["state"] == "serving"
    assert states[first.index]["live_doc_count"] == len(LABELS)
    with BuildClaim(client, alias, live):
        assert {r["index"]: r for r in list_indexes(client, es_prefix)}[live]["state"] == \
            "building"
        second = b.build_dense(alias, "bigram", BigramEmbedder(), corpus,
                               IndexOptions(type="flat"), force=True, keep_old=True)
        assert sorted(second.pruned) == sorted([orphan, dead])
        assert client.indices.exists(index=live) and client.indices.exists(index=other)
        assert not client.indices.exists(index=orphan) and not client.indices.exists(index=dead)
        assert not client.exists(index=LOCK_INDEX, id=f"build:{dead}")  # its stale claim too
    # the claim is released: a later prune takes it; the --keep-old index stays
    states = {r["index"]: r["state"] for r in list_indexes(client, es_prefix)}
    assert states[first.index] == "kept" and states[live] == "orphan"
    assert prune_orphans(client, prefix=es_prefix, dry_run=True) == sorted([live, other])
    assert client.indices.exists(index=live)
    assert prune_orphans(client, prefix=es_prefix) == sorted([live, other])
    assert not client.indices.exists(index=live) and client.indices.exists(index=first.index)


@pytest.mark.es
def test_delete_accepts_physical_names_but_not_serving_or_building_ones(es_node, es_prefix  # noqa: ANN001
                                                                         ) -> None:
    client, target = es_node.client, _target(es_node)
    alias = f"{es_prefix}del"
    built = Builder(client, target).build_dense(alias, "bigram", BigramEmbedder(),
                                                Corpus.from_labels(LABELS, source="labels"),
                                                IndexOptions(type="flat"))
    orphan = _orphan(client, alias)
    assert delete_index(client, orphan) == [orphan] and not client.indices.exists(index=orphan)
    with pytest.raises(ConfigError, match=f"serves alias {alias}"):
        delete_index(client, built.index)
    live = _orphan(client, alias, "20200101000000000003")
    with BuildClaim(client, alias, live), pytest.raises(ConfigError, match="being built"):
        delete_index(client, live)
    with pytest.raises(ConfigError, match="no embedarena index"):
        delete_index(client, LOCK_INDEX)
    assert delete_index(client, alias) == [built.index]
    assert not client.indices.exists(index=built.index) and client.indices.exists(index=live)


@pytest.mark.es
def test_alias_lock_waits_for_a_live_holder_and_takes_over_a_dead_one(es_node, es_prefix  # noqa: ANN001
                                                                      ) -> None:
    client = es_node.client
    alias = f"{es_prefix}lock"
    with alias_lock(client, alias):
        t0 = time.monotonic()
        with pytest.raises(SearchBackendError, match=f"alias {alias} is locked by pid "
                                                     f"{os.getpid()}"), \
                alias_lock(client, alias, wait_s=0.5):
            pass
        assert 0.4 < time.monotonic() - t0 < 10
    # a lock left by a process that died (kill -9 mid-swap) is taken over at once
    client.index(index=LOCK_INDEX, id=f"alias:{alias}",
                 document={"host": os.uname().nodename, "pid": _dead_pid(), "at": time.time()})
    t0 = time.monotonic()
    with alias_lock(client, alias, wait_s=5):
        assert client.get(index=LOCK_INDEX, id=f"alias:{alias}")["_source"]["pid"] == \
            os.getpid()
    assert time.monotonic() - t0 < 5
    assert not client.exists(index=LOCK_INDEX, id=f"alias:{alias}")


def test_an_aliases_answer_with_errors_is_refused() -> None:
    answer = {"acknowledged": True, "errors": True, "action_results": [
        {"action": {"type": "remove", "indices": ["a-1"], "aliases": ["a"]}, "status": 404,
         "error": {"type": "aliases_not_found_exception", "reason": "aliases [a] missing"}},
        {"action": {"type": "add", "indices": ["a-2"], "aliases": ["a"]}, "status": 200}]}
    with pytest.raises(SearchBackendError, match=r"failed in part \(remove a-1: aliases \[a\] "
                                                 r"missing\)"):
        check_aliases_response(answer, "a")
    check_aliases_response({"acknowledged": True, "errors": False}, "a")
