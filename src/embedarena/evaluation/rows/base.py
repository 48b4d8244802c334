"""The `Row` protocol: anything that can be built and searched, one per model entry.

A row turns a typed spec (`embedarena.specs.ModelSpec`) into an index (`build`) and a query
set into a `Run` (`search`). `DenseRow` (embedder + ES dense index), `BM25Row` (analysis chain
+ ES text index) and `HybridRow` (fuses its members' runs) are the kinds today; each registers
the spec class it serves with `register_row`, so a new kind is one module and one
registration, and nothing else asks "is this bm25 or hybrid?".

The registry has one more dimension, the context's backend (`index.backend` of the
experiment): a kind registered for a backend (`FaissDenseRow` for embedder specs under
`faiss`) wins there over the backend-neutral kind, and every other spec keeps its neutral kind
(a BM25 row stays on Elasticsearch under `backend: faiss`). So choosing faiss is a lookup
here, not a branch in the rows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from embedarena.errors import ConfigError, EmbedarenaError, SearchBackendError
from embedarena.indexer.build import Builder, BuildResult, IndexOptions, alias_for
from embedarena.progress import current
from embedarena.specs import ModelSpec

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

    from embedarena.data.types import Corpus, QuerySet
    from embedarena.evaluation.run import Run
    from embedarena.indexer.es import Target
    from embedarena.indexer.faiss_index import FaissOptions

#: The backend of a context that names none: rows on an Elasticsearch node.
DEFAULT_BACKEND = "elasticsearch"

Connect = Callable[[], "tuple[Elasticsearch, Target]"]


class RowContext:
    """What every row needs to build and search: the backend and run-wide index options.

    The Elasticsearch client is made on first use (`connect`, e.g. the arena's), so rows that
    never touch a node (faiss rows, hybrids and rerankers over them) run without one.
    """

    def __init__(self, client: Elasticsearch | None = None, target: Target | None = None,
                 index: IndexOptions | None = None, prefix: str = "embedarena-",
                 num_candidates: int = 100, msearch_batch: int = 64, cache: bool = True, *,
                 backend: str = DEFAULT_BACKEND, faiss: FaissOptions | None = None,
                 connect: Connect | None = None) -> None:
        self._client, self._target, self._connect = client, target, connect
        self.index = index if index is not None else IndexOptions()
        self.prefix = prefix
        self.num_candidates = num_candidates
        self.msearch_batch = msearch_batch
        self.cache = cache
        self.backend = backend
        self.faiss = faiss

    def alias(self, name: str) -> str:
        return alias_for(name, self.prefix)

    def es(self, who: str | None = None) -> tuple[Elasticsearch, Target]:
        """The node's client, connected now if not yet; `who` (a row name) goes into the
        error when a row needs a node the in-process backend does not give."""
        if self._client is None or self._target is None:
            if self._connect is None:
                raise SearchBackendError(f"{who or 'this row'}: no Elasticsearch client given")
            try:
                self._client, self._target = self._connect()
            except EmbedarenaError as e:
                if self.backend == DEFAULT_BACKEND:
                    raise
                raise SearchBackendError(
                    f"model '{who or '?'}' needs Elasticsearch even with index backend "
                    f"{self.backend} (only embedder rows run in process; BM25 rows search a "
                    f"node): {e}") from None
        return self._client, self._target

    @property
    def client(self) -> Elasticsearch:
        return self.es()[0]

    @property
    def target(self) -> Target:
        return self.es()[1]


@runtime_checkable
class Row(Protocol):
    """One row of the comparison table."""

    @property
    def spec(self) -> ModelSpec:
        """The parsed entry this row was made from (its settings go into run metadata)."""

    @property
    def name(self) -> str: ...

    @property
    def alias(self) -> str | None:
        """The index alias this row searches (None: it has no index of its own)."""

    @property
    def fingerprint(self) -> str:
        """Changes whenever the row's results could change (model weights, chain, fusion)."""

    def build(self, corpus: Corpus, *, force: bool = False,
              keep_old: bool = False) -> BuildResult:
        """Make the row's index current for `corpus` (reused when nothing changed)."""

    def search(self, queries: QuerySet, depth: int, *, corpus_sha: str | None = None,
               checks: bool = True) -> Run:
        """Every query's top `depth`; `corpus_sha` refuses an index of another corpus;
        `checks` runs the row's own quality checks (the ANN overlap of HNSW rows)."""

    def stats(self) -> dict[str, Any]:
        """Counters worth recording (embedding-cache hits and misses)."""


class IndexedRow:
    """What rows with an index of their own share: the alias, the build memo and the
    progress tasks around building and searching."""

    spec: Any
    ctx: RowContext

    def __init__(self, spec: Any, ctx: RowContext) -> None:
        self.spec = spec
        self.ctx = ctx
        self._alias = ctx.alias(spec.name)
        self._built: BuildResult | None = None

    @property
    def name(self) -> str:
        return str(self.spec.name)

    @property
    def alias(self) -> str | None:
        return self._alias

    def build(self, corpus: Corpus, *, force: bool = False,
              keep_old: bool = False) -> BuildResult:
        """Built once per row object: a member shared by two hybrids is not rebuilt twice,
        even under `force`."""
        if self._built is not None:
            return self._built
        with current().task(f"index {self.name}", total=len(corpus)) as task:
            res = self._make(corpus, force, keep_old, task.advance)
            task.update(completed=len(corpus))
            task.close(f"index {self.name}" + (" (reused)" if res.reused else ""))
        self._built = res
        return res

    def _make(self, corpus: Corpus, force: bool, keep_old: bool, tick: Any) -> BuildResult:
        """An index on the node, through a `Builder` (rows indexing elsewhere override this)."""
        client, target = self.ctx.es(self.name)
        return self._build(Builder(client, target), corpus, force, keep_old, tick)

    def _build(self, builder: Builder, corpus: Corpus, force: bool, keep_old: bool,
               tick: Any) -> BuildResult:
        raise NotImplementedError

    def search(self, queries: QuerySet, depth: int, *, corpus_sha: str | None = None,
               checks: bool = True) -> Run:
        with current().task(f"search {self.name} × {queries.name}", total=len(queries)) as t:
            run = self._search(queries, depth, corpus_sha, checks, t.advance)
        run.meta["model_settings"] = self.spec.public_dict()
        return run

    def _search(self, queries: QuerySet, depth: int, corpus_sha: str | None, checks: bool,
                tick: Any) -> Run:
        raise NotImplementedError

    def stats(self) -> dict[str, Any]:
        return {}


RowFactory = Callable[[Any, RowContext, Mapping[str, Row]], Row]
R = TypeVar("R")
_ROWS: dict[tuple[type[ModelSpec], str | None], RowFactory] = {}


def register_row(spec_cls: type[ModelSpec], backend: str | None = None) -> Callable[[R], R]:
    """Class decorator: specs of `spec_cls` (or a subclass) become rows of this class.

    The class is called as `cls(spec, ctx, members)`; `members` holds the rows of the
    entries named by `spec.depends_on()`. With `backend`, the kind serves contexts of that
    backend only, ahead of the backend-neutral kind (`backend=None`) of the same specs.
    """

    def deco(cls: R) -> R:
        if (spec_cls, backend) in _ROWS:
            raise ConfigError(f"a row kind is already registered for {spec_cls.__qualname__}"
                              + (f" under backend {backend}" if backend else ""))
        _ROWS[(spec_cls, backend)] = cls  # type: ignore[assignment]
        return cls

    return deco


def create_row(spec: ModelSpec, ctx: RowContext, members: Mapping[str, Row] | None = None
               ) -> Row:
    """The row for a spec: the kind registered for the context's backend, else the
    backend-neutral one (each looked up along the spec's class hierarchy)."""
    backend = getattr(ctx, "backend", DEFAULT_BACKEND)
    for key in (backend, None):
        for cls in type(spec).__mro__:
            factory = _ROWS.get((cls, key))
            if factory is None:
                continue
            missing = [n for n in spec.depends_on() if n not in (members or {})]
            if missing:
                raise ConfigError(f"model '{spec.name}' needs the rows {missing}, which were "
                                  "not created")
            return factory(spec, ctx, members or {})
    raise ConfigError(f"model '{spec.name}' (type {spec.type}) cannot be a row: no row kind "
                      "is registered for it")
