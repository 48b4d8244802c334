"""report.html (static checks) and report.md; plots and the CJK font; edge cases render."""

from __future__ import annotations

import base64
import html as htmllib
import io
import re
import warnings
from pathlib import Path

import pytest

from embedarena.evaluation.report import ReportOptions, write_report
from embedarena.evaluation.run import QueryResult, Run

from .conftest import NASTY_QUERY, make_run, save

pytest.importorskip("matplotlib")
pytest.importorskip("jinja2")


def test_html_is_self_contained(written_report) -> None:
    _, out = written_report
    text = (out / "report.html").read_text(encoding="utf-8")
    assert "Content-Security-Policy" in text and "default-src 'none'" in text
    # nothing is loaded from anywhere: every src/href/url() is inline or a fragment
    refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)["']|url\(([^)]*)\)""", text)
    targets = [a or b for a, b in refs]
    assert targets
    assert all(t.startswith(("data:", "#")) for t in targets), [
        t[:60] for t in targets if not t.startswith(("data:", "#"))]
    assert "<link" not in text and "@import" not in text
    assert text.count('src="data:image/png;base64,') == 6  # 3 plots x 2 query sets
    assert "@font-face" in text and "font/otf;base64," in text


def test_html_escapes_user_text(written_report) -> None:
    _, out = written_report
    text = (out / "report.html").read_text(encoding="utf-8")
    assert '<script>alert("x")</script>' not in text
    escaped = htmllib.escape(NASTY_QUERY).replace("&quot;", "&#34;")  # markupsafe's spelling
    assert escaped in text
    assert text.count("<script>") == 1  # the report's own sorting script only


def test_html_sections_and_contents(written_report) -> None:
    report, out = written_report
    text = (out / "report.html").read_text(encoding="utf-8")
    for anchor in ("results", "plots", "significance", "errors", "queries", "settings"):
        assert f'id="{anchor}"' in text
    assert text.count('class="headline sortable-table"') == 2
    assert "paired randomization (sign-flip) test" in text and "Holm" in text
    assert "sk-should-never-appear" not in text and "hunter2" not in text
    assert "https://***@localhost:9200" in text
    # the best precise@1 cell of 原数据 is marked
    best = report.comparison.best("原数据", "precise@1")
    assert best == ["bge 微调"]
    assert text.count('class="num best"') >= 2


def test_html_caps_per_query_rows(experiment_dir: Path, tmp_path: Path) -> None:
    write_report([experiment_dir / "原数据"], tmp_path,
                 ReportOptions(formats=["html"], max_query_rows=7))
    text = (tmp_path / "report.html").read_text(encoding="utf-8")
    body = text.split('<table class="per-query">', 1)[1].split("</table>", 1)[0]
    assert body.count("<tr>") == 1 + 7
    assert "Showing 7 of 40 queries" in text
    assert not (tmp_path / "report.xlsx").exists()


def test_markdown_headline_and_verdicts(written_report) -> None:
    report, out = written_report
    md = (out / "report.md").read_text(encoding="utf-8")
    assert md.startswith("# embedarena report")
    assert "### 原数据: 39 queries (1 without relevant gold excluded)" in md
    assert "| bge 微调 | **56.4** |" in md
    assert "## Against bge" in md
    new_p1 = next(t for t in report.sets[1].significance
                  if t.model == "bge 微调" and t.metric == "precise@1")
    assert new_p1.significant()
    assert re.search(r"\| 新数据 \| bge 微调 \| precise@1 \| \+43\.5 pp \| .* \*\*better\*\* \|",
                     md)
    assert "Method: p-value: paired randomization" in md


def test_cjk_font_is_found_and_subset_has_the_glyphs() -> None:
    from fontTools.ttLib import TTFont

    from embedarena.evaluation.report.fonts import find_cjk_font, subset_font_data

    font = find_cjk_font()
    assert font is not None, "no CJK font: pip install 'embedarena[report]'"
    data, fmt = subset_font_data(font, "甲状腺结节 bge 微调")
    assert fmt in ("opentype", "truetype")
    cmap = TTFont(io.BytesIO(data)).getBestCmap()
    assert all(ord(c) in cmap for c in "甲状腺结节微调")
    assert ord("肝") not in cmap  # a subset, not the whole 8 MB font
    assert len(data) < 200_000


def _glyph_warnings(fn) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fn()
    return [str(w.message) for w in caught if "missing from font" in str(w.message)]


def test_plots_render_chinese_without_missing_glyphs() -> None:
    from embedarena.evaluation.report import plots

    text = "甲状腺结节 vs 宫颈上皮内瘤变 — bge 微调"
    assert _glyph_warnings(lambda: plots.text_png(text)) == []
    png = plots.bars_png("原数据: precise@k", ["precise@1", "precise@5"],
                         {"bge": [0.5, 0.7], "bge 微调": [0.6, None]})
    assert png.startswith(b"\x89PNG")
    assert _glyph_warnings(lambda: plots.winloss_png("新数据", [("bge 微调", 3, 2, 1)], "bge",
                                                     "precise@1")) == []


def test_glyph_check_can_fail_without_the_cjk_font() -> None:
    # the control for the test above: DejaVu Sans alone has no Chinese glyphs
    import matplotlib
    from matplotlib.figure import Figure

    def draw() -> None:
        with matplotlib.rc_context({"font.family": "sans-serif",
                                    "font.sans-serif": ["DejaVu Sans"]}):
            fig = Figure()
            fig.text(0.5, 0.5, "甲状腺")
            fig.savefig(io.BytesIO(), format="png")

    assert _glyph_warnings(draw)


def test_plot_images_decode(written_report) -> None:
    from PIL import Image

    _, out = written_report
    text = (out / "report.html").read_text(encoding="utf-8")
    for b64 in re.findall(r'src="data:image/png;base64,([^"]+)"', text):
        img = Image.open(io.BytesIO(base64.b64decode(b64)))
        assert img.size[0] > 300 and img.size[1] > 100


@pytest.mark.parametrize("case", ["empty", "single", "no-gold"])
def test_edge_cases_render_with_a_note(case: str, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    if case == "empty":
        Run("bge", "空集", []).save(runs / "a")
        Run("acge", "空集", []).save(runs / "b")
        note = "no queries"
    elif case == "single":
        save(make_run("bge 微调", 0.7, "原数据", 12, 3), runs / "a")
        note = "only one model"
    else:
        for m in ("bge", "acge"):
            save(Run(m, "qs", [QueryResult("1", "无标签", {}, ["甲状腺癌"], [1.0])]), runs / m)
        note = "excluded"
    out = tmp_path / "out"
    paths = write_report([runs], out)
    assert [p.name for p in paths] == ["report.html", "report.xlsx", "report.md"]
    html = (out / "report.html").read_text(encoding="utf-8")
    md = (out / "report.md").read_text(encoding="utf-8")
    assert note in html and note in md
    assert 'class="notes"' in html
    if case == "single":
        assert "Only one model: nothing to test." in html
        assert html.count("data:image/png") == 2  # bars and curves, no win/loss
    if case == "empty":
        assert "No plots: no queries were scored here." in html
