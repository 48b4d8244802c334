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
RANK_VECTORS = "rank-vectors"
#: Licences under which the rrf / linear retrievers run (the basic licence has neither).
RETRIEVER_LICENSES = frozenset({"enterprise", "trial", "platinum"})
#: dense_vector `index_options.type` values newer than the 8.x line embedarena started on, and
#: the first Elasticsearch version that accepts each (bbq_disk is DiskBBQ, 9.2+; 8.19 refuses
#: it with "Unknown vector index options type").
INDEX_TYPE_MIN_VERSION: dict[str, tuple[int, int]] = {
    "bbq_hnsw": (8, 16),
    "bbq_flat": (8, 16),
    "bbq_disk": (9, 2),
}


#: Index types the basic licence refuses: 9.5 accepts a bbq_disk mapping, then every document
#: fails with "current license is non-compliant for [bbq_disk]".
INDEX_TYPE_LICENSES: dict[str, frozenset[str]] = {
    "bbq_disk": frozenset({"enterprise", "trial"}),
}
_OTHER_TYPES = "hnsw, int8_hnsw, bbq_hnsw, flat, int8_flat, bbq_flat"


def check_index_type(index_type: str, version: str | None, license: str | None = None) -> None:
    """Refuse an index type the node (at `version`, under `license`) cannot hold, before any
    index exists or anything is embedded. An unknown version or licence is not refused."""
    need = INDEX_TYPE_MIN_VERSION.get(index_type)
    if need is not None and version and not _version_at_least(version, need):
        raise ConfigError(
            f"index type {index_type} needs Elasticsearch {need[0]}.{need[1]} or newer; the "
            f"connected node runs {version}. Use another type ({_OTHER_TYPES}) or a newer "
            "node, e.g. `embedarena es start --version 9.5.4`")
    allowed = INDEX_TYPE_LICENSES.get(index_type)
    if allowed is not None and license is not None and license not in allowed:
        raise ConfigError(
            f"index type {index_type} needs an {' or '.join(sorted(allowed))} licence; the "
            f"connected node has {license}. Use another type ({_OTHER_TYPES})")


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
        """The `rrf` retriever exists (module rank-rrf; retrievers need ES >= 8.14) and the
        licence lets it run (an unknown licence is given the benefit of the doubt: a refused
        native request falls back to client-side fusion and says so)."""
        return self.retriever_block is None and _version_at_least(self.version, (8, 14))

    @property
    def retriever_block(self) -> str | None:
        """Why the rrf / linear retrievers cannot run here, or None when they can."""
        if not self.has(RANK_RRF):
            return "the node has no rank-rrf module (rrf / linear retrievers)"
        if self.license is not None and self.license not in RETRIEVER_LICENSES:
            return f"the rrf / linear retrievers (module rank-rrf) need an enterprise or " \
                   f"trial licence; the node has {self.license}"
        return None

    def features(self) -> dict[str, bool]:
        """Feature → available, as `embedarena es status` prints and meta.json stores them."""
        return {
            "painless": self.has(PAINLESS),
            "analysis_common": self.has(ANALYSIS_COMMON),
            "rank_vectors": self.has(RANK_VECTORS),
            "rrf_linear_retrievers": self.native_rrf and self.retriever_block is None,
        }

    def paths(self) -> dict[str, str]:
        """Where embedarena does what a full node could do server-side, and why."""
        block = self.retriever_block
        fusion = ("the node's rrf retriever for a hybrid of one standard-chain BM25 and one "
                  "dense member (engine auto or native); client-side otherwise"
                  if block is None and self.native_rrf
                  else f"client-side: {block or 'retrievers need Elasticsearch 8.14+'}")
        exact = ("client-side over the index's vectors (one tie rule on every backend)"
                 if self.has(PAINLESS) else "client-side over the index's vectors: the node "
                 "has no lang-painless module (script_score)")
        return {"fusion": fusion, "exact_search": exact}

    def supports(self, index_type: str) -> bool:
        """Whether this node (version and licence) can hold the dense_vector index type."""
        try:
            check_index_type(index_type, self.version, self.license)
        except ConfigError:
            return False
        return True

    def to_meta(self) -> dict[str, object]:
        """What a run's meta.json records under `elasticsearch`."""
        return {"license": self.license, "features": self.features(), "paths": self.paths()}

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
