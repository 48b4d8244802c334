"""Hand-made run directories for the report tests: Chinese labels, two query sets, a query with
no relevant gold, user text that must be escaped, and meta.json with reproducibility facts."""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path

import pytest

from embedarena.evaluation.metrics import evaluate
from embedarena.evaluation.run import QueryResult, Run

LABELS = ["甲状腺结节", "甲状腺癌", "胆管炎", "胰腺囊肿", "宫颈上皮内瘤变", "高血压", "糖尿病",
          "肝硬化", "乳头状癌", "子宫肌瘤", "慢性胃炎", "肺结节"]
MODELS = {"bge": 0.45, "bge 微调": 0.8, "acge": 0.55}
"""model → chance that a gold label is ranked first."""
NASTY_QUERY = '=1+1 <script>alert("x")</script> & 甲状腺'


def ranked(gold: list[str], quality: float, rng: random.Random, depth: int = 10) -> list[str]:
    others = [lab for lab in LABELS if lab not in gold]
    rng.shuffle(others)
    out = others[:depth]
    for g in gold:
        if rng.random() < quality:
            pos = 0
        elif rng.random() < 0.7:
            pos = rng.randint(1, 6)
        else:
            continue  # not retrieved at all
        out.insert(pos, g)
    return out[:depth]


def make_run(model: str, quality: float, query_set: str, n: int, seed: int,
             meta: dict | None = None) -> Run:
    rng_q = random.Random(seed)  # same queries for every model
    rng_m = random.Random(f"{seed}-{model}")
    results = []
    for i in range(n):
        gold = rng_q.sample(LABELS, 2 if i % 4 == 0 else 1)
        query = f"我有{gold[0]}的问题，能买保险吗？第{i}问"
        if i == 3:
            query = NASTY_QUERY
        grades = {g: 1.0 for g in gold}
        if i == 5:
            grades = {gold[0]: 0.0}  # judged but nothing relevant: excluded from metrics
        ret = ranked([g for g, v in grades.items() if v > 0] or gold, quality, rng_m)
        results.append(QueryResult(qid=f"q{i}", query=query, gold=grades, retrieved=ret,
                                   scores=[1.0 - 0.05 * r for r in range(len(ret))]))
    base_meta = {
        "index": f"embedarena-{model}-000001", "alias": f"embedarena-{model}", "k": 10,
        "fingerprint": "sha256:" + hashlib.sha256(model.encode()).hexdigest()[:16],
        "model_settings": {"type": "hf", "path": f"/models/{model}", "batch_size": 32,
                           "api_key": "sk-should-never-appear"},
        "elasticsearch": {"url": "https://elastic:hunter2@localhost:9200", "auth": "basic",
                          "version": "8.15.3"},
        "embedarena_version": "0.1.0", "created": "2025-01-02T03:04:05+00:00",
        "corpus_sha256": "c0ffee" * 4, "queries_sha256": f"{seed:06d}" * 4,
    }
    base_meta.update(meta or {})
    return Run(model=model, query_set=query_set, results=results, meta=base_meta)


def save(run: Run, d: Path, metrics: str = "precise@1,2,5,hit@5,recall@5,mrr@5,ndcg@5") -> Path:
    run.save(d)
    evaluate(run, metrics).save(d / "metrics.json")
    return d


EXPERIMENT_JSON = ('{"name": "t", "models": [{"model": "bge"}, {"model": "bge 微调"}, '
                   '{"model": "acge"}], "query_sets": ["原数据", "新数据"]}')


def build_experiment(out: Path) -> Path:
    """An experiment output folder like `embedarena run` writes: OUT/<set>/<model>/.

    Folders are written in an order (acge first) that differs from the experiment's model
    order, so tests can tell that experiment.json decides the order.
    """
    for qs, n, seed in (("新数据", 24, 2), ("原数据", 40, 1)):
        for model in ("acge", "bge 微调", "bge"):
            save(make_run(model, MODELS[model], qs, n, seed), out / qs / model.replace(" ", "-"))
    (out / "experiment.json").write_text(EXPERIMENT_JSON, encoding="utf-8")
    return out


@pytest.fixture(scope="session")
def experiment_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shared by many tests: never modify it."""
    return build_experiment(tmp_path_factory.mktemp("exp") / "exp")


@pytest.fixture(scope="session")
def written_report(experiment_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """(Report, output folder) of the experiment, all three formats written once."""
    from embedarena.evaluation.report import build_report, render_report

    report = build_report([experiment_dir])
    out = tmp_path_factory.mktemp("report")
    render_report(report, out)
    return report, out


ARTIFACTS = Path(os.environ.get("EMBEDARENA_TEST_ARTIFACTS",
                                Path(__file__).resolve().parents[3] / "test-artifacts"))


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
