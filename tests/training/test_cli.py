"""`embedarena mine` and `embedarena train` as a user calls them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.training.conftest import write_jsonl


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "embedarena", *args], capture_output=True,
                          text=True, timeout=300, env={"COLUMNS": "200", "PATH": "/usr/bin"})


def test_help_texts() -> None:
    for cmd in (["mine"], ["train", "embedder"]):
        res = _cli(*cmd, "--help")
        assert res.returncode == 0, res.stderr
        assert "Example:" in res.stdout


def test_mine_cli_writes_every_row_and_counts(tmp_path: Path) -> None:
    rows = [{"query": "甲状腺结节和甲状腺癌", "pos": ["甲状腺结节"], "neg": []},
            {"query": "甲状腺结节和甲状腺癌", "pos": ["甲状腺癌"], "neg": ["甲状腺炎"]},
            {"query": "高血压 [头晕]", "pos": ["高血压"], "neg": ["低血压", "甲状腺功能亢进"]}]
    src = write_jsonl(tmp_path / "train.jsonl", rows)
    out = tmp_path / "mined.jsonl"
    res = _cli("mine", str(src), str(out), "--model", "bm25", "--range", "0-10", "-n", "5")
    assert res.returncode == 0, res.stderr
    assert "gold from another row of the query" in res.stdout
    got = [json.loads(ln) for ln in out.read_text(encoding="utf-8").splitlines()]
    assert [g["query"] for g in got] == [r["query"] for r in rows]
    for g in got[:2]:
        assert not {"甲状腺结节", "甲状腺癌"} & set(g["neg"])


def test_mine_cli_names_the_bad_line(tmp_path: Path) -> None:
    src = tmp_path / "bad.jsonl"
    src.write_text('{"query": "a", "pos": ["b"]}\n{"query": "c", "pos": []}\n', encoding="utf-8")
    res = _cli("mine", str(src), str(tmp_path / "o.jsonl"), "--model", "bm25")
    assert res.returncode != 0
    assert "bad.jsonl:line 2" in res.stderr and "Traceback" not in res.stderr
