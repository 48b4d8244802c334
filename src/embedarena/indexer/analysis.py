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

Every chain has one in-process tokenizer too, `AnalysisChain.terms`: the terms its ES field
indexes, made here, so in-process BM25 (`indexer.bm25`, mining) ranks like the ES row. For
`standard` and the built-ins `whitespace`, `simple`, `stop` and `keyword` the node's analyzer is
reproduced in Python (checked token for token against `_analyze`); `cjk-bigram` and other ES
analyzers have none, and asking for their terms is a ConfigError that says what works.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import itertools
import threading
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from embedarena.errors import ConfigError, MissingExtraError
from embedarena.indexer.capabilities import ANALYSIS_COMMON, detect
from embedarena.indexer.es import Target, es_errors
from embedarena.indexer.fields import SEGMENTED_FIELD, TEXT_FIELD

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

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
    #: An ES-analysed chain's analyzer reproduced here (None: only Elasticsearch can run it).
    emulate: Callable[[str], list[str]] | None = None

    @property
    def client_side(self) -> bool:
        return self.tokenize is not None

    @property
    def in_process(self) -> bool:
        """Whether `terms` works without Elasticsearch."""
        return self.tokenize is not None or self.emulate is not None

    def terms(self, text: str) -> list[str]:
        """The terms the chain's ES field indexes for `text` (in order, repeats kept), made
        here: what in-process BM25 counts, so it ranks like the ES row of the same chain."""
        return self.term_function()(text)

    def term_function(self) -> Callable[[str], list[str]]:
        """`terms` as a function; a clear ConfigError when only Elasticsearch can analyse.

        Client-side chains: ES's `whitespace` split of `segment(text)`, i.e. exactly what the
        node receives; ES-analysed chains: `emulate`.
        """
        if self.tokenize is not None:
            return lambda text: whitespace_tokens(self.segment(text))
        if self.emulate is None:
            needs = (f" (it needs the node module '{self.requires[0]}')" if self.requires
                     else "")
            raise ConfigError(
                f"the analysis chain '{self.name}' has no in-process tokenizer: only "
                f"Elasticsearch can analyse it{needs}. Chains that run in process: "
                f"{', '.join(in_process_chain_names())}; or run it on Elasticsearch")
        return self.emulate

    @property
    def field(self) -> str:
        """The field queries match against."""
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


# -- Elasticsearch's own analyzers, reproduced in process ------------------------------------
# In-process BM25 (`indexer.bm25`, mining) must count the terms the ES row indexes, so the
# ES-analysed chains get Python twins of the node's analyzers. Each is checked token for token
# against `_analyze` on the node (tests/indexer/test_local_terms.py); the rules below were
# read off UAX #29 and the node's answers, not off Lucene's source.

#: Lucene's default maximum token length (UTF-16 units): a longer word is cut, and scanning
#: resumes at the cut.
MAX_TOKEN_LENGTH = 255

_ZWJ, _VS15, _VS16, _KEYCAP = "\u200d", "\ufe0e", "\ufe0f", "\u20e3"
# word-break classes (UAX #29), plus the scripts Lucene's StandardTokenizer emits on their own
(_OTHER, _ALETTER, _HEBREW, _NUMERIC, _KATAKANA, _EXTNUMLET, _MIDLETTER, _MIDNUM, _MIDNUMLET,
 _SQUOTE, _DQUOTE, _EXT, _RI, _HAN, _HIRAGANA, _SA) = range(16)
_HEBQ = 16  # `ש'` or `ש"ש` (WB7a-c): letters, digits and `_` may follow, no mid-word mark
_AHL = (_ALETTER, _HEBREW)
_WORD_START = frozenset({_ALETTER, _HEBREW, _NUMERIC, _KATAKANA, _EXTNUMLET})
_SPECIAL_WB = {
    **dict.fromkeys("'", _SQUOTE), **dict.fromkeys('"', _DQUOTE),
    **dict.fromkeys(".\u2018\u2019\u2024\ufe52\uff07\uff0e", _MIDNUMLET),
    **dict.fromkeys(":\u00b7\u0387\u05f4\u2027\ufe13\ufe55\uff1a", _MIDLETTER),
    **dict.fromkeys(",;\u037e\u0589\u060c\u060d\u066c\u07f8\u2044\ufe10\ufe14\ufe50\ufe54"
                    "\uff0c\uff1b", _MIDNUM),
    "\u202f": _EXTNUMLET, "\u066b": _NUMERIC, "\u200b": _OTHER,
    **dict.fromkeys("\u200c\u200d\uff9e\uff9f", _EXT),
}
Ranges = tuple[tuple[int, int], ...]
_KATAKANA_R: Ranges = (
    (0x3031, 0x3035), (0x309B, 0x309C), (0x30A0, 0x30FA), (0x30FC, 0x30FF), (0x31F0, 0x31FF),
    (0x32D0, 0x32FE), (0x3300, 0x3357), (0xFF66, 0xFF9D), (0x1AFF0, 0x1AFFE), (0x1B000, 0x1B000),
    (0x1B120, 0x1B122), (0x1B155, 0x1B155), (0x1B164, 0x1B167))
_HIRAGANA_R: Ranges = ((0x3041, 0x3096), (0x309D, 0x309F), (0x1B001, 0x1B11F),
                       (0x1B132, 0x1B132), (0x1B150, 0x1B152), (0x1F200, 0x1F200))
_IDEOGRAPHIC_R: Ranges = (
    (0x3006, 0x3007), (0x3021, 0x3029), (0x3038, 0x303A), (0x3400, 0x4DBF), (0x4E00, 0x9FFF),
    (0xF900, 0xFAFF), (0x16FE4, 0x16FE4), (0x17000, 0x18CFF), (0x18D00, 0x18D08),
    (0x1B170, 0x1B2FB), (0x20000, 0x3FFFD))
#: Han-script characters that are not letters (radicals, Hangzhou numerals, `〇`): one term each
_HAN_R: Ranges = ((0x2E80, 0x2E99), (0x2E9B, 0x2EF3), (0x2F00, 0x2FD5), (0x3007, 0x3007),
                  (0x3021, 0x3029), (0x3038, 0x303A), (0x3400, 0x4DBF), (0x4E00, 0x9FFF),
                  (0xF900, 0xFA6D), (0xFA70, 0xFAD9), (0x16FE3, 0x16FE3), (0x20000, 0x3FFFD))
#: Scripts written without spaces (line-break class SA): Lucene keeps a run as one term
_SA_R: Ranges = ((0x0E01, 0x0E3A), (0x0E40, 0x0E4E), (0x0E81, 0x0EDF), (0x1000, 0x109F),
                 (0x1780, 0x17DD), (0x1950, 0x19DF), (0x1A20, 0x1AAF), (0xA9E0, 0xA9FF),
                 (0xAA60, 0xAADF), (0x11700, 0x1173F))
_SA_NOT = frozenset((*map(ord, "\u0e3f\u0e4f\u0e5a\u0e5b\u104a\u104b\u104c\u104d\u104e\u104f"
                                "\u17d4\u17d5\u17d6\u17d8\u17d9\u17da\u17db\u1a7f"),
                     0x1173C, 0x1173D, 0x1173E))
#: Alphabetic symbols (circled and squared Latin letters) and modifier marks counted as letters
_ALETTER_R: Ranges = (
    (0x24B6, 0x24E9), (0x1F130, 0x1F149), (0x1F150, 0x1F169), (0x1F170, 0x1F189),
    (0x02C2, 0x02C5), (0x02D2, 0x02D7), (0x02DE, 0x02DF), (0x02ED, 0x02ED), (0x02EF, 0x02FF),
    (0x055B, 0x055C), (0x055E, 0x055E), (0x05F3, 0x05F3), (0xA720, 0xA721), (0xA789, 0xA78A),
    (0xAB5B, 0xAB5B))
#: Unicode's Extended_Pictographic (emoji and pictographs, with the blocks kept for them), and
#: the legacy-computing block 1FB00-1FBFF, which the node treats as pictographs too
_PICT_R: Ranges = (
    (0x00A9, 0x00A9), (0x00AE, 0x00AE), (0x203C, 0x203C), (0x2049, 0x2049), (0x2122, 0x2122),
    (0x2139, 0x2139), (0x2194, 0x2199), (0x21A9, 0x21AA), (0x231A, 0x231B), (0x2328, 0x2328),
    (0x2388, 0x2388), (0x23CF, 0x23CF), (0x23E9, 0x23F3), (0x23F8, 0x23FA), (0x24C2, 0x24C2),
    (0x25AA, 0x25AB), (0x25B6, 0x25B6), (0x25C0, 0x25C0), (0x25FB, 0x25FE), (0x2600, 0x2605),
    (0x2607, 0x2612), (0x2614, 0x2685), (0x2690, 0x2705), (0x2708, 0x2712), (0x2714, 0x2714),
    (0x2716, 0x2716), (0x271D, 0x271D), (0x2721, 0x2721), (0x2728, 0x2728), (0x2733, 0x2734),
    (0x2744, 0x2744), (0x2747, 0x2747), (0x274C, 0x274C), (0x274E, 0x274E), (0x2753, 0x2755),
    (0x2757, 0x2757), (0x2763, 0x2767), (0x2795, 0x2797), (0x27A1, 0x27A1), (0x27B0, 0x27B0),
    (0x27BF, 0x27BF), (0x2934, 0x2935), (0x2B05, 0x2B07), (0x2B1B, 0x2B1C), (0x2B50, 0x2B50),
    (0x2B55, 0x2B55), (0x3030, 0x3030), (0x303D, 0x303D), (0x3297, 0x3297), (0x3299, 0x3299),
    (0x1F000, 0x1F0FF), (0x1F10D, 0x1F10F), (0x1F12F, 0x1F12F), (0x1F16C, 0x1F171),
    (0x1F17E, 0x1F17F), (0x1F18E, 0x1F18E), (0x1F191, 0x1F19A), (0x1F1AD, 0x1F1E5),
    (0x1F201, 0x1F20F), (0x1F21A, 0x1F21A), (0x1F22F, 0x1F22F), (0x1F232, 0x1F23A),
    (0x1F23C, 0x1F23F), (0x1F249, 0x1F3FA), (0x1F400, 0x1F53D), (0x1F546, 0x1F64F),
    (0x1F680, 0x1F6FF), (0x1F774, 0x1F77F), (0x1F7D5, 0x1F7FF), (0x1F80C, 0x1F80F),
    (0x1F848, 0x1F84F), (0x1F85A, 0x1F85F), (0x1F888, 0x1F88F), (0x1F8AE, 0x1F8FF),
    (0x1F90C, 0x1F93A), (0x1F93C, 0x1F945), (0x1F947, 0x1FAFF), (0x1FB00, 0x1FBFF),
    (0x1FC00, 0x1FFFD))


#: Characters assigned after Unicode 12.1 (through 16.0), the version of the tables in
#: Lucene 9's StandardTokenizer: the node treats them as unassigned, so this does too.
_NEWER = (
    "61D 870-89F 8B5 8BE-8D2 B55 C3C C5D CDD CF3 D04 D81 ECE 170D 1715-171F 180F 1ABF-1ACE "
    "1B4C-1B4F 1B7D-1B7F 1C89-1C8A 1DFA 20C0 2427-2429 2B97 2C2F 2C5F 2E50-2E5D 2FFC-2FFF "
    "31BB-31BF 31E4-31EF 4DB6-4DBF 9FF0-9FFF A7C0-A7C1 A7C7-A7F6 A82C AB68-AB6B FBC2 "
    "FD40-FD4F FDCF FDFE-FDFF 1019C 10570-105F3 10780-107BA 10D40-10D8F 10E80-10EFF "
    "10F70-10FCB 11070-11075 110C2 11147 111CE-111CF 1123F-11241 11380-113E2 1145A "
    "11460-11461 116B9 116D0-116E3 11740-11746 11900-11959 11AB0-11ABF 11B00-11BF9 "
    "11F00-11FB0 12F90-12FF2 1342F 13439-143FA 16100-16139 16A70-16AC9 16D40-16D79 "
    "16FE4-16FF1 18AF3-1AFFE 1B11F-1B132 1B155 1CC00-1CFC3 1D1E9-1D1EA 1D2C0-1D2D3 "
    "1DF00-1DF2A 1E030-1E08F 1E290-1E2AE 1E4D0-1E7FE 1F10D-1F10F 1F16D-1F16F 1F1AD "
    "1F6D6-1F6DF 1F6FB-1F6FC 1F774-1F77F 1F7D9 1F7F0 1F8B0-1F8C1 1F90C 1F972 1F977-1F979 "
    "1F9A3-1F9A4 1F9AB-1F9AD 1F9CB-1F9CC 1FA74-1FA77 1FA7B-1FA7C 1FA83-1FA8F 1FA96-1FBF9 "
    "2A6D7-2A6DF 2B735-2B739 2EBF0-2EE5D 30000-323AF ")


def _in(cp: int, ranges: Ranges) -> bool:
    return any(a <= cp <= b for a, b in ranges)


def _hex_ranges(spec: str) -> Ranges:
    pairs = (r.split("-") for r in spec.split())
    return tuple((int(p[0], 16), int(p[-1], 16)) for p in pairs)


_NEWER_R = _hex_ranges(_NEWER)


@functools.lru_cache(maxsize=65536)
def _wb(c: str) -> int:
    """The word-break class of one character, as the standard tokenizer groups them."""
    special = _SPECIAL_WB.get(c)
    if special is not None:
        return special
    cp, cat = ord(c), unicodedata.category(c)
    if cat == "Cn" or _in(cp, _NEWER_R):
        return _OTHER
    if 0x1F1E6 <= cp <= 0x1F1FF:
        return _RI
    if cat in ("Mn", "Me", "Mc", "Cf") or 0x1F3FB <= cp <= 0x1F3FF:
        return _EXT
    if cat == "Pc":
        return _EXTNUMLET
    if cat == "Lo" and (0x05D0 <= cp <= 0x05F2 or 0xFB1D <= cp <= 0xFB4F):
        return _HEBREW
    if _in(cp, _KATAKANA_R):
        return _KATAKANA
    if _in(cp, _HIRAGANA_R):
        return _HIRAGANA
    if _in(cp, _IDEOGRAPHIC_R):
        return _HAN if _in(cp, _HAN_R) else _OTHER
    if _in(cp, _SA_R) and cp not in _SA_NOT and cat != "Nd":
        return _SA
    if cat == "Nd":
        return _NUMERIC
    if cat[0] == "L" or cat == "Nl" or _in(cp, _ALETTER_R):
        return _ALETTER
    if _in(cp, _HAN_R):
        return _HAN
    return _OTHER


def _sa_mark(c: str) -> bool:
    """A combining mark of a Thai-like script: it extends a word, but also starts an SA run."""
    cp = ord(c)
    return _in(cp, _SA_R) and cp not in _SA_NOT and not _in(cp, _NEWER_R)


@functools.lru_cache(maxsize=65536)
def _pict(c: str) -> bool:
    return _in(ord(c), _PICT_R)


def _u16(c: str) -> int:
    return 2 if ord(c) > 0xFFFF else 1


def _utf16_offsets(text: str) -> list[int]:
    """offsets[i]: UTF-16 units before `text[i]` (Lucene counts lengths in UTF-16 units)."""
    return [0, *itertools.accumulate(_u16(c) for c in text)]


def _attach(text: str, i: int, w: int, skip: str = "") -> int:
    """Past the extending characters (marks, format, ZWJ) from `i`, except those in `skip`."""
    while i < w and _wb(text[i]) == _EXT and text[i] not in skip:
        i += 1
    return i


def _word_end(text: str, p: int, w: int) -> int:
    """End of the letters/digits/katakana word starting at `p` (UAX #29 rules WB5-WB13b), or
    `p` when none starts there (e.g. a run of underscores).

    Tailored as the node does: `ש'` and `ש"ש` (WB7a-c) are units that digits, `_` and letters
    may follow but no mid-word mark may, and a Hebrew letter reached across a mid-word mark
    forms neither (`x.ש'9` is `x.ש` then `9`).
    """
    prev = _wb(text[p])
    i = _attach(text, p + 1, w)
    core = prev != _EXTNUMLET
    end = i if core else p
    after_mid = False
    while i < w:
        k = _wb(text[i])
        nxt = i + 1
        if k in _AHL and prev in (*_AHL, _NUMERIC, _EXTNUMLET, _HEBQ) or \
                k == _NUMERIC and prev in (*_AHL, _NUMERIC, _EXTNUMLET, _HEBQ) or \
                k == _KATAKANA and prev in (_KATAKANA, _EXTNUMLET) or \
                k == _EXTNUMLET and prev in (*_AHL, _NUMERIC, _KATAKANA, _EXTNUMLET, _HEBQ):
            prev, i, after_mid = k, _attach(text, nxt, w), False
        elif prev == _HEBREW and k == _SQUOTE and not after_mid:
            prev, i = _HEBQ, _attach(text, nxt, w)
        elif k in (_MIDLETTER, _MIDNUMLET, _SQUOTE, _MIDNUM, _DQUOTE):
            j = _attach(text, nxt, w)
            k2 = _wb(text[j]) if j < w else _OTHER
            if prev == k2 == _HEBREW and k == _DQUOTE and not after_mid:
                prev, i = _HEBQ, _attach(text, j + 1, w)
            elif (prev in _AHL and k in (_MIDLETTER, _MIDNUMLET, _SQUOTE) and k2 in _AHL
                    or prev == _NUMERIC and k in (_MIDNUM, _MIDNUMLET, _SQUOTE)
                    and k2 == _NUMERIC):
                prev, i, after_mid = k2, _attach(text, j + 1, w), True
            else:
                break
        else:
            break
        core = core or prev != _EXTNUMLET
        if core:
            end = i
    return end


def _modifier(c: str) -> bool:
    return 0x1F3FB <= ord(c) <= 0x1F3FF


def _pictograph_end(text: str, i: int, w: int) -> int:
    """End of a pictograph (with marks and one VS16) or a lone skin-tone modifier at `i`."""
    pict = _pict(text[i])
    i = _attach(text, i + 1, w, _VS15 + _VS16)
    if pict and i < w and text[i] == _VS16:
        i += 1
    return i


def _emoji_end(text: str, p: int, w: int) -> int:
    """End of the emoji sequence at `p` (pictograph, modifier, flag, keycap, ZWJ chains), or
    `p`. Presentation selectors: one VS16 is kept, VS15 ends the term, as on the node."""
    i = p
    while i < w and text[i] == _ZWJ:
        i += 1
    if i > p and not (i < w and _pict(text[i])):
        return p
    c = text[i]
    if _wb(c) == _RI:  # a flag: two regional indicators, any selectors kept
        j = _attach(text, i + 1, w)
        if not (j < w and _wb(text[j]) == _RI):
            return p
        return _attach(text, j + 1, w)
    if c in "#*0123456789":  # a keycap: the base, marks, at most one VS16, U+20E3
        j = _attach(text, i + 1, w, _VS15 + _VS16)
        ends = [j] if _KEYCAP in text[i + 1:j] else []
        if j + 1 < w and text[j] == _VS16 and text[j + 1] == _KEYCAP:
            ends.append(_attach(text, j + 2, w, _VS15 + _VS16))
        return max(ends, default=p)
    if not (_pict(c) or _modifier(c)):
        return p
    i = _pictograph_end(text, i, w)
    while True:  # ZWJ sequence: ... ZWJ+ pictograph, or ZWJ modifier ...
        j = i
        while j < w and text[j] == _ZWJ:
            j += 1
        if not (j < w and text[j - 1] == _ZWJ
                and (_pict(text[j]) or _modifier(text[j]) and j == i + 1)):
            return i
        i = _pictograph_end(text, j, w)


def _java_lower(token: str) -> str:
    """Lucene's lowercase filter: Java's one-to-one map per code point (Python's `str.lower`
    turns `İ` into two characters and lowers `Σ` by context)."""
    if token.isascii():
        return token.lower()
    return "".join(_lower1(c) for c in token)


@functools.lru_cache(maxsize=65536)
def _lower1(c: str) -> str:
    low = c.lower()
    return low if len(low) == 1 else ("i" if c == "\u0130" else c)


def standard_tokens(text: str) -> list[str]:
    """ES's `standard` analyzer: UAX #29 words (letters with digits, `3.14`, `don't`, `u.s.a`,
    `foo_bar`), one term per Han character or hiragana, katakana and Thai-like runs, emoji
    sequences; punctuation and other symbols dropped; lower-cased; cut at 255 UTF-16 units."""
    out: list[str] = []
    p, n = 0, len(text)
    # the scanner sees MAX_TOKEN_LENGTH UTF-16 units from a token's start, never half a pair
    offsets = _utf16_offsets(text) if text and max(text) > "\uffff" else None
    while p < n:
        c = text[p]
        k = _wb(c)
        w = (min(n, p + MAX_TOKEN_LENGTH) if offsets is None
             else bisect.bisect_right(offsets, offsets[p] + MAX_TOKEN_LENGTH) - 1)
        if k in (_HAN, _HIRAGANA):
            end = _attach(text, p + 1, w)
        else:
            end = p
            if k in _WORD_START:
                end = _word_end(text, p, w)
            elif k == _SA or k == _EXT and _sa_mark(c):
                end = p + 1
                while end < w and _wb(text[end]) in (_SA, _EXT):
                    end += 1
            if k in (_OTHER, _EXT, _RI) or k == _ALETTER and _pict(c):
                end = max(end, _emoji_end(text, p, w))
        if end > p:
            out.append(_java_lower(text[p:end]))
            p = end
        else:
            p += 1
    return out


def _java_space(c: str) -> bool:
    """Java's `Character.isWhitespace`: separators except no-break spaces, and a few controls."""
    if c in "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f":
        return True
    return unicodedata.category(c) in ("Zs", "Zl", "Zp") and c not in "\xa0\u2007\u202f"


def _char_runs(text: str, keep: Callable[[str], bool]) -> list[str]:
    """Lucene's character tokenizers: maximal runs of `keep` characters, a run cut once it
    reaches `MAX_TOKEN_LENGTH` UTF-16 units."""
    out: list[str] = []
    start, units = -1, 0
    for i, c in enumerate(text):
        if keep(c):
            if start < 0:
                start, units = i, 0
            units += _u16(c)
            if units >= MAX_TOKEN_LENGTH:
                out.append(text[start:i + 1])
                start = -1
        elif start >= 0:
            out.append(text[start:i])
            start = -1
    if start >= 0:
        out.append(text[start:])
    return out


def whitespace_tokens(text: str) -> list[str]:
    """ES's `whitespace` analyzer (also what ES does to client-side chains' segmented text)."""
    return _char_runs(text, lambda c: not _java_space(c))


def simple_tokens(text: str) -> list[str]:
    """ES's `simple` analyzer: runs of letters, lower-cased."""
    return [_java_lower(t) for t in _char_runs(text, str.isalpha)]


#: Lucene's English stop words (the `stop` analyzer's default `_english_` list).
ENGLISH_STOP_WORDS = frozenset({
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is",
    "it", "no", "not", "of", "on", "or", "such", "that", "the", "their", "then", "there",
    "these", "they", "this", "to", "was", "will", "with"})


def stop_tokens(text: str) -> list[str]:
    """ES's `stop` analyzer: `simple` without English stop words."""
    return [t for t in simple_tokens(text) if t not in ENGLISH_STOP_WORDS]


def keyword_tokens(text: str) -> list[str]:
    """ES's `keyword` analyzer: the whole text is one term (even an empty one)."""
    return [text]


#: ES built-in analyzers reproduced here, by name (others are analysed by ES only).
BUILTIN_TERMS: dict[str, Callable[[str], list[str]]] = {
    "standard": standard_tokens, "whitespace": whitespace_tokens, "simple": simple_tokens,
    "stop": stop_tokens, "keyword": keyword_tokens,
}


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
    "standard", "ES standard analyzer (one term per CJK character); any node", "standard",
    emulate=standard_tokens))
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


def in_process_chain_names() -> list[str]:
    """Chains (and built-in analyzers) whose terms can be made without Elasticsearch."""
    names = [n for n, c in _CHAINS.items() if c.in_process]
    return names + [n for n in BUILTIN_TERMS if n not in names]


def get_chain(name: str) -> AnalysisChain:
    """A registered chain, or a plain ES built-in analyzer of that name (checked at build)."""
    chain = _CHAINS.get(name)
    if chain is not None:
        return chain
    if not name or any(c.isspace() for c in name):
        raise ConfigError(f"analyzer name {name!r} is not valid; chains: "
                          f"{', '.join(chain_names())}")
    return AnalysisChain(name, f"Elasticsearch built-in analyzer '{name}'", name,
                         emulate=BUILTIN_TERMS.get(name))


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
