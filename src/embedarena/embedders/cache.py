"""`CachedEmbedder` and `CachedReranker`: re-runs and index rebuilds never re-embed unchanged
text, and two-stage rows never re-score an unchanged (query, document) pair.

Keyed by (embedder fingerprint, side, sha256(text)): the fingerprint covers weights and every
setting that shapes the vectors, and the side (query/document) matters because a query
instruction is applied to queries only. Layout::

    <cache_dir("embeddings")>/<fingerprint with ':' as '-'>/vectors.sqlite

One SQLite file per fingerprint, table `vectors(side, sha, vec)`: each blob is the vector as
little-endian float32 followed by an 8-byte BLAKE2b checksum over (side, sha, vector bytes).
Every blob is checked on read: one that fails its checksum (flipped bits, a blob moved to
another key), holds NaN/inf, or has the wrong length is a miss, recomputed and rewritten, with
a warning naming the cache file; it is never handed on. Blobs written before checksums
(exactly 4 x dim bytes) are accepted when finite and, for a normalised model, of unit length.

Why SQLite: it is in the standard library, a lookup of thousands of keys is one indexed
query, writes are transactions (a crash never leaves a half-written vector), and in WAL mode
any number of readers work alongside one writer, across processes (two `embedarena run`s
sharing a cache are fine; a `busy_timeout` makes a second writer wait rather than fail). One
file per fingerprint means deleting a model's cache is deleting a folder. Misses of one call
are written in one transaction. Reranker scores use the same store (side `pair`, a one-float
vector per sha256 of query and document) under `cache_dir("rerank")`.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
from collections.abc import Callable, Sequence
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embedarena.embedders.base import Embedder, Similarity, check_output
from embedarena.embedders.reranker import ComputeScore
from embedarena.errors import EmbedderError

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

_SQL_VARS = 500  # keys per SELECT ... IN (...) (SQLite's variable limit is 999 on old builds)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS vectors (
    side TEXT NOT NULL,
    sha BLOB NOT NULL,
    vec BLOB NOT NULL,
    PRIMARY KEY (side, sha)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def _text_key(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


_CHECK_BYTES = 8


def _checksum(side: str, sha: bytes, vec: bytes) -> bytes:
    """8 bytes of BLAKE2b over the key and the vector: a flipped bit, a truncated blob or a
    blob copied under another key all fail it."""
    h = hashlib.blake2b(digest_size=_CHECK_BYTES)
    for part in (side.encode(), sha, vec):
        h.update(len(part).to_bytes(4, "little"))
        h.update(part)
    return h.digest()


def _seal(side: str, sha: bytes, vec: bytes) -> bytes:
    return vec + _checksum(side, sha, vec)


class VectorStore:
    """One SQLite file of fixed-length float32 vectors keyed by (side, sha); the only place
    that talks to SQLite, so its errors are mapped once."""

    def __init__(self, path: Path, label: str, unit_norm: bool = False) -> None:
        self.path = path
        self.label = label
        #: Vectors of a normalised model: an unsealed (old) blob must have length ~1 (or 0).
        self.unit_norm = unit_norm
        #: Stored blobs found bad (and recomputed) by this store's reads.
        self.bad = 0

    def _connect(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            con = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=NORMAL")
            con.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as e:
            raise EmbedderError(f"{self.label} cache {self.path}: {e}") from None
        return con

    def fetch(self, side: str, keys: list[bytes], dim: int,
              compute: Callable[[list[int]], np.ndarray], name: str
              ) -> tuple[np.ndarray, int, int]:
        """Vectors for `keys` (positions in a call): stored ones read, the rest computed by
        `compute(first positions of the missing keys)` and stored. Returns (vectors, hits,
        computed)."""
        import numpy as np

        out = np.empty((len(keys), dim), dtype=np.float32)
        if not keys:
            return out, 0, 0
        with closing(self._connect()) as con:
            found = self._lookup(con, side, keys, dim)
            missing: dict[bytes, list[int]] = {}
            for i, k in enumerate(keys):
                vec = found.get(k)
                if vec is None:
                    missing.setdefault(k, []).append(i)
                else:
                    out[i] = vec
            hits = len(keys) - sum(len(v) for v in missing.values())
            if not missing:
                return out, hits, 0
            vecs = compute([idx[0] for idx in missing.values()])
            for idx, vec in zip(missing.values(), vecs):
                out[idx] = vec
            self._store(con, side, list(missing), vecs, name)
        return out, hits, len(missing)

    def _lookup(self, con: sqlite3.Connection, side: str, keys: list[bytes],
                dim: int) -> dict[bytes, np.ndarray]:
        found: dict[bytes, np.ndarray] = {}
        unique = list(dict.fromkeys(keys))
        bad = 0
        try:
            for start in range(0, len(unique), _SQL_VARS):
                chunk = unique[start:start + _SQL_VARS]
                q = (f"SELECT sha, vec FROM vectors WHERE side = ? AND sha IN "
                     f"({','.join('?' * len(chunk))})")
                for sha, blob in con.execute(q, (side, *chunk)):
                    vec = self._verified(side, bytes(sha), bytes(blob), dim)
                    if vec is None:
                        bad += 1
                    else:
                        found[bytes(sha)] = vec
        except sqlite3.Error as e:
            raise EmbedderError(f"{self.label} cache {self.path}: {e}") from None
        if bad:
            self.bad += bad
            log.warning("%s cache %s: %d stored vector%s failed the integrity check (checksum, "
                        "NaN/inf or length); recomputing %s", self.label, self.path, bad,
                        "" if bad == 1 else "s", "it" if bad == 1 else "them")
        return found

    def _verified(self, side: str, sha: bytes, blob: bytes, dim: int) -> np.ndarray | None:
        """The vector in `blob` if it is intact, else None (a miss)."""
        import numpy as np

        if len(blob) == 4 * dim + _CHECK_BYTES:
            raw, check = blob[:-_CHECK_BYTES], blob[-_CHECK_BYTES:]
            if _checksum(side, sha, raw) != check:
                return None
            vec = np.frombuffer(raw, dtype="<f4")
            return vec if np.isfinite(vec).all() else None
        if len(blob) != 4 * dim:  # another model's vector, or a cut blob
            return None
        vec = np.frombuffer(blob, dtype="<f4")  # written before checksums: check what we can
        if not np.isfinite(vec).all():
            return None
        if self.unit_norm:
            norm = float(np.linalg.norm(vec))
            if abs(norm - 1.0) > 1e-3 and norm > 1e-6:
                return None
        return vec

    def _store(self, con: sqlite3.Connection, side: str, keys: list[bytes],
               vecs: np.ndarray, name: str) -> None:
        rows = [(side, k, _seal(side, k, v.astype("<f4").tobytes())) for k, v in zip(keys, vecs)]
        try:
            con.execute("BEGIN IMMEDIATE")
            con.executemany("INSERT OR REPLACE INTO vectors (side, sha, vec) VALUES (?, ?, ?)",
                            rows)
            con.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('model', ?), "
                        "('dim', ?)", (name, str(vecs.shape[1])))
            con.execute("COMMIT")
        except sqlite3.Error as e:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise EmbedderError(f"{self.label} cache {self.path}: cannot write: {e}") from None


def _db_path(root: Path, fingerprint: str) -> Path:
    return root / fingerprint.replace(":", "-").replace("/", "_") / "vectors.sqlite"


class _CacheWrapper:
    """What the two caches share: the wrapped model, the counters behind `stats`, the sqlite
    file for the model's fingerprint, and attribute pass-through to the model."""

    _kind = "embeddings"

    def __init__(self, inner: Any, cache_dir: str | Path | None = None) -> None:
        self.inner = inner
        self.name = inner.name
        if cache_dir is None:
            from embedarena.paths import cache_dir as default_cache_dir

            cache_dir = default_cache_dir(self._kind)
        self.root = Path(cache_dir)
        self.hits = 0
        self.misses = 0
        self.inner_calls = 0
        self.bad = 0  # stored entries that failed the integrity check (recomputed)

    @property
    def fingerprint(self) -> str:
        return str(self.inner.fingerprint)

    @property
    def stats(self) -> dict[str, int]:
        out = {"hits": self.hits, "misses": self.misses, "inner_calls": self.inner_calls}
        if self.bad:
            out["bad"] = self.bad
        return out

    @property
    def db_path(self) -> Path:
        return _db_path(self.root, self.fingerprint)

    def __getattr__(self, item: str) -> Any:
        # Adapter-specific extras (settings(), model_dir, ...) stay reachable through the cache.
        if item == "inner":
            raise AttributeError(item)
        return getattr(self.inner, item)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.inner!r}, root={str(self.root)!r})"


class CachedEmbedder(_CacheWrapper):
    """Wraps any `Embedder`; only texts not in the cache reach it, in one batched call per
    `embed_*` call. Duplicates within a call are embedded once.

    `hits` counts texts served from the cache, `misses` texts sent to the model (a text
    repeated within one call is sent, and counted, once); for run metadata ("re-used N cached
    embeddings"). `stats` has both plus the number of calls that reached the model.
    """

    def __init__(self, inner: Embedder, cache_dir: str | Path | None = None) -> None:
        super().__init__(inner, cache_dir)
        self.inner: Embedder = inner

    # -- protocol (delegated) ------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self.inner.dim

    @property
    def normalized(self) -> bool:
        return bool(getattr(self.inner, "normalized", False))

    @property
    def similarity(self) -> Similarity:
        sim = getattr(self.inner, "similarity", None)
        if sim in ("cosine", "dot_product"):
            return sim
        return "dot_product" if self.normalized else "cosine"

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed(list(texts), "query")

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed(list(texts), "document")

    # -- work ----------------------------------------------------------------------------------
    def _embed(self, texts: list[str], side: str) -> np.ndarray:
        dim = self.dim
        fn = self.inner.embed_queries if side == "query" else self.inner.embed_documents

        def compute(first: list[int]) -> np.ndarray:
            self.inner_calls += 1
            todo = [texts[i] for i in first]
            return check_output(fn(todo), len(todo), dim, self.name)

        store = VectorStore(self.db_path, "embedding", unit_norm=self.normalized)
        out, hits, computed = store.fetch(side, [_text_key(t) for t in texts], dim, compute,
                                          self.name)
        self.hits += hits
        self.misses += computed
        self.bad += store.bad
        return out


class CachedReranker(_CacheWrapper, ComputeScore):
    """Wraps any `Reranker`; only pairs not in the cache reach it (one call per
    `score_pairs` call). Stats as for `CachedEmbedder`."""

    _kind = "rerank"

    @property
    def normalize(self) -> Any:
        return self.inner.normalize

    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        import numpy as np

        pairs = list(pairs)

        def compute(first: list[int]) -> np.ndarray:
            self.inner_calls += 1
            scores = np.asarray(self.inner.score_pairs([pairs[i] for i in first]),
                                dtype=np.float32)
            if scores.shape != (len(first),) or not np.isfinite(scores).all():
                raise EmbedderError(f"reranker '{self.name}' returned {scores.shape} scores "
                                    f"(finite: {bool(np.isfinite(scores).all())}) for "
                                    f"{len(first)} pairs")
            return scores.reshape(-1, 1)

        keys = [_text_key(f"{q}\x1f{d}") for q, d in pairs]
        store = VectorStore(self.db_path, "reranker score")
        out, hits, computed = store.fetch("pair", keys, 1, compute, self.name)
        self.hits += hits
        self.misses += computed
        self.bad += store.bad
        return out.reshape(-1)
