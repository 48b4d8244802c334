"""BM25 analysis chains: how label text becomes terms, one named chain per BM25 row.

Chinese has no spaces, so the chain decides what BM25 can match:

=================  ==========================================================================
`standard`         ES `standard` analyzer: one term per CJK character. Works on any node.
`cjk-bigram`       ES `standard` tokenizer + `cjk_width`, `lowercase`, `cjk_bigram` filters:
                   overlapping character pairs. Needs the node module `analysis-common`.
`jieba`            jieba word segmentation (accurate mode), done here, client-side, at index
                   *and* query time, into a field with ES's `whitespace` analyzer (in core, so
                   it works on a minimal node and on any user cluster).
`jieba-search`     jieba's search mode: words plus their in-dictionary sub-words (more recall).
`bigram`           overlapping CJK character pairs (a lone CJK character stays a unigram) and
                   lower-cased words elsewhere, made client-side: what `cjk-bigram` does, on
                   nodes without analysis-common.
=================  ==========================================================================

Any other name is passed to ES as a built-in analyzer (`whitespace`, `simple`, `english`, ...)
and checked with `_analyze` before a build, so a missing one is a clear error.
Client-side chains normalise the same way on both sides (NFKC, lower case, drop tokens with no
letter or digit): `segment(text)` is the one function used for documents and for queries.
"""

from __future__ import annotations

import hashlib
import threading
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from embedarena.errors import ConfigError, MissingExtraError
from embedarena.indexer.capabilities import ANALYSIS_COMMON, detect
from embedarena.indexer.es import Target, es_errors

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

#: Field holding the client-side segmented text (space-joined tokens, `whitespace` analyzer).
SEGMENTED_FIELD = "text_seg"
DEFAULT_CHAIN = "standard"


@dataclass(frozen=True)
class AnalysisChain:
    """One way to turn text into BM25 terms.

    Server-side chains name an ES analyzer (optionally defined in index settings);
    client-side chains carry a `tokenize` function and search `SEGMENTED_FIELD`.
    """

    name: str
    summary: str
    analyzer: str
    settings: dict[str, Any] = field(default_factory=dict)
    requires: tuple[str, ...] = ()
    tokenize: Callable[[str], list[str]] | None = None
    version: str = "1"

    @property
    def client_side(self) -> bool:
        return self.tokenize is not None

    @property
    def field(self) -> str:
        """The field queries match against."""
        from embedarena.indexer.build import TEXT_FIELD

        return SEGMENTED_FIELD if self.client_side else TEXT_FIELD

    def segment(self, text: str) -> str:
        """Client-side tokens joined by spaces (the form indexed and queried)."""
        if self.tokenize is None:
            raise ValueError(f"chain {self.name} is analysed by Elasticsearch, not here")
        return " ".join(self.tokenize(text))

    def fingerprint_payload(self) -> dict[str, Any]:
        """What decides the terms: an index built by another payload is stale."""
        out: dict[str, Any] = {"chain": self.name, "analyzer": self.analyzer,
                               "version": self.version}
        if self.settings:
            out["settings"] = self.settings
        return out


# -- jieba -----------------------------------------------------------------------------------
_JIEBA: dict[str, Any] = {}
_JIEBA_LOCK = threading.Lock()


def _jieba_tokenizer() -> Any:
    """One jieba `Tokenizer` per process (its dictionary takes ~1 s to load), quiet."""
    with _JIEBA_LOCK:
        tok = _JIEBA.get("tok")
        if tok is None:
            try:
                import logging

                import jieba
            except ImportError as e:
                raise MissingExtraError("jieba", "zh") from e
            jieba.setLogLevel(logging.WARNING)
            tok = jieba.Tokenizer()
            tok.initialize()
            _JIEBA["tok"] = tok
            _JIEBA["version"] = str(getattr(jieba, "__version__", "?"))
        return tok


def jieba_version() -> str:
    _jieba_tokenizer()
    return str(_JIEBA["version"])


def _keep(token: str) -> bool:
    return any(c.isalnum() for c in token)


def normalise(text: str) -> str:
    """NFKC (full-width ASCII → ASCII) and lower case: the same on both sides."""
    return unicodedata.normalize("NFKC", text).lower()


def jieba_tokens(text: str, search_mode: bool = False) -> list[str]:
    """jieba words of `text` after `normalise`, without punctuation/space tokens."""
    tok = _jieba_tokenizer()
    norm = normalise(text)
    words = tok.lcut_for_search(norm) if search_mode else tok.lcut(norm)
    return [w.strip() for w in words if _keep(w)]


def _jieba_accurate(text: str) -> list[str]:
    return jieba_tokens(text, search_mode=False)


def _jieba_search(text: str) -> list[str]:
    return jieba_tokens(text, search_mode=True)


# CJK radicals/punctuation block start, kana, bopomofo, CJK ideographs (+ext. A, compat.), hangul
_CJK = (r"\u2e80-\u2fdf\u3040-\u30ff\u3100-\u31bf\u3400-\u4dbf\u4e00-\u9fff"
        r"\uf900-\ufaff\uac00-\ud7af")
_CJK_RUN = f"[{_CJK}]+"
_WORD = f"[^\\W{_CJK}]+"  # word characters that are not CJK


def bigram_tokens(text: str) -> list[str]:
    """CJK runs → overlapping character pairs (a one-character run stays whole); other text →
    its words. After `normalise`, like ES's `cjk_width` + `lowercase` + `cjk_bigram`."""
    import re

    out: list[str] = []
    for m in re.finditer(f"{_CJK_RUN}|{_WORD}", normalise(text)):
        tok = m.group(0)
        if re.fullmatch(_CJK_RUN, tok):
            out.extend(tok[i:i + 2] for i in range(max(1, len(tok) - 1)))
        else:
            out.append(tok)
    return out


# -- registry --------------------------------------------------------------------------------
CJK_BIGRAM_SETTINGS: dict[str, Any] = {
    "analysis": {"analyzer": {"cjk_bigram_chain": {
        "type": "custom", "tokenizer": "standard",
        "filter": ["cjk_width", "lowercase", "cjk_bigram"],
    }}},
}

_CHAINS: dict[str, AnalysisChain] = {}


def register_chain(chain: AnalysisChain) -> AnalysisChain:
    if chain.name in _CHAINS:
        raise ValueError(f"analysis chain {chain.name!r} is already registered")
    _CHAINS[chain.name] = chain
    return chain


register_chain(AnalysisChain(
    "standard", "ES standard analyzer (one term per CJK character); any node", "standard"))
register_chain(AnalysisChain(
    "cjk-bigram", "standard tokenizer + cjk_width, lowercase, cjk_bigram (character pairs)",
    "cjk_bigram_chain", CJK_BIGRAM_SETTINGS, requires=(ANALYSIS_COMMON,)))
register_chain(AnalysisChain(
    "jieba", "jieba words (accurate mode), segmented client-side; any node", "whitespace",
    tokenize=_jieba_accurate, version="1"))
register_chain(AnalysisChain(
    "jieba-search", "jieba search mode (words + sub-words), client-side; any node",
    "whitespace", tokenize=_jieba_search, version="1"))
register_chain(AnalysisChain(
    "bigram", "CJK character pairs + words, client-side (cjk-bigram without analysis-common)",
    "whitespace", tokenize=bigram_tokens, version="1"))


def chain_names() -> list[str]:
    return list(_CHAINS)


def get_chain(name: str) -> AnalysisChain:
    """A registered chain, or a plain ES built-in analyzer of that name (checked at build)."""
    chain = _CHAINS.get(name)
    if chain is not None:
        return chain
    if not name or any(c.isspace() for c in name):
        raise ConfigError(f"analyzer name {name!r} is not valid; chains: "
                          f"{', '.join(chain_names())}")
    return AnalysisChain(name, f"Elasticsearch built-in analyzer '{name}'", name)


def chain_fingerprint(chain: AnalysisChain) -> str:
    """`bm25:<sha256>`; `standard` keeps the fingerprint earlier versions wrote."""
    import json

    if chain.name == chain.analyzer and not chain.settings and not chain.client_side:
        payload = f"bm25|{chain.analyzer}"
    else:
        extra = {"jieba": jieba_version()} if chain.name.startswith("jieba") else {}
        payload = "bm25|" + json.dumps({**chain.fingerprint_payload(), **extra},
                                       sort_keys=True, ensure_ascii=False)
    return "bm25:" + hashlib.sha256(payload.encode()).hexdigest()


def check_chain(client: Elasticsearch, target: Target, chain: AnalysisChain) -> None:
    """Fail early, naming the missing module or analyzer, when the node cannot run `chain`."""
    caps = detect(client, target)
    for module in chain.requires:
        caps.require(module, f"the BM25 analysis chain '{chain.name}'", target)
    if chain.settings:
        return  # a custom analyzer: its filters are covered by `requires`
    from elasticsearch import BadRequestError

    with es_errors(target, f"check analyzer {chain.analyzer}"):
        try:
            client.indices.analyze(analyzer=chain.analyzer, text="x")
        except BadRequestError:
            raise ConfigError(
                f"the BM25 analyzer '{chain.analyzer}' does not exist on Elasticsearch at "
                f"{target.display} (analyzers other than standard/simple/whitespace/stop/keyword "
                f"need the module '{ANALYSIS_COMMON}' or a plugin); chains that work anywhere: "
                f"{', '.join(n for n, c in _CHAINS.items() if not c.requires)}") from None
