"""Reranking evaluation in the C-MTEB style (seed 000): rank each query's own candidates.

    from embedarena.evaluation.reranking import evaluate_file
    result = evaluate_file("T2Reranking.jsonl", "minilm", split="test_size=0.1,seed=1")
    result.means  # {"map": ..., "mrr@10": ..., "ndcg@10": ...}

Data: `{query, positive[], negative[]}` (or `pos`/`neg`). Definitions, as mteb 1.1.1's
`RerankingEvaluator` (the evaluator behind seed 000's numbers), per sample:

- candidates = positive + negative, is_relevant = [True] * |positive| + [False] * |negative|;
  a negative that is also a positive (6 of T2Ranking's 100 sample queries) is dropped from
  the negatives and counted (mteb would score one text as relevant and not relevant at once);
- **AP** = `sklearn.metrics.average_precision_score(is_relevant, scores)`, computed here
  without scikit-learn by the same arithmetic: the sum over distinct score values, best first,
  of (gain in recall) x (precision once every candidate with that score is counted), so a tie
  group is one threshold and the order inside it never matters;
- **MRR@10** = 1 / rank of the first relevant candidate among the top 10, else 0;
  **nDCG@10** (not in mteb) with binary gains, from `evaluation.metrics`;
- samples without a positive or without a negative are skipped, as mteb does, and counted;
  MAP, MRR and nDCG are means over the evaluated samples.

**Ties.** The ranking for MRR and nDCG is a stable sort on -score: tied candidates keep their
order positive + negative, i.e. positives first, which is the optimistic reading (a candidate
list that ties completely, as from a tokenizer blind to the language, gets MRR 1). mteb sorts
with `torch.argsort(-scores)` (and C_MTEB's cross-encoder path with `np.argsort`), neither of
which promises an order for ties (torch 2.14 on CPU keeps ties in order up to 16 candidates
and not beyond), so on tied scores mteb's MRR is not defined better than that; without ties
the two agree exactly. Samples with tied candidates are counted, and those whose tie joins a
positive and a negative (the only ties that can change a value) separately.

Scores: an embedder's cosine between the query vector (`embed_queries`) and each candidate's
document vector (`embed_documents`), reported in float32 as mteb's `cos_sim`, but summed row
by row so that equal vectors always get equal scores (mteb's `torch.mm`, like any BLAS
product, can give two equal vectors cosines one ulp apart, turning a tie into float noise);
identical texts are embedded once. A reranker's raw `score_pairs` logits (not a sigmoid,
which saturates into ties in float32; FlagReranker's `compute_score` default is raw too).
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from embedarena import __version__
from embedarena.data.readers import (
    LoadReport,
    RerankSample,
    RerankSet,
    load_rerank_with_report,
    write_jsonl,
)
from embedarena.errors import ConfigError, EmbedderError
from embedarena.evaluation.metrics import mrr_at_k, ndcg_at_k, tied_positions
from embedarena.specs import ModelSpec

F32 = npt.NDArray[np.float32]

DEFINITION = ("mteb 1.1.1 RerankingEvaluator: candidates = positive + negative; AP = "
              "sklearn average_precision_score (a tie group is one threshold); MRR@k = 1/rank "
              "of the first relevant candidate in the top k, else 0; nDCG@k with binary gains; "
              "samples without a positive or a negative skipped; means over evaluated samples")
TIE_RULE = ("ties ranked by a stable sort on -score, keeping the order positive + negative "
            "(optimistic: positives first); AP is unaffected by the order inside a tie")
SKIP_NO_POSITIVE = "no positive"
SKIP_NO_NEGATIVE = "no negative"


# --- per-sample arithmetic (pure) ------------------------------------------------------------


def average_precision(is_relevant: Sequence[bool], scores: Sequence[float] | F32) -> float:
    """`sklearn.metrics.average_precision_score(is_relevant, scores)`: the sum, over distinct
    scores from best to worst, of the recall gained there times the precision of everything
    scored at least that high. NaN without a relevant candidate (sklearn warns and gives an
    undefined value there; such samples are skipped before this is called)."""
    y = np.asarray(is_relevant, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    if y.shape != s.shape or y.ndim != 1:
        raise ValueError(f"{y.size} relevance flags for {s.size} scores")
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    ends = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]  # last index of each score group
    tp = np.cumsum(y)[ends]
    if tp.size == 0 or tp[-1] == 0:
        return math.nan
    gained = np.diff(np.r_[0, tp]) / tp[-1]
    return float(np.sum(gained * tp / (ends + 1)))


def rank_candidates(scores: Sequence[float] | F32) -> npt.NDArray[np.intp]:
    """Candidate positions best first; ties keep their input order (the documented rule)."""
    return np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")


@dataclass(frozen=True)
class SampleResult:
    """One sample's values (NaN when skipped) and why its ranking may be ambiguous."""

    qid: str
    n_pos: int
    n_neg: int
    ap: float = math.nan
    mrr: float = math.nan
    ndcg: float = math.nan
    tied: int = 0
    """Candidates whose score another candidate of the sample shares."""
    mixed_tie: bool = False
    """A positive and a negative tie: the tie rule decides MRR/nDCG (and AP's step)."""
    dropped_overlap: int = 0
    """Negatives dropped because the same text is a positive."""
    skipped: str | None = None

    def to_json(self, mrr_at: int, ndcg_at: int) -> dict[str, Any]:
        def num(v: float) -> float | None:
            return None if math.isnan(v) else float(v)

        return {"qid": self.qid, "n_pos": self.n_pos, "n_neg": self.n_neg, "ap": num(self.ap),
                f"mrr@{mrr_at}": num(self.mrr), f"ndcg@{ndcg_at}": num(self.ndcg),
                "tied": self.tied, "mixed_tie": self.mixed_tie,
                "dropped_overlap": self.dropped_overlap, "skipped": self.skipped}


def score_sample(qid: str, is_relevant: Sequence[bool], scores: Sequence[float] | F32, *,
                 mrr_at: int = 10, ndcg_at: int = 10, dropped_overlap: int = 0) -> SampleResult:
    """AP, MRR@k and nDCG@k of one sample's candidate scores, with its tie counts."""
    rel = [bool(r) for r in is_relevant]
    values = [float(v) for v in np.asarray(scores, dtype=np.float64)]
    if len(rel) != len(values):
        raise ValueError(f"{len(rel)} relevance flags for {len(values)} scores")
    if any(math.isnan(v) for v in values):
        raise ValueError(f"sample {qid}: NaN score")
    ranked = [str(i) for i in rank_candidates(values)]
    gold = {str(i): 1.0 for i, r in enumerate(rel) if r}
    groups: dict[float, set[bool]] = {}
    for v, r in zip(values, rel, strict=True):
        groups.setdefault(v, set()).add(r)
    return SampleResult(
        qid=qid, n_pos=len(gold), n_neg=len(rel) - len(gold),
        ap=average_precision(rel, values), mrr=mrr_at_k(ranked, gold, mrr_at),
        ndcg=ndcg_at_k(ranked, gold, ndcg_at), tied=tied_positions(values, None),
        mixed_tie=any(len(g) == 2 for g in groups.values()), dropped_overlap=dropped_overlap)


def candidates(sample: RerankSample) -> tuple[list[str], list[bool], int]:
    """(candidates, is_relevant, negatives dropped): positive + negative, without negatives
    that are also positives."""
    pos_set = set(sample.positive)
    neg = [t for t in sample.negative if t not in pos_set]
    return (sample.positive + neg, [True] * len(sample.positive) + [False] * len(neg),
            len(sample.negative) - len(neg))


# --- scorers -----------------------------------------------------------------------------------


class Scorer(Protocol):
    """Scores each query's own candidates: one float32 array per query, in candidate order."""

    name: str

    @property
    def fingerprint(self) -> str: ...

    def score(self, queries: Sequence[str], cands: Sequence[Sequence[str]]) -> list[F32]: ...

    def stats(self) -> dict[str, int]: ...


def _unit_rows(x: Any, n: int, who: str) -> F32:
    """Rows scaled to unit length as torch's `F.normalize` (norm clamped at 1e-12)."""
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[0] != n:
        raise EmbedderError(f"{who} returned an array of shape {arr.shape} for {n} texts")
    norms = np.maximum(np.linalg.norm(arr, axis=1, keepdims=True), np.float32(1e-12))
    return (arr / norms).astype(np.float32)


class EmbedderScorer:
    """Cosine between the query vector and each candidate's document vector."""

    def __init__(self, embedder: Any) -> None:
        self.embedder = embedder
        self.name: str = embedder.name

    @property
    def fingerprint(self) -> str:
        return str(self.embedder.fingerprint)

    def score(self, queries: Sequence[str], cands: Sequence[Sequence[str]]) -> list[F32]:
        qidx = {t: i for i, t in enumerate(dict.fromkeys(queries))}
        didx = {t: i for i, t in enumerate(dict.fromkeys(t for c in cands for t in c))}
        q = _unit_rows(self.embedder.embed_queries(list(qidx)), len(qidx), self.name)
        d = _unit_rows(self.embedder.embed_documents(list(didx)), len(didx), self.name)
        # a row-wise sum, not a BLAS product: BLAS blocks rows, so two equal vectors can get
        # cosines one ulp apart, which would break exactly the ties worth counting
        return [(d[[didx[t] for t in c]] * q[qidx[text]]).sum(axis=1, dtype=np.float64)
                .astype(np.float32) for text, c in zip(queries, cands, strict=True)]

    def stats(self) -> dict[str, int]:
        return dict(getattr(self.embedder, "stats", None) or {})


class RerankerScorer:
    """A cross-encoder's raw score of each (query, candidate) pair, all pairs in one call."""

    def __init__(self, reranker: Any) -> None:
        self.reranker = reranker
        self.name: str = reranker.name

    @property
    def fingerprint(self) -> str:
        return str(self.reranker.fingerprint)

    def score(self, queries: Sequence[str], cands: Sequence[Sequence[str]]) -> list[F32]:
        pairs = [(q, t) for q, c in zip(queries, cands, strict=True) for t in c]
        flat = np.asarray(self.reranker.score_pairs(pairs), dtype=np.float32)
        if flat.shape != (len(pairs),):
            raise EmbedderError(f"reranker '{self.name}' returned {flat.shape} scores for "
                                f"{len(pairs)} pairs")
        bounds = np.cumsum([0] + [len(c) for c in cands])
        return [flat[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]

    def stats(self) -> dict[str, int]:
        return dict(getattr(self.reranker, "stats", None) or {})


def parse_model(model: str | dict[str, Any] | ModelSpec) -> ModelSpec:
    """An embedder or reranker spec (anything else, e.g. bm25, cannot score candidates)."""
    import embedarena.evaluation.rows  # noqa: F401  (every kind known: bm25 is told why not)
    from embedarena.embedders import reranker as _reranker  # registers `reranker:`
    from embedarena.embedders.base import EmbedderSpec
    from embedarena.embedders.registry import load_builtins
    from embedarena.specs import parse_spec

    load_builtins()
    return parse_spec(model, allowed=(EmbedderSpec, _reranker.RerankerSpec))


def create_scorer(model: str | dict[str, Any] | ModelSpec, *, cache: bool = True,
                  cache_dir: str | Path | None = None) -> Scorer:
    """The scorer for an embedder spec (cosine) or a reranker spec (cross-encoder score),
    wrapped in the embedding/score cache unless `cache` is False."""
    from embedarena.embedders.base import EmbedderSpec
    from embedarena.embedders.cache import CachedEmbedder, CachedReranker
    from embedarena.embedders.registry import create_embedder
    from embedarena.embedders.reranker import RerankerSpec, create_reranker

    spec = parse_model(model)
    if isinstance(spec, RerankerSpec):
        rr: Any = create_reranker(spec)
        return RerankerScorer(CachedReranker(rr, cache_dir) if cache else rr)
    if not isinstance(spec, EmbedderSpec):  # parse_model allows nothing else
        raise ConfigError(f"model '{spec.name}' cannot score candidates")
    emb: Any = create_embedder(spec)
    return EmbedderScorer(CachedEmbedder(emb, cache_dir) if cache else emb)


# --- evaluating samples ------------------------------------------------------------------------


@dataclass
class RerankingResult:
    """Per-sample values and their means; the CLI renders it, `save` writes it."""

    model: str
    data: str
    samples: list[SampleResult]
    mrr_at: int = 10
    ndcg_at: int = 10
    meta: dict[str, Any] = field(default_factory=dict)
    load_report: LoadReport | None = None

    @property
    def evaluated(self) -> list[SampleResult]:
        return [s for s in self.samples if s.skipped is None]

    @property
    def skipped(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.samples:
            if s.skipped is not None:
                out[s.skipped] = out.get(s.skipped, 0) + 1
        return out

    @property
    def means(self) -> dict[str, float]:
        ev = self.evaluated

        def mean(key: str) -> float:
            return float(np.mean([getattr(s, key) for s in ev])) if ev else math.nan

        return {"map": mean("ap"), f"mrr@{self.mrr_at}": mean("mrr"),
                f"ndcg@{self.ndcg_at}": mean("ndcg")}

    @property
    def n_tied(self) -> int:
        """Evaluated samples with at least two candidates of equal score."""
        return sum(1 for s in self.evaluated if s.tied)

    @property
    def n_mixed_ties(self) -> int:
        """Evaluated samples where a positive ties with a negative (the tie rule matters)."""
        return sum(1 for s in self.evaluated if s.mixed_tie)

    @property
    def overlaps(self) -> tuple[int, int]:
        """(samples with a negative that is also a positive, negatives dropped for it)."""
        hit = [s.dropped_overlap for s in self.samples if s.dropped_overlap]
        return len(hit), sum(hit)

    def to_json(self, per_sample: bool = False) -> dict[str, Any]:
        """JSON-ready summary (NaN: nothing evaluated → null)."""
        ov = self.overlaps
        obj: dict[str, Any] = {
            "model": self.model, "data": self.data,
            "metrics": {k: None if math.isnan(v) else v for k, v in self.means.items()},
            "n_samples": len(self.samples), "n_evaluated": len(self.evaluated),
            "n_skipped": sum(self.skipped.values()), "skipped": self.skipped,
            "ties": {"samples_with_ties": self.n_tied,
                     "samples_with_positive_negative_ties": self.n_mixed_ties,
                     "tied_candidates": sum(s.tied for s in self.evaluated), "rule": TIE_RULE},
            "overlap": {"samples": ov[0], "negatives_dropped": ov[1],
                        "rule": "a negative that is also a positive is dropped from negative"},
            "definition": DEFINITION,
        }
        if per_sample:
            obj["per_sample"] = [s.to_json(self.mrr_at, self.ndcg_at) for s in self.samples]
        return obj

    def save(self, out_dir: str | Path) -> list[Path]:
        """Write rerank.json, rerank.per_sample.jsonl and meta.json (the run-directory layout:
        summary apart from per-item values, metadata apart from both); returns the paths."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        summary, per, meta = out / "rerank.json", out / "rerank.per_sample.jsonl", out / "meta.json"
        summary.write_text(json.dumps(self.to_json(), ensure_ascii=False, indent=2) + "\n",
                           encoding="utf-8")
        write_jsonl(per, (s.to_json(self.mrr_at, self.ndcg_at) for s in self.samples))
        meta.write_text(json.dumps({"model": self.model, "data": self.data, **self.meta},
                                   ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        return [summary, per, meta]


def evaluate_reranking(samples: Sequence[RerankSample], scorer: Scorer, *, mrr_at: int = 10,
                       ndcg_at: int = 10, data: str = "") -> RerankingResult:
    """Score every candidate of every usable sample in one scorer call, then the metrics."""
    if mrr_at < 1 or ndcg_at < 1:
        raise ConfigError("cutoffs of MRR and nDCG must be positive")
    prepared = [(s, *candidates(s)) for s in samples]
    usable = [i for i, (_, _, rel, _) in enumerate(prepared) if any(rel) and not all(rel)]
    scores = (scorer.score([prepared[i][0].query for i in usable],
                           [prepared[i][1] for i in usable]) if usable else [])
    results: list[SampleResult] = []
    for s, _, rel, dropped in prepared:
        n_pos = sum(rel)
        results.append(SampleResult(
            s.qid, n_pos, len(rel) - n_pos, dropped_overlap=dropped,
            skipped=SKIP_NO_POSITIVE if not n_pos else SKIP_NO_NEGATIVE))
    for i, sc in zip(usable, scores, strict=True):
        s, _, rel, dropped = prepared[i]
        if not np.isfinite(sc).all():
            raise EmbedderError(f"{scorer.name} gave a NaN or infinite score to a candidate "
                                f"of query {s.qid}")
        results[i] = score_sample(s.qid, rel, sc, mrr_at=mrr_at, ndcg_at=ndcg_at,
                                  dropped_overlap=dropped)
    return RerankingResult(model=scorer.name, data=data, samples=results, mrr_at=mrr_at,
                           ndcg_at=ndcg_at)


# --- the seed's split ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    """`datasets.Dataset.train_test_split(test_size=..., seed=...)` (shuffled, unstratified)."""

    test_size: float | int
    seed: int

    def __str__(self) -> str:
        return f"test_size={self.test_size},seed={self.seed}"


def parse_split(text: str | Split) -> Split:
    """`test_size=0.1,seed=1` (a fraction, or a whole number of samples as in `datasets`)."""
    if isinstance(text, Split):
        return text
    fields: dict[str, str] = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if not sep or key.strip() not in ("test_size", "seed") or not value.strip():
            raise ConfigError(f"bad split {text!r}: expected test_size=FRACTION|COUNT,seed=INT, "
                              "e.g. test_size=0.1,seed=1")
        fields[key.strip()] = value.strip()
    if set(fields) != {"test_size", "seed"}:
        raise ConfigError(f"split {text!r} needs both test_size and seed (the seed's split is "
                          "test_size=0.1,seed=1)")
    raw = fields["test_size"]
    try:
        size: float | int = int(raw) if re.fullmatch(r"\d+", raw) else float(raw)
        seed = int(fields["seed"])
    except ValueError:
        raise ConfigError(f"bad split {text!r}: test_size is a number, seed an integer") from None
    if seed < 0:
        raise ConfigError(f"split seed must be >= 0, got {seed}")
    return Split(size, seed)


def train_test_indices(n: int, split: Split) -> tuple[list[int], list[int]]:
    """(train, test) positions exactly as `datasets` 2.x-5.x `train_test_split(test_size,
    seed)` picks them: `np.random.default_rng(seed).permutation(n)`, the first
    ceil(test_size * n) (or test_size, if an integer) are the test part, the rest the train
    part, both in permutation order (verified against datasets 5.2.0; see
    tests/evaluation/test_reranking.py)."""
    size = split.test_size
    if isinstance(size, float):
        if not 0 < size < 1:
            raise ConfigError(f"test_size {size} must be in (0, 1), or a whole number")
        n_test = math.ceil(size * n)
    else:
        if not 0 < size < n:
            raise ConfigError(f"test_size {size} must be between 1 and {n - 1} for {n} samples")
        n_test = size
    if n - n_test < 1:
        raise ConfigError(f"test_size {size} leaves no training samples of {n}")
    perm = np.random.default_rng(split.seed).permutation(n)
    return [int(i) for i in perm[n_test:]], [int(i) for i in perm[:n_test]]


def write_split(data: RerankSet, train: Sequence[int], test: Sequence[int],
                out_dir: str | Path) -> tuple[Path, Path, int]:
    """Write train.jsonl as FlagEmbedding `{query, pos, neg}`, keeping, as the seed does, only
    samples with a positive and a negative, and test.jsonl in the input's own form (with `id`,
    so evaluating it gives the same qids). Returns (train path, test path, train lines)."""
    out = Path(out_dir)
    tr, te = out / "train.jsonl", out / "test.jsonl"
    rows = [data.samples[i] for i in train]
    n_train = write_jsonl(tr, ({"query": s.query, "pos": s.positive, "neg": s.negative}
                               for s in rows if s.positive and s.negative))
    pk, nk = data.keys
    write_jsonl(te, ({"id": s.qid, "query": s.query, pk: s.positive, nk: s.negative}
                     for s in (data.samples[i] for i in test)))
    return tr, te, n_train


# --- one call for the command --------------------------------------------------------------------


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def evaluate_file(path: str | Path, model: str | dict[str, Any] | ModelSpec, *,
                  split: str | Split | None = None, out_dir: str | Path | None = None,
                  split_dir: str | Path | None = None, cache: bool = True,
                  cache_dir: str | Path | None = None, skip_bad: bool = False,
                  mrr_at: int = 10, ndcg_at: int = 10,
                  scorer: Scorer | None = None) -> RerankingResult:
    """`embedarena eval-rerank`: load, optionally split, score, and save into `out_dir` when
    given. The split's train.jsonl/test.jsonl go to `split_dir` (default: `out_dir`; none
    written without either). `scorer` replaces the one `model` would make (tests)."""
    p = Path(path)
    data, report = load_rerank_with_report(p, skip_bad=skip_bad)
    spec = parse_model(model)
    samples = data.samples
    meta: dict[str, Any] = {
        "embedarena_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "model_settings": spec.public_dict(),
        "data_source": str(p), "data_sha256": _file_sha256(p), "data_format": report.format,
        "load": {"read": report.read, "loaded": report.loaded, "skipped": report.skipped,
                 "notes": report.notes},
    }
    name = data.name
    if split is not None:
        sp = parse_split(split)
        train, test = train_test_indices(len(samples), sp)
        meta["split"] = {"spec": str(sp), "algorithm": "datasets train_test_split "
                         "(np.random.default_rng(seed).permutation)", "n_train": len(train),
                         "n_test": len(test)}
        where = split_dir if split_dir is not None else out_dir
        if where is not None:
            tr, te, n_tr = write_split(data, train, test, where)
            meta["split"].update({"train_file": str(tr), "train_written": n_tr,
                                  "test_file": str(te)})
        samples = [samples[i] for i in test]
        name = f"{data.name}[test]"
    if scorer is None:
        scorer = create_scorer(spec, cache=cache, cache_dir=cache_dir)
    result = evaluate_reranking(samples, scorer, mrr_at=mrr_at, ndcg_at=ndcg_at, data=name)
    meta["fingerprint"] = scorer.fingerprint
    if scorer.stats():
        meta["cache"] = scorer.stats()
    result.meta = meta
    result.load_report = report
    if out_dir is not None:
        result.save(out_dir)
    return result
