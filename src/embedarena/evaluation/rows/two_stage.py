"""Two-stage rows: a retriever row's top N, reordered by a cross-encoder reranker.

```yaml
models:
  - bm25:jieba
  - {name: bm25+rr, retriever: bm25-jieba, reranker: {path: models/rr, normalize: sigmoid},
     top_n: 50}
```

`retriever` is another entry by name, or a spec of its own (`bm25:jieba`, `{hybrid: ...}`,
`minilm`): the experiment then adds it as an entry, so the table always shows the retriever
next to the two-stage row and the report tests one against the other. The retriever is
searched through its own row's `search` (`max(top_n, depth)` deep); the first `top_n` are
scored as (query text, document text) pairs in one length-sorted batch over all queries
(cached by pair); a stable sort keeps the retriever's order among equal scores. Below depth
`top_n` the retriever's order is kept, with scores below every reranked one (each a step
of 1 under the lowest reranked score), so `calibrate` and fusion still read "higher is
better".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from embedarena.embedders.base import settings_fingerprint
from embedarena.embedders.reranker import RerankerSpec, create_reranker, normalized_scores
from embedarena.errors import ConfigError
from embedarena.evaluation.rows.base import Row, RowContext, register_row
from embedarena.evaluation.run import QueryResult, Run
from embedarena.indexer.build import BuildResult
from embedarena.progress import current
from embedarena.specs import ModelSpec, parse_spec, register_spec

if TYPE_CHECKING:
    from embedarena.data.types import Corpus, QuerySet
    from embedarena.embedders.reranker import Reranker


@register_spec(key="reranker")
class TwoStageSpec(ModelSpec):
    """`retriever` (an entry's name or a spec) + `reranker` (a reranker entry) + `top_n`."""

    type: Literal["two_stage"] = "two_stage"
    retriever: str | ModelSpec
    reranker: RerankerSpec | ModelSpec
    """A reranker, or an entry that produces one (`{finetune: {kind: reranker, ...}}`)."""
    top_n: int = Field(default=50, ge=1, le=10_000)

    @field_validator("retriever", mode="before")
    @classmethod
    def _retriever(cls, v: Any, info: ValidationInfo) -> Any:
        if isinstance(v, dict):
            return parse_spec(v, context=info.context)
        if isinstance(v, str) and v.strip():
            return v.strip()
        if isinstance(v, ModelSpec):
            return v
        raise ValueError("retriever is another model entry's name or a model spec")

    @field_validator("reranker", mode="before")
    @classmethod
    def _reranker(cls, v: Any, info: ValidationInfo) -> Any:
        if isinstance(v, RerankerSpec):
            return v
        if isinstance(v, str):
            return parse_spec(v if v.startswith("reranker:") else f"reranker:{v}",
                              allowed=(RerankerSpec,))
        if isinstance(v, dict) and "finetune" in v:  # trained in the run (training/finetune)
            spec = parse_spec(v, context=info.context)
            if getattr(getattr(spec, "finetune", None), "kind", None) != "reranker":
                raise ValueError("a fine-tuned reranker needs finetune.kind: reranker")
            return spec
        if isinstance(v, dict) and "merge" in v:  # merged in the run (training/merge)
            spec = parse_spec(v, context=info.context)
            parents = getattr(getattr(spec, "merge", None), "models", None) or []
            named = [p for p in parents if isinstance(p, str)]
            if named:
                raise ValueError(f"a merged reranker merges reranker specs (reranker:DIR or "
                                 f"a mapping), not entry names: {', '.join(named)}")
            return spec
        if isinstance(v, dict):
            return parse_spec({"type": "reranker", **v}, allowed=(RerankerSpec,))
        if isinstance(v, ModelSpec) and hasattr(v, "materialize"):
            return v
        raise ValueError("reranker is a path, `reranker:DIR`, a reranker mapping or a "
                         "`finetune: {kind: reranker}` entry")

    @classmethod
    def default_name(cls, data: dict[str, Any]) -> str | None:
        r, rr = data.get("retriever"), data.get("reranker")
        r_name = r if isinstance(r, str) else getattr(r, "name", None) or (
            r.get("name") if isinstance(r, dict) else None)
        rr_name = getattr(rr, "name", None) or (
            rr.get("name") or rr.get("path") if isinstance(rr, dict) else rr)
        if not r_name or not rr_name:
            return None
        return f"{r_name}+{str(rr_name).rstrip('/').rsplit('/', 1)[-1]}"

    @property
    def retriever_name(self) -> str:
        return self.retriever if isinstance(self.retriever, str) else self.retriever.name

    def depends_on(self) -> list[str]:
        return [self.retriever_name]

    def implied(self, names: set[str]) -> tuple[list[tuple[ModelSpec, str]], ModelSpec]:
        """An inline retriever (`bm25:jieba`, a mapping) becomes an entry of its own; a string
        that names an entry refers to it."""
        r = self.retriever
        if isinstance(r, str):
            if r in names:
                return [], self
            r = parse_spec(r)
        if r.name in names:
            return [], self.model_copy(update={"retriever": r.name})
        return [(r, "retriever")], self.model_copy(update={"retriever": r.name})

    def public_dict(self) -> dict[str, Any]:
        out = super().public_dict()
        out["retriever"] = (self.retriever if isinstance(self.retriever, str)
                            else self.retriever.public_dict())
        out["reranker"] = self.reranker.public_dict()
        return out

    def materialize(self, out_root: Any, *, train: bool = True, log: Any = None,
                    resolve: Any = None) -> TwoStageSpec:
        """With a reranker to train: train it (mining with the retriever unless the entry
        names a mining model) and refer to the trained model."""
        make = getattr(self.reranker, "materialize", None)
        if make is None:
            return self
        retriever = resolve(self.retriever_name) if resolve is not None else None
        from embedarena.embedders.base import EmbedderSpec
        from embedarena.indexer.lexical import BM25Spec

        miner = retriever if isinstance(retriever, EmbedderSpec | BM25Spec) else None
        kwargs: dict[str, Any] = {"train": train, "mine_model": miner}
        if log is not None:
            kwargs["log"] = log
        return self.model_copy(update={"reranker": make(out_root, **kwargs)})


@register_row(TwoStageSpec)
class TwoStageRow:
    """The retriever's top N reranked; see the module docstring."""

    spec: TwoStageSpec

    def __init__(self, spec: TwoStageSpec, ctx: RowContext, members: Mapping[str, Row],
                 *, reranker: Reranker | None = None) -> None:
        """`reranker` replaces the one the spec describes (an object built in code)."""
        self.spec = spec
        self.ctx = ctx
        retriever = members.get(spec.retriever_name)
        if retriever is None:
            raise ConfigError(f"two-stage row '{spec.name}': retriever '{spec.retriever_name}' "
                              "is not a row of this experiment")
        self.retriever = retriever
        if reranker is None and not isinstance(spec.reranker, RerankerSpec):
            raise ConfigError(f"two-stage row '{spec.name}': its reranker is not trained yet "
                              "(run the experiment; the arena trains it first)")
        rr: Reranker = reranker if reranker is not None else create_reranker(
            spec.reranker)  # type: ignore[arg-type]
        if ctx.cache:
            from embedarena.embedders.cache import CachedReranker

            rr = CachedReranker(rr)
        self.reranker = rr
        self._texts: dict[str, str] = {}

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def alias(self) -> str | None:
        return None

    @property
    def fingerprint(self) -> str:
        return settings_fingerprint("two_stage", {
            "retriever": self.retriever.fingerprint, "reranker": self.reranker.fingerprint,
            "top_n": self.spec.top_n})

    def build(self, corpus: Corpus, *, force: bool = False,
              keep_old: bool = False) -> BuildResult:
        """The retriever's index (built once per run); the reranker needs none. Keeps the
        corpus texts: the pairs are (query, document text)."""
        self._texts = dict(zip(corpus.ids, corpus.texts))
        built = self.retriever.build(corpus, force=force, keep_old=keep_old)
        return BuildResult("", "", len(corpus), built.reused, 0.0,
                           {"kind": "two_stage", "retriever": built.alias or built.meta},
                           note=f"two-stage row: reranks the top {self.spec.top_n} of "
                                f"'{self.retriever.name}'")

    def stats(self) -> dict[str, Any]:
        s = getattr(self.reranker, "stats", None)
        return {"rerank_cache": dict(s)} if isinstance(s, dict) else {}

    def _text(self, result: QueryResult, i: int) -> str:
        doc = result.retrieved[i]
        if doc in self._texts:
            return self._texts[doc]
        if result.texts is not None:
            return result.texts[i]
        return doc  # label corpora: the id is the text

    def search(self, queries: QuerySet, depth: int, *, corpus_sha: str | None = None,
               checks: bool = True) -> Run:
        n = self.spec.top_n
        first = self.retriever.search(queries, max(depth, n), corpus_sha=corpus_sha,
                                      checks=False)
        pairs: list[tuple[str, str]] = []
        spans: list[tuple[int, int]] = []
        for r in first.results:
            k = min(n, len(r.retrieved))
            spans.append((len(pairs), k))
            pairs.extend((r.query, self._text(r, i)) for i in range(k))
        with current().task(f"rerank {self.name} × {queries.name}", total=len(pairs)) as task:
            scores = normalized_scores(self.reranker, pairs)
            task.update(completed=len(pairs))
        results = []
        for r, (start, k) in zip(first.results, spans):
            head = sorted(range(k), key=lambda i: -float(scores[start + i]))  # stable
            order = head + list(range(k, len(r.retrieved)))
            order = order[:depth]
            floor = min((float(scores[start + i]) for i in range(k)), default=0.0)
            new_scores = [float(scores[start + i]) if pos < k else floor - (pos - k + 1)
                          for pos, i in enumerate(order)]
            texts = [r.texts[i] for i in order] if r.texts is not None else None
            results.append(QueryResult(r.qid, r.query, dict(r.gold),
                                       [r.retrieved[i] for i in order], new_scores, texts))
        return Run(self.name, queries.name, results, {
            "search": "two_stage", "retriever": self.retriever.name,
            "retriever_fingerprint": self.retriever.fingerprint,
            "retriever_settings": first.meta.get("model_settings"),
            "retriever_alias": first.meta.get("alias"),
            "retriever_search": first.meta.get("search"),
            "reranker": self.spec.reranker.public_dict(),
            "reranker_fingerprint": self.reranker.fingerprint, "top_n": n, "k": depth,
            "pairs_scored": len(pairs), "model_settings": self.spec.public_dict(),
        })
