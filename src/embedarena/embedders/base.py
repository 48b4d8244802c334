"""The `Embedder` protocol, a small base class, and the registry of model types.

An embedder turns texts into float32 vectors. The indexer and runner only see this protocol,
so a new provider is one module that registers a `type` name; caching wraps any embedder from
outside (`embedarena.embedders.cache`). Model types the indexer handles itself without vectors
(BM25) are listed in `LEXICAL_TYPES`, so one vocabulary validates every model entry.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, TypeVar, runtime_checkable

from embedarena.errors import ConfigError, EmbedderError

if TYPE_CHECKING:
    import numpy as np

    from embedarena.embedders.spec import ModelSpec

Similarity = Literal["cosine", "dot_product"]

#: Model types that are valid in an experiment but have no embedder: the indexer builds them.
LEXICAL_TYPES: frozenset[str] = frozenset({"bm25"})

#: Modules whose import registers the built-in embedder types (all cheap to import: each keeps
#: torch/openai/langchain imports inside functions).
_BUILTIN_MODULES = (
    "embedarena.embedders.hf",
    "embedarena.embedders.azure_openai",
    "embedarena.embedders.langchain",
)


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


class EmbedderBase:
    """Shared plumbing for adapters: the similarity hint, fingerprint hashing, output checks."""

    name: str
    #: Set by `register_embedder`; the settings class `create_embedder` expects.
    spec_class: ClassVar[type[ModelSpec] | None] = None
    type_name: ClassVar[str] = ""

    @property
    def normalized(self) -> bool:
        return False

    @property
    def similarity(self) -> Similarity:
        return "dot_product" if self.normalized else "cosine"

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> EmbedderBase:
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

    out = np.ascontiguousarray(np.asarray(arr, dtype=np.float32))
    if out.ndim != 2 or out.shape[0] != n or (dim is not None and out.shape[1] != dim):
        raise EmbedderError(f"embedder '{who}' returned shape {tuple(out.shape)} for {n} texts "
                            f"(expected ({n}, {dim if dim is not None else 'dim'}))")
    if not np.isfinite(out).all():
        raise EmbedderError(f"embedder '{who}' returned NaN or infinite values")
    return out


# -- registry ----------------------------------------------------------------------------------
class EmbedderFactory(Protocol):
    """What `register_embedder` accepts: a class (or object) with a settings class and
    `from_spec`."""

    spec_class: ClassVar[type[ModelSpec] | None]

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> Embedder: ...


_REGISTRY: dict[str, Any] = {}
_builtins_loaded = False

F = TypeVar("F")


def register_embedder(type_name: str,
                      spec_class: type[ModelSpec] | None = None) -> Callable[[F], F]:
    """Class decorator: make `type: <type_name>` in a model spec build this embedder.

    The class needs `from_spec(spec)` and a pydantic settings class (a `ModelSpec` subclass),
    given here or as its `spec_class` attribute. A name can be registered once: a silent
    override would make experiment files mean different things depending on import order.
    """
    if not type_name or not type_name.replace("_", "").isalnum() or type_name != type_name.lower():
        raise ValueError(f"embedder type names are lowercase identifiers, not {type_name!r}")

    def deco(obj: F) -> F:
        if type_name in _REGISTRY or type_name in LEXICAL_TYPES:
            raise EmbedderError(f"embedder type '{type_name}' is already registered "
                                f"(by {_describe(_REGISTRY.get(type_name, 'the indexer'))})")
        sc = spec_class or getattr(obj, "spec_class", None)
        if sc is None:
            raise EmbedderError(f"embedder type '{type_name}' needs a spec_class "
                                "(a ModelSpec subclass holding its settings)")
        if not callable(getattr(obj, "from_spec", None)):
            raise EmbedderError(f"embedder type '{type_name}' needs a from_spec(spec) method")
        if spec_class is not None or getattr(obj, "spec_class", None) is None:
            with contextlib.suppress(AttributeError, TypeError):
                obj.spec_class = sc  # type: ignore[attr-defined]
        with contextlib.suppress(AttributeError, TypeError):
            obj.type_name = type_name  # type: ignore[attr-defined]
        _REGISTRY[type_name] = (obj, sc)
        return obj

    return deco


def _describe(obj: Any) -> str:
    if isinstance(obj, tuple):
        obj = obj[0]
    if isinstance(obj, str):
        return obj
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


def _load_builtins() -> None:
    global _builtins_loaded
    if _builtins_loaded:
        return
    _builtins_loaded = True
    for mod in _BUILTIN_MODULES:
        importlib.import_module(mod)


def embedder_types() -> list[str]:
    """Registered embedder type names (sorted)."""
    _load_builtins()
    return sorted(_REGISTRY)


def model_types() -> list[str]:
    """Every valid `type:` of a model entry: embedders, lexical types and `hybrid` (sorted)."""
    return sorted({*embedder_types(), *LEXICAL_TYPES, "hybrid"})


def spec_class_for(type_name: str) -> type[ModelSpec]:
    """The settings class for a model type; unknown types list the known ones."""
    _load_builtins()
    if type_name in LEXICAL_TYPES:
        from embedarena.embedders.spec import BM25Spec

        return BM25Spec
    entry = _REGISTRY.get(type_name)
    if entry is None:
        raise ConfigError(f"unknown model type '{type_name}'; known types: "
                          f"{', '.join(model_types())}")
    return entry[1]


def create_embedder(spec: ModelSpec | str | dict[str, Any]) -> Embedder:
    """Build the embedder a spec describes (a `ModelSpec`, or its inline/dict form)."""
    from embedarena.embedders.spec import ModelSpec, parse_model_spec

    if not isinstance(spec, ModelSpec):
        spec = parse_model_spec(spec)
    if spec.type in LEXICAL_TYPES:
        raise ConfigError(f"model '{spec.name}' is of lexical type '{spec.type}': the indexer "
                          "builds it from text, there is no embedder to create")
    _load_builtins()
    entry = _REGISTRY.get(spec.type)
    if entry is None:
        raise ConfigError(f"unknown model type '{spec.type}'; known types: "
                          f"{', '.join(model_types())}")
    factory, spec_cls = entry
    if not isinstance(spec, spec_cls):
        spec = parse_model_spec(spec.public_dict())
    emb = factory.from_spec(spec)
    return emb
