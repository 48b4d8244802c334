"""`--encoding` and the encodings detected without it (issue 12, item 10), on real Chinese
text: the T2Ranking passages of the shared data, saved as a CSV the way Excel in a Chinese
Windows locale saves one (GBK, CRLF) or as "CSV UTF-8" (with a BOM)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from embedarena.data.readers import load_corpus_with_report
from embedarena.errors import ConfigError, DataError


def _passages(shared_data: Path, n: int = 40) -> list[str]:
    """Distinct real passages that GBK can encode (a few use characters it lacks)."""
    out: dict[str, None] = {}
    with (shared_data / "rag-retrieval-t2rank" / "t2rank_100.jsonl").open(encoding="utf-8") as f:
        for line in f:
            for text in json.loads(line)["pos"]:
                text = " ".join(text.split())[:200]
                try:
                    text.encode("gbk")
                except UnicodeEncodeError:
                    continue
                out[text] = None
            if len(out) >= n:
                break
    return list(out)[:n]


def _csv(path: Path, rows: list[list[str]], encoding: str) -> Path:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerows(rows)
    path.write_bytes(buf.getvalue().encode(encoding))
    return path


@pytest.fixture(scope="module")
def passages(shared_data: Path) -> list[str]:
    return _passages(shared_data)


def test_gbk_and_bom_csv_of_real_passages_load_whole(passages: list[str],
                                                     tmp_path: Path) -> None:
    rows = [["标签", "来源"], *([p, "t2rank"] for p in passages)]
    for encoding, label in (("gbk", "GB18030"), ("utf-8-sig", "UTF-8")):
        p = _csv(tmp_path / f"{encoding}.csv", rows, encoding)
        for skip_bad in (False, True):
            corpus, report = load_corpus_with_report(p, column="标签", skip_bad=skip_bad)
            assert corpus.texts == passages and corpus.metadata is not None
            assert (report.read, report.loaded, report.skipped_total) == (len(passages),
                                                                          len(passages), 0)
            assert report.format.startswith("csv" + (f" ({label})" if label != "UTF-8" else ""))


def test_gbk_csv_with_a_broken_row(passages: list[str], tmp_path: Path, cli) -> None:  # noqa: ANN001
    """The probe's file: 4 lines of GBK, `--skip-bad`. It was "read 3, skipped 2, loaded 1"
    (header skipped, the first row taken as the header); now the header is the header and
    read == loaded + skipped. A byte no encoding takes makes detection fail: the header is
    then refused (never skipped), and `--encoding gbk` names the one bad row."""
    p = _csv(tmp_path / "four.csv", [["标签"], *([t] for t in passages[:3])], "gbk")
    res = cli("data", "inspect", p, "--skip-bad")
    assert res.code == 0, res.stderr
    assert "csv (GB18030) column '标签'" in res.stdout
    assert "lines read          │ 3" in res.stdout and "lines loaded        │ 3" in res.stdout
    raw = p.read_bytes().splitlines(keepends=True)
    raw[2] = b"\x80" + raw[2]  # 0x80 alone is neither UTF-8 nor GBK/GB18030
    broken = tmp_path / "broken.csv"
    broken.write_bytes(b"".join(raw))
    res = cli("data", "inspect", broken, "--skip-bad")
    assert res.code == DataError.exit_code
    assert "broken.csv:line 1: the header is not valid UTF-8" in res.stderr
    assert "neither UTF-8 nor GB18030; pass encoding=" in res.stderr
    res = cli("data", "inspect", broken, "--skip-bad", "--encoding", "gbk")
    assert res.code == 0, res.stderr
    assert "csv (GBK) column '标签'" in res.stdout
    assert "lines read          │ 3" in res.stdout and "lines loaded        │ 2" in res.stdout
    assert "broken.csv:line 3: not valid GBK (byte 0x80 at column 1)" in res.stderr
    _, report = load_corpus_with_report(broken, skip_bad=True, encoding="GBK")
    assert report.read == report.loaded + report.skipped_total == 3


def test_eval_and_index_build_take_encoding(passages: list[str], tmp_path: Path,  # noqa: ANN001
                                            tiny_bert_dir: Path, cli,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """`eval --encoding` reaches the corpus reader (faiss backend: no node needed)."""
    monkeypatch.setenv("EMBEDARENA_HOME", str(tmp_path / "home"))
    lines = _csv(tmp_path / "c.csv", [["标签"], *([t] for t in passages[:10])],
                 "gbk").read_bytes().splitlines(keepends=True)
    lines.insert(3, b"\x80broken\r\n")  # line 4: no encoding takes it
    corpus = tmp_path / "corpus.csv"
    corpus.write_bytes(b"".join(lines))
    q = tmp_path / "q.jsonl"
    q.write_text("".join(json.dumps({"query": t[:12], "pos": [t]}, ensure_ascii=False) + "\n"
                         for t in passages[:5]), encoding="utf-8")
    args = ("eval", "--backend", "faiss", "--model", f"hf:{tiny_bert_dir}", "--corpus", corpus,
            "--queries", q, "--k", "1,5", "--out", tmp_path / "run", "--skip-bad")
    res = cli(*args)
    assert res.code == DataError.exit_code and "the header is not valid UTF-8" in res.stderr
    res = cli(*args, "--encoding", "gbk")
    assert res.code == 0, res.stderr
    assert "skipped 1 of 11 lines" in res.stderr and "loaded 10" in res.stderr
    assert "corpus.csv:line 4: not valid GBK" in res.stderr
    meta = json.loads((tmp_path / "run" / "meta.json").read_text(encoding="utf-8"))
    assert meta["corpus_source"] == str(corpus)
    res = cli("eval", "--model", "bm25", "--queries", q, "--out", tmp_path / "r2",
              "--encoding", "gbk")
    assert res.code == ConfigError.exit_code and "--encoding applies to" in res.stderr
    res = cli("index", "build", "--model", "bm25", "--dataset", "cranfield", "--encoding", "gbk")
    assert res.code == ConfigError.exit_code and "--encoding applies to a --corpus" in res.stderr
    res = cli("index", "build", "--help")
    assert "--encoding" in res.stdout
