"""`embedarena mine` and `embedarena train` as a user calls them (in process, through the
real `main()`; tests/cli/test_smoke.py starts each once as a subprocess)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import CliResult
from tests.training.conftest import make_cross_encoder_base, toy_rows, write_jsonl


@pytest.fixture
def embedarena(cli: Callable[..., CliResult], tmp_path: Path) -> Callable[..., CliResult]:
    """Without Elasticsearch settings, with a private state dir: these commands need no ES."""
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("EMBEDARENA_ES_")}
    return lambda *args: cli(*args, env={**env, "EMBEDARENA_HOME": str(tmp_path / "home")})


def test_help_texts(embedarena: Callable[..., CliResult]) -> None:
    for cmd in (["mine"], ["train", "embedder"], ["train", "reranker"]):
        res = embedarena(*cmd, "--help")
        assert res.code == 0, res.stderr
        assert "Example:" in res.stdout


def test_mine_cli_writes_every_row_and_counts(embedarena: Callable[..., CliResult],
                                              tmp_path: Path) -> None:
    rows = [{"query": "甲状腺结节和甲状腺癌", "pos": ["甲状腺结节"], "neg": []},
            {"query": "甲状腺结节和甲状腺癌", "pos": ["甲状腺癌"], "neg": ["甲状腺炎"]},
            {"query": "高血压 [头晕]", "pos": ["高血压"], "neg": ["低血压", "甲状腺功能亢进"]}]
    src = write_jsonl(tmp_path / "train.jsonl", rows)
    out = tmp_path / "mined.jsonl"
    res = embedarena("mine", str(src), str(out), "--model", "bm25", "--range", "0-10", "-n", "5")
    assert res.code == 0, res.stderr
    assert "gold from another row of the query" in res.stdout
    got = [json.loads(ln) for ln in out.read_text(encoding="utf-8").splitlines()]
    assert [g["query"] for g in got] == [r["query"] for r in rows]
    for g in got[:2]:
        assert not {"甲状腺结节", "甲状腺癌"} & set(g["neg"])


def test_mine_cli_names_the_bad_line(embedarena: Callable[..., CliResult], tmp_path: Path) -> None:
    src = tmp_path / "bad.jsonl"
    src.write_text('{"query": "a", "pos": ["b"]}\n{"query": "c", "pos": []}\n', encoding="utf-8")
    res = embedarena("mine", str(src), str(tmp_path / "o.jsonl"), "--model", "bm25")
    assert res.code != 0
    assert "bad.jsonl:line 2" in res.stderr and "Traceback" not in res.stderr


def test_train_reranker_cli_trains_and_names_a_collapse_in_one_line(
        embedarena: Callable[..., CliResult], tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    base = make_cross_encoder_base(tmp_path / "base")
    train = write_jsonl(tmp_path / "train.jsonl", toy_rows())
    common = ["train", "reranker", "--model_name_or_path", str(base), "--train_data", str(train),
              "--max_steps", "4", "--per_device_train_batch_size", "4", "--train_group_size",
              "4", "--learning_rate", "1e-3", "--report_to", "none", "--cpu",
              "--logging_steps", "2"]
    res = embedarena(*common, "--output_dir", str(tmp_path / "ok"), "--max_len", "64")
    assert res.code == 0, res.stderr
    assert "trained 4 steps, last logged loss" in res.stdout and str(tmp_path / "ok") in res.stdout
    assert (tmp_path / "ok" / "model.safetensors").is_file()
    res = embedarena(*common, "--output_dir", str(tmp_path / "bad"), "--max_len", "3")
    assert res.code == 7 and "Traceback" not in res.stderr
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "training collapsed at step 0" in errors[0]
    assert "max_len 3 leaves 0.0 text tokens" in errors[0]
