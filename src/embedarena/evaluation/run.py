"""A `Run`: what one model retrieved for one query set, saved as run.jsonl + a TREC run file."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embedarena.errors import DataError

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class QueryResult:
    qid: str
    query: str
    gold: dict[str, float]
    retrieved: list[str]
    scores: list[float]
    texts: list[str] | None = None  # retrieved document texts, when they differ from the ids

    @property
    def relevant(self) -> list[str]:
        return [d for d, g in self.gold.items() if g > 0]


@dataclass
class Run:
    model: str
    query_set: str
    results: list[QueryResult]
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.results)

    def save(self, out_dir: Path) -> None:
        """Write `run.jsonl` (one object per query), `run.trec` and `meta.json` into out_dir."""
        out_dir.mkdir(parents=True, exist_ok=True)
        with (out_dir / "run.jsonl").open("w", encoding="utf-8") as f:
            for r in self.results:
                obj: dict[str, Any] = {
                    "qid": r.qid,
                    "query": r.query,
                    "gold": r.relevant,
                    "gold_grades": r.gold,
                    "retrieved": r.retrieved,
                    "scores": r.scores,
                }
                if r.texts is not None:
                    obj["retrieved_text"] = r.texts
                f.write(json.dumps(obj, ensure_ascii=False) + "\n")
        tag = self.model.replace(" ", "_") or "run"
        with (out_dir / "run.trec").open("w", encoding="utf-8") as f:
            for r in self.results:
                for rank, (doc, score) in enumerate(zip(r.retrieved, r.scores), start=1):
                    # TREC fields are whitespace-separated: ids with spaces are escaped
                    f.write(f"{_trec_id(r.qid)} Q0 {_trec_id(doc)} {rank} {score:.6f} {tag}\n")
        meta = {"model": self.model, "query_set": self.query_set, **self.meta}
        (out_dir / "meta.json").write_text(json.dumps(meta, ensure_ascii=False, indent=2),
                                           encoding="utf-8")

    @classmethod
    def load(cls, out_dir: Path) -> Run:
        meta_path = out_dir / "meta.json"
        run_path = out_dir / "run.jsonl"
        if not run_path.exists():
            raise DataError(run_path, "no run.jsonl here: is this a run directory?")
        meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.exists() else {}
        results = []
        with run_path.open(encoding="utf-8") as f:
            for lineno, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    o = json.loads(line)
                    gold = o.get("gold_grades") or {g: 1.0 for g in o["gold"]}
                    results.append(QueryResult(
                        qid=str(o.get("qid", lineno)), query=o["query"],
                        gold={str(k): float(v) for k, v in gold.items()},
                        retrieved=list(o["retrieved"]), scores=[float(s) for s in o["scores"]],
                        texts=o.get("retrieved_text"),
                    ))
                except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                    raise DataError(run_path, f"bad run line: {e}", line=lineno) from e
        model = meta.pop("model", out_dir.name)
        query_set = meta.pop("query_set", "")
        return cls(model=model, query_set=query_set, results=results, meta=meta)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_pandas(self, metrics: Any = None) -> pd.DataFrame:
        """One row per query: qid, query, gold (relevant ids), retrieved, scores, and, given
        this run's `RunMetrics`, its per-query values (NaN: excluded, no relevant gold)."""
        import pandas as pd

        frame = pd.DataFrame({
            "qid": [r.qid for r in self.results],
            "query": [r.query for r in self.results],
            "gold": [r.relevant for r in self.results],
            "retrieved": [r.retrieved for r in self.results],
            "scores": [r.scores for r in self.results],
        })
        if metrics is not None:
            if list(metrics.qids) != frame["qid"].tolist():
                raise ValueError(f"the metrics of {metrics.model} are not this run's queries")
            for spec in metrics.specs:
                frame[str(spec)] = metrics.per_query(spec)
        return frame


def _trec_id(s: str) -> str:
    return "".join("_" if c.isspace() else c for c in s) or "_"
