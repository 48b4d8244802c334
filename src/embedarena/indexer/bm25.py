"""BM25 in process that scores like the Elasticsearch `bm25` row of the same analysis chain.

Mining with `bm25:<chain>` must rank with the ranker the `bm25:<chain>` row is evaluated with,
so this reproduces what a single-shard index built by `Builder.build_lexical` computes:

* terms: `AnalysisChain.terms`, the chain's one in-process tokenizer (client-side chains make
  the very tokens the node indexes; `standard` and a few built-ins are reproduced, checked
  against `_analyze`);
* Elasticsearch's default BM25 (k1 = 1.2, b = 0.75; it keeps the `(k1 + 1)` factor that
  Lucene's own BM25 dropped, as the explain output's `boost 2.2` shows):
  `(k1 + 1) * idf * tf / (tf + k1 * (1 - b + b * dl / avgdl))`,
  idf = ln(1 + (N - n + 0.5) / (n + 0.5)), where N and avgdl count only documents with at
  least one term in the field;
* `dl` is the document length after Lucene's one-byte norm (`int_to_byte4`/`byte4_to_int`):
  exact up to 39 terms, then rounded down to 4 significant bits (41 terms score as 40);
* the `match` query's terms in order, a repeated query term counting once per repeat (the node
  folds repeats into one clause with that many times the weight);
* Lucene's float32 arithmetic, clause scores summed in double and rounded to float32, so scores
  equal the node's `_score` (tests/indexer/test_bm25.py checks this on T2Ranking).

Ties: equal scores are ordered by position in `texts` (the order the builder indexes them).
Lucene breaks ties by internal doc id, which is that order unless segment merges reorder
documents, so equal-score hits may come back permuted from Elasticsearch.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np

from embedarena.indexer.analysis import AnalysisChain, get_chain

K1 = 1.2
B = 0.75


# -- Lucene's length norm --------------------------------------------------------------------
def _to_int4(value: int) -> int:
    """A non-negative int as 4 bits of mantissa (implicit leading 1) plus a shift."""
    bits = value.bit_length()
    if bits < 4:
        return value
    shift = bits - 4
    return ((value >> shift) & 0x07) | ((shift + 1) << 3)


def _from_int4(code: int) -> int:
    shift = (code >> 3) - 1
    return code & 0x07 if shift < 0 else ((code & 0x07) | 0x08) << shift


#: Lengths below this are stored exactly (the byte's other codes cover up to 2**31 - 1).
_EXACT = 255 - _to_int4(2**31 - 1)


def int_to_byte4(length: int) -> int:
    """A field length as Lucene's one-byte norm (0-255): exact below 24, then lossy."""
    if length < 0:
        raise ValueError(f"a field length is not negative, got {length}")
    return length if length < _EXACT else _EXACT + _to_int4(length - _EXACT)


def byte4_to_int(code: int) -> int:
    """The length a norm byte stands for: the largest representable length ≤ the original."""
    if not 0 <= code <= 255:
        raise ValueError(f"a norm is one byte, got {code}")
    return code if code < _EXACT else _EXACT + _from_int4(code - _EXACT)


#: The length each norm byte decodes to (what BM25 divides by avgdl).
NORM_LENGTHS = np.array([byte4_to_int(c) for c in range(256)], dtype=np.float32)


# -- the ranker ------------------------------------------------------------------------------
class LocalBM25:
    """Okapi BM25 over `texts`, as Elasticsearch scores them with `chain` (see module doc).

    `search(query, k)` returns (index into `texts`, score) for the best `k` documents that
    share a term with the query, best first; `score(query, text)` scores any text against this
    collection's statistics (a term the collection lacks scores 0, as on the node, where it
    matches nothing).
    """

    def __init__(self, texts: Sequence[str], chain: str | AnalysisChain = "standard",
                 k1: float = K1, b: float = B) -> None:
        self.chain = chain if isinstance(chain, AnalysisChain) else get_chain(chain)
        self._terms = self.chain.term_function()  # ConfigError if only ES can analyse it
        self.k1, self.b = np.float32(k1), np.float32(b)
        self.size = len(texts)
        lengths = np.zeros(self.size, dtype=np.int64)
        postings: dict[str, tuple[list[int], list[int]]] = {}
        for i, text in enumerate(texts):
            tf = Counter(self._terms(text))
            lengths[i] = sum(tf.values())
            for term, n in tf.items():
                docs, freqs = postings.setdefault(term, ([], []))
                docs.append(i)
                freqs.append(n)
        #: Lucene's docCount: documents with at least one term in the field.
        self.doc_count = int(np.count_nonzero(lengths))
        self.avgdl = np.float32(lengths.sum() / self.doc_count) if self.doc_count else \
            np.float32(1.0)
        # 1 / (k1 * (1 - b + b * dl / avgdl)) for each norm byte, in float32 as Lucene does
        self._norm_inverse = np.float32(1.0) / (
            self.k1 * ((np.float32(1.0) - self.b) + self.b * NORM_LENGTHS / self.avgdl))
        norms = np.array([int_to_byte4(int(n)) for n in lengths], dtype=np.uint8)
        self._doc_inverse = self._norm_inverse[norms]
        self._postings = {t: (np.asarray(d, dtype=np.int64), np.asarray(f, dtype=np.float32))
                          for t, (d, f) in postings.items()}
        self._idf = {t: self._idf_of(len(d)) for t, (d, _) in postings.items()}

    def __len__(self) -> int:
        return self.size

    def _idf_of(self, df: int) -> np.float32:
        return np.float32(math.log(1 + (self.doc_count - df + 0.5) / (df + 0.5)))

    def _weights(self, query: str) -> list[tuple[str, np.float32]]:
        """(term, boost * (k1 + 1) * idf) per distinct query term the collection has; the
        boost is how often the term occurs in the query."""
        counts = Counter(self._terms(query))
        scale = np.float32(1.0) + self.k1
        return [(t, np.float32(n) * scale * self._idf[t]) for t, n in counts.items()
                if t in self._idf]

    def scores(self, query: str) -> tuple[np.ndarray, np.ndarray]:
        """(indices of the documents matching `query`, ascending; their float32 scores)."""
        total = np.zeros(self.size, dtype=np.float64)
        hit = np.zeros(self.size, dtype=bool)
        for term, weight in self._weights(query):
            docs, freqs = self._postings[term]
            part = weight - weight / (np.float32(1.0) + freqs * self._doc_inverse[docs])
            total[docs] += part
            hit[docs] = True
        idx = np.flatnonzero(hit)
        return idx, total[idx].astype(np.float32)

    def search(self, query: str, k: int) -> list[tuple[int, float]]:
        """The `k` best matching documents, best first; ties by position in `texts`."""
        idx, sc = self.scores(query)
        if k <= 0 or not len(idx):
            return []
        if len(idx) > k:  # keep everything tied with the k-th score, then order exactly
            kth = np.partition(sc, len(sc) - k)[len(sc) - k]
            keep = sc >= kth
            idx, sc = idx[keep], sc[keep]
        order = np.lexsort((idx, -sc))[:k]
        return [(int(idx[o]), float(sc[o])) for o in order]

    def score(self, query: str, text: str) -> float:
        """BM25 of `text` for `query` under this collection's statistics (N, avgdl, idf)."""
        tf = Counter(self._terms(text))
        inverse = self._norm_inverse[int_to_byte4(sum(tf.values()))]
        total = 0.0
        for term, weight in self._weights(query):
            if term in tf:
                total += float(weight - weight / (np.float32(1.0) + np.float32(tf[term])
                                                  * inverse))
        return float(np.float32(total))
