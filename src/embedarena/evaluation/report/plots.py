"""The report's plots as PNG bytes (matplotlib, Agg, no pyplot global state).

Text in plots is drawn with the CJK font from `fonts.find_cjk_font`, so Chinese model names,
query sets and labels render as glyphs, never as boxes. matplotlib is imported here only, and
only when a plot is drawn, so `embedarena --help` never pays for it.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from embedarena.errors import MissingExtraError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04",
          "#db2777", "#4b5563", "#65a30d"]
WIN, TIE, LOSS = "#16a34a", "#cbd5e1", "#dc2626"


@contextmanager
def plot_style() -> Iterator[None]:
    """rcParams for report plots, with the CJK font first and DejaVu Sans as glyph fallback."""
    try:
        import matplotlib
    except ImportError:
        raise MissingExtraError("matplotlib", "report") from None
    from embedarena.evaluation.report.fonts import find_cjk_font

    font = find_cjk_font()
    families = ([font.family] if font else []) + ["DejaVu Sans"]
    with matplotlib.rc_context({
        "font.family": "sans-serif",
        "font.sans-serif": families,
        "font.size": 10,
        "axes.unicode_minus": False,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "figure.dpi": 100,
        "savefig.dpi": 110,
        "svg.fonttype": "path",
    }):
        yield


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def to_png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def _color(i: int) -> str:
    return COLORS[i % len(COLORS)]


def curves_png(title: str, curves: dict[str, dict[str, list[float]]],
               metrics: Sequence[str]) -> bytes:
    """Metric vs k, one panel per metric, one line per model (values 0-1, drawn in %)."""
    with plot_style():
        fig = _figure(3.6 * len(metrics) + 0.8, 3.6)
        axes = fig.subplots(1, len(metrics), squeeze=False)[0]
        for ax, metric in zip(axes, metrics, strict=True):
            for i, (model, by_metric) in enumerate(curves.items()):
                ys = by_metric.get(metric, [])
                if not ys:
                    continue
                ks = list(range(1, len(ys) + 1))
                ax.plot(ks, [100 * y for y in ys], marker="o", markersize=3, linewidth=1.6,
                        color=_color(i), label=model)
            ax.set_title(f"{metric}@k")
            ax.set_xlabel("k")
            ax.set_ylabel("%")
            ax.set_ylim(0, 100)
        handles, labels = axes[0].get_legend_handles_labels()
        if handles:
            fig.legend(handles, labels, loc="outside right upper", frameon=False)
        fig.suptitle(title)
        return to_png(fig)


def bars_png(title: str, columns: Sequence[str], values: dict[str, list[float | None]]) -> bytes:
    """Grouped bars: one group per metric column (e.g. precise@1/2/5), one bar per model."""
    with plot_style():
        n_models = max(1, len(values))
        fig = _figure(max(6.0, 2.5 + len(columns) * (0.5 + 0.35 * n_models)), 3.8)
        ax = fig.subplots()
        width = 0.8 / n_models
        for i, (model, vals) in enumerate(values.items()):
            xs = [c + (i - (n_models - 1) / 2) * width for c in range(len(columns))]
            ys = [100 * v if v is not None and not math.isnan(v) else 0.0 for v in vals]
            bars = ax.bar(xs, ys, width=width * 0.95, color=_color(i), label=model)
            ax.bar_label(bars, labels=[f"{y:.1f}" if v is not None else ""
                                       for y, v in zip(ys, vals, strict=True)],
                         fontsize=7, padding=1)
        ax.set_xticks(range(len(columns)), list(columns))
        ax.set_ylabel("% of queries")
        ax.set_ylim(0, 105)
        ax.grid(axis="x", visible=False)
        fig.legend(loc="outside right upper", frameon=False, fontsize=8)
        ax.set_title(title)
        return to_png(fig)


def winloss_png(title: str, rows: Sequence[tuple[str, int, int, int]], baseline: str,
                metric: str) -> bytes:
    """Per-query wins/ties/losses of each model against the baseline, as stacked bars."""
    with plot_style():
        fig = _figure(7.5, 1.2 + 0.45 * max(1, len(rows)))
        ax = fig.subplots()
        names = [r[0] for r in rows]
        ys = list(range(len(rows)))[::-1]
        left = [0.0] * len(rows)
        for idx, (part, color) in enumerate((("wins", WIN), ("ties", TIE), ("losses", LOSS))):
            widths = [float(r[1 + idx]) for r in rows]
            bars = ax.barh(ys, widths, left=left, color=color, label=part, height=0.6)
            ax.bar_label(bars, labels=[str(int(w)) if w else "" for w in widths],
                         label_type="center", fontsize=8)
            left = [a + b for a, b in zip(left, widths, strict=True)]
        ax.set_yticks(ys, names)
        ax.set_xlabel(f"queries ({metric}: better / same / worse than {baseline})")
        ax.grid(axis="y", visible=False)
        ax.legend(loc="lower right", frameon=False, fontsize=8, ncols=3,
                  bbox_to_anchor=(1.0, 1.0))
        ax.set_title(title, loc="left")
        return to_png(fig)


def text_png(text: str, **kw: Any) -> bytes:
    """A small image of `text` (used by tests to prove glyph coverage)."""
    with plot_style():
        fig = _figure(4, 1)
        fig.text(0.5, 0.5, text, ha="center", va="center", **kw)
        return to_png(fig)
