"""What the connected cluster can do, detected (never assumed) from `_nodes/plugins`.

A minimal node (ES's integ-test zip, as `embedarena es start` runs it) ships only apm,
transport-netty4, x-pack-core and x-pack-security: no analysis-common (so no `cjk_bigram`,
no `whitespace` *tokenizer*), no lang-painless (no `script_score`), no rank-rrf (no `rrf`
retriever). User clusters usually have all of them. Features that need a module ask here
first, so a missing module is one clear error naming it instead of a 400 deep in a build.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from embedarena.errors import ConfigError
from embedarena.indexer.es import Target, es_errors

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

ANALYSIS_COMMON = "analysis-common"
PAINLESS = "lang-painless"
RANK_RRF = "rank-rrf"


@dataclass(frozen=True)
class Capabilities:
    """Modules and plugins present on *every* data node (a feature must work on all of them)."""

    modules: frozenset[str]
    version: str | None = None
    license: str | None = None

    def has(self, module: str) -> bool:
        return module in self.modules

    @property
    def native_rrf(self) -> bool:
        """The `rrf` retriever exists (module rank-rrf; retrievers need ES >= 8.14)."""
        return self.has(RANK_RRF) and _version_at_least(self.version, (8, 14))

    def require(self, module: str, feature: str, target: Target | None = None) -> None:
        """Raise a `ConfigError` naming the missing module when `feature` needs it."""
        if self.has(module):
            return
        where = f" at {target.display}" if target is not None else ""
        raise ConfigError(
            f"{feature} needs the Elasticsearch module '{module}', which the node{where} does "
            f"not have (it has: {', '.join(sorted(self.modules)) or 'none'}). Use a full "
            "Elasticsearch distribution, or a chain/feature that works without it")


_CACHE: dict[tuple[int, str], Capabilities] = {}


def detect(client: Elasticsearch, target: Target) -> Capabilities:
    """Read modules and plugins of every node (cached per client object)."""
    key = (id(client), target.display)
    cached = _CACHE.get(key)
    if cached is not None:
        return cached
    with es_errors(target, "read node capabilities"):
        info = client.nodes.info(metric="plugins")
    per_node: list[set[str]] = []
    versions: set[str] = set()
    for node in (info.get("nodes") or {}).values():
        names = {m["name"] for m in node.get("modules") or []}
        names |= {p["name"] for p in node.get("plugins") or []}
        per_node.append(names)
        if node.get("version"):
            versions.add(str(node["version"]))
    common = frozenset(set.intersection(*per_node)) if per_node else frozenset()
    # the oldest node decides what a request may use (`GET /` is absent on a minimal node)
    version = min(versions, key=_version_key) if versions else None
    from elasticsearch import ApiError, TransportError

    lic: str | None = None
    try:
        lic = str(client.license.get()["license"]["type"])
    except (ApiError, TransportError, KeyError):  # no license API (OSS, serverless): unknown
        lic = None
    caps = Capabilities(common, version, lic)
    _CACHE[key] = caps
    return caps


def _version_key(version: str) -> tuple[int, ...]:
    out = []
    for part in version.split("-")[0].split("."):
        out.append(int(part) if part.isdigit() else 0)
    return tuple(out)


def _version_at_least(version: str | None, want: tuple[int, int]) -> bool:
    if not version:
        return False
    try:
        major, minor = (int(x) for x in version.split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= want
