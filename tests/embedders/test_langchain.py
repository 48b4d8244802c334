"""LangChain both ways: our embedders as LangChain `Embeddings`, and LangChain ones as ours."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("langchain_core")

from langchain_core.embeddings import Embeddings  # noqa: E402

from embedarena.embedders.base import Embedder  # noqa: E402
from embedarena.embedders.langchain import (  # noqa: E402
    LangChainEmbedder,
    _public_fields,
    as_langchain,
)
from embedarena.embedders.registry import create_embedder  # noqa: E402
from embedarena.errors import ConfigError  # noqa: E402
from tests.embedders.azure_server import EmbeddingAPIServer, fake_embedding  # noqa: E402

TEXTS = ["甲状腺结节", "the policy covers what", "胆管炎"]


def test_tiny_bert_round_trips_both_ways(tiny_bert_dir: Path) -> None:
    pytest.importorskip("torch")
    from embedarena.embedders.hf import HFEmbedder

    ours = HFEmbedder(tiny_bert_dir, query_instruction_for_retrieval="q: ")
    lc = as_langchain(ours)
    assert isinstance(lc, Embeddings)
    docs = np.asarray(lc.embed_documents(TEXTS), dtype=np.float32)
    np.testing.assert_allclose(docs, ours.embed_documents(TEXTS), atol=1e-6)
    # LangChain's query path is our query side (the instruction applies)
    np.testing.assert_allclose(lc.embed_query(TEXTS[0]), ours.embed_queries(TEXTS[:1])[0],
                               atol=1e-6)
    assert not np.allclose(lc.embed_query(TEXTS[0]), docs[0])

    back = LangChainEmbedder(lc, "tiny-via-langchain", normalized=True)
    assert isinstance(back, Embedder)
    assert back.dim == 32 and back.similarity == "dot_product"
    np.testing.assert_allclose(back.embed_documents(TEXTS), ours.embed_documents(TEXTS),
                               atol=1e-6)
    np.testing.assert_allclose(back.embed_queries(TEXTS), ours.embed_queries(TEXTS), atol=1e-6)
    out = back.embed_documents(TEXTS)
    assert out.dtype == np.float32 and out.shape == (3, 32)
    assert back.embed_queries([]).shape == (0, 32)


def test_factory_spec_and_fingerprint() -> None:
    spec = {"name": "fake", "type": "langchain",
            "factory": "langchain_core.embeddings:DeterministicFakeEmbedding",
            "kwargs": {"size": 12}}
    emb = create_embedder(spec)
    assert isinstance(emb, LangChainEmbedder)
    assert emb.dim == 12 and emb.similarity == "cosine"
    a = emb.embed_documents(TEXTS)
    np.testing.assert_array_equal(a, create_embedder(spec).embed_documents(TEXTS))
    fp = emb.fingerprint
    assert fp.startswith("langchain:") and create_embedder(spec).fingerprint == fp
    assert create_embedder({**spec, "kwargs": {"size": 13}}).fingerprint != fp
    assert create_embedder({**spec, "revision": "retrained-2024-06"}).fingerprint != fp
    assert create_embedder({**spec, "name": "renamed"}).fingerprint == fp


@pytest.mark.parametrize(("factory", "pattern"), [
    ("no_such_module_xyz:make", "cannot import no_such_module_xyz"),
    ("langchain_core.embeddings:NoSuchThing", "has no 'NoSuchThing'"),
    ("json:dumps", "str is not a LangChain Embeddings"),
])
def test_bad_factories(factory: str, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        create_embedder({"name": "x", "type": "langchain", "factory": factory,
                         "kwargs": {"obj": 1} if factory == "json:dumps" else {}})


def test_langchain_openai_azure_against_the_local_server(monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    pytest.importorskip("langchain_openai")
    from langchain_openai import AzureOpenAIEmbeddings

    with EmbeddingAPIServer() as srv:
        monkeypatch.setenv("AZURE_OPENAI_API_KEY", srv.api_key)
        lc = AzureOpenAIEmbeddings(azure_deployment="text-embedding-3-small",
                                   azure_endpoint=srv.url, api_version="2024-02-01",
                                   dimensions=64, check_embedding_ctx_length=False,
                                   max_retries=0)
        via_lc = LangChainEmbedder(lc, "azure-3-small-lc", normalized=True)
        assert via_lc.dim == 64
        got = via_lc.embed_documents(TEXTS)
        want = np.stack([fake_embedding(t, "text-embedding-3-small", 64) for t in TEXTS])
        np.testing.assert_allclose(got, want, atol=1e-6)
        assert srv.requests[-1].path == "/openai/deployments/text-embedding-3-small/embeddings"
        # nothing secret leaks into the fingerprint's inputs
        assert srv.api_key not in json.dumps(_public_fields(lc))
        assert _public_fields(lc).get("dimensions") == 64

        # Our Azure adapter, handed to LangChain, gives the same vectors.
        ours = create_embedder({"type": "azure_openai", "deployment": "text-embedding-3-small",
                                "azure_endpoint": srv.url, "dimensions": 64})
        bridged = as_langchain(ours)
        np.testing.assert_allclose(bridged.embed_documents(TEXTS), want, atol=1e-6)
        np.testing.assert_allclose(bridged.embed_query(TEXTS[0]), want[0], atol=1e-6)

        # And the same through a spec with a factory path (key from the environment).
        spec_emb = create_embedder({
            "name": "lc-azure", "type": "langchain",
            "factory": "langchain_openai:AzureOpenAIEmbeddings",
            "kwargs": {"azure_deployment": "text-embedding-3-small", "azure_endpoint": srv.url,
                       "api_version": "2024-02-01", "dimensions": 64,
                       "check_embedding_ctx_length": False}})
        np.testing.assert_allclose(spec_emb.embed_documents(TEXTS), want, atol=1e-6)
