"""The HTML report in a real headless Chromium (Debian's `chromium`): no console errors, no
requests leaving the file, every table and plot present, Chinese text drawn with the embedded
font (no tofu), sorting works; screenshots are kept under test-artifacts/."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from embedarena.evaluation.report import write_report
from embedarena.evaluation.run import Run

from .browser import Browser, find_chromium
from .conftest import make_run, save

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

SUMMARY_JS = """(async () => {
  await document.fonts.ready;
  document.querySelectorAll('details').forEach(d => { d.open = true; });
  // text laid out before the web font arrived is shaped again on a later frame
  await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
  const count = sel => document.querySelectorAll(sel).length;
  const imgs = Array.from(document.querySelectorAll('figure.plot img'));
  return {
    title: document.title,
    tables: Object.fromEntries(['headline', 'significance', 'all-wrong', 'per-label',
      'confusions', 'per-query', 'settings-common', 'settings-run', 'settings-report']
      .map(c => [c, count('table.' + c)])),
    sections: ['results', 'plots', 'significance', 'errors', 'queries', 'settings']
      .filter(id => document.getElementById(id)),
    plots: imgs.map(i => ({kind: i.closest('figure').dataset.kind,
                           ok: i.complete && i.naturalWidth > 0, width: i.naturalWidth})),
    fonts: Array.from(document.fonts).map(f => [f.family.replace(/["']/g, ''), f.status]),
  };
})()"""

MARK_CJK_JS = """(() => {
  const re = /[\\u3400-\\u9fff]/g;
  const counts = [];
  for (const el of document.querySelectorAll('body *')) {
    let own = 0;
    for (const c of el.childNodes) {
      if (c.nodeType === 3) { own += (c.textContent.match(re) || []).length; }
    }
    if (own) { el.setAttribute('data-cjk', String(own)); counts.push(own); }
  }
  return counts;
})()"""

SORT_JS = """(() => {
  const t = document.querySelector('table.headline');
  const th = Array.from(t.tHead.rows[0].cells)
    .find(c => c.textContent.trim().startsWith('precise@1'));
  const first = () => t.tBodies[0].rows[0].cells[0].textContent.trim();
  th.click(); const asc = first();
  th.click(); const desc = first();
  return [asc, desc];
})()"""


@pytest.fixture(scope="module")
def chromium() -> str:
    exe = find_chromium()
    if exe is None:
        msg = "chromium is not installed (run scripts/install-test-system-deps as root)"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    return exe


def tofu_nodes(page) -> list[str]:
    """Elements whose Chinese characters were not all drawn by the embedded font."""
    counts = page.evaluate(MARK_CJK_JS)
    root = page.send("DOM.getDocument", {"depth": 0})["root"]["nodeId"]
    nodes = page.send("DOM.querySelectorAll", {"nodeId": root,
                                               "selector": "[data-cjk]"})["nodeIds"]
    assert len(nodes) == len(counts) > 0
    bad = []
    for node, n_cjk in zip(nodes, counts, strict=True):
        fonts = page.send("CSS.getPlatformFontsForNode", {"nodeId": node})["fonts"]
        custom = sum(f["glyphCount"] for f in fonts if f["isCustomFont"])
        if custom < n_cjk:
            html = page.send("DOM.getOuterHTML", {"nodeId": node})["outerHTML"]
            bad.append(f"{html[:120]} -> {fonts}")
    return bad


def test_report_in_headless_chromium(chromium: str, written_report, artifacts_dir: Path,
                                     tmp_path: Path) -> None:
    report, out = written_report
    single = tmp_path / "single"
    save(make_run("bge 微调", 0.7, "原数据", 12, 3), single / "runs" / "a")
    Run("bge 微调", "空集", []).save(single / "runs" / "b")
    write_report([single / "runs"], single)

    with Browser(chromium) as browser:
        page = browser.open((out / "report.html").as_uri())
        info = page.evaluate(SUMMARY_JS)
        page.screenshot(artifacts_dir / "report-top.png")
        page.screenshot(artifacts_dir / "report-full.png", full_page=True)
        tofu = tofu_nodes(page)
        asc, desc = page.evaluate(SORT_JS)
        errors = page.console_errors()
        urls = page.requested_urls()

        edge = browser.open((single / "report.html").as_uri())
        edge_info = edge.evaluate(SUMMARY_JS)
        edge.screenshot(artifacts_dir / "report-single-model.png", full_page=True)
        edge_tofu = tofu_nodes(edge)
        edge_errors = edge.console_errors()

    assert errors == [] and edge_errors == []
    assert all(u.startswith(("file:", "data:")) for u in urls), [u[:80] for u in urls]
    assert info["title"] == report.title
    assert info["sections"] == ["results", "plots", "significance", "errors", "queries",
                                "settings"]
    assert info["tables"] == {"headline": 2, "significance": 2, "all-wrong": 2,
                              "per-label": 2, "confusions": 2, "per-query": 2,
                              "settings-common": 1, "settings-run": 6, "settings-report": 1}
    kinds = [p["kind"] for p in info["plots"]]
    assert kinds == ["bars", "curves", "winloss"] * 2
    assert all(p["ok"] and p["width"] > 300 for p in info["plots"]), info["plots"]
    assert ["EmbedarenaCJK", "loaded"] in info["fonts"]
    assert tofu == [] and edge_tofu == []
    assert asc.startswith("acge") and desc.startswith("bge 微调")  # sorted by precise@1
    assert [p["kind"] for p in edge_info["plots"]] == ["bars", "curves"]
    assert edge_info["tables"]["significance"] == 0
    for name in ("report-top.png", "report-full.png", "report-single-model.png"):
        assert (artifacts_dir / name).stat().st_size > 20_000
