"""The experiment file: corpus, query sets, metrics, index options and models, no secrets.

```yaml
name: quickstart
corpus: {dataset: cranfield}          # or {path: data/label.json}
queries:
  - {dataset: cranfield, name: cranfield}
  - {path: data/test.jsonl, name: 新数据}
metrics: [precise@1, precise@2, precise@5, hit@5, mrr@10, ndcg@10]
index: {type: hnsw, num_candidates: 100}
models:
  - bm25
  - {name: minilm, type: hf, path: ./models/minilm}
report: {baseline: bm25}              # optional: report.html/.xlsx/.md in <out>/report
```
Relative paths are resolved against the experiment file's folder. `models` are parsed once,
here, into typed specs (`embedarena.specs`); a `finetune:` entry's base model is added when
the list lacks it, and names, dependencies and the report baseline are checked before any
work starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SerializeAsAny,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

import embedarena.training.finetune  # noqa: F401  (registers `finetune:` entries)
import embedarena.training.merge  # noqa: F401  (registers `merge:` entries)
from embedarena.errors import ConfigError
from embedarena.evaluation.report.model import ReportOptions
from embedarena.evaluation.rows import parse_row_spec
from embedarena.names import index_slug
from embedarena.secrets import reject_secret_fields
from embedarena.specs import ModelSpec, parse_spec


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _relative_to_file(v: Any, info: ValidationInfo) -> Any:
    """Relative paths of an experiment file are relative to the file's folder (the
    `base_dir` in the validation context; the working directory when there is none)."""
    base = (info.context or {}).get("base_dir")
    if v is None or base is None:
        return v
    return _abs(Path(base), Path(v))


class CorpusSource(_Strict):
    path: Path | None = None
    dataset: str | None = None
    column: str | None = None
    id_field: str | None = None
    text_field: str | None = None
    skip_bad: bool = Field(default=False, description="Count and skip bad records instead of "
                           "stopping at the first one.")
    encoding: str | None = Field(default=None, description="CSV/TSV encoding (default: "
                                 "detected: UTF-8, UTF-8 with BOM, GBK/GB18030).")

    _path = field_validator("path")(_relative_to_file)

    @model_validator(mode="after")
    def _one_source(self) -> CorpusSource:
        if (self.path is None) == (self.dataset is None):
            raise ValueError("give exactly one of 'path' or 'dataset'")
        return self


class QuerySource(_Strict):
    name: str | None = None
    path: Path | None = None
    dataset: str | None = None
    split: str | None = Field(default=None, description="Which query set of a dataset.")
    skip_bad: bool = Field(default=False, description="Count and skip bad records instead of "
                           "stopping at the first one.")
    encoding: str | None = Field(default=None, description="TSV encoding (default: detected).")

    _path = field_validator("path")(_relative_to_file)

    @model_validator(mode="after")
    def _one_source(self) -> QuerySource:
        if (self.path is None) == (self.dataset is None):
            raise ValueError("give exactly one of 'path' or 'dataset'")
        return self

    @property
    def display_name(self) -> str:
        if self.name:
            return self.name
        if self.path is not None:
            return self.path.stem
        return self.split or str(self.dataset)


class IndexConfig(_Strict):
    """How embedder rows index and search. `backend` sits here, beside `type`, `m` and
    `num_candidates`, because it answers the same question (where and how the vectors are
    searched) for every embedder row at once, and one key switches an experiment between a
    node and in-process faiss; BM25 rows are not vector indexes and stay on Elasticsearch."""

    backend: Literal["elasticsearch", "faiss"] = Field(
        default="elasticsearch", description="elasticsearch: one index per model on a node; "
        "faiss: in process, no node needed (rebuilt each run from the embedding cache).")
    prefix: str = "embedarena-"
    type: Literal["hnsw", "int8_hnsw", "bbq_hnsw", "flat", "int8_flat", "bbq_flat", "bbq_disk",
                  "ivf"] = Field(
        default="hnsw", description="elasticsearch: hnsw, int8_hnsw, bbq_hnsw, flat, int8_flat, "
        "bbq_flat (bbq: better binary quantisation, Elasticsearch 8.16+), bbq_disk (9.2+); "
        "faiss: flat (exact, the default there), hnsw, ivf.")
    similarity: Literal["cosine", "dot_product", "l2_norm", "max_inner_product"] | None = None
    m: int | None = None
    ef_construction: int | None = None
    num_candidates: int = 100
    msearch_batch: int = 64
    shards: int = Field(default=1, ge=1, description="elasticsearch: primary shards per index.")
    replicas: int = Field(default=0, ge=0, description="elasticsearch: replicas of each shard "
                          "(loaded with 0, restored before the alias moves).")
    nlist: int | None = Field(default=None, ge=1, description="faiss ivf: inverted lists.")
    nprobe: int | None = Field(default=None, ge=1, description="faiss ivf: lists searched.")

    @model_validator(mode="after")
    def _fits_backend(self) -> IndexConfig:
        if self.backend == "faiss":
            if "type" not in self.model_fields_set:
                self.type = "flat"
            if self.type not in ("flat", "hnsw", "ivf"):
                raise ValueError(f"type {self.type} is an Elasticsearch index type; faiss "
                                 "offers flat, hnsw and ivf")
            if self.type != "hnsw" and (self.m is not None or self.ef_construction is not None):
                raise ValueError("m / ef_construction only apply to type hnsw")
        elif self.type == "ivf" or self.nlist is not None or self.nprobe is not None:
            raise ValueError("ivf (nlist, nprobe) is a faiss index type: add backend: faiss")
        if (self.nlist is not None or self.nprobe is not None) and self.type != "ivf":
            raise ValueError("nlist / nprobe only apply to type ivf")
        return self

    def overridden(self, backend: str | None = None, index_type: str | None = None
                   ) -> IndexConfig:
        """This config with another backend and/or index type (`run --backend/--index-type`).

        A change of backend without a type gets the new backend's default type (faiss: flat,
        the exact reference; elasticsearch: hnsw), not the file's; keys the result's type
        does not take (m / ef_construction off hnsw under faiss, nlist / nprobe off ivf) are
        dropped.
        """
        data = self.model_dump(exclude_unset=True)
        if backend is not None and backend != self.backend:
            data["backend"] = backend
            if index_type is None:
                data.pop("type", None)
        if index_type is not None:
            data["type"] = index_type
        kind = data.get("type", "flat" if data.get("backend") == "faiss" else "hnsw")
        if data.get("backend") == "faiss" and kind != "hnsw":
            data.pop("m", None)
            data.pop("ef_construction", None)
        if kind != "ivf":
            data.pop("nlist", None)
            data.pop("nprobe", None)
        try:
            return IndexConfig.model_validate(data)
        except ValidationError as e:
            raise ConfigError(f"index: {str(e.errors()[0]['msg']).removeprefix('Value error, ')}"
                              ) from None

    @field_validator("prefix")
    @classmethod
    def _lower(cls, v: str) -> str:
        if v != v.lower() or any(c in v for c in ' \\/*?"<>|,#:'):
            raise ValueError("index prefix must be lowercase without spaces or \\/*?\"<>|,#:")
        return v


class Experiment(_Strict):
    _added: list[tuple[str, str, str]] = PrivateAttr(default_factory=list)

    name: str
    corpus: CorpusSource | None = Field(default=None, description="The documents to index; "
                                        "without it, every index must exist already.")
    queries: list[QuerySource] = Field(default_factory=list, description="Query sets to "
                                       "search; without any, a run only builds indexes.")
    metrics: list[str] = ["precise@1", "precise@2", "precise@5", "hit@5", "recall@5",
                          "mrr@5", "ndcg@5"]
    depth: int | None = Field(default=None, ge=1, description="How many hits to retrieve per "
                              "query; default: the largest cutoff in metrics (at least 10).")
    index: IndexConfig = IndexConfig()
    models: list[SerializeAsAny[ModelSpec]]
    out: Path | None = None
    cache: bool = True
    prices: dict[str, float] = Field(default_factory=dict, description="USD per 1M input "
                                     "tokens by model entry, deployment or model name "
                                     "(`text-embedding-3-small: 0.02`); API rows with a price "
                                     "record their cost. Overrides the config file's [prices].")
    report: ReportOptions | None = Field(default=None, description="Write report.html/.xlsx/.md "
                                         "into <out>/report after the run.")

    @field_validator("queries")
    @classmethod
    def _unique_queries(cls, v: list[QuerySource]) -> list[QuerySource]:
        names = [q.display_name for q in v]
        if len(set(names)) != len(names):
            raise ValueError(f"query set names must be unique: {names}")
        return v

    @field_validator("models", mode="before")
    @classmethod
    def _parse_models(cls, v: Any, info: ValidationInfo) -> Any:
        if not isinstance(v, list) or not v:
            raise ValueError("at least one model is needed")
        base = (info.context or {}).get("base_dir")
        return [parse_model_entry(_abs_model_paths(Path(base), m) if base else m,
                                  context=info.context) for m in v]

    _out = field_validator("out")(_relative_to_file)

    @field_validator("prices")
    @classmethod
    def _non_negative_prices(cls, v: dict[str, float]) -> dict[str, float]:
        bad = [k for k, p in v.items() if p < 0]
        if bad:
            raise ValueError(f"prices must be >= 0 USD per 1M tokens: {', '.join(bad)}")
        return v

    @model_validator(mode="after")
    def _complete(self, info: ValidationInfo) -> Experiment:
        """Add the entries derived rows are compared against (a fine-tune's base, a two-stage
        row's inline retriever), then check names, dependencies and the report baseline: all
        before any work starts."""
        base = (info.context or {}).get("base_dir")
        if self.out is None and base is not None:
            self.out = Path(base) / "runs" / self.name
        models: list[ModelSpec] = []
        names = {m.name for m in self.models}
        for m in self.models:
            brought, m = m.implied(names)
            for spec, role in brought:
                models.append(spec)
                names.add(spec.name)
                self._added.append((spec.name, role, m.name))
            models.append(m)
        seen: dict[str, str] = {}
        for m in models:
            if m.name in seen:
                raise ValueError(f"two models are named '{m.name}' ({seen[m.name]} and "
                                 f"{m.type}); names key the index and the run directory, so "
                                 "each must be unique")
            seen[m.name] = m.type
        _refuse_name_clashes([m.name for m in models])
        by_name = {m.name: m for m in models}
        for m in models:
            for dep in m.depends_on():
                if dep not in by_name:
                    raise ValueError(f"model '{m.name}' needs '{dep}', which is not a model of "
                                     f"this experiment; models: {', '.join(by_name)}")
                m.check_dependency(by_name[dep])
        _refuse_cycles(by_name)
        if self.report is not None and self.report.baseline is not None \
                and self.report.baseline not in by_name:
            raise ValueError(f"report.baseline '{self.report.baseline}' is not a model of this "
                             f"experiment; models: {', '.join(by_name)}")
        self.models = models
        return self

    def search_depth(self) -> int:
        """How deep each query is searched: `depth`, else the largest cutoff among the
        metrics (at least 10)."""
        if self.depth is not None:
            return self.depth
        from embedarena.evaluation.metrics import parse_metrics

        ks = [s.k for s in parse_metrics(self.metrics) if s.k is not None]
        return max([10, *ks])

    @property
    def added(self) -> list[tuple[str, str, str]]:
        """(added entry, its role, the entry that brought it): a fine-tune's base model, a
        two-stage row's inline retriever, added so the table compares against them."""
        return list(self._added)

    @property
    def model_names(self) -> list[str]:
        return [m.name for m in self.models]

    def model(self, name: str) -> ModelSpec:
        for m in self.models:
            if m.name == name:
                return m
        raise ConfigError(f"no model named '{name}' in the experiment; it has "
                          f"{', '.join(self.model_names)}")


def _refuse_name_clashes(names: list[str]) -> None:
    """Distinct names that would share an index alias (`MiniLM`/`minilm`, `bge ft`/`bge-ft`,
    `原数据 bge`/`新数据 bge`): the second would overwrite the first's index (and, for names
    that differ only in punctuation, its run directory), so refuse them now."""
    first: dict[str, str] = {}
    for name in names:
        other = first.setdefault(index_slug(name), name)
        if other != name:
            raise ValueError(f"models '{other}' and '{name}' would share one index alias "
                             f"('{index_slug(name)}'), so the second would overwrite the "
                             "first; rename one")


def _refuse_cycles(by_name: dict[str, ModelSpec]) -> None:
    """A row cannot need itself, directly or through others."""
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            raise ValueError(f"models depend on each other in a circle: "
                             f"{' -> '.join([*path[path.index(name):], name])}")
        if name in done:
            return
        for dep in by_name[name].depends_on():
            visit(dep, [*path, name])
        done.add(name)

    for n in by_name:
        visit(n, [])


#: Keys of a flat `finetune: {kind: reranker}` entry that belong to its two-stage row.
_TWO_STAGE_KEYS = ("retriever", "top_n")


def parse_model_entry(obj: Any, context: dict[str, Any] | None = None) -> ModelSpec:
    """Any model entry of an experiment: an embedder, `bm25`, a hybrid, a two-stage row, a
    fine-tune entry. A flat reranker fine-tune (`{name, finetune: {kind: reranker, ...},
    retriever, top_n}`) is the two-stage row whose reranker is that fine-tune."""
    parse_row_spec("bm25")  # loads every row kind (and the embedders) into the registry
    if (isinstance(obj, dict) and isinstance(obj.get("finetune"), dict)
            and obj["finetune"].get("kind") == "reranker"):
        if "retriever" not in obj:
            raise ConfigError(f"model '{obj.get('name', '?')}': a reranker fine-tune needs "
                              "`retriever:` (the row whose top N it reranks)")
        inner = {k: v for k, v in obj.items() if k not in (*_TWO_STAGE_KEYS, "name")}
        if obj.get("name"):
            inner["name"] = f"{obj['name']}-reranker"
        obj = {**{k: obj[k] for k in _TWO_STAGE_KEYS if k in obj},
               **({"name": obj["name"]} if obj.get("name") else {}), "reranker": inner}
    return parse_spec(obj, context=context)


def load_experiment(path: Path) -> Experiment:
    """Parse and validate an experiment file; relative paths are made absolute here."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"cannot read experiment file {path}: {e.strerror}") from e
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{where}: invalid YAML: {getattr(e, 'problem', e)}") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: an experiment file is a mapping (name, corpus, queries, "
                          "models, ...)")
    reject_secret_fields(raw, str(path), "Experiment files are committed, so keys come from "
                         "the environment (e.g. AZURE_OPENAI_API_KEY) or a 0600 file")
    base = path.resolve().parent
    try:
        exp = Experiment.model_validate(raw, context={"base_dir": base})
    except ValidationError as e:
        first = e.errors()[0]
        loc = ".".join(str(x) for x in first["loc"])
        msg = str(first["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"{path}: {loc + ': ' if loc else ''}{msg}") from None
    except ConfigError as e:  # a model entry's own message (it names the model)
        raise ConfigError(f"{path}: {e}") from None
    return exp


def _abs(base: Path, p: Path) -> Path:
    p = Path(p).expanduser()
    return p if p.is_absolute() else (base / p).resolve()


def _abs_model_paths(base: Path, m: Any) -> Any:
    if isinstance(m, dict) and isinstance(m.get("path"), str):
        p = Path(m["path"]).expanduser()
        if not p.is_absolute() and (m["path"].startswith(".") or (base / p).exists()):
            return {**m, "path": str((base / p).resolve())}
    return m
