"""The arena: the one loop that runs an experiment, for every command and the Python API.

    import embedarena as ea
    result = ea.run_experiment("examples/quickstart.yaml")
    result.comparison.to_pandas()

Experiment (typed specs, parsed once) → derived entries made real (a `finetune:` entry trains
its model) → one row per entry (`embedarena.evaluation.rows`) → `build` (only when the index is
stale) → `search` per query set → metrics → `Comparison` → run directories and, optionally, a
report. `index build` is this loop without searching; `eval` is a small experiment made from
its flags. Library code never prints: it reports through `embedarena.progress` and returns
everything the CLI shows (builds, reuse, cache counts, load reports, notes).
"""

from __future__ import annotations

import json
import platform
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from embedarena import __version__
from embedarena.data.types import Corpus, Query, QuerySet
from embedarena.errors import ConfigError, DataError
from embedarena.evaluation.compare import Comparison, mixed_inputs, refuse_mixed
from embedarena.evaluation.metrics import RunMetrics, evaluate, parse_metrics
from embedarena.evaluation.rows import Row, RowContext, create_row
from embedarena.experiment import (
    CorpusSource,
    Experiment,
    IndexConfig,
    QuerySource,
    load_experiment,
    parse_model_entry,
)
from embedarena.indexer.build import BuildResult, IndexOptions
from embedarena.names import slug
from embedarena.progress import Progress, current, using
from embedarena.specs import ModelSpec

if TYPE_CHECKING:
    import pandas as pd
    from elasticsearch import Elasticsearch

    from embedarena.data.readers import LoadReport
    from embedarena.evaluation.fusion import TuneReport
    from embedarena.evaluation.rows.hybrid import HybridSpec
    from embedarena.evaluation.run import Run
    from embedarena.indexer.build import IndexType
    from embedarena.indexer.es import Target
    from embedarena.indexer.faiss_index import FaissOptions, FaissType
    from embedarena.training.mining import MineConfig, MineStats

RunDirFn = Callable[[str, QuerySet], Path]


# -- results ---------------------------------------------------------------------------------
@dataclass
class ExperimentResult:
    """What one `run_experiment` call did and found; the CLI renders it, a notebook shows it."""

    experiment: Experiment
    out_dir: Path | None
    comparison: Comparison = field(default_factory=Comparison)
    runs: dict[tuple[str, str], Run] = field(default_factory=dict)
    metrics: dict[tuple[str, str], RunMetrics] = field(default_factory=dict)
    run_dirs: dict[tuple[str, str], Path] = field(default_factory=dict)
    builds: dict[str, BuildResult] = field(default_factory=dict)
    """Every row built in this call, dependencies (hybrid members) included, by name."""
    rows: list[str] = field(default_factory=list)
    """The rows asked for, in experiment order."""
    stats: dict[str, dict[str, Any]] = field(default_factory=dict)
    load_reports: list[LoadReport] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    report_paths: list[Path] = field(default_factory=list)
    corpus_size: int | None = None
    query_counts: dict[str, int] = field(default_factory=dict)

    @property
    def reused(self) -> list[str]:
        """Rows whose index was current and reused."""
        return [n for n, b in self.builds.items() if b.reused and b.index]

    @property
    def built(self) -> list[str]:
        """Rows whose index was (re)built in this call."""
        return [n for n, b in self.builds.items() if not b.reused and b.index]

    def cache(self, name: str) -> dict[str, int]:
        """The embedding-cache counters of a row (hits, misses, inner_calls), if it has one."""
        return dict(self.stats.get(name, {}).get("cache") or {})

    def to_pandas(self) -> pd.DataFrame:
        """The comparison: (query_set, model) × metrics."""
        return self.comparison.to_pandas()

    def run_frame(self, model: str, query_set: str) -> pd.DataFrame:
        """One row per query of one run, with its per-query metric values."""
        key = (model, query_set)
        if key not in self.runs:
            raise ConfigError(f"no run of {model!r} on {query_set!r}; runs: {list(self.runs)}")
        return self.runs[key].to_pandas(self.metrics[key])

    def _repr_html_(self) -> str:
        return self.comparison._repr_html_()


# -- the arena -------------------------------------------------------------------------------
class Arena:
    """An experiment made ready: its data, its backend and its rows, loaded on first use."""

    def __init__(self, experiment: Experiment, out_dir: Path | None = None, *,
                 client: Elasticsearch | None = None, target: Target | None = None,
                 corpus: Corpus | None = None) -> None:
        self.experiment = experiment
        self.out_dir = out_dir or experiment.out
        self._client = client
        self._target = target
        self._es_version: str | None = None
        self._corpus: Corpus | None = corpus
        self._corpus_loaded = corpus is not None
        self._query_sets: list[QuerySet] | None = None
        self._rows: dict[str, Row] = {}
        self._specs: dict[str, ModelSpec] = {}
        self._prices: dict[str, float] | None = None
        self.load_reports: list[LoadReport] = []
        self.notes: list[str] = []

    # -- notes -----------------------------------------------------------------------------
    def note(self, message: str, level: str = "info") -> None:
        self.notes.append(message)
        current().note(message, level="warning" if level == "warning" else "info")

    # -- data ------------------------------------------------------------------------------
    @property
    def corpus(self) -> Corpus | None:
        if not self._corpus_loaded:
            src = self.experiment.corpus
            self._corpus = self._load_corpus(src) if src is not None else None
            self._corpus_loaded = True
        return self._corpus

    def _load_corpus(self, src: CorpusSource) -> Corpus:
        if src.dataset is not None:
            from embedarena.data.datasets import load_dataset

            corpus, _ = load_dataset(src.dataset)
            return corpus
        from embedarena.data.readers import load_corpus_with_report

        assert src.path is not None  # CorpusSource validates one of path/dataset
        corpus, report = load_corpus_with_report(
            src.path, column=src.column, id_field=src.id_field, text_field=src.text_field,
            skip_bad=src.skip_bad, encoding=src.encoding)
        self._loaded(report)
        return corpus

    @property
    def query_sets(self) -> list[QuerySet]:
        if self._query_sets is None:
            self._query_sets = [self._load_queries(s) for s in self.experiment.queries]
            corpus = self.corpus
            if corpus is not None:
                from embedarena.data.readers import (
                    gold_not_in_corpus,
                    show_label,
                    whitespace_twins,
                )

                for qs in self._query_sets:
                    missing = gold_not_in_corpus(corpus, qs)
                    if missing:
                        qid, labels = next(iter(missing.items()))
                        twins = whitespace_twins(corpus, (g for ids in missing.values()
                                                          for g in ids))
                        hint = "".join(f"; {len(twins)} of the missing labels differ from a "
                                       f"corpus id only in surrounding whitespace (e.g. "
                                       f"{show_label(g, t)})"
                                       for g, t in list(twins.items())[:1])
                        self.note(f"{qs.name}: {len(missing)} of {len(qs)} queries have gold "
                                  f"labels missing from the corpus (e.g. query {qid}: "
                                  f"{labels[:3]}); they count as misses{hint}", "warning")
        return self._query_sets

    def query_set(self, name: str) -> QuerySet:
        for qs in self.query_sets:
            if qs.name == name:
                return qs
        raise ConfigError(f"no query set '{name}' in the experiment; sets: "
                          f"{[q.name for q in self.query_sets]}")

    def _load_queries(self, s: QuerySource) -> QuerySet:
        if s.dataset is not None:
            from embedarena.data.datasets import load_dataset

            _, sets = load_dataset(s.dataset)
            key = s.split or next(iter(sets))
            if key not in sets:
                raise ConfigError(f"dataset {s.dataset} has query sets {sorted(sets)}, "
                                  f"not '{key}'")
            qs = sets[key]
            return QuerySet(s.display_name, qs.queries, qs.source)
        from embedarena.data.readers import load_queries_with_report

        assert s.path is not None  # QuerySource validates one of path/dataset
        qs, report = load_queries_with_report(s.path, name=s.display_name, skip_bad=s.skip_bad,
                                              encoding=s.encoding)
        self._loaded(report)
        return QuerySet(s.display_name, qs.queries, qs.source)

    def _loaded(self, report: LoadReport) -> None:
        """With skip_bad, skipped records are counted out loud, never dropped silently."""
        self.load_reports.append(report)
        if report.skipped_total:
            reasons = ", ".join(f"{n} {why}" for why, n in sorted(report.skipped.items()))
            lines = [f"skipped {report.skipped_total} of {report.read} {report.unit}s in "
                     f"{report.path} ({reasons}); loaded {report.loaded}"]
            lines += [f"  e.g. {ex}" for ex in report.examples[:3]]
            self.note("\n".join(lines), "warning")

    # -- backend ---------------------------------------------------------------------------
    def connect(self) -> tuple[Elasticsearch, Target]:
        if self._client is None or self._target is None:
            from embedarena.indexer.es import connect

            self._client, self._target = connect()
        return self._client, self._target

    @property
    def es_version(self) -> str | None:
        if self._es_version is None:
            from embedarena.indexer.es import server_version

            client, target = self.connect()
            self._es_version = server_version(client, target)
        return self._es_version

    def context(self, prefix: str | None = None) -> RowContext:
        """The rows' context; it connects through `connect` on a row's first use of the node
        (never, for rows of an in-process backend)."""
        cfg = self.experiment.index
        return RowContext(self._client, self._target, index_options(cfg),
                          prefix=prefix if prefix is not None else cfg.prefix,
                          num_candidates=cfg.num_candidates, msearch_batch=cfg.msearch_batch,
                          cache=self.experiment.cache, backend=cfg.backend,
                          faiss=faiss_options(cfg), connect=self.connect)

    # -- rows ------------------------------------------------------------------------------
    def select(self, only: Iterable[str] | None) -> list[str]:
        """The entries to run, in experiment order (unknown names are an error)."""
        names = self.experiment.model_names
        if not only:
            return names
        wanted = list(dict.fromkeys(only))
        missing = [n for n in wanted if n not in names]
        if missing:
            raise ConfigError(f"no model named {missing} in the experiment; it has {names}")
        return [n for n in names if n in wanted]

    def spec(self, name: str) -> ModelSpec:
        """The entry's spec, with derived entries made real (a fine-tune entry is trained
        when needed and becomes the `hf` spec of its model)."""
        spec = self._specs.get(name)
        if spec is None:
            spec = self.experiment.model(name)
            materialize = getattr(spec, "materialize", None)
            if materialize is not None:
                spec = materialize(self.out_dir, log=self.note, resolve=self.spec)
            self._specs[name] = spec
        return spec

    def row(self, name: str) -> Row:
        """The row of an entry, its dependencies (a hybrid's members) created first."""
        row = self._rows.get(name)
        if row is None:
            spec = self.spec(name)
            members = {dep: self.row(dep) for dep in spec.depends_on()}
            row = create_row(spec, self.context(), members)
            self._rows[name] = row
        return row

    def build(self, row: Row, *, force: bool = False, keep_old: bool = False) -> BuildResult:
        corpus = self.corpus
        if corpus is None:
            raise ConfigError(f"model '{row.name}': no corpus to build its index from (give "
                              "the experiment a corpus, or build the index first)")
        return row.build(corpus, force=force, keep_old=keep_old)

    def search(self, row: Row, qs: QuerySet, depth: int | None = None,
               index_reused: bool | None = None) -> Run:
        """The row's run on one query set, with the reproducibility metadata."""
        corpus = self.corpus
        run = row.search(qs, depth or self.experiment.search_depth(),
                         corpus_sha=corpus.sha256() if corpus is not None else None)
        meta: dict[str, Any] = {
            "embedarena_version": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "python": platform.python_version(),
            "experiment": self.experiment.name,
            "queries_source": qs.source, "queries_sha256": qs.sha256(),
        }
        if corpus is not None:
            meta.update({"corpus_source": corpus.source, "corpus_sha256": corpus.sha256()})
        if index_reused is not None:
            meta["index_reused"] = index_reused
        if self._target is not None and run.meta.get("backend", "elasticsearch") == \
                "elasticsearch":  # a run of an in-process backend says so and gets no node
            meta["backend"] = "elasticsearch"
            from embedarena.indexer.capabilities import detect

            # what the node lacks and where embedarena did it instead (fusion, exact search)
            caps = detect(*self.connect())
            meta["elasticsearch"] = {"url": self._target.display,
                                     "auth": self._target.auth_kind, "version": self.es_version,
                                     **caps.to_meta()}
        stats = row.stats()
        if stats.get("cache"):
            meta["cache"] = stats["cache"]
        api = run.meta.get("api")
        if isinstance(api, dict) and "tokens_sent" in api:
            from embedarena.evaluation.costs import cost_meta

            cost = cost_meta(int(api["tokens_sent"]), row.spec, self.prices)
            if cost is not None:  # no price: no cost (not zero)
                meta["cost"] = cost
        run.meta.update(meta)
        return run

    @property
    def prices(self) -> dict[str, float]:
        """The config file's [prices], overridden by the experiment's `prices`."""
        if self._prices is None:
            from embedarena.settings import load_prices

            self._prices = {**load_prices(), **self.experiment.prices}
        return self._prices


def index_options(cfg: IndexConfig) -> IndexOptions:
    """The Elasticsearch side (under backend faiss only BM25 rows use it, for its shards)."""
    kind = cast("IndexType", cfg.type if cfg.type != "ivf" else "flat")
    return IndexOptions(type=kind, similarity=cfg.similarity, m=cfg.m,
                        ef_construction=cfg.ef_construction, shards=cfg.shards,
                        replicas=cfg.replicas)


def faiss_options(cfg: IndexConfig) -> FaissOptions:
    """The faiss side: the same type/m/ef_construction keys, `num_candidates` as efSearch."""
    from embedarena.indexer.faiss_index import FAISS_TYPES, FaissOptions

    kind = cast("FaissType", cfg.type if cfg.type in FAISS_TYPES else "flat")
    defaults = FaissOptions()
    return FaissOptions(type=kind, m=cfg.m or defaults.m,
                        ef_construction=cfg.ef_construction or defaults.ef_construction,
                        ef_search=cfg.num_candidates, nlist=cfg.nlist, nprobe=cfg.nprobe)


def _as_experiment(experiment: Experiment | str | Path) -> tuple[Experiment, Path | None]:
    if isinstance(experiment, Experiment):
        return experiment, None
    path = Path(experiment)
    return load_experiment(path), path.resolve()


def default_run_dir(out_dir: Path) -> RunDirFn:
    """`<out>/<query set>/<model>`: one folder per query set, one run directory per model."""
    return lambda model, qs: out_dir / slug(qs.name) / slug(model)


def run_experiment(experiment: Experiment | str | Path, out_dir: str | Path | None = None, *,
                   only: Sequence[str] | None = None, force: bool = False, search: bool = True,
                   progress: Progress | None = None, keep_old: bool = False,
                   report: bool = True, skip_bad: bool = False,
                   run_dir: RunDirFn | None = None, save_comparison: bool = True,
                   client: Elasticsearch | None = None, target: Target | None = None,
                   backend: str | None = None, index_type: str | None = None
                   ) -> ExperimentResult:
    """Run an experiment: build what is stale, search every query set with every selected
    row, score, save, compare.

    `experiment` is an `Experiment` or the path of its YAML file. `only` names the rows to run
    (their dependencies are built, not scored); `force` rebuilds their indexes; `search=False`
    only builds (`embedarena index build`); `report` writes the experiment's `report:`
    section; `skip_bad` counts and skips bad input records; `run_dir(model, query_set)` places
    run directories (default `<out>/<query set>/<model>`). Progress and notes go to `progress`
    (default: whatever `embedarena.progress.using` installed, else nowhere). `backend` /
    `index_type` replace the experiment's `index.backend` / `index.type`
    (`IndexConfig.overridden`: e.g. `backend="faiss"` alone gives faiss Flat, exact).
    """
    exp, source = _as_experiment(experiment)
    if backend is not None or index_type is not None:
        exp = exp.model_copy(update={"index": exp.index.overridden(backend, index_type)})
    if skip_bad:
        exp = exp.model_copy(deep=True)  # the caller's experiment stays as it was
        if exp.corpus is not None:
            exp.corpus.skip_bad = True
        for q in exp.queries:
            q.skip_bad = True
    out = Path(out_dir) if out_dir is not None else exp.out
    if out is None and search:
        raise ConfigError("give an output folder (out_dir, or `out` in the experiment)")
    with using(progress):
        arena = Arena(exp, out, client=client, target=target)
        return _run(arena, source, only, force, search, keep_old, report, run_dir,
                    save_comparison)


def _run(arena: Arena, source: Path | None, only: Sequence[str] | None, force: bool,
         search: bool, keep_old: bool, report: bool, run_dir: RunDirFn | None,
         save_comparison: bool) -> ExperimentResult:
    exp, out = arena.experiment, arena.out_dir
    result = ExperimentResult(exp, out)
    for added, role, by in exp.added:
        arena.note(f"{by}: added its {role} '{added}' to compare against")
    corpus = arena.corpus
    sets = arena.query_sets if search else []
    result.corpus_size = len(corpus) if corpus is not None else None
    result.query_counts = {qs.name: len(qs) for qs in sets}
    if search:
        arena.note(f"experiment {exp.name}: "
                   + (f"{len(corpus)} documents, " if corpus is not None else "")
                   + "".join(f"{qs.name} ({len(qs)} queries), " for qs in sets)
                   + _plural(len(arena.select(only)), "model"))
    elif corpus is not None:
        arena.note(f"corpus: {len(corpus)} documents from {corpus.source}")
    if exp.index.backend == "elasticsearch":
        arena.connect()  # every embedder row needs the node: fail before any fine-tune trains
    names = arena.select(only)
    specs = parse_metrics(exp.metrics)
    depth = exp.search_depth()
    place = run_dir or default_run_dir(out or Path("."))
    if search and out is not None and save_comparison and report and exp.report is not None:
        _check_report_baseline(exp.report.baseline, names, [place(exp.report.baseline, qs)
                                                            for qs in sets]
                               if exp.report.baseline else [])
        _check_saved_inputs(out, {place(n, qs) for n in names for qs in sets}, corpus, sets)
    summary = []
    for name in names:
        row = arena.row(name)
        built = arena.build(row, force=force, keep_old=keep_old) if corpus is not None else None
        for dep in _deps(arena, name):
            dep_build = arena.build(arena.row(dep)) if corpus is not None else None
            if dep_build is not None:
                result.builds.setdefault(dep, dep_build)
        if built is not None:
            result.builds[name] = built
        result.rows.append(name)
        for qs in sets:
            run = arena.search(row, qs, depth, built.reused if built is not None else None)
            scored = evaluate(run, specs)
            where = place(row.name, qs)
            run.save(where)
            scored.save(where / "metrics.json")
            key = (row.name, qs.name)
            result.runs[key], result.metrics[key], result.run_dirs[key] = run, scored, where
            result.comparison.add(row.name, qs.name, scored, ann=run.meta.get("ann_check"),
                                  meta=run.meta)
        result.stats[name] = row.stats()
        summary.append({"model": name, "alias": built.alias if built else row.alias,
                        "index": built.index if built else None,
                        "reused_index": built.reused if built else None,
                        "cache": result.stats[name].get("cache")})
    for dep, row in arena._rows.items():  # dependencies: counters too
        result.stats.setdefault(dep, row.stats())
    result.load_reports = list(arena.load_reports)
    if search and out is not None and save_comparison:
        result.comparison.save(out)
        save_json(out / "experiment.json", {
            "name": exp.name, "metrics": exp.metrics, "depth": depth, "models": summary,
            "query_sets": [q.name for q in sets],
            "experiment_file": str(source) if source is not None else None,
        })
        if exp.report is not None and report:
            from embedarena.evaluation.report import write_report

            with current().task("writing the report", total=None) as task:
                result.report_paths = write_report([out], out / "report", exp.report)
                task.close("report written")
    result.notes = list(arena.notes)
    return result


def _check_report_baseline(baseline: str | None, names: list[str], saved: list[Path]) -> None:
    """Before any work: a report baseline left out of `only` must have a saved run to
    compare against, or the report would fail after everything else ran."""
    if baseline is None or baseline in names or any((d / "run.jsonl").is_file() for d in saved):
        return
    raise ConfigError(f"report.baseline '{baseline}' is not among the models to run "
                      f"({', '.join(names)}) and has no saved run in the output folder; add "
                      "it to the models to run, or run them all")


def _check_saved_inputs(out: Path, fresh: set[Path], corpus: Corpus | None,
                        sets: list[QuerySet]) -> None:
    """Before any work: the report reads every run below `out`, so a run there that this one
    will not rewrite, made from another corpus or query file, would make it refuse at the
    end (`compare.mixed_inputs`)."""
    if not out.is_dir():
        return
    corpus_sha = {"corpus_sha256": corpus.sha256()} if corpus is not None else {}
    runs: list[tuple[str, str, dict[str, Any]]] = [
        ("this run", qs.name, {"queries_sha256": qs.sha256(), **corpus_sha}) for qs in sets]
    rewritten = {d.resolve() for d in fresh}
    for f in sorted(out.rglob("run.jsonl")):
        if f.parent.resolve() in rewritten:
            continue
        try:
            meta = json.loads((f.parent / "meta.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(meta, dict):
            runs.append((str(f.parent), str(meta.get("query_set", "")), meta))
    refuse_mixed(mixed_inputs(runs), hint="the report reads every run in the output folder: "
                 "run every model again, remove the stale run directories, or choose another "
                 "output folder")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _deps(arena: Arena, name: str) -> list[str]:
    spec = arena.spec(name)
    out: list[str] = []
    for dep in spec.depends_on():
        out += [*_deps(arena, dep), dep]
    return list(dict.fromkeys(out))


def save_json(path: Path, obj: Any) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(obj, ensure_ascii=False, indent=2, default=str),
                        encoding="utf-8")
    except OSError as e:
        raise DataError(path, f"cannot write: {e.strerror or e}") from e



# -- small experiments from command-line flags ----------------------------------------------
def inline_experiment(models: Sequence[Any], *, name: str = "inline",
                      corpus: CorpusSource | dict[str, Any] | None = None,
                      queries: Sequence[QuerySource | dict[str, Any]] = (),
                      metrics: Sequence[str] | None = None,
                      index: IndexConfig | dict[str, Any] | None = None, cache: bool = True,
                      out: Path | None = None) -> Experiment:
    """An experiment from flags (`eval`, `index build`): the same validation as a file, and a
    bad value is one `ConfigError` naming the setting."""
    from pydantic import ValidationError

    kwargs: dict[str, Any] = {"name": name, "corpus": corpus, "queries": list(queries),
                              "models": list(models), "cache": cache, "out": out}
    if metrics is not None:
        kwargs["metrics"] = list(metrics)
    if index is not None:
        kwargs["index"] = index
    try:
        exp = Experiment(**kwargs)
    except ValidationError as e:
        first = e.errors()[0]
        loc = ".".join(str(x) for x in first["loc"])
        raise ConfigError(f"{loc}: {str(first['msg']).removeprefix('Value error, ')}"
                          ) from None
    parse_metrics(exp.metrics)  # a typo fails now, before any index is built
    return exp


# -- tune-fusion ------------------------------------------------------------------------------
@dataclass
class TuneOutcome:
    spec: HybridSpec
    report: TuneReport
    split: str
    n_dev: int
    n_test: int
    settings: int
    candidates: int

    @property
    def entry(self) -> dict[str, Any]:
        """The tuned hybrid as a model entry for the experiment file."""
        return {"name": self.spec.name, "hybrid": list(self.spec.hybrid),
                **self.report.tune.best.to_dict()}


def hybrid_entry(exp: Experiment, name: str | None) -> HybridSpec:
    """The experiment's hybrid entry `name` (or its only one)."""
    from embedarena.evaluation.rows.hybrid import HybridSpec

    hybrids = [m for m in exp.models if isinstance(m, HybridSpec)]
    if name is None:
        if not hybrids:
            raise ConfigError("the experiment has no hybrid model; add one, e.g. "
                              "{name: hyb, hybrid: [bm25, minilm]}")
        if len(hybrids) > 1:
            raise ConfigError(f"the experiment has {len(hybrids)} hybrid models "
                              f"({', '.join(h.name for h in hybrids)}); choose one with --hybrid")
        return hybrids[0]
    for h in hybrids:
        if h.name == name:
            return h
    raise ConfigError(f"no hybrid model named '{name}' in the experiment; hybrids: "
                      f"{', '.join(h.name for h in hybrids) or 'none'}")


def tune_fusion(experiment: Experiment | str | Path, hybrid: str | None = None, *,
                queries: str | None = None, dev_fraction: float = 0.5, seed: int = 0,
                dev: str | None = None, test: str | None = None, objective: str = "ndcg@10",
                methods: Sequence[str] = ("rrf", "weighted"), step: float = 0.1,
                rrf_ks: Sequence[int] = (1, 5, 10, 20, 40, 60, 100),
                progress: Progress | None = None) -> TuneOutcome:
    """Tune a hybrid's fusion on dev queries; report it on separate test queries (see
    `embedarena.evaluation.fusion.tune_then_test`)."""
    from embedarena.data.datasets import split_queries
    from embedarena.evaluation.fusion import param_grid, tune_then_test
    from embedarena.evaluation.metrics import parse_metric
    from embedarena.evaluation.rows.hybrid import member_runs

    exp, _ = _as_experiment(experiment)
    spec = hybrid_entry(exp, hybrid)
    parse_metric(objective)  # fail before any search on a typo
    if not methods or any(m not in ("rrf", "weighted") for m in methods):
        raise ConfigError(f"--methods takes rrf and/or weighted, got {','.join(methods)!r}")
    if (dev is None) != (test is None):
        raise ConfigError("give both --dev and --test, or neither (then one set is split)")
    with using(progress):
        arena = Arena(exp)
        depth = exp.search_depth()
        if dev is not None and test is not None:
            if dev == test:
                raise ConfigError("--dev and --test name the same query set")
            dev_qs, test_qs = arena.query_set(dev), arena.query_set(test)
            split = f"dev = set {dev}, test = set {test}"
        else:
            whole = arena.query_set(queries) if queries else arena.query_sets[0]
            dev_qs, test_qs = split_queries(whole, 1 - dev_fraction, seed)
            split = (f"{whole.name} split {dev_fraction:.0%} dev / {1 - dev_fraction:.0%} "
                     f"test, seed {seed}")
        # one search round per member over both halves; qids prefixed so sets cannot collide
        both = QuerySet("tune", [Query(f"dev/{q.qid}", q.text, q.gold) for q in dev_qs]
                        + [Query(f"test/{q.qid}", q.text, q.gold) for q in test_qs])
        members = [arena.row(m) for m in spec.hybrid]
        candidates = max(spec.candidates, depth)
        grid = param_grid(len(members), list(methods), step, list(rrf_ks))  # type: ignore[arg-type]
        arena.note(f"tuning {spec.name} ({' + '.join(spec.hybrid)}): {split}; {len(dev_qs)} "
                   f"dev / {len(test_qs)} test queries, {len(grid)} settings, objective "
                   f"{objective}, members searched {candidates} deep")
        for m in members:
            arena.build(m)
        corpus = arena.corpus
        runs = member_runs(members, both, candidates,
                           corpus.sha256() if corpus is not None else None)
        with current().task("tune on dev", total=len(grid)) as task:
            rep = tune_then_test(runs, [f"dev/{q.qid}" for q in dev_qs],
                                 [f"test/{q.qid}" for q in test_qs], objective, grid, depth,
                                 exp.metrics, baseline=spec.fusion_params(),
                                 progress=task.advance)
    return TuneOutcome(spec, rep, split, len(dev_qs), len(test_qs), len(grid), candidates)


# -- searching a saved run's model again (calibrate --dev QUERIES) ----------------------------
def search_like(run: Run, queries: Path, depth: int, progress: Progress | None = None) -> Run:
    """Search `queries` with the model and index a saved run used (its `model_settings` and
    alias in meta.json)."""
    from embedarena.names import index_slug

    meta = run.meta
    if meta.get("search") == "hybrid":
        raise ConfigError(f"run of '{run.model}' is a hybrid: give --dev a run directory of the "
                          "dev queries (embedarena run/eval writes one)")
    raw: Any = meta.get("model_settings")
    if meta.get("search") == "bm25" and not raw:  # runs written before bm25 recorded it
        raw = {"type": "bm25", "name": run.model, "analyzer": meta.get("analyzer", "standard")}
    alias = meta.get("alias")
    indexed = raw  # the entry whose index the alias names
    if meta.get("search") == "two_stage" and isinstance(raw, dict):
        # the retriever comes along as its own entry; its alias gives the prefix
        indexed = meta.get("retriever_settings")
        alias = meta.get("retriever_alias")
        raw = {**raw, "retriever": indexed} if indexed else None
    if not raw or not alias or not indexed:
        raise ConfigError(f"run of '{run.model}' does not record its model settings and index "
                          "alias; give --dev a run directory instead of a query file")
    spec = parse_model_entry(raw)
    suffix = index_slug(parse_model_entry(indexed).name)
    prefix = str(alias)[:-len(suffix)] if str(alias).endswith(suffix) else "embedarena-"
    exp = inline_experiment([spec], name=str(meta.get("experiment") or "calibrate"),
                            queries=[QuerySource(path=queries)],
                            index=IndexConfig(prefix=prefix,
                                              num_candidates=int(meta.get("num_candidates",
                                                                          100))))
    with using(progress):
        arena = Arena(exp)
        return arena.search(arena.row(exp.model_names[-1]), arena.query_sets[0], depth)


# -- mining through an index -----------------------------------------------------------------
def mine_file(input_path: str | Path, output_path: str | Path, cfg: MineConfig,
              progress: Progress | None = None) -> MineStats:
    """`embedarena mine`: in process (faiss / torch / BM25), or with `backend: es` against the
    model's Elasticsearch index over the pool, built or reused like any row."""
    from embedarena.training import mining

    search = es_mining_search(cfg) if cfg.backend == "es" else None
    with using(progress):
        return mining.mine_file(input_path, output_path, cfg, search=search)


def es_mining_search(cfg: MineConfig) -> Any:
    """A `mining.Search` that builds (or reuses) the model's index over the pool and ranks
    the queries with the row's own `search`."""
    from embedarena.data.datasets import passage_id
    from embedarena.evaluation.rows import DenseRow

    def search(queries: list[str], pool: list[str], depth: int
               ) -> tuple[list[list[tuple[int, float]]], Any, str]:
        import numpy as np

        ids = [passage_id(t) for t in pool]
        corpus = Corpus(ids, pool, source="mining candidate pool")
        spec = parse_model_entry(cfg.model)
        exp = inline_experiment([spec], name="mine", cache=cfg.cache,
                                index=IndexConfig(prefix=cfg.index_prefix, type="flat",
                                                  num_candidates=min(10000, max(100, depth))))
        arena = Arena(exp, corpus=corpus)
        row = arena.row(spec.name)
        built = arena.build(row)
        qs = QuerySet("mine", [Query(str(n), cfg.query_instruction + q, {})
                               for n, q in enumerate(queries)])
        run = row.search(qs, depth, corpus_sha=corpus.sha256())
        where = {pid: n for n, pid in enumerate(ids)}
        ranked = [[(where[d], float(s)) for d, s in zip(r.retrieved, r.scores) if d in where]
                  for r in run.results]
        score_fn = None
        if isinstance(row, DenseRow):
            emb = row.embedder

            def score_fn(qi: int, texts: Sequence[str]) -> list[float]:
                qv = emb.embed_queries([cfg.query_instruction + queries[qi]])
                dv = emb.embed_documents(list(texts))
                if not emb.normalized:
                    qv = qv / np.maximum(np.linalg.norm(qv, axis=1, keepdims=True), 1e-12)
                    dv = dv / np.maximum(np.linalg.norm(dv, axis=1, keepdims=True), 1e-12)
                return [float(x) for x in np.asarray(dv @ qv[0])]

        return ranked, score_fn, f"{spec.name} (Elasticsearch index {built.index})"

    return search
