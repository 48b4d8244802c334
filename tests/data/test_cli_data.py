"""`embedarena data ...` through the real app object and, for error output, the real entry
point `main()` (in process; tests/cli/test_smoke.py runs `data` once as a subprocess)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from embedarena.cli import app

runner = CliRunner()


def _invoke(*args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    result = runner.invoke(app, ["data", *args], env=env)
    return result


@pytest.mark.parametrize("cmd", ["prepare", "fetch", "inspect", "list"])
def test_every_command_has_help_with_an_example(cmd: str) -> None:
    result = _invoke(cmd, "--help")
    assert result.exit_code == 0, result.output
    assert "Example: embedarena data " + cmd in result.output


def test_prepare_prints_counts(tmp_path: Path) -> None:
    openpyxl = pytest.importorskip("openpyxl")
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["Question", "Thinking", "Label", "Label2", "Label2"])
    for row in (["q1", "", "a", "b", None], [None, "", "a", None, None],
                ["q2", "", None, None, None], ["q3", "", "c", None, "d"], ["q4", "", "b", None,
                                                                            None]):
        ws.append(row)
    src = tmp_path / "disease.xlsx"
    wb.save(src)
    out = tmp_path / "out"
    result = _invoke("prepare", str(src), "--out", str(out), "--negatives", "2",
                     "--test-size", "1", "--seed", "3")
    assert result.exit_code == 0, result.output
    text = result.output
    assert "rows in = dropped + written: 5 = 2 + 3 (ok)" in text
    for needle in ("empty question", "no label", "distinct labels"):
        assert needle in text
    assert len((out / "train.jsonl").read_text(encoding="utf-8").splitlines()) == 2
    assert len((out / "test.jsonl").read_text(encoding="utf-8").splitlines()) == 1
    assert json.loads((out / "label.json").read_text(encoding="utf-8")) == ["a", "b", "c", "d"]


def test_inspect_queries_against_corpus(tmp_path: Path) -> None:
    (tmp_path / "label.json").write_text('["甲状腺癌", "胆管炎"]', encoding="utf-8")
    q = tmp_path / "test.jsonl"
    q.write_text('{"query": "q1", "pos": ["甲状腺癌"]}\n'
                 '{"query": "q2", "pos": ["胆管炎", "不存在的病"]}\n'
                 '{"query": "q3", "pos": 3}\n', encoding="utf-8")
    result = _invoke("inspect", str(q), "--corpus", str(tmp_path / "label.json"), "--skip-bad")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "test JSONL {query, pos}" in out
    assert "queries with gold not in the corpus │ 1" in out
    assert "不存在的病" in out
    assert "skipped 1 bad record(s)" in out and "line 3" in out


def test_inspect_corpus_and_train(shared_data: Path) -> None:
    result = _invoke("inspect", str(shared_data / "dbpedia-entity-subset-agentset/corpus.jsonl"))
    assert result.exit_code == 0, result.output
    assert "JSONL BEIR corpus records" in result.output
    assert re.search(r"documents\s*│\s*5000\b", result.output), result.output
    result = _invoke("inspect", str(shared_data / "rag-retrieval-t2rank/t2rank_100.jsonl"),
                     "--kind", "train")
    assert result.exit_code == 0, result.output
    assert re.search(r"examples with a negative that is also a positive\s*│\s*6\b",
                     result.output), result.output


def _availability(output: str) -> dict[str, str]:
    """name → yes/no from the first two cells of each table row."""
    out = {}
    for line in output.splitlines():
        cells = [c.strip() for c in line.split("│")]
        if len(cells) > 3 and cells[1] and cells[2] in ("yes", "no"):
            out[cells[1]] = cells[2]
    return out


def test_list_shows_availability(shared_data: Path, tmp_path: Path) -> None:
    result = _invoke("list", "--root", str(shared_data))
    assert result.exit_code == 0, result.output
    names = ["t2rank", "cranfield", "dbpedia", "flagembedding-toy"]
    assert _availability(result.output) == dict.fromkeys(names, "yes")
    (tmp_path / "cranfield").mkdir()  # an empty folder is not a dataset
    empty = _invoke("list", "--root", str(tmp_path))
    assert empty.exit_code == 0, empty.output
    assert _availability(empty.output) == dict.fromkeys(names, "no")


def test_errors_are_one_line_with_file_and_line(cli, tmp_path: Path) -> None:  # noqa: ANN001
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "a", "pos": ["x"]}\n{"query": "b", "pos": 3}\n', encoding="utf-8")
    p = cli("data", "inspect", bad)
    assert p.code == 4
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert f"{bad}:line 2: field 'pos' must be a list of strings" in lines[0]
    p = cli("data", "fetch", "nope")
    assert p.code == 2 and "unknown dataset 'nope'" in p.stderr


def test_gold_off_by_whitespace_is_shown_quoted_and_explained(tmp_path: Path) -> None:
    """Issue 12, item 11: 'b ' was reported missing but shown as 'b' (whitespace collapsed);
    ids are still compared exactly, but the label is quoted and its near twin named."""
    from embedarena.data.readers import load_corpus, show_label, whitespace_twins

    (tmp_path / "label.json").write_text('["甲状腺癌", "胆管炎", "c d"]', encoding="utf-8")
    q = tmp_path / "test.jsonl"
    q.write_text('{"query": "q1", "pos": ["甲状腺癌 "]}\n{"query": "q2", "pos": ["c  d"]}\n'
                 '{"query": "q3", "pos": ["胆管炎", "不存在的病"]}\n', encoding="utf-8")
    result = _invoke("inspect", str(q), "--corpus", str(tmp_path / "label.json"),
                     env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    out = result.output
    assert re.search(r"queries with gold not in the corpus +│ 3 ", out)
    assert re.search(r"gold off by surrounding whitespace +│ 1 ", out)
    assert "'甲状腺癌 ' (the corpus has '甲状腺癌'" in out
    assert "'c  d'" in out and "不存在的病" in out and "'不存在的病'" not in out
    corpus = load_corpus(tmp_path / "label.json")
    assert whitespace_twins(corpus, ["甲状腺癌 ", "\t胆管炎", "胆管炎", "c  d"]) == {
        "甲状腺癌 ": "甲状腺癌", "\t胆管炎": "胆管炎"}
    assert show_label("胆管炎") == "胆管炎" and show_label("a\u3000") == "'a\\u3000'"
