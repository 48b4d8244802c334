"""CachedEmbedder: only misses reach the model, in one call; keyed by fingerprint and side."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from embedarena.embedders.base import Embedder, EmbedderBase
from embedarena.embedders.cache import CachedEmbedder
from embedarena.errors import EmbedderError


class Counting(EmbedderBase):
    """Deterministic fake: vector from a hash of (side, text); counts calls and texts."""

    def __init__(self, fp: str = "fake:v1", dim: int = 6) -> None:
        self.name = "counting"
        self._fp, self._dim = fp, dim
        self.calls: list[tuple[str, list[str]]] = []

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def fingerprint(self) -> str:
        return self._fp

    @property
    def normalized(self) -> bool:
        return True

    @property
    def texts_embedded(self) -> int:
        return sum(len(t) for _, t in self.calls)

    def vec(self, side: str, text: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.sha256(f"{self._fp}|{side}|{text}".encode()).digest()[:8],
                              "little")
        return np.random.default_rng(seed).standard_normal(self._dim).astype(np.float32)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(("query", list(texts)))
        return np.stack([self.vec("query", t) for t in texts])

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(("document", list(texts)))
        return np.stack([self.vec("document", t) for t in texts])


DOCS = ["甲状腺结节", "胆管炎", "胰腺囊肿", "宫颈上皮内瘤变", "甲状腺癌"]


def test_second_pass_never_calls_the_model(tmp_path: Path) -> None:
    inner = Counting()
    cached = CachedEmbedder(inner, tmp_path)
    assert isinstance(cached, Embedder)
    first = cached.embed_documents(DOCS)
    assert inner.calls == [("document", DOCS)]  # one batched call
    again = CachedEmbedder(inner, tmp_path).embed_documents(DOCS)  # fresh instance: on disk
    assert len(inner.calls) == 1
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(first, np.stack([inner.vec("document", t) for t in DOCS]))
    assert again.dtype == np.float32 and again.shape == (5, 6)


def test_only_misses_reach_the_model_and_order_is_kept(tmp_path: Path) -> None:
    inner = Counting()
    cached = CachedEmbedder(inner, tmp_path)
    cached.embed_documents(DOCS[:3])
    mixed = ["新的", DOCS[2], "另一个", DOCS[0], "新的"]
    out = cached.embed_documents(mixed)
    assert inner.calls[-1] == ("document", ["新的", "另一个"])  # misses only, deduplicated
    np.testing.assert_array_equal(out, np.stack([inner.vec("document", t) for t in mixed]))
    # hits: served from disk; misses: texts computed (the repeated "新的" only once)
    assert cached.stats == {"hits": 2, "misses": 3 + 2, "inner_calls": 2}
    assert (cached.hits, cached.misses) == (2, 5)


def test_query_and_document_sides_are_separate(tmp_path: Path) -> None:
    inner = Counting()
    cached = CachedEmbedder(inner, tmp_path)
    d = cached.embed_documents(["x"])
    q = cached.embed_queries(["x"])
    assert [side for side, _ in inner.calls] == ["document", "query"]
    assert not np.allclose(d, q)
    cached.embed_queries(["x"])
    cached.embed_documents(["x"])
    assert len(inner.calls) == 2


def test_changed_fingerprint_misses(tmp_path: Path) -> None:
    CachedEmbedder(Counting("fake:v1"), tmp_path).embed_documents(DOCS)
    retrained = Counting("fake:v2")
    out = CachedEmbedder(retrained, tmp_path).embed_documents(DOCS)
    assert retrained.texts_embedded == len(DOCS)
    np.testing.assert_array_equal(out, np.stack([retrained.vec("document", t) for t in DOCS]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fake-v1", "fake-v2"]


def test_delegates_protocol_and_extras(tmp_path: Path) -> None:
    inner = Counting()
    cached = CachedEmbedder(inner, tmp_path)
    assert (cached.name, cached.dim, cached.fingerprint) == ("counting", 6, "fake:v1")
    assert cached.normalized and cached.similarity == "dot_product"
    assert cached.texts_embedded == 0  # adapter extras reachable through the wrapper
    assert cached.embed_documents([]).shape == (0, 6) and inner.calls == []
    assert cached.db_path == tmp_path / "fake-v1" / "vectors.sqlite"


def test_default_location_is_the_embeddings_cache_dir(tmp_path: Path) -> None:
    from embedarena.paths import cache_dir

    cached = CachedEmbedder(Counting())
    cached.embed_documents(["a"])
    assert cached.db_path.parent.parent == cache_dir("embeddings")
    assert cached.db_path.is_file()


def test_foreign_blob_is_a_miss_not_garbage(tmp_path: Path) -> None:
    inner = Counting()
    cached = CachedEmbedder(inner, tmp_path)
    cached.embed_documents(["a"])
    with sqlite3.connect(cached.db_path) as con:
        con.execute("UPDATE vectors SET vec = ?", (b"\0" * 8,))
    out = cached.embed_documents(["a"])
    assert len(inner.calls) == 2
    np.testing.assert_array_equal(out[0], inner.vec("document", "a"))


def test_wrong_shape_from_inner_is_refused(tmp_path: Path) -> None:
    class Broken(Counting):
        def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
            return np.zeros((len(texts), 3), dtype=np.float32)

    with pytest.raises(EmbedderError, match=r"shape \(2, 3\)"):
        CachedEmbedder(Broken(), tmp_path).embed_documents(["a", "b"])


def test_concurrent_readers_and_writers(tmp_path: Path) -> None:
    """Threads with their own wrappers (as separate processes would have) share one file."""
    words = [f"text {i}" for i in range(200)]
    CachedEmbedder(Counting(), tmp_path).embed_documents(words[:100])
    errors: list[BaseException] = []
    results: dict[int, np.ndarray] = {}

    def work(k: int) -> None:
        try:
            chunk = words[(k * 37) % 150:(k * 37) % 150 + 50]
            for _ in range(5):
                results[k] = CachedEmbedder(Counting(), tmp_path).embed_documents(chunk)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    ref = Counting()
    for k, arr in results.items():
        chunk = words[(k * 37) % 150:(k * 37) % 150 + 50]
        np.testing.assert_array_equal(arr, np.stack([ref.vec("document", t) for t in chunk]))


def test_wraps_a_real_hf_embedder(tiny_bert_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from embedarena.embedders.hf import HFEmbedder

    inner = HFEmbedder(tiny_bert_dir, query_instruction_for_retrieval="q: ")
    cached = CachedEmbedder(inner, tmp_path)
    q1 = cached.embed_queries(DOCS)
    runs = inner.batches_run
    q2 = cached.embed_queries(DOCS)
    assert inner.batches_run == runs
    np.testing.assert_array_equal(q1, q2)
    np.testing.assert_allclose(q1, inner.embed_queries(DOCS), atol=1e-6)
    np.testing.assert_allclose(cached.embed_documents(DOCS), inner.embed_documents(DOCS),
                               atol=1e-6)


# -- integrity of stored blobs (issue 12, item 7) ---------------------------------------------
def _blobs(path: Path) -> dict[bytes, bytes]:
    with sqlite3.connect(path) as con:
        return {bytes(sha): bytes(vec) for sha, vec in con.execute("SELECT sha, vec FROM vectors")}


def _set_blob(path: Path, sha: bytes, blob: bytes) -> None:
    with sqlite3.connect(path) as con:
        con.execute("UPDATE vectors SET vec = ? WHERE sha = ?", (blob, sha))


def test_blobs_are_sealed_with_a_checksum(tmp_path: Path) -> None:
    cached = CachedEmbedder(Counting(), tmp_path)
    cached.embed_documents(["a"])
    (blob,) = _blobs(cached.db_path).values()
    assert len(blob) == 4 * 6 + 8


def test_a_flipped_byte_is_a_miss_with_a_warning_naming_the_file(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    inner = Counting()
    cached = CachedEmbedder(inner, tmp_path)
    cached.embed_documents(DOCS)
    sha, blob = next(iter(_blobs(cached.db_path).items()))
    flipped = bytearray(blob)
    flipped[5] ^= 0x10  # one bit of one float: a silent metric drop without the check
    _set_blob(cached.db_path, sha, bytes(flipped))
    caplog.set_level("WARNING")
    again = CachedEmbedder(inner, tmp_path)
    out = again.embed_documents(DOCS)
    np.testing.assert_array_equal(out, np.stack([inner.vec("document", t) for t in DOCS]))
    assert inner.calls[-1][1] in ([t] for t in DOCS)  # only the bad one recomputed
    assert again.stats == {"hits": 4, "misses": 1, "inner_calls": 1, "bad": 1}
    (rec,) = [r for r in caplog.records if r.name == "embedarena.embedders.cache"]
    assert str(cached.db_path) in rec.getMessage() and "1 stored vector failed" in \
        rec.getMessage()
    # the bad blob was rewritten: the next reader finds all five intact
    third = CachedEmbedder(inner, tmp_path)
    third.embed_documents(DOCS)
    assert third.stats == {"hits": 5, "misses": 0, "inner_calls": 0}


def test_nan_and_moved_blobs_are_misses(tmp_path: Path) -> None:
    from embedarena.embedders.cache import _seal, _text_key

    inner = Counting()
    cached = CachedEmbedder(inner, tmp_path)
    cached.embed_documents(["a", "b"])
    nan = np.full(6, np.nan, dtype="<f4").tobytes()
    _set_blob(cached.db_path, _text_key("a"), _seal("document", _text_key("a"), nan))
    blobs = _blobs(cached.db_path)
    _set_blob(cached.db_path, _text_key("b"), blobs[_text_key("a")])  # a's blob under b's key
    again = CachedEmbedder(inner, tmp_path)
    out = again.embed_documents(["a", "b"])
    assert np.isfinite(out).all() and again.stats["bad"] == 2
    np.testing.assert_array_equal(out, np.stack([inner.vec("document", t) for t in "ab"]))


def test_blobs_from_before_checksums_are_checked_for_finiteness_and_norm(
        tmp_path: Path) -> None:
    from embedarena.embedders.cache import _text_key

    class Unit(Counting):
        def vec(self, side: str, text: str) -> np.ndarray:
            v = super().vec(side, text)
            return (v / np.linalg.norm(v)).astype(np.float32)

    inner = Unit()
    cached = CachedEmbedder(inner, tmp_path)
    cached.embed_documents(["a", "b", "c"])
    good = inner.vec("document", "a").astype("<f4").tobytes()  # an old, unsealed blob
    _set_blob(cached.db_path, _text_key("a"), good)
    _set_blob(cached.db_path, _text_key("b"), (inner.vec("document", "b") * 3).tobytes())
    _set_blob(cached.db_path, _text_key("c"), np.full(6, np.inf, "<f4").tobytes())
    again = CachedEmbedder(inner, tmp_path)
    out = again.embed_documents(["a", "b", "c"])
    assert again.stats == {"hits": 1, "misses": 2, "inner_calls": 1, "bad": 2}
    np.testing.assert_allclose(out, np.stack([inner.vec("document", t) for t in "abc"]),
                               atol=1e-7)


def test_reranker_scores_are_checked_too(tmp_path: Path) -> None:
    from embedarena.embedders.cache import CachedReranker

    class Scorer:
        name, fingerprint, normalize = "rr", "rr:v1", None
        calls = 0

        def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
            Scorer.calls += 1
            return np.arange(len(pairs), dtype=np.float32) + 0.5

    rr = CachedReranker(Scorer(), tmp_path)
    rr.score_pairs([("q", "d1"), ("q", "d2")])
    with sqlite3.connect(rr.db_path) as con:
        con.execute("UPDATE vectors SET vec = ?",
                    (np.float32(99).tobytes() + b"\0" * 8,))
    again = CachedReranker(Scorer(), tmp_path)
    np.testing.assert_array_equal(again.score_pairs([("q", "d1"), ("q", "d2")]), [0.5, 1.5])
    assert again.stats["bad"] == 2
