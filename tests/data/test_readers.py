"""Readers: every supported format, every bad-input kind (file + line named), skip counting."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from embedarena.data.readers import (
    TrainExample,
    gold_not_in_corpus,
    load_corpus,
    load_corpus_with_report,
    load_queries,
    load_queries_with_report,
    load_train,
    load_train_with_report,
    sniff_kind,
    write_jsonl,
    write_labels,
)
from embedarena.data.types import Corpus
from embedarena.errors import DataError


def _write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def _jsonl(path: Path, records: list[object]) -> Path:
    return _write(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


# -- corpus formats --------------------------------------------------------------------------
def test_label_list_corpus_ids_are_texts(tmp_path: Path) -> None:
    p = write_labels(tmp_path / "label.json", ["甲状腺结节", "甲状腺癌", "胆管炎"])
    assert p == 3
    corpus, report = load_corpus_with_report(tmp_path / "label.json")
    assert corpus.ids == corpus.texts == ["甲状腺结节", "甲状腺癌", "胆管炎"]
    assert corpus.metadata is None
    assert report.format == "JSON list of label list"
    assert (report.read, report.loaded, report.unit) == (3, 3, "item")


def test_jsonl_records_with_ids_and_metadata(tmp_path: Path) -> None:
    p = _jsonl(tmp_path / "c.jsonl", [{"id": 7, "text": "seven", "lang": "en"},
                                      {"id": "b", "text": "bee", "lang": "en", "n": 2}])
    corpus = load_corpus(p)
    assert corpus.ids == ["7", "b"]
    assert corpus.texts == ["seven", "bee"]
    assert corpus.metadata == [{"lang": "en"}, {"lang": "en", "n": 2}]


def test_explicit_fields(tmp_path: Path) -> None:
    p = _jsonl(tmp_path / "c.jsonl", [{"key": "k1", "body": "one", "text": "ignored"}])
    corpus = load_corpus(p, id_field="key", text_field="body")
    assert (corpus.ids, corpus.texts) == (["k1"], ["one"])
    assert corpus.metadata == [{"text": "ignored"}]


def test_flagembedding_toy_corpus_is_jsonl_named_json(shared_data: Path) -> None:
    p = shared_data / "flagembedding-toy/old-examples/finetune/toy_evaluation_data/toy_corpus.json"
    corpus, report = load_corpus_with_report(p)
    assert len(corpus) == 5
    assert corpus.ids == corpus.texts
    assert "A is ..." in corpus.ids
    assert report.format == "JSONL FlagEmbedding corpus records"


def test_beir_corpus_title_joined_and_metadata_flattened(shared_data: Path) -> None:
    corpus = load_corpus(shared_data / "dbpedia-entity-subset-agentset/corpus.jsonl")
    assert len(corpus) == 5000
    i = corpus.ids.index("<dbpedia:Oceanic_Airlines>")
    assert corpus.texts[i].startswith("Oceanic Airlines Oceanic Airlines and less frequently")
    assert corpus.metadata is not None
    assert corpus.metadata[i] == {"title": "Oceanic Airlines",
                                  "url": "<http://dbpedia.org/resource/Oceanic_Airlines>"}


def test_beir_empty_title_keeps_text_alone(tmp_path: Path) -> None:
    p = _jsonl(tmp_path / "c.jsonl", [{"_id": "d1", "title": "", "text": "body only"},
                                      {"_id": "d2", "title": "T", "text": "body"}])
    assert load_corpus(p).texts == ["body only", "T body"]


def test_csv_column_default_explicit_and_metadata(tmp_path: Path) -> None:
    p = _write(tmp_path / "labels.csv", "code,Label,group\nA1,甲状腺癌,thyroid\n,,\nB2, 胆管炎 ,\n")
    corpus, report = load_corpus_with_report(p)
    assert corpus.ids == ["甲状腺癌", "胆管炎"]  # cells are stripped
    assert corpus.metadata == [{"code": "A1", "group": "thyroid"}, {"code": "B2"}]
    assert report.notes == {"blank rows ignored": 1}
    by_code = load_corpus(p, column="Label", id_field="code")
    assert by_code.ids == ["A1", "B2"]


def test_xlsx_column_and_duplicate_label_row_named(tmp_path: Path) -> None:
    openpyxl = pytest.importorskip("openpyxl")
    wb = openpyxl.Workbook()
    ws = wb.active
    for row in (["Question", "Label"], ["q1", "肝硬化"], ["q2", "高血压"], ["q3", "肝硬化"]):
        ws.append(row)
    p = tmp_path / "d.xlsx"
    wb.save(p)
    with pytest.raises(DataError) as e:
        load_corpus(p)
    assert "d.xlsx:row 4" in str(e.value) and "duplicate id" in str(e.value)
    corpus, report = load_corpus_with_report(p, column="Label", skip_bad=True)
    assert corpus.ids == ["肝硬化", "高血压"]
    assert report.skipped == {"duplicate id": 1}


def test_table_without_a_text_column_is_an_error(tmp_path: Path) -> None:
    p = _write(tmp_path / "t.csv", "a,b\n1,2\n")
    with pytest.raises(DataError, match=r"t\.csv:line 1: which column"):
        load_corpus(p)
    with pytest.raises(DataError, match="no column 'zzz'"):
        load_corpus(p, column="zzz")


def test_duplicate_id_and_empty_text(tmp_path: Path) -> None:
    p = _jsonl(tmp_path / "c.jsonl", [{"id": "a", "text": "x"}, {"id": "b", "text": "  "},
                                      {"id": "a", "text": "y"}, {"id": "c", "text": "z"}])
    with pytest.raises(DataError) as e:
        load_corpus(p)
    assert str(e.value) == f"{p}:line 2: empty text"
    corpus, report = load_corpus_with_report(p, skip_bad=True)
    assert corpus.ids == ["a", "c"]
    assert report.skipped == {"empty text": 1, "duplicate id": 1}
    assert report.read == report.loaded + report.skipped_total == 4
    assert "first at line 1" in report.examples[1]


# -- bad input: each kind names file and line ------------------------------------------------
BAD_QUERIES = {
    "malformed JSON": ('{"query": "a", "pos": ["x"]}\n{"query": "b", "pos": [\n', 2),
    "wrong type": ('{"query": "a", "pos": ["x"]}\n{"query": "b", "pos": 3}\n', 2),
    "item wrong type": ('{"query": "a", "pos": ["x"]}\n{"query": "b", "pos": ["x", 4]}\n', 2),
    "missing field": ('{"query": "a", "pos": ["x"]}\n\n{"pos": ["y"]}\n', 3),
    "missing gold": ('{"query": "a", "pos": ["x"]}\n{"query": "b"}\n', 2),
    "no positive": ('{"query": "a", "pos": ["x"]}\n{"query": "b", "pos": []}\n', 2),
}


@pytest.mark.parametrize("case", sorted(BAD_QUERIES))
def test_bad_query_lines_name_file_and_line(tmp_path: Path, case: str) -> None:
    text, line = BAD_QUERIES[case]
    p = _write(tmp_path / "queries_bad.jsonl", text)
    with pytest.raises(DataError) as e:
        load_queries(p)
    msg = str(e.value)
    assert f"queries_bad.jsonl:line {line}:" in msg
    assert "\n" not in msg
    qs, report = load_queries_with_report(p, skip_bad=True)
    assert [q.text for q in qs] == ["a"]
    assert report.skipped_total == 1


def test_non_utf8_line_is_named(tmp_path: Path) -> None:
    p = _write(tmp_path / "gbk.jsonl", b'{"query": "a", "pos": ["x"]}\n\n'
               + '{"query": "\u75be\u75c5", "pos": ["y"]}\n'.encode("gbk")
               + b'{"query": "c", "pos": ["z"]}\n')
    with pytest.raises(DataError) as e:
        load_queries(p)
    assert "gbk.jsonl:line 3: not valid UTF-8" in str(e.value)
    qs, report = load_queries_with_report(p, skip_bad=True)
    assert [q.qid for q in qs] == ["1", "4"]
    assert report.skipped == {"not UTF-8": 1}


def test_non_utf8_csv_row_is_named(tmp_path: Path) -> None:
    # The whole file is valid GBK, so only an explicit UTF-8 makes line 3 a bad record
    # (detection is tested in test_tables.py).
    p = _write(tmp_path / "labels.csv", b"label\nok\n" + "\u75be\u75c5\n".encode("gbk") + b"x\n")
    with pytest.raises(DataError, match=r"labels\.csv:line 3: not valid UTF-8"):
        load_corpus(p, encoding="utf-8")
    corpus, report = load_corpus_with_report(p, skip_bad=True, encoding="utf-8")
    assert corpus.ids == ["ok", "x"]
    assert (report.read, report.skipped) == (3, {"not UTF-8": 1})
    assert load_corpus(p).ids == ["ok", "\u75be\u75c5", "x"]  # detected as GB18030


def test_non_utf8_in_json_list_names_the_line(tmp_path: Path) -> None:
    p = _write(tmp_path / "label.json", b'[\n "ok",\n "\xe7\x96",\n "x"\n]')
    with pytest.raises(DataError, match=r"label\.json:line 3: not valid UTF-8"):
        load_corpus(p)


def test_empty_files(tmp_path: Path) -> None:
    for name in ("empty.jsonl", "empty.json", "empty.csv", "empty.tsv"):
        p = _write(tmp_path / name, "\n  \n")
        loader = load_corpus if name.endswith(".csv") else load_queries
        with pytest.raises(DataError) as e:
            loader(p)
        assert str(e.value) == f"{p}: file is empty"


def test_malformed_json_list_names_line(tmp_path: Path) -> None:
    p = _write(tmp_path / "label.json", '[\n "a",\n "b"\n "c"\n]')
    with pytest.raises(DataError, match=r"label\.json:line 4: malformed JSON"):
        load_corpus(p)


def test_everything_skipped_is_still_an_error(tmp_path: Path) -> None:
    p = _write(tmp_path / "q.jsonl", '{"query": "a", "pos": ["x"]}\n')
    q2 = _write(tmp_path / "q2.jsonl", '{"query": "a", "pos": 1}\n')
    assert len(load_queries(p)) == 1
    with pytest.raises(DataError, match="no usable records"):
        load_queries(q2, skip_bad=True)


# -- query formats ---------------------------------------------------------------------------
def test_test_jsonl_gold_and_line_number_qids(tmp_path: Path) -> None:
    p = _jsonl(tmp_path / "test.jsonl", [
        {"query": "我妈妈有甲状腺乳头状癌", "pos": ["甲状腺癌"]},
        {"query": "子宫肌瘤有限制么", "pos": "子宫肌瘤"},  # single string, as seed 004 has
        {"query": "两个", "pos": ["甲状腺结节", "甲状腺癌", "甲状腺结节"]},
    ])
    qs, report = load_queries_with_report(p, name="seed")
    assert qs.name == "seed"
    assert [q.qid for q in qs] == ["1", "2", "3"]
    assert qs.queries[1].gold == {"子宫肌瘤": 1.0}
    assert qs.queries[2].relevant == ["甲状腺结节", "甲状腺癌"]
    assert report.format == "test JSONL {query, pos}"
    assert report.notes == {"'pos' given as a single string": 1}


def test_explicit_qids_and_duplicates(tmp_path: Path) -> None:
    p = _jsonl(tmp_path / "q.jsonl", [{"qid": "x1", "query": "a", "pos": ["d"]},
                                      {"qid": "x1", "query": "b", "pos": ["e"]}])
    with pytest.raises(DataError, match=r"q\.jsonl:line 2: duplicate query id 'x1'"):
        load_queries(p)


def test_train_jsonl_uses_pos_only(shared_data: Path) -> None:
    qs, report = load_queries_with_report(
        shared_data / "flagembedding-toy/old-examples/finetune/toy_finetune_data.jsonl")
    assert len(qs) == 10
    assert report.format == "train JSONL {query, pos, neg}"
    assert all(len(q.gold) == 1 for q in qs)
    assert qs.queries[0].relevant == [
        "Some women with flip-flops on, are walking along the beach"]


def test_t2reranking_and_flagembedding_eval(tmp_path: Path, shared_data: Path) -> None:
    p = _jsonl(tmp_path / "t2.jsonl", [{"query": "q", "positive": ["p1", "p2"],
                                        "negative": ["n1"]}])
    qs, report = load_queries_with_report(p)
    assert report.format.startswith("T2Reranking")
    assert qs.queries[0].gold == {"p1": 1.0, "p2": 1.0}
    toy = load_queries(shared_data / "flagembedding-toy/old-examples/finetune/"
                       "toy_evaluation_data/toy_query.json")
    assert [q.text for q in toy] == ["What is A?", "What is B?", "What is C?"]
    assert toy.queries[0].relevant == ["A is ...", "... is A"]


def test_unknown_query_format(tmp_path: Path) -> None:
    p = _jsonl(tmp_path / "q.jsonl", [{"query": "a", "answers": ["x"]}])
    with pytest.raises(DataError, match=r"q\.jsonl:line 1: cannot tell the query format"):
        load_queries(p)


def test_graded_tsv_grouped_with_grades(tmp_path: Path) -> None:
    p = _write(tmp_path / "graded.tsv",
               "query\tdoc\tlabel\n"
               "q1\td1\t3\nq2\td9\t0\nq1\td2\t0\nq1\td3\t1\nq2\td8\t2\nq3\td1\t0\n")
    qs, report = load_queries_with_report(p, skip_bad=True)
    assert [(q.qid, q.text) for q in qs] == [("2", "q1"), ("3", "q2")]
    assert qs.queries[0].gold == {"d1": 3.0, "d2": 0.0, "d3": 1.0}
    assert qs.queries[0].relevant == ["d1", "d3"]
    assert report.notes == {"header line skipped": 1}
    assert (report.read, report.loaded, report.skipped) == (6, 5, {"no positive": 1})
    with pytest.raises(DataError, match=r"graded\.tsv:line 7: query has no row"):
        load_queries(p)


def test_tsv_bad_rows(tmp_path: Path) -> None:
    p = _write(tmp_path / "g.tsv", "q1\td1\t1\nq1\td2\n")
    with pytest.raises(DataError, match=r"g\.tsv:line 2: expected 3 tab-separated"):
        load_queries(p)
    p = _write(tmp_path / "h.tsv", "q1\td1\t1\nq1\td2\thigh\n")
    with pytest.raises(DataError, match=r"h\.tsv:line 2: grade 'high' is not a number"):
        load_queries(p)


def test_gold_not_in_corpus() -> None:
    from embedarena.data.types import Query, QuerySet

    corpus = Corpus.from_labels(["a", "b"])
    qs = QuerySet("q", [Query("1", "x", {"a": 1.0}), Query("2", "y", {"b": 1.0, "c": 1.0}),
                        Query("3", "z", {"a": 1.0, "zz": 0.0})])
    assert gold_not_in_corpus(corpus, qs) == {"2": ["c"]}


def test_sniff_kind(tmp_path: Path) -> None:
    assert sniff_kind(_jsonl(tmp_path / "q.jsonl", [{"query": "a", "pos": ["b"]}])) == "queries"
    assert sniff_kind(_jsonl(tmp_path / "c.jsonl", [{"text": "a"}])) == "corpus"
    assert sniff_kind(_write(tmp_path / "l.json", '["a"]')) == "corpus"
    assert sniff_kind(_write(tmp_path / "g.tsv", "q\td\t1\n")) == "queries"


# -- training data ---------------------------------------------------------------------------
def test_train_newer_example_data(shared_data: Path) -> None:
    ex = load_train(shared_data / "flagembedding-toy/examples/finetune/embedder/example_data/"
                                  "retrieval/msmarco.jsonl")
    assert len(ex) == 10
    first = ex[0]
    assert len(first.pos) == 1 and len(first.neg) == 25
    assert first.pos_scores is not None and len(first.pos_scores) == 1
    assert first.neg_scores is not None and len(first.neg_scores) == 25
    assert first.prompt and first.type == "normal"
    nli = load_train(shared_data / "flagembedding-toy/examples/finetune/embedder/example_data/"
                                   "retrieval/nli.jsonl")
    assert {e.type for e in nli} == {"only_1neg"}


def test_train_t2rank_collisions_removed_from_neg(shared_data: Path) -> None:
    ex, report = load_train_with_report(shared_data / "rag-retrieval-t2rank/t2rank_100.jsonl")
    assert len(ex) == 100
    assert all(not set(e.pos) & set(e.neg) for e in ex)
    assert report.notes["examples with a negative that is also a positive"] == 6
    hit = {e.query for e in ex if len(e.neg) < 15}
    assert {"鹰潭市景点排行榜", "盈利的盈组词", "硬了一天感觉好累"} <= hit
    assert len(hit) == 6


def test_train_scores_follow_removed_negatives(tmp_path: Path) -> None:
    p = _jsonl(tmp_path / "t.jsonl", [{"query": "q", "pos": ["a"], "neg": ["b", "a", "c"],
                                       "pos_scores": [9], "neg_scores": [1, 2, 3],
                                       "prompt": "Represent: "}])
    (e,) = load_train(p)
    assert e.neg == ["b", "c"] and e.neg_scores == [1.0, 3.0]
    assert e.to_dict() == {"query": "q", "pos": ["a"], "neg": ["b", "c"], "pos_scores": [9.0],
                           "neg_scores": [1.0, 3.0], "prompt": "Represent: "}


def test_train_errors(tmp_path: Path) -> None:
    p = _jsonl(tmp_path / "t.jsonl", [{"query": "q", "pos": ["a"], "neg": ["b"]},
                                      {"query": "q", "pos": ["a"], "pos_scores": [1, 2]},
                                      {"query": "q", "pos": ["a"], "neg": "n", "prompt": 3}])
    with pytest.raises(DataError, match=r"t\.jsonl:line 2: field 'pos_scores' has 2 scores"):
        load_train(p)
    ex, report = load_train_with_report(p, skip_bad=True)
    assert len(ex) == 1
    assert report.skipped == {"wrong type": 2}


def test_rag_retrieval_scores_alias(shared_data: Path) -> None:
    ex = load_train(shared_data / "rag-retrieval-t2rank/lmsft.jsonl")
    assert len(ex) == 2 and all(e.pos_scores is not None for e in ex)


# -- writers ---------------------------------------------------------------------------------
def test_writers_round_trip_utf8(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "train.jsonl"
    n = write_jsonl(out, [{"query": "甲状腺", "pos": ["甲状腺癌"], "neg": []},
                          TrainExample("q2", ["p"], ["n"], prompt="x")])
    assert n == 2
    raw = out.read_text(encoding="utf-8")
    assert "甲状腺" in raw and "\\u" not in raw
    assert json.loads(raw.splitlines()[1]) == {"query": "q2", "pos": ["p"], "neg": ["n"],
                                               "prompt": "x"}
    ex = load_train(out)
    assert ex[0].query == "甲状腺"
    write_labels(tmp_path / "label.json", ["甲状腺癌", "b"])
    assert "甲状腺癌" in (tmp_path / "label.json").read_text(encoding="utf-8")
    assert load_corpus(tmp_path / "label.json").ids == ["甲状腺癌", "b"]
    assert not list(tmp_path.glob("**/.*.tmp"))


# -- lone surrogates (issue 12, item 9) ------------------------------------------------------
SURROGATE_LINE = '{"_id": "2", "text": "bad \\ud83d x"}\n'  # JSON escape of half a pair


def test_lone_surrogate_is_refused_with_file_and_line(tmp_path: Path) -> None:
    """`"\\ud83d"` parses as JSON but no UTF-8 encoder takes it: Corpus.sha256, the cache and
    Elasticsearch all failed on it later. It is a bad record named by file and line."""
    from embedarena.data.readers import load_rerank_with_report

    p = _write(tmp_path / "c.jsonl", '{"_id": "1", "text": "ok \\ud83d\\ude00"}\n' + SURROGATE_LINE
               + '{"_id": "3", "text": "fine"}\n')
    with pytest.raises(DataError, match=r"c\.jsonl:line 2: not valid Unicode: .*\\ud83d"):
        load_corpus(p)
    corpus, report = load_corpus_with_report(p, skip_bad=True)
    assert corpus.ids == ["1", "3"] and corpus.texts[0] == "ok \U0001f600"  # a real pair is fine
    assert (report.read, report.loaded, report.skipped) == (3, 2, {"not valid Unicode": 1})
    corpus.sha256()  # the crash of the probe
    labels = _write(tmp_path / "label.json", '["a", "b\\udc00", "c"]')
    assert load_corpus(labels, skip_bad=True).ids == ["a", "c"]
    with pytest.raises(DataError, match=r"label\.json:item 2: not valid Unicode"):
        load_corpus(labels)
    # in a query, in a gold label, in a key, in training and reranking data
    for line in ('{"query": "q\\ud800", "pos": ["a"]}', '{"query": "q", "pos": ["a\\udfff"]}',
                 '{"query": "q", "pos": ["a"], "x\\ud83d": 1}'):
        q = _write(tmp_path / "q.jsonl", '{"query": "ok", "pos": ["a"]}\n' + line + "\n")
        with pytest.raises(DataError, match=r"q\.jsonl:line 2: not valid Unicode"):
            load_queries(q)
    t = _write(tmp_path / "t.jsonl", '{"query": "q", "pos": ["a"], "neg": ["\\ud83d"]}\n'
               '{"query": "q", "pos": ["a"], "neg": ["b"]}\n')
    examples, report = load_train_with_report(t, skip_bad=True)
    assert len(examples) == 1 and report.skipped == {"not valid Unicode": 1}
    r = _write(tmp_path / "r.jsonl", '{"query": "q", "positive": ["a"], "negative": ["b"]}\n'
               '{"query": "q2", "positive": ["\\ud83d"], "negative": ["b"]}\n')
    rerank, report = load_rerank_with_report(r, skip_bad=True)
    assert len(rerank) == 1 and report.skipped == {"not valid Unicode": 1}
