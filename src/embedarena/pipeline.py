"""The core loop, shared by `index build`, `eval` and `run`: one direction, stage by stage.

corpus + model spec → Embedder (cached) → index (built only when stale) → Run per query set
→ metrics → Comparison. Each stage takes plain data and returns plain data.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from embedarena import __version__
from embedarena.data.types import Corpus, QuerySet
from embedarena.errors import ConfigError
from embedarena.indexer.build import Builder, BuildResult, IndexOptions, alias_for
from embedarena.indexer.es import Target

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

    from embedarena.data.readers import LoadReport
    from embedarena.embedders.base import Embedder
    from embedarena.embedders.spec import ModelSpec
    from embedarena.evaluation.run import Run
    from embedarena.experiment import CorpusSource, IndexConfig, QuerySource


def progress_bar(console: Any = None) -> Progress:
    """One progress style for long work (embedding, bulk loading, searching), on stderr."""
    from embedarena.cli.console import err_console

    return Progress(
        TextColumn("[progress.description]{task.description}"), BarColumn(),
        MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
        console=console or err_console, transient=False,
    )


# -- data ------------------------------------------------------------------------------------
def load_corpus_source(src: CorpusSource) -> Corpus:
    if src.dataset is not None:
        from embedarena.data.datasets import load_dataset

        corpus, _ = load_dataset(src.dataset)
        return corpus
    from embedarena.data.readers import load_corpus_with_report

    assert src.path is not None
    corpus, report = load_corpus_with_report(src.path, column=src.column, id_field=src.id_field,
                                             text_field=src.text_field, skip_bad=src.skip_bad)
    _say_skipped(report)
    return corpus


def load_query_sources(srcs: list[QuerySource]) -> list[QuerySet]:
    from embedarena.data.readers import load_queries_with_report

    out = []
    for s in srcs:
        if s.dataset is not None:
            from embedarena.data.datasets import load_dataset

            _, sets = load_dataset(s.dataset)
            key = s.split or next(iter(sets))
            if key not in sets:
                raise ConfigError(f"dataset {s.dataset} has query sets {sorted(sets)}, "
                                  f"not '{key}'")
            qs = sets[key]
            out.append(QuerySet(s.display_name, qs.queries, qs.source))
        else:
            assert s.path is not None
            qs, report = load_queries_with_report(s.path, name=s.display_name,
                                                  skip_bad=s.skip_bad)
            _say_skipped(report)
            out.append(QuerySet(s.display_name, qs.queries, qs.source))
    return out


def _say_skipped(report: LoadReport) -> None:
    """With skip_bad, skipped records are counted out loud, never dropped silently."""
    if not report.skipped_total:
        return
    from embedarena.cli.console import err_console

    reasons = ", ".join(f"{n} {why}" for why, n in sorted(report.skipped.items()))
    err_console.print(f"[yellow]skipped[/] {report.skipped_total} of {report.read} "
                      f"{report.unit}s in {report.path} ({reasons}); loaded {report.loaded}")
    for ex in report.examples[:3]:
        err_console.print(f"  e.g. {ex}", highlight=False)


def gold_coverage(corpus: Corpus, qs: QuerySet) -> dict[str, list[str]]:
    """Queries whose gold ids are missing from the corpus (they can never be found)."""
    from embedarena.data.readers import gold_not_in_corpus

    return gold_not_in_corpus(corpus, qs)


# -- models ----------------------------------------------------------------------------------
@dataclass
class ModelHandle:
    """A model entry made ready: its spec, the alias of its index, and what searches it."""

    spec: ModelSpec
    alias: str
    embedder: Embedder | None = None
    analyzer: str | None = None
    cache_stats: dict[str, int] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.spec.name)

    @property
    def hybrid(self) -> bool:
        """A fusion of other models' runs (`{hybrid: [...]}`): no index of its own."""
        return getattr(self.spec, "type", "") == "hybrid"

    @property
    def lexical(self) -> bool:
        return self.embedder is None and not self.hybrid

    @property
    def fingerprint(self) -> str:
        from embedarena.indexer.build import lexical_fingerprint

        if self.embedder is not None:
            return self.embedder.fingerprint
        if self.hybrid:
            from embedarena.embedders.base import settings_fingerprint

            return settings_fingerprint("hybrid", self.spec.public_dict())
        return lexical_fingerprint(self.analyzer or "standard")


def prepare_model(raw: Any, prefix: str = "embedarena-", cache: bool = True) -> ModelHandle:
    """Parse a model entry (dict or inline `hf:DIR`) and create its embedder (cached)."""
    from embedarena.embedders.base import LEXICAL_TYPES, create_embedder
    from embedarena.embedders.spec import parse_model_spec

    spec = parse_model_spec(raw)
    alias = alias_for(spec.name, prefix)
    if spec.type == "hybrid":
        return ModelHandle(spec, alias)
    if spec.type in LEXICAL_TYPES:
        analyzer = str(getattr(spec, "analyzer", None) or "standard")
        return ModelHandle(spec, alias, analyzer=analyzer)
    emb = create_embedder(spec)
    if cache:
        from embedarena.embedders.cache import CachedEmbedder

        emb = CachedEmbedder(emb)
    return ModelHandle(spec, alias, embedder=emb)


def index_options(cfg: IndexConfig) -> IndexOptions:
    return IndexOptions(type=cfg.type, similarity=cfg.similarity, m=cfg.m,
                        ef_construction=cfg.ef_construction)


def build_index(client: Elasticsearch, target: Target, handle: ModelHandle, corpus: Corpus,
                options: IndexOptions, force: bool = False, keep_old: bool = False,
                progress: Progress | None = None) -> BuildResult:
    if handle.hybrid:  # its members have the indexes; nothing to build
        return BuildResult(handle.alias, "", 0, True, 0.0, {"kind": "hybrid"})
    builder = Builder(client, target)
    task = None
    if progress is not None:
        task = progress.add_task(f"index {handle.name}", total=len(corpus))

    def tick(n: int) -> None:
        if progress is not None and task is not None:
            progress.advance(task, n)

    if handle.lexical:
        res = builder.build_lexical(handle.alias, handle.name, handle.analyzer or "standard",
                                    corpus, options, force=force, progress=tick,
                                    keep_old=keep_old)
    else:
        assert handle.embedder is not None
        res = builder.build_dense(handle.alias, handle.name, handle.embedder, corpus, options,
                                  model_public=handle.spec.public_dict(), force=force,
                                  progress=tick, keep_old=keep_old)
    if progress is not None and task is not None:
        progress.update(task, completed=len(corpus),
                        description=f"index {handle.name}" + (" (reused)" if res.reused else ""))
    return res


def evaluate_model(client: Elasticsearch, target: Target, handle: ModelHandle, qs: QuerySet,
                   depth: int, num_candidates: int = 100, msearch_batch: int = 64,
                   corpus_sha: str | None = None, progress: Progress | None = None,
                   check_ann: bool = True, members: dict[str, ModelHandle] | None = None
                   ) -> Run:
    """One model's run on one query set. A hybrid needs its `members` (handles by name);
    `check_ann` runs the exact-search overlap check on HNSW indexes."""
    from embedarena.evaluation.runner import run_bm25, run_dense

    if handle.hybrid:
        from embedarena.evaluation.hybrid import run_hybrid

        if members is None:
            raise ConfigError(f"hybrid '{handle.name}' needs its member models")
        return run_hybrid(client, target, handle.spec, members,  # type: ignore[arg-type]
                          qs, depth, num_candidates, msearch_batch, corpus_sha, progress)

    task = None
    if progress is not None:
        task = progress.add_task(f"search {handle.name} × {qs.name}", total=len(qs))

    def tick(n: int) -> None:
        if progress is not None and task is not None:
            progress.advance(task, n)

    if handle.lexical:
        return run_bm25(client, target, handle.alias, handle.name,
                        handle.analyzer or "standard", qs, depth, msearch_batch, tick,
                        corpus_sha)
    assert handle.embedder is not None
    run = run_dense(client, target, handle.alias, handle.name, handle.embedder, qs, depth,
                    num_candidates, msearch_batch, tick, corpus_sha, check_ann=check_ann)
    run.meta["model_settings"] = handle.spec.public_dict()
    return run


def hybrid_members(handle: ModelHandle, raw_models: list[Any], ready: dict[str, ModelHandle],
                   prefix: str = "embedarena-", cache: bool = True) -> dict[str, ModelHandle]:
    """Handles of a hybrid's members: those already prepared, else prepared from the
    experiment's model list (members are other entries, by name)."""
    from embedarena.embedders.spec import parse_model_spec

    wanted = list(getattr(handle.spec, "hybrid", []))
    out = {n: ready[n] for n in wanted if n in ready}
    for raw in raw_models:
        if len(out) == len(wanted):
            break
        spec = parse_model_spec(raw)
        if spec.name in wanted and spec.name not in out:
            out[spec.name] = prepare_model(raw, prefix, cache)
    return out


def check_hybrids(raw_models: list[Any]) -> None:
    """Before any index is built: every hybrid's members are non-hybrid models of the list."""
    from embedarena.embedders.spec import parse_model_spec

    specs = [parse_model_spec(m) for m in raw_models]
    kinds = {s.name: s.type for s in specs}
    for s in specs:
        for member in getattr(s, "hybrid", None) or []:
            if member not in kinds:
                raise ConfigError(f"hybrid '{s.name}': member '{member}' is not a model of this "
                                  f"experiment; models: {', '.join(kinds)}")
            if kinds[member] == "hybrid":
                raise ConfigError(f"hybrid '{s.name}': member '{member}' is itself a hybrid; "
                                  "list its members instead")


def run_metadata(target: Target, es_version: str | None, extra: dict[str, Any]) -> dict[str, Any]:
    """Reproducibility facts for a run directory; never secrets (Target holds none)."""
    return {
        "embedarena_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "elasticsearch": {"url": target.display, "auth": target.auth_kind,
                          "version": es_version},
        "python": platform.python_version(),
        **extra,
    }


def save_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, ensure_ascii=False, indent=2, default=str), encoding="utf-8")


def depth_for(metric_names: list[str], depth: int | None) -> int:
    """Search depth: explicit, else the largest cutoff among the metrics (at least 10)."""
    if depth is not None:
        if depth < 1:
            raise ConfigError("depth must be at least 1")
        return depth
    from embedarena.evaluation.metrics import parse_metrics

    ks = [s.k for s in parse_metrics(metric_names) if s.k is not None]
    return max([10, *ks])
