"""Stakeholder reports from evaluation runs: report.html (self-contained, with plots),
report.xlsx and report.md.

`build_report` gathers everything from run directories (or experiment output folders);
`write_report` renders the requested formats into a folder. matplotlib, jinja2 and fontTools
(the `report` extra) are imported only when the HTML is rendered.
"""

from __future__ import annotations

from pathlib import Path

from embedarena.errors import DataError
from embedarena.evaluation.report.model import Report, ReportOptions, build_report

__all__ = ["Report", "ReportOptions", "build_report", "write_report", "render_report"]


def render_report(report: Report, out_dir: Path) -> list[Path]:
    """Write the formats `report.options.formats` names into out_dir; returns the paths."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(out_dir, f"cannot create the report folder: {e.strerror or e}") from e
    written: list[Path] = []
    try:
        for fmt in report.options.formats:
            if fmt == "html":
                from embedarena.evaluation.report.html import render_html

                path = out_dir / "report.html"
                path.write_text(render_html(report), encoding="utf-8")
            elif fmt == "xlsx":
                from embedarena.evaluation.report.xlsx import write_xlsx

                path = write_xlsx(report, out_dir / "report.xlsx")
            else:
                from embedarena.evaluation.report.markdown import render_markdown

                path = out_dir / "report.md"
                path.write_text(render_markdown(report), encoding="utf-8")
            written.append(path)
    except OSError as e:
        raise DataError(getattr(e, "filename", None) or out_dir,
                        f"cannot write the report: {e.strerror or e}") from e
    return written


def write_report(inputs: list[Path], out_dir: Path,
                 options: ReportOptions | None = None) -> list[Path]:
    """Build a report from run directories / experiment folders and write it to out_dir."""
    return render_report(build_report(inputs, options), out_dir)
