"""Comparison tables (formatting, best marks, missing cells, files), run directories and the
`embedarena compare` command."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from embedarena.errors import ConfigError
from embedarena.evaluation.compare import Comparison, format_value, load_run_dir
from embedarena.evaluation.metrics import RunMetrics, evaluate
from embedarena.evaluation.run import QueryResult, Run


def fixed(model: str, query_set: str, means: dict[str, float], n: int = 10,
          excluded: int = 0) -> RunMetrics:
    """A RunMetrics with the given means (as if loaded from a metrics.json)."""
    from embedarena.evaluation.metrics import parse_metrics

    return RunMetrics(model=model, query_set=query_set, specs=parse_metrics(list(means)),
                      qids=[], values={}, excluded=np.zeros(0, dtype=bool), means=means,
                      summary_only=(n, [f"x{i}" for i in range(excluded)]))


def seed_table() -> Comparison:
    return Comparison([
        ("bge", "原数据", fixed("bge", "原数据",
                               {"precise@1": 0.508, "precise@2": 0.615, "mrr@5": 0.61234})),
        ("bge-ft", "原数据", fixed("bge-ft", "原数据",
                                  {"precise@1": 0.517, "precise@2": 0.662, "mrr@5": 0.6})),
        ("acge", "原数据", fixed("acge", "原数据",
                                {"precise@1": 0.5171, "precise@2": 0.628, "mrr@5": 0.59})),
        ("bge", "新数据", fixed("bge", "新数据", {"precise@1": 0.4, "precise@2": 0.5})),
        ("acge", "新数据", fixed("acge", "新数据", {"precise@1": 0.45, "precise@2": 0.48})),
    ])


def md_rows(md: str, title_part: str) -> dict[str, list[str]]:
    """The body rows of the Markdown table under the heading containing title_part."""
    section = md.split(f"### {title_part}", 1)[1].split("###", 1)[0]
    rows = {}
    for line in section.splitlines():
        if line.startswith("| ") and not line.startswith("| model"):
            cells = [c.strip() for c in line.strip("|").split(" | ")]
            rows[cells[0]] = cells[1:]
    return rows


def test_format_value_percent_and_score() -> None:
    assert format_value("precise@1", 0.4270001) == "42.7"
    assert format_value("hit@5", 1.0) == "100.0"
    assert format_value("precision@5", 0.2) == "20.0"
    assert format_value("mrr@10", 0.80312) == "0.803"
    assert format_value("map", 0.6666) == "0.667"
    assert format_value("ndcg@10", float("nan")) == ""
    assert format_value("ndcg@10", None) == ""


def test_markdown_one_table_per_query_set_with_best_bold_and_empty_cells() -> None:
    md = seed_table().to_markdown()
    assert "| model | precise@1 | precise@2 | mrr@5 |" in md
    orig = md_rows(md, "原数据")
    # 51.7 appears twice at display precision: both are marked
    assert orig["bge"] == ["50.8", "61.5", "**0.612**"]
    assert orig["bge-ft"] == ["**51.7**", "**66.2**", "0.600"]
    assert orig["acge"] == ["**51.7**", "62.8", "0.590"]
    new = md_rows(md, "新数据")
    assert new["bge-ft"] == ["", ""]  # not run on this query set: empty, no crash
    assert new["acge"] == ["**45.0**", "48.0"] and new["bge"] == ["40.0", "**50.0**"]
    assert "原数据: 10 queries" in md and "Bold: best" in md


def test_single_model_column_is_not_marked() -> None:
    c = Comparison([("bge", "s", fixed("bge", "s", {"precise@1": 0.5}))])
    assert "**" not in c.to_markdown()
    assert c.best("s", "precise@1") == []


def test_excluded_and_differing_counts_are_shown() -> None:
    c = Comparison([
        ("a", "s", fixed("a", "s", {"hit@1": 0.5}, n=10, excluded=2)),
        ("b", "s", fixed("b", "s", {"hit@1": 0.5}, n=10, excluded=2)),
    ])
    assert "s: 8 queries (2 without relevant gold excluded)" in c.to_markdown()
    c.add("c", "s", fixed("c", "s", {"hit@1": 0.5}, n=12))
    md = c.to_markdown()
    assert "| model | n | hit@1 |" in md
    assert md_rows(md, "s")["c"][0] == "12" and md_rows(md, "s")["a"][0] == "8"


def test_csv_and_json_carry_unrounded_values() -> None:
    c = seed_table()
    rows = list(csv.DictReader(io.StringIO(c.to_csv())))
    assert [(r["model"], r["query_set"]) for r in rows] == [
        ("bge", "原数据"), ("bge-ft", "原数据"), ("acge", "原数据"), ("bge", "新数据"),
        ("acge", "新数据")]
    assert float(rows[0]["mrr@5"]) == 0.61234
    assert rows[3]["mrr@5"] == ""  # not computed on that query set
    assert rows[0]["n_queries"] == "10"
    obj = c.to_json()
    json.dumps(obj)  # JSON-ready
    assert obj["rows"][2]["metrics"]["precise@1"] == 0.5171
    assert obj["best"]["原数据"]["precise@1"] == ["bge-ft", "acge"]
    assert obj["models"] == ["bge", "bge-ft", "acge"]


def test_save_writes_three_files(tmp_path: Path) -> None:
    paths = seed_table().save(tmp_path / "out")
    assert sorted(p.name for p in paths) == ["comparison.csv", "comparison.json", "comparison.md"]
    assert "**66.2**" in (tmp_path / "out" / "comparison.md").read_text(encoding="utf-8")
    assert (tmp_path / "out" / "comparison.csv").read_text(encoding="utf-8-sig").startswith(
        "model,query_set,")
    obj = json.loads((tmp_path / "out" / "comparison.json").read_text(encoding="utf-8"))
    assert obj["query_sets"] == ["原数据", "新数据"]


def test_same_model_and_query_set_twice_is_an_error() -> None:
    c = seed_table()
    with pytest.raises(ConfigError, match="given twice"):
        c.add("bge", "原数据", fixed("bge", "原数据", {"precise@1": 0.1}))


def test_rich_table_renders_values_and_literal_names() -> None:
    c = Comparison([
        ("bge [run2]", "s", fixed("x", "s", {"precise@1": 0.5, "ndcg@5": 0.25})),
        ("acge", "s", fixed("y", "s", {"precise@1": 0.75})),
    ])
    console = Console(record=True, width=120)
    console.print(c.to_rich_table())
    text = console.export_text()
    assert "bge [run2]" in text  # not swallowed as markup
    assert "50.0" in text and "75.0" in text and "0.250" in text
    # several query sets render as several tables
    c.add("acge", "t", fixed("y", "t", {"hit@1": 0.1}))
    console.print(c.to_rich_table())
    assert "t: 10 queries" in console.export_text()


# --- run directories -------------------------------------------------------------------------


def make_run(model: str, query_set: str, ranked: list[list[str]]) -> Run:
    golds = [{"甲状腺结节": 1.0, "甲状腺癌": 1.0}, {"胆管炎": 1.0}, {"胰腺囊肿": 2.0}, {}]
    results = [QueryResult(qid=str(i), query=f"问题{i}", gold=g, retrieved=r,
                           scores=[1.0 - j / 10 for j in range(len(r))])
               for i, (g, r) in enumerate(zip(golds, ranked, strict=True))]
    return Run(model=model, query_set=query_set, results=results)


RANK_A = [["甲状腺结节", "胆管炎", "甲状腺癌"], ["胆管炎"], ["x", "y", "胰腺囊肿"], ["x"]]
RANK_B = [["甲状腺癌", "甲状腺结节"], ["x", "胆管炎"], ["x"], ["x"]]


def test_load_run_dir_recomputes_without_metrics_json(tmp_path: Path) -> None:
    make_run("bge", "原数据", RANK_A).save(tmp_path)
    run, m = load_run_dir(tmp_path, "precise@1,2,3")
    assert run.model == "bge" and m.query_set == "原数据"
    assert m.means == {"precise@1": pytest.approx(1 / 3), "precise@2": pytest.approx(1 / 3),
                       "precise@3": 1.0}
    assert m.n_excluded == 1
    _, default = load_run_dir(tmp_path)
    assert "precise@1" in default.means and "ndcg@5" in default.means


def test_load_run_dir_prefers_saved_metrics_when_they_cover_the_request(tmp_path: Path) -> None:
    run = make_run("bge", "原数据", RANK_A)
    run.save(tmp_path)
    evaluate(run, "precise@1,2;mrr").save(tmp_path / "metrics.json")
    # mark the saved file so we can tell whether it was read
    obj = json.loads((tmp_path / "metrics.json").read_text(encoding="utf-8"))
    obj["metrics"]["mrr"] = 0.123
    (tmp_path / "metrics.json").write_text(json.dumps(obj), encoding="utf-8")
    _, saved = load_run_dir(tmp_path)
    assert saved.mean("mrr") == 0.123 and [str(s) for s in saved.specs] == [
        "precise@1", "precise@2", "mrr"]
    _, subset = load_run_dir(tmp_path, "mrr")
    assert subset.means == {"mrr": 0.123} and subset.per_query("mrr").shape == (4,)
    # asking for something the file lacks recomputes from run.jsonl, the source of truth
    _, fresh = load_run_dir(tmp_path, "mrr,hit@1")
    assert fresh.mean("mrr") == pytest.approx(7 / 9) and fresh.mean("hit@1") == pytest.approx(2 / 3)


def test_load_run_dir_ignores_stale_metrics(tmp_path: Path) -> None:
    old = make_run("bge", "s", RANK_A)
    evaluate(Run("bge", "s", old.results[:2]), "precise@1").save(tmp_path / "metrics.json")
    old.save(tmp_path)
    _, m = load_run_dir(tmp_path)
    assert m.n_queries == 4 and m.mean("precise@1") == pytest.approx(1 / 3)


# --- the command -----------------------------------------------------------------------------


@pytest.fixture()
def two_runs(tmp_path: Path) -> Path:
    for model, ranked in (("bge", RANK_A), ("acge", RANK_B)):
        d = tmp_path / "runs" / "原数据" / model
        run = make_run(model, "原数据", ranked)
        run.save(d)
        evaluate(run, "precise@1,2;mrr@5").save(d / "metrics.json")
    return tmp_path / "runs"


# `embedarena compare` runs in process through the real entry point `main()` (the `cli`
# fixture); tests/cli/test_smoke.py runs it once as a subprocess.
def test_cli_compare_prints_and_saves(cli, two_runs: Path, tmp_path: Path) -> None:  # noqa: ANN001
    out = tmp_path / "report"
    res = cli("compare", two_runs / "原数据" / "bge", two_runs / "原数据" / "acge",
              "--metrics", "precise@1,2", "--out", out)
    assert res.code == 0, res.stderr
    assert "precise@1" in res.stdout and "mrr@5" not in res.stdout
    assert "33.3" in res.stdout and "66.7" in res.stdout
    rows = md_rows((out / "comparison.md").read_text(encoding="utf-8"), "原数据")
    # A: q0 all gold by rank 3, q1 right at 1, q2 at rank 3 → precise@1 1/3, @2 1/3
    # B: q0 both gold in top 2, q1 at rank 2, q2 miss → precise@1 0, @2 2/3
    assert rows == {"bge": ["**33.3**", "33.3"], "acge": ["0.0", "**66.7**"]}
    assert (out / "comparison.csv").exists() and (out / "comparison.json").exists()


def test_cli_compare_finds_runs_below_a_folder_and_uses_saved_metrics(cli,  # noqa: ANN001
                                                                     two_runs: Path) -> None:
    res = cli("compare", two_runs)
    assert res.code == 0, res.stderr
    assert "mrr@5" in res.stdout and "bge" in res.stdout and "acge" in res.stdout
    assert "3 queries (1 without relevant gold excluded)" in res.stdout


def test_cli_compare_labels_clashing_runs_by_folder(cli, two_runs: Path,  # noqa: ANN001
                                                   tmp_path: Path) -> None:
    again = tmp_path / "rerun" / "bge-v2"
    make_run("bge", "原数据", RANK_B).save(again)
    res = cli("compare", two_runs / "原数据" / "bge", again, "--metrics", "precise@2")
    assert res.code == 0, res.stderr
    assert "bge [bge]" in res.stdout and "bge [bge-v2]" in res.stdout


def test_cli_compare_errors_are_one_line(cli, tmp_path: Path, two_runs: Path) -> None:  # noqa: ANN001
    p = cli("compare", tmp_path / "missing")
    assert p.code == 4
    assert p.stderr.strip().count("\n") == 0 and "no such file or directory" in p.stderr
    (tmp_path / "empty").mkdir()
    p = cli("compare", tmp_path / "empty")
    assert p.code == 4 and "no run.jsonl here or below" in p.stderr
    p = cli("compare", two_runs, "--metrics", "p@5")
    assert p.code == 2 and "ambiguous" in p.stderr and "Traceback" not in p.stderr


# --- runs from different inputs (issue 12, item 4) -------------------------------------------


def _save_with_inputs(d: Path, model: str, ranked: list[list[str]], corpus: str | None,
                      queries: str = "q" * 64) -> Path:
    run = make_run(model, "原数据", ranked)
    run.meta.update({"queries_sha256": queries, **({"corpus_sha256": corpus} if corpus else {})})
    run.save(d)
    return d


def test_mixed_inputs_marks_only_query_sets_whose_runs_differ() -> None:
    from embedarena.evaluation.compare import describe_mixed, mixed_inputs

    same = {"corpus_sha256": "a" * 64, "queries_sha256": "b" * 64}
    assert mixed_inputs([("bge", "s", same), ("acge", "s", dict(same)),
                         ("bge", "t", {"corpus_sha256": "c" * 64})]) == {}
    marks = mixed_inputs([("bge", "s", same), ("acge", "s", {**same, "corpus_sha256": "d" * 64}),
                          ("bm25", "s", {"queries_sha256": "b" * 64}), ("bge", "t", same)])
    assert marks == {("bge", "s"): ["corpus aaaaaaaa"], ("acge", "s"): ["corpus dddddddd"],
                     ("bm25", "s"): ["corpus not recorded"]}
    (line,) = describe_mixed(marks)
    assert "corpus aaaaaaaa: bge" in line and "corpus dddddddd: acge" in line
    queries = mixed_inputs([("bge", "s", same), ("acge", "s", {**same, "queries_sha256": "e"})])
    assert queries[("acge", "s")] == ["query file e"]


def test_cli_compare_refuses_runs_of_different_corpora(cli, tmp_path: Path) -> None:  # noqa: ANN001
    """The probe: run, change the corpus, re-run one model, compare. One line, exit 2."""
    a = _save_with_inputs(tmp_path / "runs" / "bge", "bge", RANK_A, "1" * 64)
    b = _save_with_inputs(tmp_path / "runs" / "acge", "acge", RANK_B, "2" * 64)
    res = cli("compare", tmp_path / "runs")
    assert res.code == ConfigError.exit_code and "Traceback" not in res.stderr
    (line,) = res.stderr.strip().splitlines()
    assert "different inputs" in line and "corpus 11111111: bge" in line
    assert "corpus 22222222: acge" in line and "--allow-mixed" in line
    assert res.stdout == ""
    res = cli("compare", a, b, "--allow-mixed", "--out", tmp_path / "cmp")
    assert res.code == 0, res.stderr
    assert "warning: query set '原数据' mixes inputs" in res.stderr
    rows = md_rows((tmp_path / "cmp" / "comparison.md").read_text(encoding="utf-8"), "原数据")
    assert set(rows) == {"bge [corpus 11111111]", "acge [corpus 22222222]"}
    # a different query file under the same set name is refused the same way
    _save_with_inputs(b, "acge", RANK_B, "1" * 64, queries="f" * 64)
    res = cli("compare", a, b)
    assert res.code == ConfigError.exit_code and "query file ffffffff: acge" in res.stderr
    # the same inputs: no warning, plain labels
    _save_with_inputs(b, "acge", RANK_B, "1" * 64)
    res = cli("compare", a, b)
    assert res.code == 0 and "warning" not in res.stderr and "acge [" not in res.stdout
