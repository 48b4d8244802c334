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


def make_cross_encoder_base(path: Path, seed: int = 0) -> Path:
    """`make_tiny_encoder` re-initialised with a wider spread (initializer_range 0.2).

    At BERT's 0.02 a 32-wide random encoder gives nearly the same [CLS] state for every
    input, so a fresh 1-logit head spreads its scores by ~1e-4 of their size and the loss sits
    at ln(G) for the first steps: by the training-health rule that *is* a run that has not
    moved. A pretrained encoder tells texts apart; the wider init stands in for that.
    """
    import torch
    from transformers import BertConfig, BertModel

    make_tiny_encoder(path, seed=seed)
    cfg = BertConfig.from_pretrained(path)
    cfg.initializer_range = 0.2
    torch.manual_seed(seed)
    BertModel(cfg).save_pretrained(path)
    return path


@pytest.fixture()
def cross_encoder_base(tmp_path: Path) -> Path:
    pytest.importorskip("transformers")
    return make_cross_encoder_base(tmp_path / "ce-base")


def graded_tsv(path: Path, rows: list[dict[str, object]], header: bool = True) -> Path:
    """The toy rows as RAG-Retrieval graded data: pos → 3, then negatives graded 2, 1, then 0."""
    lines = ["query\tdoc\tlabel"] if header else []
    for r in rows:
        lines.append(f"{r['query']}\t{r['pos'][0]}\t3")  # type: ignore[index]
        for k, neg in enumerate(r["neg"]):  # type: ignore[arg-type]
            lines.append(f"{r['query']}\t{neg}\t{max(2 - k, 0)}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
