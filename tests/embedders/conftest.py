"""Fixtures for embedder tests: an isolated cache home, no ambient API keys, the local
OpenAI/Azure-compatible server, and a second tiny BERT with different weights."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.embedders.azure_server import EmbeddingAPIServer

AMBIENT = ("AZURE_OPENAI_API_KEY", "OPENAI_API_KEY", "AZURE_OPENAI_ENDPOINT", "OPENAI_BASE_URL",
           "AZURE_OPENAI_AD_TOKEN", "OPENAI_API_VERSION")


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Caches go to a temp home, and a developer's real keys never reach a test."""
    monkeypatch.setenv("EMBEDARENA_HOME", str(tmp_path / "embedarena-home"))
    for var in AMBIENT:
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def api_server() -> Iterator[EmbeddingAPIServer]:
    with EmbeddingAPIServer() as srv:
        yield srv


@pytest.fixture(scope="session")
def tiny_bert_dir_b(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Same architecture and tokenizer as `tiny_bert_dir`, different random weights."""
    pytest.importorskip("torch")
    from tests.conftest import make_tiny_bert

    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert-b"), seed=1)
