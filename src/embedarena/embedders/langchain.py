"""LangChain both ways: `as_langchain(embedder)` hands any embedarena embedder to LangChain
(e.g. to query our indexes with ElasticsearchStore), and `type: langchain` benchmarks any
LangChain `Embeddings` (from a `module:callable` factory, or constructed in code).

langchain_core is imported only when one of these is used.
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator

from embedarena.embedders.base import (
    Embedder,
    EmbedderBase,
    EmbedderSpec,
    check_output,
    register_embedder,
    settings_fingerprint,
)
from embedarena.errors import ConfigError, EmbedderError, MissingExtraError
from embedarena.secrets import is_secret_name

if TYPE_CHECKING:
    import numpy as np
    from langchain_core.embeddings import Embeddings

PROBE_TEXT = "dimension probe"


def _embeddings_base() -> type[Embeddings]:
    try:
        from langchain_core.embeddings import Embeddings
    except ImportError:
        raise MissingExtraError("langchain-core", "langchain") from None
    return Embeddings


_BRIDGE: type[Any] | None = None


def as_langchain(embedder: Embedder) -> Embeddings:
    """A LangChain `Embeddings` backed by `embedder` (queries get its query-side treatment,
    e.g. the retrieval instruction)."""
    global _BRIDGE
    if _BRIDGE is None:
        base = _embeddings_base()

        class EmbedarenaEmbeddings(base):  # type: ignore[valid-type, misc]
            """LangChain view of an embedarena embedder."""

            def __init__(self, inner: Embedder) -> None:
                self.embedder = inner

            def embed_documents(self, texts: list[str]) -> list[list[float]]:
                return self.embedder.embed_documents(list(texts)).tolist()

            def embed_query(self, text: str) -> list[float]:
                return self.embedder.embed_queries([text])[0].tolist()

            def __repr__(self) -> str:
                return f"EmbedarenaEmbeddings({self.embedder!r})"

        _BRIDGE = EmbedarenaEmbeddings
    return _BRIDGE(embedder)


def load_factory(path: str) -> Any:
    """Import `package.module:callable` (the callable may be dotted: `module:Class.method`)."""
    mod_name, _, attr = path.partition(":")
    try:
        obj: Any = importlib.import_module(mod_name)
    except ImportError as e:
        raise ConfigError(f"langchain factory '{path}': cannot import {mod_name}: {e}") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(f"langchain factory '{path}': {mod_name} has no "
                              f"'{attr}'") from None
    if not callable(obj):
        raise ConfigError(f"langchain factory '{path}' is not callable")
    return obj


class LangChainSpec(EmbedderSpec):
    """`type: langchain`: `factory: package.module:callable` returns a LangChain `Embeddings`.

    The factory reads its own credentials from the environment. Its object is opaque to us, so
    the fingerprint covers factory + kwargs + `revision`: bump `revision` when the model behind
    it changes. `normalized: true` lets the indexer use dot_product (only if it is true).
    """

    type: Literal["langchain"] = "langchain"
    factory: str
    kwargs: dict[str, Any] = Field(default_factory=dict)
    normalized: bool = False
    revision: str | None = None

    @field_validator("factory")
    @classmethod
    def _factory_ok(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*", v):
            raise ValueError("factory is 'package.module:callable'")
        return v

    @classmethod
    def default_name(cls, data: dict[str, Any]) -> str | None:
        f = data.get("factory")
        if not isinstance(f, str) or ":" not in f:
            return None
        return f.rsplit(":", 1)[1].rsplit(".", 1)[-1]

    @classmethod
    def from_inline(cls, rest: str) -> dict[str, Any]:
        return {"factory": rest}


@register_embedder(LangChainSpec, prefixes=("langchain",), forms=("langchain:<module>:<callable>",))
class LangChainEmbedder(EmbedderBase):
    """Any LangChain `Embeddings` as an embedarena embedder. `dim` comes from embedding one
    probe text (once, lazily).

    The object is opaque, so the fingerprint is built from what we can see: its class, its
    plain (non-secret) public fields, the factory and kwargs when built from a spec, and
    `revision`, which you bump when the model behind it changes.

    Queries go through `embed_query` one at a time (LangChain has no batch query call, and an
    Embeddings may treat queries differently from documents, e.g. with an instruction).
    """

    def __init__(self, lc_embeddings: Any, name: str, *, normalized: bool = False,
                 revision: str | None = None, origin: dict[str, Any] | None = None) -> None:
        if not (callable(getattr(lc_embeddings, "embed_documents", None))
                and callable(getattr(lc_embeddings, "embed_query", None))):
            raise ConfigError(f"model '{name}': {type(lc_embeddings).__name__} is not a "
                              "LangChain Embeddings (needs embed_documents and embed_query)")
        self.lc = lc_embeddings
        self.name = name
        self._normalized = normalized
        self.revision = revision
        self.origin = origin
        self._dim: int | None = None

    @classmethod
    def from_spec(cls, spec: EmbedderSpec) -> LangChainEmbedder:
        if not isinstance(spec, LangChainSpec):
            raise ConfigError(f"model '{spec.name}' is not a langchain spec")
        factory = load_factory(spec.factory)
        try:
            lc = factory(**spec.kwargs)
        except TypeError as e:
            raise ConfigError(f"model '{spec.name}': {spec.factory}(**kwargs) failed: "
                              f"{e}") from None
        return cls(lc, spec.name, normalized=spec.normalized, revision=spec.revision,
                   origin={"factory": spec.factory, "kwargs": spec.kwargs})

    @property
    def dim(self) -> int:
        if self._dim is None:
            probe = self.lc.embed_query(PROBE_TEXT)
            self._dim = len(probe)
            if self._dim == 0:
                raise EmbedderError(f"model '{self.name}' returned an empty vector")
        return self._dim

    @property
    def normalized(self) -> bool:
        return self._normalized

    @property
    def fingerprint(self) -> str:
        cls = type(self.lc)
        return settings_fingerprint("langchain", {
            "class": f"{cls.__module__}.{cls.__qualname__}", "fields": _public_fields(self.lc),
            "origin": self.origin, "revision": self.revision, "normalized": self._normalized,
        })

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        import numpy as np

        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        rows = [self.lc.embed_query(t) for t in texts]
        return check_output(rows, len(texts), self.dim, self.name)

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        import numpy as np

        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return check_output(self.lc.embed_documents(list(texts)), len(texts), self.dim,
                            self.name)


def _public_fields(obj: Any) -> dict[str, Any]:
    """JSON-plain, non-secret public fields of a (pydantic) LangChain object.

    Secret-named fields and anything that is not a plain value (clients, SecretStr,
    callables) are dropped, so the result is deterministic and never holds a key.
    """
    dump = getattr(obj, "model_dump", None)
    try:
        raw = dump() if callable(dump) else dict(vars(obj))
    except (TypeError, ValueError):
        return {}
    out: dict[str, Any] = {}
    for k, v in raw.items():
        low = str(k).lower()
        if k.startswith("_") or is_secret_name(low):
            continue
        try:
            json.dumps(v)
        except (TypeError, ValueError):
            continue
        out[k] = v
    return out
