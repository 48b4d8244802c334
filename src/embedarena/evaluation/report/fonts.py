"""A font with Chinese glyphs for plots and the HTML report, so no label renders as tofu boxes.

Where it comes from, in order:

1. `pylopdf-fonts-zh-cn` (PyPI, in the `report` extra): Noto Sans SC, SIL Open Font License.
   `pip install 'embedarena[report]'` brings it, so the report looks the same on every machine.
2. A CJK font matplotlib finds on the system (Noto Sans CJK, Source Han, WenQuanYi, YaHei, ...).

Plots use it through matplotlib's font manager (registered at run time, with DejaVu Sans as the
fallback for symbols). The HTML report embeds a subset of it holding only the characters the
report uses, so the file renders Chinese offline on a machine without any CJK font, and stays
small (a few hundred KB for thousands of distinct characters). Bold text uses the same
regular face (the browser emboldens it), which keeps one font in the file.
"""

from __future__ import annotations

import base64
import functools
import io
from dataclasses import dataclass
from pathlib import Path

from embedarena.errors import MissingExtraError

SYSTEM_FAMILIES = (
    "Noto Sans SC", "Noto Sans CJK SC", "Source Han Sans SC", "Source Han Sans CN",
    "WenQuanYi Micro Hei", "WenQuanYi Zen Hei", "Microsoft YaHei", "PingFang SC",
    "Hiragino Sans GB", "SimHei", "Noto Sans CJK JP", "Noto Sans CJK TC",
)
"""System families known to cover common Simplified Chinese, preferred first."""

EMBED_FAMILY = "EmbedarenaCJK"
"""The CSS family name of the subset embedded in the HTML report."""

CJK_RANGES = ((0x2E80, 0x9FFF), (0xF900, 0xFAFF), (0xFE30, 0xFE4F), (0xFF00, 0xFFEF),
              (0x20000, 0x2FA1F))
"""What the embedded subset covers (CJK radicals, symbols and punctuation, kana, ideographs,
compatibility and full-width forms). The @font-face declares this as its unicode-range, so
the browser draws Latin text with the system font and Chinese with the embedded one, and
can list the embedded family first everywhere (also before `monospace`): a web font that is
only a late fallback in a family list is not always re-applied once it has loaded."""


def is_cjk(ch: str) -> bool:
    o = ord(ch)
    return any(lo <= o <= hi for lo, hi in CJK_RANGES)


@dataclass(frozen=True)
class CjkFont:
    path: Path
    family: str
    """The family name matplotlib knows it by."""
    source: str
    """Where it came from, for the report's reproducibility section."""


@functools.lru_cache(maxsize=1)
def find_cjk_font() -> CjkFont | None:
    """The font to use, registered with matplotlib; None when no CJK font is available."""
    try:
        from matplotlib import font_manager
    except ImportError:
        raise MissingExtraError("matplotlib", "report") from None

    try:
        import pylopdf_fonts_zh_cn
    except ImportError:
        pass
    else:
        path = Path(pylopdf_fonts_zh_cn.sans_path())
        if path.is_file():
            font_manager.fontManager.addfont(str(path))
            family = font_manager.FontProperties(fname=str(path)).get_name()
            return CjkFont(path, family, "Noto Sans SC from the pylopdf-fonts-zh-cn package")
    by_name = {f.name: f for f in font_manager.fontManager.ttflist}
    for family in SYSTEM_FAMILIES:
        entry = by_name.get(family)
        if entry is not None and Path(entry.fname).is_file():
            return CjkFont(Path(entry.fname), family, f"system font {entry.fname}")
    return None


def subset_font_data(font: CjkFont, text: str) -> tuple[bytes, str]:
    """(font file bytes holding only the CJK glyphs `text` needs, CSS format name)."""
    try:
        from fontTools import subset
        from fontTools.ttLib import TTFont
    except ImportError:
        raise MissingExtraError("fonttools", "report") from None

    options = subset.Options()
    options.layout_features = ["*"]
    options.notdef_outline = True
    options.name_IDs = ["*"]
    options.hinting = False
    number = 0 if font.path.suffix.lower() in (".ttc", ".otc") else -1
    tt = TTFont(str(font.path), fontNumber=number, lazy=True, recalcTimestamp=False)
    chars = {c for c in set(text) if is_cjk(c)}
    subsetter = subset.Subsetter(options)
    subsetter.populate(text="".join(sorted(chars)))
    subsetter.subset(tt)
    buf = io.BytesIO()
    tt.save(buf)
    fmt = "opentype" if "CFF " in tt or "CFF2" in tt else "truetype"
    return buf.getvalue(), fmt


def font_face_css(font: CjkFont, text: str) -> str:
    """An @font-face rule embedding the subset as a data URI (no request leaves the file);
    empty when `text` has no CJK character."""
    if not any(is_cjk(c) for c in set(text)):
        return ""
    data, fmt = subset_font_data(font, text)
    mime = "font/otf" if fmt == "opentype" else "font/ttf"
    b64 = base64.b64encode(data).decode("ascii")
    ranges = ", ".join(f"U+{lo:X}-{hi:X}" for lo, hi in CJK_RANGES)
    return (f"@font-face {{ font-family: '{EMBED_FAMILY}'; font-style: normal; "
            f"font-weight: 100 900; unicode-range: {ranges}; "
            f"src: url(data:{mime};base64,{b64}) format('{fmt}'); }}")
