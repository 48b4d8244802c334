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
Relative paths are resolved against the experiment file's folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from embedarena.errors import ConfigError
from embedarena.evaluation.report.model import ReportOptions


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CorpusSource(_Strict):
    path: Path | None = None
    dataset: str | None = None
    column: str | None = None
    id_field: str | None = None
    text_field: str | None = None
    skip_bad: bool = Field(default=False, description="Count and skip bad records instead of "
                           "stopping at the first one.")

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
    prefix: str = "embedarena-"
    type: Literal["hnsw", "int8_hnsw", "flat", "int8_flat"] = "hnsw"
    similarity: Literal["cosine", "dot_product", "l2_norm", "max_inner_product"] | None = None
    m: int | None = None
    ef_construction: int | None = None
    num_candidates: int = 100
    msearch_batch: int = 64

    @field_validator("prefix")
    @classmethod
    def _lower(cls, v: str) -> str:
        if v != v.lower() or any(c in v for c in ' \\/*?"<>|,#:'):
            raise ValueError("index prefix must be lowercase without spaces or \\/*?\"<>|,#:")
        return v


class Experiment(_Strict):
    name: str
    corpus: CorpusSource
    queries: list[QuerySource]
    metrics: list[str] = ["precise@1", "precise@2", "precise@5", "hit@5", "recall@5",
                          "mrr@5", "ndcg@5"]
    depth: int | None = Field(default=None, description="How many hits to retrieve per query; "
                              "default: the largest cutoff in metrics (at least 10).")
    index: IndexConfig = IndexConfig()
    models: list[Any]
    out: Path | None = None
    cache: bool = True
    report: ReportOptions | None = Field(default=None, description="Write report.html/.xlsx/.md "
                                         "into <out>/report after the run.")

    @field_validator("queries")
    @classmethod
    def _some_queries(cls, v: list[QuerySource]) -> list[QuerySource]:
        if not v:
            raise ValueError("at least one query set is needed")
        names = [q.display_name for q in v]
        if len(set(names)) != len(names):
            raise ValueError(f"query set names must be unique: {names}")
        return v

    @field_validator("models")
    @classmethod
    def _some_models(cls, v: list[Any]) -> list[Any]:
        if not v:
            raise ValueError("at least one model is needed")
        return v


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
    _reject_secrets(raw, path)
    try:
        exp = Experiment.model_validate(raw)
    except ValidationError as e:
        first = e.errors()[0]
        loc = ".".join(str(x) for x in first["loc"])
        raise ConfigError(f"{path}: {loc}: {first['msg']}") from None
    base = path.resolve().parent
    if exp.corpus.path is not None:
        exp.corpus.path = _abs(base, exp.corpus.path)
    for q in exp.queries:
        if q.path is not None:
            q.path = _abs(base, q.path)
    exp.out = _abs(base, exp.out) if exp.out else base / "runs" / exp.name
    exp.models = [_abs_model_paths(base, m) for m in exp.models]
    return exp


SECRET_KEYS = {"api_key", "openai_api_key", "azure_api_key", "password", "key", "secret"}


def _reject_secrets(obj: Any, path: Path, trail: str = "") -> None:
    if isinstance(obj, dict):
        for k, v in obj.items():
            if str(k).lower() in SECRET_KEYS:
                raise ConfigError(
                    f"{path}: '{trail}{k}' looks like a secret; experiment files are committed, "
                    "so keys come from the environment (e.g. AZURE_OPENAI_API_KEY) or a 0600 file"
                )
            _reject_secrets(v, path, f"{trail}{k}.")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            _reject_secrets(v, path, f"{trail}{i}.")


def _abs(base: Path, p: Path) -> Path:
    p = Path(p).expanduser()
    return p if p.is_absolute() else (base / p).resolve()


def _abs_model_paths(base: Path, m: Any) -> Any:
    if isinstance(m, dict) and isinstance(m.get("path"), str):
        p = Path(m["path"]).expanduser()
        if not p.is_absolute() and (m["path"].startswith(".") or (base / p).exists()):
            return {**m, "path": str((base / p).resolve())}
    return m
