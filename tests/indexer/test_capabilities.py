"""Node capabilities beyond modules: index types by version, retrievers by licence, and the
paths embedarena takes without them (shown by `es status`, recorded in meta.json)."""

from __future__ import annotations

import pytest

from embedarena.data.types import Corpus, Query, QuerySet
from embedarena.errors import ConfigError, SearchBackendError
from embedarena.evaluation.runner import run_dense
from embedarena.indexer.build import Builder, IndexOptions, alias_target
from embedarena.indexer.capabilities import (
    INDEX_TYPE_MIN_VERSION,
    Capabilities,
    check_index_type,
    detect,
)
from embedarena.indexer.es import Target

from .fakes import BigramEmbedder

MINIMAL = frozenset({"apm", "transport-netty4", "x-pack-core", "x-pack-security"})
LABELS = ["甲状腺结节", "甲状腺癌", "胆管炎", "胰腺囊肿", "宫颈上皮内瘤变", "子宫肌瘤",
          "高血压", "糖尿病", "肝硬化", "乳腺癌", "thyroid nodule", "hypertension"]


def test_index_types_newer_than_the_node_are_refused_naming_the_version() -> None:
    with pytest.raises(ConfigError, match=r"bbq_disk needs Elasticsearch 9\.2 or newer.*8\.19"):
        check_index_type("bbq_disk", "8.19.21")
    with pytest.raises(ConfigError, match=r"bbq_hnsw needs Elasticsearch 8\.16"):
        check_index_type("bbq_hnsw", "8.15.3")
    for kind in ("bbq_disk", "bbq_hnsw", "bbq_flat", "hnsw", "int8_flat"):
        check_index_type(kind, "9.5.4")
    check_index_type("bbq_flat", "8.19.21")
    check_index_type("hnsw", "7.17.0")
    with pytest.raises(ConfigError, match="bbq_disk needs an enterprise or trial licence.*basic"):
        check_index_type("bbq_disk", "9.5.4", "basic")
    check_index_type("bbq_disk", "9.5.4", "trial")
    assert not Capabilities(MINIMAL, "9.5.4", "basic").supports("bbq_disk")
    assert Capabilities(MINIMAL, "9.5.4", "enterprise").supports("bbq_disk")


def test_minimal_node_features_and_the_client_side_paths() -> None:
    caps = Capabilities(MINIMAL, "9.5.4", "basic")
    assert caps.features() == {"painless": False, "analysis_common": False,
                               "rank_vectors": False, "rrf_linear_retrievers": False}
    paths = caps.paths()
    assert "rank-rrf" in paths["fusion"] and "lang-painless" in paths["exact_search"]
    assert paths["fusion"].startswith("client-side") and not caps.native_rrf
    meta = caps.to_meta()
    assert meta["license"] == "basic" and meta["features"] == caps.features()


def test_retrievers_need_the_module_and_a_licence_above_basic() -> None:
    full = MINIMAL | {"rank-rrf", "lang-painless", "analysis-common", "rank-vectors"}
    basic = Capabilities(full, "9.5.4", "basic")
    assert not basic.native_rrf and "licence" in basic.paths()["fusion"]
    assert basic.features()["painless"] and basic.features()["rank_vectors"]
    trial = Capabilities(full, "9.5.4", "trial")
    assert trial.native_rrf and trial.features()["rrf_linear_retrievers"]
    assert trial.paths()["fusion"].startswith("the node's rrf retriever")
    assert not Capabilities(full, "8.13.0", "trial").native_rrf  # no retrievers before 8.14


@pytest.mark.es
@pytest.mark.parametrize("kind", sorted(INDEX_TYPE_MIN_VERSION))
def test_bbq_types_build_and_search_or_are_refused_before_any_index(
        es_node, es_prefix, kind: str) -> None:  # noqa: ANN001
    client, target = es_node.client, Target([es_node.url], "basic", False)
    alias = f"{es_prefix}{kind}"
    emb = BigramEmbedder(dim=64)  # bbq quantises 64+ dimensions
    corpus = Corpus.from_labels(LABELS)
    caps = detect(client, target)
    builder = Builder(client, target)
    if not caps.supports(kind):  # bbq_disk on 8.x, or under the basic licence
        with pytest.raises(ConfigError, match=f"{kind} needs .*(runs {caps.version}|has "
                                              f"{caps.license})"):
            builder.build_dense(alias, "m", emb, corpus, IndexOptions(type=kind))
        assert alias_target(client, alias) is None
        assert not client.indices.get(index=f"{es_prefix}*", allow_no_indices=True)
        return
    if kind == "bbq_disk":
        # the licence allows it, but the managed distribution lacks the module that grants it:
        # even under a trial licence 9.5.4 refuses each document; one error naming the cause
        try:
            built = builder.build_dense(alias, "m", emb, corpus, IndexOptions(type=kind))
        except SearchBackendError as e:
            assert "non-compliant for [bbq_disk]" in str(e)
            assert alias_target(client, alias) is None
            return
    else:
        built = builder.build_dense(alias, "m", emb, corpus, IndexOptions(type=kind))
    index = alias_target(client, alias)
    assert index is not None and built.docs == len(LABELS)
    mapping = client.indices.get_mapping(index=index)[index]["mappings"]
    assert mapping["properties"]["vector"]["index_options"]["type"] == kind
    qs = QuerySet("q", [Query("0", "甲状腺结节", {"甲状腺结节": 1.0}),
                        Query("1", "hypertension", {"hypertension": 1.0})])
    run = run_dense(client, target, alias, "m", emb, qs, k=3)
    # the query is one of the labels: quantised or not, it comes back first
    assert [r.retrieved[0] for r in run.results] == ["甲状腺结节", "hypertension"]


@pytest.mark.es
def test_es_status_shows_the_probed_features(cli, es_node, tmp_path) -> None:  # noqa: ANN001
    proc = cli("es", "status", env=es_node.env, cwd=tmp_path)
    assert proc.code == 0, proc.stderr
    caps = detect(es_node.client, Target([es_node.url], "basic", False))
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("features: "))
    assert f"painless {'yes' if caps.features()['painless'] else 'no'}" in line
    assert f"rrf/linear retrievers {'yes' if caps.features()['rrf_linear_retrievers'] else 'no'}"\
        in line
    assert f"licence {caps.license}" in line
    assert caps.paths()["fusion"] in " ".join(proc.stdout.split())
