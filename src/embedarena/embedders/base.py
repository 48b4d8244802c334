"""The `Embedder` protocol, a small base class, and the registry of embedder types.

An embedder turns texts into float32 vectors. The indexer and the dense row only see this
protocol, so a new provider is one module that registers its `type`, its settings class (an
`EmbedderSpec`) and its inline prefix with `register_embedder`; caching wraps any embedder
from outside (`embedarena.embedders.cache`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, TypeVar, runtime_checkable

from embedarena.errors import EmbedderError, batch_label, naming_batch
from embedarena.specs import ModelSpec, register_spec

if TYPE_CHECKING:
    import numpy as np

Similarity = Literal["cosine", "dot_product"]

@runtime_checkable
class Embedder(Protocol):
    """What the indexer and runner need from a model.

    `fingerprint` must change whenever the vectors could change (weights, pooling,
    normalisation, max_length, instruction, dimensions, deployment, ...), because indexes and
    cached vectors are keyed by it. `normalized` says vectors are unit length, so the indexer
    may use ES `dot_product` (faster, same ranking as cosine); `similarity` is the hint.
    """

    name: str

    @property
    def dim(self) -> int: ...

    @property
    def fingerprint(self) -> str: ...

    @property
    def normalized(self) -> bool: ...

    @property
    def similarity(self) -> Similarity: ...

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray: ...


class EmbedderSpec(ModelSpec):
    """Base of the settings class of every embedder type (a dense row is made from any of
    them); each adapter module defines its own subclass next to the adapter."""


class EmbedderBase:
    """Shared plumbing for adapters: the similarity hint, fingerprint hashing, output checks."""

    name: str
    #: Set by `register_embedder`; the settings class `create_embedder` expects.
    spec_class: ClassVar[type[EmbedderSpec] | None] = None
    type_name: ClassVar[str] = ""

    @property
    def normalized(self) -> bool:
        return False

    @property
    def similarity(self) -> Similarity:
        return "dot_product" if self.normalized else "cosine"

    @classmethod
    def from_spec(cls, spec: EmbedderSpec) -> EmbedderBase:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def settings_fingerprint(kind: str, payload: dict[str, Any]) -> str:
    """`<kind>:<sha256>` over a canonical JSON of everything that shapes the vectors.

    The `kind:` prefix keeps fingerprints readable in index metadata and cache folder names.
    """
    blob = json.dumps({"kind": kind, **payload}, sort_keys=True, ensure_ascii=False, default=str)
    return f"{kind}:{hashlib.sha256(blob.encode('utf-8')).hexdigest()}"


def check_output(arr: Any, n: int, dim: int | None, who: str) -> np.ndarray:
    """Coerce an adapter's output to C-contiguous float32 (n, dim), or fail naming the model."""
    import numpy as np

    try:
        out = np.ascontiguousarray(np.asarray(arr, dtype=np.float32))
    except (TypeError, ValueError) as e:  # ragged lists, None, strings
        raise EmbedderError(f"embedder '{who}' returned something that is not a {n} x "
                            f"{dim if dim is not None else 'dim'} array of numbers "
                            f"({type(e).__name__})") from None
    if out.ndim == 2 and out.shape[0] != n:
        raise EmbedderError(f"embedder '{who}' returned {out.shape[0]} vectors for {n} texts")
    if out.ndim != 2 or (dim is not None and out.shape[1] != dim):
        raise EmbedderError(f"embedder '{who}' returned shape {tuple(out.shape)} for {n} texts "
                            f"(expected ({n}, {dim if dim is not None else 'dim'}))")
    finite = np.isfinite(out).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise EmbedderError(f"embedder '{who}' returned NaN or infinite values in {len(bad)} of "
                            f"{n} vectors (first: text {int(bad[0]) + 1} of the call)")
    return out


Side = Literal["query", "document"]


def embed_batch(embedder: Embedder, side: Side, texts: Sequence[str], *, start: int = 0,
                number: int = 1, total: int = 1, ids: Sequence[str] | None = None,
                name: str | None = None) -> np.ndarray:
    """One batch of a longer sequence through `embedder`, checked for shape and finiteness.

    Any `EmbedderError` (HTTP 5xx after retries, a short answer, a wrong dimension, NaN, an
    over-long text) comes back naming the model and the batch (`errors.batch_label`).
    """
    who = str(name or getattr(embedder, "name", "?"))
    fn = embedder.embed_queries if side == "query" else embedder.embed_documents
    with naming_batch(who, batch_label(side, number, total, start, len(texts), ids)):
        return check_output(fn(list(texts)), len(texts), embedder.dim, who)


def embed_in_batches(embedder: Embedder, side: Side, texts: Sequence[str],
                     ids: Sequence[str] | None = None, batch_size: int = 256,
                     name: str | None = None,
                     timings: list[tuple[int, float]] | None = None) -> np.ndarray:
    """`embed_batch` over all of `texts`, `batch_size` at a time; the vectors in order.

    `timings`, when given, gets (texts in the batch, seconds) for each batch."""
    import time

    import numpy as np

    texts = list(texts)
    if not texts:
        return np.zeros((0, embedder.dim), dtype=np.float32)
    total = -(-len(texts) // batch_size)
    parts = []
    for i, s in enumerate(range(0, len(texts), batch_size)):
        t0 = time.perf_counter()
        parts.append(embed_batch(embedder, side, texts[s:s + batch_size], start=s,
                                 number=i + 1, total=total,
                                 ids=None if ids is None else ids[s:s + batch_size],
                                 name=name))
        if timings is not None:
            timings.append((len(parts[-1]), time.perf_counter() - t0))
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


# -- registry ----------------------------------------------------------------------------------
class EmbedderFactory(Protocol):
    """What `register_embedder` accepts: a class (or object) with `from_spec`."""

    @classmethod
    def from_spec(cls, spec: EmbedderSpec) -> Embedder: ...


_FACTORIES: dict[type[EmbedderSpec], Any] = {}

F = TypeVar("F")


def register_embedder(spec_class: type[EmbedderSpec], *, prefixes: Sequence[str] = (),
                      names: dict[str, dict[str, Any]] | None = None,
                      forms: Sequence[str] = ()) -> Callable[[F], F]:
    """Class decorator: model entries of `spec_class`'s `type` build this embedder.

    Registers the settings class with its inline `prefixes` (`hf:`), bare `names`
    (`minilm`) and their display `forms` in the one spec registry (`embedarena.specs`), so
    a new provider needs no edit anywhere else. A type is registered once: a silent override
    would make experiment files mean different things depending on import order.
    """
    def deco(obj: F) -> F:
        if not callable(getattr(obj, "from_spec", None)):
            raise EmbedderError(f"embedder for '{spec_class.type_name()}' needs a "
                                "from_spec(spec) method")
        register_spec(spec_class, prefixes=prefixes, names=names, forms=forms)
        with contextlib.suppress(AttributeError, TypeError):
            obj.spec_class = spec_class  # type: ignore[attr-defined]
            obj.type_name = spec_class.type_name()  # type: ignore[attr-defined]
        _FACTORIES[spec_class] = obj
        return obj

    return deco
