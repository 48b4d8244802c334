"""Fixtures for training tests: a tiny encoder whose tokenizer really knows its vocabulary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import make_tiny_bert


def make_tiny_encoder(path: Path, seed: int = 0, hidden: int = 32) -> Path:
    """`make_tiny_bert` with dropout off."""
    make_tiny_bert(path, seed=seed, hidden=hidden)
    cfg = json.loads((path / "config.json").read_text())
    # Dropout off: tests compare gradients and embeddings across runs and processes.
    cfg["hidden_dropout_prob"] = 0.0
    cfg["attention_probs_dropout_prob"] = 0.0
    (path / "config.json").write_text(json.dumps(cfg))
    return path


@pytest.fixture()
def tiny_encoder(tmp_path: Path) -> Path:
    pytest.importorskip("transformers")
    return make_tiny_encoder(tmp_path / "tiny")


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                    encoding="utf-8")
    return path


def toy_rows(n: int = 24) -> list[dict[str, object]]:
    """Queries with one clearly matching passage each and unrelated negatives."""
    words = ["the", "of", "a", "is", "what", "and", "in", "to"]
    rows: list[dict[str, object]] = []
    for i in range(n):
        w = words[i % len(words)]
        rows.append({"query": f"what is {i} {w}",
                     "pos": [f"{i} {w} is {i}"],
                     "neg": [f"{(i + k) % n} and {words[(i + k) % len(words)]}"
                             for k in range(1, 6)]})
    return rows
