"""Embedders: turn texts into vectors, one registered adapter per model `type`.

Importing this package is cheap (no torch, transformers, openai or langchain); the names below
load on first use, so `embedarena --help` stays fast on the core install.

    from embedarena.embedders import parse_embedder_spec, create_embedder, CachedEmbedder
    emb = CachedEmbedder(create_embedder(parse_embedder_spec("hf:./models/bge-small-zh")))
    vecs = emb.embed_documents(["甲状腺结节", "胆管炎"])
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from embedarena.embedders.azure_openai import AzureOpenAIEmbedder, OpenAIEmbedder
    from embedarena.embedders.base import Embedder, EmbedderBase, EmbedderSpec, register_embedder
    from embedarena.embedders.cache import CachedEmbedder
    from embedarena.embedders.hf import HFEmbedder
    from embedarena.embedders.langchain import LangChainEmbedder, as_langchain
    from embedarena.embedders.registry import create_embedder, embedder_types, parse_embedder_spec

_EXPORTS = {
    "Embedder": "base", "EmbedderBase": "base", "EmbedderSpec": "base",
    "create_embedder": "registry", "register_embedder": "base",
    "embedder_types": "registry", "parse_embedder_spec": "registry",
    "CachedEmbedder": "cache",
    "as_langchain": "langchain", "LangChainEmbedder": "langchain",
    "HFEmbedder": "hf",
    "AzureOpenAIEmbedder": "azure_openai", "OpenAIEmbedder": "azure_openai",
}

__all__ = [
    "AzureOpenAIEmbedder", "CachedEmbedder", "Embedder", "EmbedderBase", "EmbedderSpec",
    "HFEmbedder", "LangChainEmbedder", "OpenAIEmbedder", "as_langchain", "create_embedder",
    "embedder_types", "parse_embedder_spec", "register_embedder",
]


def __getattr__(name: str) -> Any:
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module 'embedarena.embedders' has no attribute {name!r}")
    return getattr(importlib.import_module(f"embedarena.embedders.{mod}"), name)
