"""report.html: one self-contained file (CSS, JS, plots and a font subset inline, no requests).

All user text (queries, labels, model names, settings) goes through Jinja2's autoescaping.
"""

from __future__ import annotations

import base64
import math
import secrets
from dataclasses import dataclass
from importlib import resources
from typing import Any

from embedarena.errors import MissingExtraError
from embedarena.evaluation.compare import UNITS_NOTE, format_value
from embedarena.evaluation.metrics import MetricSpec, get_metric
from embedarena.evaluation.report.model import (
    CURVE_METRICS,
    QueryRow,
    Report,
    SetReport,
)

MAX_ALL_WRONG_ROWS = 50
MAX_LABEL_ROWS = 30
MAX_CONFUSION_ROWS = 20
MAX_ID_CHARS = 80
_STATUS_ORDER = {"disagree": 0, "all wrong": 1, "same": 2, "all right": 3, "excluded": 4}


@dataclass
class Plot:
    title: str
    kind: str
    src: str
    alt: str


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def is_percent(spec: str) -> bool:
    return get_metric(spec.split("@", 1)[0]).percent


def fmt_diff(v: float, spec: str) -> str:
    """A difference: percentage points for percent metrics, else a signed score."""
    if v is None or math.isnan(v):
        return "—"
    if is_percent(spec):
        return f"{100 * v:+.1f} pp"
    return f"{v:+.3f}"


def fmt_p(p: float) -> str:
    if p is None or math.isnan(p):
        return "—"
    if p >= 0.001:
        return f"{p:.3f}"
    return f"{p:.1e}"


def fmt_share(v: float) -> str:
    return "—" if v is None or math.isnan(v) else f"{100 * v:.0f}%"


def short(text: str, limit: int = MAX_ID_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def bar_columns(report: Report, qs: str) -> list[str]:
    cols = report.comparison.columns(qs)
    precise = [c for c in cols if c.startswith("precise@")]
    return precise or [c for c in cols if is_percent(c)]


def plots_for(report: Report, s: SetReport) -> list[Plot]:
    from embedarena.evaluation.report import plots

    name = s.name or "queries"
    out: list[Plot] = []
    if s.n_queries == 0:
        return out
    cols = bar_columns(report, s.name)
    if cols:
        values = {m: [report.comparison.value(m, s.name, c) for c in cols] for m in s.models}
        out.append(Plot(f"{', '.join(cols)} per model", "bars",
                        _data_uri(plots.bars_png(f"{name}: {', '.join(cols)}", cols, values)),
                        f"bar chart of {', '.join(cols)} per model on {name}"))
    curves = {m: c for m, c in s.curves.items() if c}
    if curves:
        out.append(Plot(f"{', '.join(CURVE_METRICS)} for k = 1..{s.curve_k}", "curves",
                        _data_uri(plots.curves_png(f"{name}: metric vs k", curves,
                                                   CURVE_METRICS)),
                        f"metric vs k curves per model on {name}"))
    primary = str(report.primary)
    rows = [(r.model, r.wins, r.ties, r.losses) for r in s.significance if r.metric == primary]
    if rows and report.baseline:
        out.append(Plot(f"per-query win/tie/loss against {report.baseline} on {primary}",
                        "winloss",
                        _data_uri(plots.winloss_png(f"{name}: vs {report.baseline}", rows,
                                                    report.baseline, primary)),
                        f"per-query wins, ties and losses against {report.baseline}"))
    return out


def ordered_rows(s: SetReport, limit: int) -> tuple[list[QueryRow], int]:
    rows = sorted(s.rows, key=lambda r: _STATUS_ORDER[r.status])  # stable: file order within
    return rows[:limit], len(rows)


def render_html(report: Report) -> str:
    try:
        import jinja2
    except ImportError:
        raise MissingExtraError("jinja2", "report") from None
    from embedarena.evaluation.report.fonts import EMBED_FAMILY, find_cjk_font, font_face_css

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters.update(value=lambda v, col: format_value(col, v), diff=fmt_diff, p=fmt_p,
                       share=fmt_share, short=short)
    source = (resources.files("embedarena.evaluation.report") / "templates"
              / "report.html.j2").read_text(encoding="utf-8")
    template = env.from_string(source)
    placeholder = f"/*font-face-{secrets.token_hex(8)}*/"
    font = find_cjk_font()
    context: dict[str, Any] = {
        "r": report, "units": UNITS_NOTE, "plots": {s.name: plots_for(report, s)
                                                    for s in report.sets},
        "ordered_rows": ordered_rows, "max_all_wrong": MAX_ALL_WRONG_ROWS,
        "max_labels": MAX_LABEL_ROWS, "max_confusions": MAX_CONFUSION_ROWS,
        "font_face": placeholder, "font_family": EMBED_FAMILY, "font": font,
        "is_percent": is_percent, "primary": str(report.primary),
        "MetricSpec": MetricSpec,
    }
    html = template.render(**context)
    css = font_face_css(font, html) if font is not None else ""
    return html.replace(placeholder, css, 1)
