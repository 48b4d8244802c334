"""Everything a report shows, gathered once from run directories; renderers only format it.

Metric values come from `evaluation.metrics.evaluate` (or a run's saved metrics.json, via
`compare.load_run_dir`) and the headline table is a `compare.Comparison`, so the report and
`embedarena compare` can never disagree on a number.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from embedarena import __version__
from embedarena.errors import ConfigError, DataError
from embedarena.evaluation.compare import (
    Comparison,
    find_run_dirs,
    load_run_dir,
    mixed_inputs,
    refuse_mixed,
)
from embedarena.evaluation.metrics import (
    DEFAULT_METRICS,
    MetricSpec,
    RunMetrics,
    evaluate,
    parse_metrics,
)
from embedarena.evaluation.run import Run
from embedarena.evaluation.significance import (
    BOOTSTRAP_METHOD,
    DEFAULT_RESAMPLES,
    HOLM_METHOD,
    RANDOMIZATION_METHOD,
    PairedComparison,
    apply_holm,
    compare_paired,
)
from embedarena.secrets import HIDDEN, is_secret_name, scrub

Format = Literal["html", "xlsx", "md"]
CURVE_METRICS = ("precise", "hit", "recall")
MAX_CURVE_K = 20
MIXED_REPORT_HINT = ("a report compares models on the same corpus and queries: re-run the stale "
                     "runs, or pass only the run directories of one corpus (`embedarena "
                     "compare --allow-mixed` shows them side by side, marked)")


class ReportOptions(BaseModel):
    """What to put in a report; also the `report:` section of an experiment file."""

    model_config = ConfigDict(extra="forbid")

    title: str | None = None
    baseline: str | None = Field(default=None, description="Model the others are tested "
                                 "against; default: the first model.")
    metrics: list[str] | None = Field(default=None, description="Headline metrics; default: "
                                      "what the runs' metrics.json hold, else the defaults.")
    key_metrics: list[str] | None = Field(
        default=None, description="Metrics tested for significance; the first also drives "
        "win/loss, per-query detail, per-label accuracy and error analysis. Default: every "
        "precise@k among the headline metrics, else the first headline metric.")
    columns: list[str] = Field(default_factory=list, description="Cost and latency columns "
                               "shown beside the metrics in the results table (as `compare "
                               "--columns`: embed_ms, search_ms, index_mb, tokens, cost_usd, "
                               "or the groups latency, size, cost); default: none.")
    formats: list[Format] = ["html", "xlsx", "md"]
    resamples: int = Field(default=DEFAULT_RESAMPLES, ge=100, le=1_000_000)
    confidence: float = Field(default=0.95, gt=0.5, lt=1.0)
    seed: int = 0
    alpha: float = Field(default=0.05, gt=0.0, lt=0.5)
    max_query_rows: int = Field(default=300, ge=0, description="Per-query rows shown in the "
                                "HTML per query set (all of them are in the XLSX).")
    detail_k: int | None = Field(default=None, ge=1, le=100, description="Retrieved results "
                                 "shown per model and query; default: the largest cutoff of "
                                 "the headline metrics, at most 10.")

    @field_validator("formats")
    @classmethod
    def _some_format(cls, v: list[Format]) -> list[Format]:
        if not v:
            raise ValueError("at least one format is needed (html, xlsx, md)")
        return list(dict.fromkeys(v))

    @field_validator("columns")
    @classmethod
    def _known_columns(cls, v: list[str]) -> list[str]:
        from embedarena.evaluation.compare import parse_columns

        try:
            return parse_columns(v)
        except ConfigError as e:
            raise ValueError(str(e)) from None


# --- the gathered data -------------------------------------------------------------------


@dataclass
class Entry:
    """One run: a model on a query set."""

    label: str
    run: Run
    metrics: RunMetrics
    path: Path

    @property
    def query_set(self) -> str:
        return self.run.query_set


@dataclass
class ModelHits:
    """What one model retrieved for one query."""

    top: list[tuple[str, bool]]
    """(id, is relevant) for the first detail_k results."""
    value: float
    """The primary key metric (NaN when excluded)."""
    first_hit: int | None


@dataclass
class QueryRow:
    key: tuple[str, int]
    qid: str
    query: str
    gold: list[str]
    excluded: bool
    models: dict[str, ModelHits | None]
    status: Literal["disagree", "all wrong", "all right", "same", "excluded"]
    """On the primary key metric: models differ / all score 0 / all score 1 / all score the
    same value in between / no relevant gold."""


@dataclass
class LabelRow:
    label: str
    n: dict[str, int]
    found: dict[str, float]
    """Share of that label's queries with the label in the top k, per model."""

    @property
    def n_max(self) -> int:
        return max(self.n.values(), default=0)

    @property
    def mean_found(self) -> float:
        vals = [v for v in self.found.values() if not math.isnan(v)]
        return sum(vals) / len(vals) if vals else math.nan


@dataclass
class ConfusionRow:
    gold: str
    retrieved: str
    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass
class SetReport:
    name: str
    models: list[str]
    entries: dict[str, Entry]
    n_queries: int
    curves: dict[str, dict[str, list[float]]]
    """model → curve metric → values at k = 1..len."""
    curve_k: int
    significance: list[PairedComparison]
    rows: list[QueryRow]
    labels: list[LabelRow]
    label_k: int
    confusions: list[ConfusionRow]
    notes: list[str] = field(default_factory=list)
    stages: list[PairedComparison] = field(default_factory=list)
    """Each two-stage row against its own retriever (per-query win/loss: where the reranker
    helped and where it hurt)."""

    @property
    def all_wrong(self) -> list[QueryRow]:
        return [r for r in self.rows if r.status == "all wrong"]

    @property
    def baseline_present(self) -> bool:
        return bool(self.significance)


@dataclass
class RunSettings:
    label: str
    query_set: str
    path: Path
    items: list[tuple[str, str]]


@dataclass
class Report:
    title: str
    created: str
    version: str
    options: ReportOptions
    comparison: Comparison
    specs: list[MetricSpec]
    key_specs: list[MetricSpec]
    baseline: str | None
    models: list[str]
    sets: list[SetReport]
    common_settings: list[tuple[str, str]]
    run_settings: list[RunSettings]
    notes: list[str]
    detail_k: int

    @property
    def primary(self) -> MetricSpec:
        return self.key_specs[0]

    @property
    def methods(self) -> list[str]:
        o = self.options
        return [
            f"p-value: {RANDOMIZATION_METHOD}, {o.resamples:,} random sign patterns "
            "(every pattern when there are fewer), seed "
            f"{o.seed}; queries where both models score the same cannot change under a flip.",
            f"confidence interval: {BOOTSTRAP_METHOD}, {o.confidence:.0%}, "
            f"{o.resamples:,} resamples of the queries, seed {o.seed}.",
            f"multiple comparisons: {HOLM_METHOD} (per query set and metric); a gap counts as "
            f"significant when the Holm-adjusted p is below {o.alpha:g}.",
            "Only queries both models were scored on enter a test (queries without relevant "
            "gold are excluded).",
        ]


# --- finding and loading runs ------------------------------------------------------------


def _experiment_order(paths: list[Path]) -> tuple[list[str], list[str]]:
    """(model order, query set order) from experiment.json files in the given folders."""
    models: list[str] = []
    sets: list[str] = []
    for p in paths:
        f = p / "experiment.json"
        if not f.is_file():
            continue
        try:
            obj = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue  # only an ordering hint; the runs themselves are the data
        for m in obj.get("models", []) if isinstance(obj, dict) else []:
            name = m.get("model") if isinstance(m, dict) else m
            if isinstance(name, str):
                models.append(name)
        for qs in obj.get("query_sets", []) if isinstance(obj, dict) else []:
            if isinstance(qs, str):
                sets.append(qs)
    return list(dict.fromkeys(models)), list(dict.fromkeys(sets))


def _unique_labels(keys: list[tuple[str, str, Path]]) -> list[str]:
    """The model name, plus the folder where two runs of one model share a query set."""
    labels = [m for m, _, _ in keys]
    for attempt in (lambda m, d: f"{m} [{d.name}]", lambda m, d: f"{m} [{d}]"):
        counts = Counter((lab, qs) for lab, (_, qs, _) in zip(labels, keys, strict=True))
        dup = {k for k, n in counts.items() if n > 1}
        if not dup:
            break
        labels = [attempt(m, d) if (lab, qs) in dup else lab
                  for lab, (m, qs, d) in zip(labels, keys, strict=True)]
    return labels


def _saved_specs(d: Path) -> list[MetricSpec]:
    path = d / "metrics.json"
    if not path.is_file():
        return []
    try:
        return RunMetrics.load(path).specs
    except DataError:
        return []  # a broken metrics.json is recomputed from run.jsonl below


def _default_key_specs(specs: list[MetricSpec]) -> list[MetricSpec]:
    precise = [s for s in specs if s.name == "precise"]
    return precise or specs[:1]


def load_entries(dirs: list[Path], options: ReportOptions,
                 inputs: list[Path] | None = None
                 ) -> tuple[list[Entry], list[MetricSpec], list[MetricSpec]]:
    """Load each run, score it on the headline and key metrics (per query)."""
    if options.metrics:
        specs = parse_metrics(options.metrics)
    else:
        found: list[MetricSpec] = []
        for d in dirs:
            found.extend(_saved_specs(d))
        specs = list(dict.fromkeys(found)) or parse_metrics(DEFAULT_METRICS)
    key_specs = (parse_metrics(options.key_metrics) if options.key_metrics
                 else _default_key_specs(specs))
    wanted = list(dict.fromkeys([*specs, *key_specs]))
    loaded = []
    for d in dirs:
        run, metrics = load_run_dir(d, wanted)
        if not metrics.has_per_query:
            metrics = evaluate(run, wanted)
        loaded.append((d, run, metrics))
    model_order, set_order = _experiment_order(inputs or [])

    def rank(item: tuple[Path, Run, RunMetrics]) -> tuple[int, int]:
        _, run, _ = item
        qs = set_order.index(run.query_set) if run.query_set in set_order else len(set_order)
        m = model_order.index(run.model) if run.model in model_order else len(model_order)
        return qs, m

    if model_order or set_order:
        loaded.sort(key=rank)  # stable: runs not named keep the order they were found in
    labels = _unique_labels([(run.model, run.query_set, d) for d, run, _ in loaded])
    entries = [Entry(label, run, metrics, d)
               for label, (d, run, metrics) in zip(labels, loaded, strict=True)]
    return entries, specs, key_specs


# --- per query set analysis --------------------------------------------------------------


def query_keys(qids: list[str]) -> list[tuple[str, int]]:
    """(qid, occurrence) so repeated qids in one run still line up one to one."""
    seen: Counter[str] = Counter()
    out = []
    for q in qids:
        out.append((q, seen[q]))
        seen[q] += 1
    return out


def _cutoff(spec: MetricSpec, detail_k: int) -> int:
    return spec.k if spec.k is not None else detail_k


def _curves(entry: Entry, curve_k: int) -> dict[str, list[float]]:
    if curve_k < 1 or entry.metrics.n_evaluated == 0:
        return {}
    specs = [MetricSpec(m, k) for m in CURVE_METRICS for k in range(1, curve_k + 1)]
    res = evaluate(entry.run, specs)
    return {m: [res.means[f"{m}@{k}"] for k in range(1, curve_k + 1)] for m in CURVE_METRICS}


def _significance(entries: dict[str, Entry], models: list[str], baseline: str,
                  key_specs: list[MetricSpec], options: ReportOptions) -> list[PairedComparison]:
    return _paired(entries, [(baseline, m) for m in models if m != baseline], key_specs,
                   options)


def _stages(entries: dict[str, Entry], models: list[str], key_specs: list[MetricSpec],
            options: ReportOptions) -> list[PairedComparison]:
    """Two-stage rows (their run names a `retriever`) against that retriever's run."""
    pairs = [(str(entries[m].run.meta["retriever"]), m) for m in models
             if entries[m].run.meta.get("retriever") in entries]
    return _paired(entries, pairs, key_specs, options)


def _paired(entries: dict[str, Entry], pairs: list[tuple[str, str]],
            key_specs: list[MetricSpec], options: ReportOptions) -> list[PairedComparison]:
    """Paired tests (a, b) per key metric over the queries both were scored on; Holm within
    each metric's family."""
    out: list[PairedComparison] = []
    for spec in key_specs:
        family = []
        for a_name, b_name in pairs:
            base, e = entries[a_name], entries[b_name]
            base_keys = query_keys(base.metrics.qids)
            base_vals = dict(zip(base_keys, base.metrics.per_query(spec), strict=True))
            vals = dict(zip(query_keys(e.metrics.qids), e.metrics.per_query(spec), strict=True))
            common = [k for k in base_keys if k in vals
                      and not math.isnan(base_vals[k]) and not math.isnan(vals[k])]
            a = np.array([base_vals[k] for k in common], dtype=np.float64)
            b = np.array([vals[k] for k in common], dtype=np.float64)
            family.append(compare_paired(a_name, b_name, str(spec), a, b,
                                         n_resamples=options.resamples,
                                         confidence=options.confidence, seed=options.seed))
        apply_holm(family)
        out.extend(family)
    return out


def _rows(entries: dict[str, Entry], models: list[str], primary: MetricSpec,
          detail_k: int) -> list[QueryRow]:
    rows: dict[tuple[str, int], QueryRow] = {}
    for m in models:
        e = entries[m]
        vals = e.metrics.per_query(primary)
        for i, (key, r) in enumerate(zip(query_keys(e.metrics.qids), e.run.results, strict=True)):
            row = rows.get(key)
            if row is None:
                row = QueryRow(key=key, qid=r.qid, query=r.query, gold=r.relevant,
                               excluded=bool(e.metrics.excluded[i]),
                               models=dict.fromkeys(models), status="same")
                rows[key] = row
            rel = set(r.relevant)
            first = next((rank for rank, d in enumerate(r.retrieved, start=1) if d in rel), None)
            row.models[m] = ModelHits(top=[(d, d in rel) for d in r.retrieved[:detail_k]],
                                      value=float(vals[i]), first_hit=first)
    for row in rows.values():
        values = [h.value for h in row.models.values() if h is not None]
        scored = [v for v in values if not math.isnan(v)]
        if row.excluded or not scored:
            row.status = "excluded"
        elif all(v == 0 for v in scored):
            row.status = "all wrong"
        elif len(set(scored)) > 1:
            row.status = "disagree"
        else:
            row.status = "all right" if scored[0] >= 1 else "same"
    return list(rows.values())


def _labels(entries: dict[str, Entry], models: list[str], k: int) -> list[LabelRow]:
    n: dict[str, dict[str, int]] = {}
    found: dict[str, dict[str, int]] = {}
    for m in models:
        e = entries[m]
        for i, r in enumerate(e.run.results):
            if e.metrics.excluded[i]:
                continue
            top = set(r.retrieved[:k])
            for g in r.relevant:
                n.setdefault(g, Counter())[m] += 1
                found.setdefault(g, Counter())[m] += g in top
    rows = [LabelRow(label=g, n={m: counts.get(m, 0) for m in models},
                     found={m: (found[g][m] / counts[m]) if counts.get(m) else math.nan
                            for m in models})
            for g, counts in n.items()]
    rows.sort(key=lambda r: (r.mean_found, -r.n_max, r.label))
    return rows


def _confusions(entries: dict[str, Entry], models: list[str]) -> list[ConfusionRow]:
    counts: dict[tuple[str, str], Counter[str]] = {}
    for m in models:
        e = entries[m]
        for i, r in enumerate(e.run.results):
            if e.metrics.excluded[i] or not r.retrieved:
                continue
            rel = set(r.relevant)
            top1 = r.retrieved[0]
            if top1 in rel:
                continue
            for g in r.relevant:
                counts.setdefault((g, top1), Counter())[m] += 1
    rows = [ConfusionRow(g, t, {m: c.get(m, 0) for m in models})
            for (g, t), c in counts.items()]
    rows.sort(key=lambda r: (-r.total, r.gold, r.retrieved))
    return rows


def _set_report(name: str, entries: dict[str, Entry], models: list[str],
                baseline: str | None, key_specs: list[MetricSpec], options: ReportOptions,
                detail_k: int, curve_k: int) -> SetReport:
    primary = key_specs[0]
    n_queries = max((e.metrics.n_queries for e in entries.values()), default=0)
    notes: list[str] = []
    where = name or "queries"
    if n_queries == 0:
        notes.append(f"{where}: the runs hold no queries, so there is nothing to plot, test "
                     "or analyse.")
    excluded = {m: e.metrics.n_excluded for m, e in entries.items() if e.metrics.n_excluded}
    if excluded:
        detail = ", ".join(f"{m}: {n}" for m, n in excluded.items())
        notes.append(f"{where}: queries without any relevant gold label are excluded from "
                     f"every metric and test ({detail}); they are listed in the per-query "
                     "detail.")
    significance: list[PairedComparison] = []
    if len(models) > 1:
        if baseline is None or baseline not in entries:
            notes.append(f"{where}: the baseline {baseline} was not run on this query set, "
                         "so no model is tested against it here.")
        elif n_queries:
            significance = _significance(entries, models, baseline, key_specs, options)
    k = _cutoff(primary, detail_k)
    return SetReport(
        name=name, models=models, entries=entries, n_queries=n_queries,
        curves={m: _curves(entries[m], curve_k) for m in models}, curve_k=curve_k,
        significance=significance, rows=_rows(entries, models, primary, detail_k),
        labels=_labels(entries, models, k), label_k=k,
        confusions=_confusions(entries, models), notes=notes,
        stages=_stages(entries, models, key_specs, options) if n_queries else [])


# --- settings (reproducibility) ----------------------------------------------------------


_PREFERRED = ("fingerprint", "model_settings", "index", "alias", "k", "depth",
              "corpus_sha256", "queries_sha256", "corpus_source", "queries_source",
              "elasticsearch.version", "elasticsearch.url", "elasticsearch.auth",
              "embedarena_version", "python", "created", "experiment")


def _flatten(obj: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(obj, dict):
        out: list[tuple[str, Any]] = []
        for k, v in obj.items():
            out.extend(_flatten(v, f"{prefix}{k}."))
        return out if out or not prefix else [(prefix[:-1], "{}")]
    return [(prefix[:-1], obj)]


def _display(value: Any) -> str:
    if value is None:
        return "not recorded"
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool | int | float):
        text = json.dumps(value)
    else:
        text = json.dumps(value, ensure_ascii=False, default=str)
    return scrub(text, mask=HIDDEN)


def safe_settings(meta: dict[str, Any]) -> list[tuple[str, str]]:
    """A run's meta.json as (dotted key, text) rows, secrets never shown.

    The meta never holds secrets by design; this is the second line of defence: any key that
    looks like one (key, password, secret, token, ...) is shown as [hidden], credentials
    inside URLs are masked, and values shaped like API keys or Authorization headers are
    hidden wherever they appear.
    """
    items = []
    for key, value in _flatten(meta):
        leaf_parts = key.split(".")
        if any(is_secret_name(p) for p in leaf_parts):
            items.append((key, HIDDEN))
        else:
            items.append((key, _display(value)))

    def order(item: tuple[str, str]) -> tuple[int, str]:
        k = item[0]
        for i, p in enumerate(_PREFERRED):
            if k == p or k.startswith(p + "."):
                return i, k
        return len(_PREFERRED), k

    return sorted(items, key=order)


def _settings(entries: list[Entry]) -> tuple[list[tuple[str, str]], list[RunSettings]]:
    per_run = [RunSettings(e.label, e.query_set, e.path, safe_settings(e.run.meta))
               for e in entries]
    if not per_run:
        return [], []
    dicts = [dict(r.items) for r in per_run]
    common_keys = [k for k, _ in per_run[0].items
                   if len(per_run) > 1 and all(d.get(k) == dicts[0][k] for d in dicts)]
    common = [(k, dicts[0][k]) for k in common_keys]
    for r in per_run:
        r.items = [(k, v) for k, v in r.items if k not in common_keys]
    return common, per_run


# --- putting it together -----------------------------------------------------------------


def build_report(inputs: list[Path], options: ReportOptions | None = None) -> Report:
    """Gather a report from run directories or folders holding them (experiment outputs)."""
    options = options or ReportOptions()
    dirs = find_run_dirs(inputs)
    entries, specs, key_specs = load_entries(dirs, options, inputs)
    refuse_mixed(mixed_inputs((e.label, e.query_set, e.run.meta) for e in entries),
                 hint=MIXED_REPORT_HINT)
    comparison = Comparison(extra=options.columns)
    for e in entries:
        comparison.add(e.label, e.query_set, e.metrics, meta=e.run.meta)
    models = comparison.models
    baseline = options.baseline
    if baseline is not None and baseline not in models:
        raise ConfigError(f"baseline {baseline!r} is not among the models: "
                          + ", ".join(models))
    if baseline is None and len(models) > 1:
        baseline = models[0]
    max_cut = max((s.k for s in [*specs, *key_specs] if s.k is not None), default=5)
    detail_k = options.detail_k or min(10, max(max_cut, 1))
    depth = max((len(r.retrieved) for e in entries for r in e.run.results), default=0)
    curve_k = min(MAX_CURVE_K, depth, max(10, max_cut))
    notes: list[str] = []
    if len(models) == 1:
        notes.append(f"only one model ({models[0]}): there is nothing to compare it with, so "
                     "the report has no significance tests or win/loss counts.")
    sets = []
    for qs in comparison.query_sets:
        in_set = {e.label: e for e in entries if e.query_set == qs}
        set_models = [m for m in models if m in in_set]
        sets.append(_set_report(qs, in_set, set_models, baseline, key_specs, options,
                                detail_k, curve_k))
    common, per_run = _settings(entries)
    title = options.title or ("embedarena report: " + ", ".join(
        q or "queries" for q in comparison.query_sets))
    return Report(
        title=title, created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        version=__version__, options=options, comparison=comparison, specs=specs,
        key_specs=key_specs, baseline=baseline, models=models, sets=sets,
        common_settings=common, run_settings=per_run, notes=notes, detail_k=detail_k)
