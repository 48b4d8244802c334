"""Which embedder types exist, and building one from its spec.

Apart from `base` (the protocol and `register_embedder`) so that the adapters, which import
`base`, are imported from here without a cycle.
"""

from __future__ import annotations

from typing import Any, cast

from embedarena.embedders import base
from embedarena.embedders.base import Embedder, EmbedderSpec
from embedarena.errors import ConfigError
from embedarena.specs import parse_spec

_builtins_loaded = False


def load_builtins() -> None:
    """Register the built-in adapters (each module is cheap to import: torch, openai and
    langchain load inside functions)."""
    global _builtins_loaded
    if _builtins_loaded:
        return
    _builtins_loaded = True
    from embedarena.embedders import azure_openai, hf, langchain  # noqa: F401


def embedder_types() -> list[str]:
    """Registered embedder type names (sorted)."""
    load_builtins()
    return sorted(c.type_name() for c in base._FACTORIES)


def parse_embedder_spec(obj: Any) -> EmbedderSpec:
    """An embedder spec (inline `hf:DIR`, `minilm`, `azure:...`, a mapping, or a spec)."""
    load_builtins()
    return cast(EmbedderSpec, parse_spec(obj, allowed=(EmbedderSpec,)))


def create_embedder(spec: EmbedderSpec | str | dict[str, Any]) -> Embedder:
    """Build the embedder a spec describes (a spec, or its inline/dict form)."""
    if not isinstance(spec, EmbedderSpec):
        spec = parse_embedder_spec(spec)
    load_builtins()
    factory = base._FACTORIES.get(type(spec))
    if factory is None:
        raise ConfigError(f"no embedder is registered for model type '{spec.type}'; known: "
                          f"{', '.join(embedder_types())}")
    emb: Embedder = factory.from_spec(spec)
    return emb
