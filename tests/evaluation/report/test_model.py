"""What a report gathers from runs: order, baseline, numbers (from the shared metric code),
significance, error analysis, settings without secrets, and edge cases."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from embedarena.errors import ConfigError, DataError
from embedarena.evaluation.compare import load_run_dir
from embedarena.evaluation.metrics import evaluate
from embedarena.evaluation.report import ReportOptions, build_report
from embedarena.evaluation.report.model import safe_settings
from embedarena.evaluation.run import QueryResult, Run
from embedarena.evaluation.significance import compare_paired

from .conftest import make_run, save


def qr(qid: str, gold: list[str], retrieved: list[str], query: str = "") -> QueryResult:
    return QueryResult(qid=qid, query=query or f"问题 {qid}", gold={g: 1.0 for g in gold},
                       retrieved=retrieved, scores=[1.0] * len(retrieved))


def test_experiment_order_baseline_and_numbers(written_report, experiment_dir: Path) -> None:
    report, _ = written_report
    assert report.models == ["bge", "bge 微调", "acge"]  # experiment.json, not folder order
    assert [s.name for s in report.sets] == ["原数据", "新数据"]
    assert report.baseline == "bge"
    assert [str(s) for s in report.key_specs] == ["precise@1", "precise@2", "precise@5"]
    run = Run.load(experiment_dir / "原数据" / "bge-微调")
    want = evaluate(run, report.specs)
    for spec in report.specs:
        assert report.comparison.value("bge 微调", "原数据", str(spec)) == pytest.approx(
            want.means[str(spec)])


def test_significance_rows_match_direct_computation(written_report, experiment_dir) -> None:
    report, _ = written_report
    s = report.sets[0]
    assert len(s.significance) == 2 * 3  # two models against bge, three key metrics
    row = next(t for t in s.significance if t.model == "acge" and t.metric == "precise@5")
    _, base = load_run_dir(experiment_dir / "原数据" / "bge")
    _, other = load_run_dir(experiment_dir / "原数据" / "acge")
    a, b = base.per_query("precise@5"), other.per_query("precise@5")
    keep = ~np.isnan(a) & ~np.isnan(b)
    direct = compare_paired("bge", "acge", "precise@5", a[keep], b[keep])
    assert row.n == int(keep.sum()) == 39  # the query without relevant gold is left out
    assert row.p_value == direct.p_value and row.diff == direct.diff
    assert (row.ci_low, row.ci_high) == (direct.ci_low, direct.ci_high)
    fam = [t for t in s.significance if t.metric == "precise@5"]
    assert max(t.p_holm for t in fam) >= min(t.p_holm for t in fam) >= min(t.p_value
                                                                           for t in fam)


def test_baseline_option_and_unknown_baseline(experiment_dir: Path) -> None:
    report = build_report([experiment_dir], ReportOptions(baseline="acge",
                                                          key_metrics=["hit@5"]))
    assert {t.model for t in report.sets[0].significance} == {"bge", "bge 微调"}
    assert {t.metric for t in report.sets[0].significance} == {"hit@5"}
    with pytest.raises(ConfigError, match="bge 微调"):
        build_report([experiment_dir], ReportOptions(baseline="nope"))


def test_error_analysis_on_hand_made_runs(tmp_path: Path) -> None:
    a = Run("a", "qs", [
        qr("1", ["甲状腺癌"], ["甲状腺结节", "甲状腺癌"]),
        qr("2", ["甲状腺癌"], ["甲状腺癌"]),
        qr("3", ["胆管炎"], ["肝硬化", "高血压"]),
        qr("4", ["甲状腺结节", "甲状腺癌"], ["甲状腺结节", "胆管炎", "甲状腺癌"]),
    ])
    b = Run("b", "qs", [
        qr("1", ["甲状腺癌"], ["甲状腺癌"]),
        qr("2", ["甲状腺癌"], ["甲状腺结节"]),
        qr("3", ["胆管炎"], ["肝硬化"]),
        qr("4", ["甲状腺结节", "甲状腺癌"], ["甲状腺癌", "甲状腺结节"]),
    ])
    save(a, tmp_path / "a", "precise@1,2")
    save(b, tmp_path / "b", "precise@1,2")
    report = build_report([tmp_path / "a", tmp_path / "b"],
                          ReportOptions(key_metrics=["precise@1"]))
    s = report.sets[0]
    status = {r.qid: r.status for r in s.rows}
    assert status == {"1": "disagree", "2": "disagree", "3": "all wrong", "4": "all wrong"}
    labels = {lab.label: lab for lab in s.labels}
    assert s.label_k == 1
    assert labels["甲状腺癌"].n == {"a": 3, "b": 3}
    assert labels["甲状腺癌"].found["a"] == pytest.approx(1 / 3)  # only query 2 at rank 1
    assert labels["甲状腺癌"].found["b"] == pytest.approx(2 / 3)
    assert s.labels[0].label == "胆管炎"  # hardest first
    conf = {(c.gold, c.retrieved): c.counts for c in s.confusions}
    assert conf[("甲状腺癌", "甲状腺结节")] == {"a": 1, "b": 1}
    assert conf[("胆管炎", "肝硬化")] == {"a": 1, "b": 1}
    assert ("甲状腺结节", "甲状腺结节") not in conf  # a gold label at rank 1 is no confusion
    hits = s.rows[0].models["a"]
    assert hits is not None and hits.top == [("甲状腺结节", False), ("甲状腺癌", True)]
    assert hits.first_hit == 2


def test_settings_hide_secrets() -> None:
    items = dict(safe_settings({
        "model_settings": {"api_key": "sk-1", "deployment": "ada", "nested": {"Token": "t"}},
        "elasticsearch": {"url": "https://elastic:pw@es.local:9200", "auth": "basic"},
        "password": "x", "secret_name": "y", "k": 10, "missing": None,
        "note": "called with Authorization: Bearer abcdefgh12345678",
        "headers": ["x", "sk-abcdefghijklmnopqrstuv"],
    }))
    assert items["model_settings.api_key"] == "[hidden]"
    assert items["model_settings.nested.Token"] == "[hidden]"
    assert items["password"] == items["secret_name"] == "[hidden]"
    assert items["elasticsearch.url"] == "https://***@es.local:9200"
    assert items["elasticsearch.auth"] == "basic"
    assert items["model_settings.deployment"] == "ada"
    assert items["k"] == "10" and items["missing"] == "not recorded"
    assert items["note"] == "called with Authorization: [hidden]"
    assert items["headers"] == '["x", "[hidden]"]'
    assert "sk-1" not in str(items) and ":pw@" not in str(items)


def test_settings_split_common_and_per_run(written_report) -> None:
    report, _ = written_report
    common = dict(report.common_settings)
    assert common["elasticsearch.version"] == "8.15.3"
    assert common["model_settings.api_key"] == "[hidden]"
    per = {(r.label, r.query_set): dict(r.items) for r in report.run_settings}
    assert per[("bge", "原数据")]["index"] == "embedarena-bge-000001"
    assert "index" not in common


def test_same_model_twice_gets_folder_labels(tmp_path: Path) -> None:
    for d in ("run1", "run2"):
        save(make_run("bge", 0.5, "qs", 6, 1), tmp_path / d)
    report = build_report([tmp_path / "run1", tmp_path / "run2"])
    assert report.models == ["bge [run1]", "bge [run2]"]


def test_no_queries_single_model_and_missing_meta(tmp_path: Path) -> None:
    Run("bge", "空", []).save(tmp_path / "empty")
    report = build_report([tmp_path / "empty"])
    assert report.baseline is None
    assert any("only one model" in n for n in report.notes)
    s = report.sets[0]
    assert s.n_queries == 0 and not s.rows and not s.significance and not s.curves["bge"]
    assert any("no queries" in n for n in s.notes)
    assert report.run_settings[0].items == []  # no meta.json facts: nothing invented


def test_all_gold_missing_is_a_note_not_a_crash(tmp_path: Path) -> None:
    for model in ("a", "b"):
        run = Run(model, "qs", [QueryResult("1", "问", {"x": 0.0}, ["x"], [1.0]),
                                QueryResult("2", "问", {}, ["y"], [1.0])])
        save(run, tmp_path / model, "precise@1")
    report = build_report([tmp_path])
    s = report.sets[0]
    assert all(r.status == "excluded" for r in s.rows)
    assert all(t.n == 0 and math.isnan(t.p_value) for t in s.significance)
    assert any("excluded" in n for n in s.notes)


def test_baseline_missing_from_a_query_set(tmp_path: Path) -> None:
    save(make_run("bge", 0.5, "one", 6, 1), tmp_path / "one" / "bge")
    save(make_run("acge", 0.5, "one", 6, 1), tmp_path / "one" / "acge")
    save(make_run("acge", 0.5, "two", 6, 2), tmp_path / "two" / "acge")
    save(make_run("m3", 0.5, "two", 6, 2), tmp_path / "two" / "m3")
    report = build_report([tmp_path], ReportOptions(baseline="bge"))
    two = next(s for s in report.sets if s.name == "two")
    assert not two.significance
    assert any("baseline bge was not run" in n for n in two.notes)


def test_not_a_run_directory(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no run.jsonl"):
        build_report([tmp_path])


def test_options_validate() -> None:
    with pytest.raises(ValueError):
        ReportOptions(formats=["pdf"])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        ReportOptions(unknown=1)  # type: ignore[call-arg]
