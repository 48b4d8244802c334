"""Named datasets read in place from the shared data, with the counts its README documents."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from embedarena.data import datasets as ds_mod
from embedarena.data.datasets import (
    DATASETS,
    dataset_dir,
    load_dataset,
    load_dataset_full,
    passage_id,
    split_queries,
)
from embedarena.data.readers import gold_not_in_corpus
from embedarena.errors import ConfigError, DataError


def test_t2rank_pools_passages(shared_data: Path) -> None:
    corpus, sets = load_dataset("t2rank", shared_data)
    qs = sets["all"]
    assert len(qs) == 100
    assert len(corpus) == 1987
    assert len(set(corpus.ids)) == 1987
    assert all(re.fullmatch(r"[0-9a-f]{16}", i) for i in corpus.ids)
    assert all(passage_id(t) == i for i, t in zip(corpus.ids, corpus.texts))
    assert gold_not_in_corpus(corpus, qs) == {}
    n_pos = [len(q.relevant) for q in qs]
    assert min(n_pos) == 1 and max(n_pos) == 10 and sum(n_pos) == 505
    assert qs.queries[0].text == "鹦鹉吃自己的小鱼吗"
    assert any("<br>" in t for t in corpus.texts)  # texts kept as they are


def test_split_queries_is_seeded_and_disjoint(shared_data: Path) -> None:
    _, sets = load_dataset("t2rank", shared_data)
    qs = sets["all"]
    train, test = split_queries(qs, 0.2, seed=7)
    assert (len(train), len(test)) == (80, 20)
    assert not {q.qid for q in train} & {q.qid for q in test}
    train2, test2 = split_queries(qs, 0.2, seed=7)
    assert [q.qid for q in test2] == [q.qid for q in test]
    _, test3 = split_queries(qs, 0.2, seed=8)
    assert [q.qid for q in test3] != [q.qid for q in test]
    assert [int(q.qid) for q in test] == sorted(int(q.qid) for q in test)
    with pytest.raises(ConfigError):
        split_queries(qs, 1.0, seed=0)


def test_cranfield(shared_data: Path) -> None:
    ds = load_dataset_full("cranfield", shared_data)
    corpus, qs = ds.corpus, ds.query_sets["test"]
    assert len(corpus) == 1400
    assert corpus.ids[0] == "1" and corpus.ids[-1] == "1400"
    assert len(qs) == 225
    assert [q.qid for q in qs][:3] == ["1", "2", "3"]  # ordinal, not cran.qry's 001, 002, 004
    assert qs.queries[2].text.startswith("what problems of heat conduction in composite slabs")
    assert ds.notes["qrels rows with code -1 dropped"] == 225
    report = ds.reports[0]
    assert report.read == 1837 and report.loaded == 1612
    # gain = 5 - code: query 1 / doc 184 has code 2; no -1 row survives
    assert qs.queries[0].gold["184"] == 3.0
    assert all(g in (1.0, 2.0, 3.0, 4.0) for q in qs for g in q.gold.values())
    assert "486" not in qs.queries[0].gold  # "1 486 -1"
    text1 = corpus.texts[0]
    assert text1.startswith("experimental investigation of the aerodynamics of a wing in a "
                            "slipstream .\nexperimental investigation")
    assert corpus.metadata is not None and corpus.metadata[0]["author"] == "brenckman,m."
    # docs 471 and 995 are empty in the file, but 995 is judged relevant for query 125
    assert corpus.texts[470] == corpus.texts[994] == ""
    assert ds.notes["documents with empty title and body"] == 2
    assert qs.queries[124].gold["995"] == 2.0
    # doc 240's stray ".A"/".B" lines do not swallow its abstract
    assert "application to turbulent separations" in corpus.texts[239]
    assert ds.notes["stray section markers dropped"] == 4
    assert gold_not_in_corpus(corpus, qs) == {}


def test_dbpedia_drops_and_reports_unjudged_queries(shared_data: Path) -> None:
    ds = load_dataset_full("dbpedia", shared_data)
    qs = ds.query_sets["test"]
    assert len(ds.corpus) == 5000
    assert len(qs) == 40
    dropped = ds.dropped_queries["no judgements"]
    assert len(dropped) == 10
    assert {"SemSearch_ES-94", "INEX_LD-2012351"} <= set(dropped)
    assert ds.notes["queries dropped (no judgements)"] == 10
    assert not {q.qid for q in qs} & set(dropped)
    grades = [g for q in qs for g in q.gold.values()]
    assert len(grades) == 3709
    assert (grades.count(0.0), grades.count(1.0), grades.count(2.0)) == (2829, 614, 266)
    q = next(q for q in qs if q.qid == "INEX_LD-2010019")
    assert q.gold["<dbpedia:Ancient_Roman_architecture>"] == 0.0
    assert "<dbpedia:Ancient_Roman_architecture>" not in q.relevant
    assert gold_not_in_corpus(ds.corpus, qs) == {}


def test_flagembedding_toy(shared_data: Path) -> None:
    corpus, sets = load_dataset("flagembedding-toy", shared_data)
    assert corpus.ids == corpus.texts and len(corpus) == 5
    qs = sets["test"]
    assert len(qs) == 3
    assert qs.queries[0].relevant == ["A is ...", "... is A"]
    assert gold_not_in_corpus(corpus, qs) == {}


def test_registry_hashes_match_the_shared_files(shared_data: Path) -> None:
    """The pinned sha256/size must be those of the byte-identical shared copies."""
    from embedarena.data.fetch import sha256_file

    for spec in DATASETS.values():
        for rf in spec.files:
            p = shared_data / spec.folder / rf.path
            assert p.stat().st_size == rf.size, p
            assert sha256_file(p) == rf.sha256, p
            assert rf.url.startswith("https://raw.githubusercontent.com/"), rf.url
            assert re.search(r"/[0-9a-f]{40}/", rf.url), rf.url


def test_root_resolution(shared_data: Path, tmp_path: Path,
                         monkeypatch: pytest.MonkeyPatch) -> None:
    # explicit root is strict
    with pytest.raises(DataError) as e:
        dataset_dir("cranfield", tmp_path)
    assert "embedarena data fetch cranfield" in str(e.value)
    # env var wins over the repo's shared data
    alt = tmp_path / "alt"
    shutil.copytree(shared_data / "cranfield", alt / "cranfield")
    monkeypatch.setenv("EMBEDARENA_SHARED_DATA", str(alt))
    monkeypatch.setenv("EMBEDARENA_HOME", str(tmp_path / "home"))
    assert dataset_dir("cranfield") == alt / "cranfield"
    # a dataset missing under the env root is looked for in the fetch cache, by its own name
    with pytest.raises(DataError, match="dataset 'flagembedding-toy' not found"):
        dataset_dir("flagembedding-toy")
    cache = tmp_path / "home" / "cache" / "datasets" / "flagembedding-toy"
    shutil.copytree(shared_data / "flagembedding-toy", cache)
    assert dataset_dir("flagembedding-toy") == cache
    # without the env var: <repo>/../shared/data
    monkeypatch.delenv("EMBEDARENA_SHARED_DATA")
    monkeypatch.setattr(ds_mod, "REPO_SHARED", shared_data)
    assert dataset_dir("dbpedia") == shared_data / "dbpedia-entity-subset-agentset"


def test_unknown_dataset_lists_names() -> None:
    with pytest.raises(ConfigError) as e:
        load_dataset("msmarco")
    assert all(n in str(e.value) for n in DATASETS)
