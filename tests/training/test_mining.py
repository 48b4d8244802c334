"""Mining: never a gold label (across rows of the same query), inside the range, counts kept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from embedarena.data.readers import TrainExample, load_train
from embedarena.errors import ConfigError
from embedarena.indexer.bm25 import LocalBM25
from embedarena.training.mining import (
    MineConfig,
    dense_search,
    mine,
    mine_file,
    parse_range,
)
from tests.training.conftest import write_jsonl

LABELS = ["甲状腺结节", "甲状腺癌", "胆管炎", "胰腺囊肿", "宫颈上皮内瘤变", "高血压", "糖尿病",
          "肝硬化", "乳头状癌", "子宫肌瘤", "甲状腺功能亢进", "甲状腺炎"]


def _label_rows() -> list[TrainExample]:
    """Seed-004 shape: one row per (question, label), so a question appears in several rows."""
    q1 = "甲状腺结节和甲状腺癌能买保险吗"
    q2 = "高血压糖尿病患者投保"
    return [
        TrainExample(q1, ["甲状腺结节"], ["胆管炎"]),
        TrainExample(q1, ["甲状腺癌"], ["胰腺囊肿"]),
        TrainExample(q2, ["高血压"], []),
        TrainExample(q2, ["糖尿病"], ["肝硬化"]),
    ]


def test_parse_range() -> None:
    assert parse_range("10-210") == (10, 210)
    assert parse_range([0, 5]) == (0, 5)
    for bad in ("5-5", "a-b", "7"):
        with pytest.raises(ConfigError):
            parse_range(bad)


def test_bm25_never_mines_any_gold_label_of_the_query() -> None:
    rows = _label_rows()
    out, stats = mine(rows, MineConfig(model="bm25", range_for_sampling=(0, 50),
                                       negative_number=50), pool=LABELS)
    assert len(out) == len(rows) == stats.rows
    gold = {"甲状腺结节和甲状腺癌能买保险吗": {"甲状腺结节", "甲状腺癌"},
            "高血压糖尿病患者投保": {"高血压", "糖尿病"}}
    for ex, src in zip(out, rows):
        assert ex.query == src.query and ex.pos == src.pos
        assert not set(ex.neg) & gold[ex.query], ex
        assert len(set(ex.neg)) == len(ex.neg)
    # The other row's label is the one hn_mine would have emitted: it was seen and dropped.
    assert stats.dropped_gold_other_rows >= 2
    assert stats.dropped_own_pos >= 2
    assert stats.negatives_written == sum(len(e.neg) for e in out)


def test_negatives_come_from_the_sampling_range() -> None:
    rows = _label_rows()
    a, b = 2, 6
    out, _ = mine(rows, MineConfig(model="bm25", range_for_sampling=(a, b),
                                   negative_number=10), pool=LABELS)
    bm = LocalBM25(LABELS)  # what `bm25` (the standard chain) mines with
    for ex in out:
        window = {LABELS[i] for i, _ in bm.search(ex.query, b)[a:b]}
        assert set(ex.neg) <= window
    # BM25 ranks only labels sharing a character with the query: the first question's
    # window (ranks 2-5) holds non-gold thyroid labels, which must be mined.
    assert out[0].neg


@pytest.mark.parametrize("model", ["bm25", "bm25:bigram", {"type": "bm25", "chain": "jieba"}])
def test_bm25_mines_with_the_rows_chain(model: object) -> None:
    """`bm25:<chain>` ranks in process with that chain's terms and the ES row's scoring."""
    if "jieba" in str(model):
        pytest.importorskip("jieba")
    chain = {"bm25": "standard", "bm25:bigram": "bigram"}.get(str(model), "jieba")
    rows = _label_rows()
    a, b = 0, 6
    out, stats = mine(rows, MineConfig(model=model, range_for_sampling=(a, b),
                                       negative_number=10), pool=LABELS)
    assert f"chain {chain}" in stats.backend
    bm = LocalBM25(LABELS, chain)
    for ex in out:
        window = [LABELS[i] for i, _ in bm.search(ex.query, b)[a:b]]
        gold = {p for r in rows if r.query == ex.query for p in r.pos}
        assert sorted(ex.neg) == sorted(t for t in window if t not in gold)


def test_bm25_in_process_refuses_a_chain_only_es_can_analyse() -> None:
    with pytest.raises(ConfigError, match="'cjk-bigram' has no in-process tokenizer"):
        mine(_label_rows(), MineConfig(model="bm25:cjk-bigram", range_for_sampling=(0, 5),
                                       negative_number=2), pool=LABELS)


def test_negative_number_and_seed() -> None:
    rows = _label_rows()
    cfg = MineConfig(model="bm25", range_for_sampling=(0, 12), negative_number=2, seed=7)
    first, stats = mine(rows, cfg, pool=LABELS)
    again, _ = mine(rows, cfg, pool=LABELS)
    assert [e.neg for e in first] == [e.neg for e in again]
    assert all(len(e.neg) <= 2 for e in first)
    assert stats.rows_with_too_few == sum(len(e.neg) < 2 for e in first)


def test_margin_drops_candidates_scoring_near_the_positive() -> None:
    rows = [TrainExample("甲状腺结节", ["甲状腺结节"], [])]
    pool = ["甲状腺结节", "甲状腺结节病", "高血压", "糖尿病", "肝硬化"]
    plain, _ = mine(rows, MineConfig(model="bm25", range_for_sampling=(0, 5),
                                     negative_number=5), pool=pool)
    assert "甲状腺结节病" in plain[0].neg
    bm = LocalBM25(pool)
    gap = bm.score("甲状腺结节", "甲状腺结节") - bm.score("甲状腺结节", "甲状腺结节病")
    assert gap > 0
    strict, stats = mine(rows, MineConfig(model="bm25", range_for_sampling=(0, 5),
                                          negative_number=5, margin=gap + 0.01), pool=pool)
    assert "甲状腺结节病" not in strict[0].neg
    assert stats.dropped_margin >= 1


def test_dense_mining_with_a_tiny_encoder(tiny_encoder: Path) -> None:
    rows = _label_rows()
    cfg = MineConfig(model={"type": "hf", "path": str(tiny_encoder), "progress": False},
                     range_for_sampling=(0, 8), negative_number=4, cache=False,
                     use_gpu=False)
    out, stats = mine(rows, cfg, pool=LABELS)
    assert stats.backend.startswith("tiny (")
    for ex in out:
        assert len(ex.neg) == 4
        assert not set(ex.neg) & {p for r in rows if r.query == ex.query for p in r.pos}


def test_faiss_and_torch_search_agree() -> None:
    np = pytest.importorskip("numpy")
    pytest.importorskip("faiss")
    rng = np.random.default_rng(0)
    docs = rng.normal(size=(50, 8)).astype("float32")
    qs = rng.normal(size=(5, 8)).astype("float32")
    s1, i1, w1 = dense_search(qs, docs, 10, "faiss", use_gpu=False)
    s2, i2, w2 = dense_search(qs, docs, 10, "torch", use_gpu=False)
    assert w1 == "faiss-cpu" and w2 == "torch-cpu"
    assert (i1 == i2).all() and np.allclose(s1, s2, atol=1e-5)


def test_mine_file_on_flagembedding_toy_data(shared_data: Path, tmp_path: Path) -> None:
    src = shared_data / "flagembedding-toy/old-examples/finetune/toy_finetune_data.jsonl"
    pool = write_jsonl(tmp_path / "pool.jsonl",
                       [{"text": t} for r in load_train(src) for t in (*r.pos, *r.neg)])
    out_path = tmp_path / "mined.jsonl"
    stats = mine_file(src, out_path, MineConfig(model="bm25", range_for_sampling=(2, 40),
                                                negative_number=5,
                                                candidate_pool=str(pool)))
    lines = out_path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == stats.rows == 10
    for line, ex in zip(lines, load_train(src)):
        rec = json.loads(line)
        assert set(rec) == {"query", "pos", "neg"}
        assert rec["query"] == ex.query and rec["pos"] == ex.pos
        assert not set(rec["neg"]) & set(ex.pos)
        assert len(rec["neg"]) <= 5


def test_t2rank_mining_drops_the_pos_neg_collisions(shared_data: Path) -> None:
    rows = load_train(shared_data / "rag-retrieval-t2rank/t2rank_100.small.jsonl")
    out, stats = mine(rows, MineConfig(model="bm25", range_for_sampling=(0, 60),
                                       negative_number=15))
    gold: dict[str, set[str]] = {}
    for r in rows:
        gold.setdefault(r.query, set()).update(r.pos)
    assert len(out) == len(rows)
    assert all(not set(e.neg) & gold[e.query] for e in out)
    assert stats.negatives_written == sum(len(e.neg) for e in out)


@pytest.mark.es
@pytest.mark.parametrize("dense", [False, True])
def test_mining_against_elasticsearch(es_node, es_prefix: str, tiny_encoder: Path,  # noqa: ANN001
                                      monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                      dense: bool) -> None:
    for k, v in {**es_node.env, "EMBEDARENA_HOME": str(tmp_path / "home")}.items():
        monkeypatch.setenv(k, v)
    model: object = {"name": "tiny", "type": "hf", "path": str(tiny_encoder),
                     "progress": False} if dense else "bm25"
    rows = _label_rows()
    cfg = MineConfig(model=model, range_for_sampling=(0, 12), negative_number=12,
                     backend="es", index_prefix=es_prefix)
    from embedarena.arena import es_mining_search

    with pytest.raises(ConfigError, match="arena.mine_file"):
        mine(rows, cfg, pool=LABELS)  # an index search comes from the arena, never implied
    out, stats = mine(rows, cfg, pool=LABELS, search=es_mining_search(cfg))
    assert "Elasticsearch" in stats.backend
    for ex in out:
        gold = {p for r in rows if r.query == ex.query for p in r.pos}
        assert not set(ex.neg) & gold
    if not dense:  # one tokenizer and one BM25: in process mines what the index mines
        local, lstats = mine(rows, MineConfig(model=model, range_for_sampling=(0, 12),
                                              negative_number=12, backend="auto"), pool=LABELS)
        assert "in process" in lstats.backend
        assert [sorted(e.neg) for e in local] == [sorted(e.neg) for e in out]
    if dense:  # knn fills the depth: every non-gold label comes back
        assert all(len(ex.neg) == len(LABELS) - 2 for ex in out)
        inproc, _ = mine(rows, MineConfig(model=model, range_for_sampling=(0, 12),
                                          negative_number=12, backend="torch", use_gpu=False,
                                          cache=False), pool=LABELS)
        assert [sorted(e.neg) for e in inproc] == [sorted(e.neg) for e in out]
