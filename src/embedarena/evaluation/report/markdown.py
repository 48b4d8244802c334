"""report.md: the headline table plus the significance verdicts, to paste into a wiki or chat."""

from __future__ import annotations

from embedarena.evaluation.report.html import fmt_diff, fmt_p
from embedarena.evaluation.report.model import Report
from embedarena.evaluation.significance import PairedComparison


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(report: Report) -> str:
    o = report.options
    lines = [f"# {_md(report.title)}", "",
             f"Created {report.created} by embedarena {report.version}."
             + (f" Baseline: **{_md(report.baseline)}**." if report.baseline else ""), "",
             report.comparison.to_markdown().rstrip(), ""]
    tested = [(s, t) for s in report.sets for t in s.significance]
    if tested:
        lines += [f"## Against {_md(report.baseline or '')}", "",
                  "| query set | model | metric | difference | "
                  f"{o.confidence:.0%} CI | p (Holm) | wins/ties/losses | verdict |",
                  "|---|---|---|---:|---:|---:|---:|---|"]
        for s, t in tested:
            verdict = _verdict(t, o.alpha)
            lines.append(
                f"| {_md(s.name)} | {_md(t.model)} | {t.metric} | {fmt_diff(t.diff, t.metric)} "
                f"| [{fmt_diff(t.ci_low, t.metric)}, {fmt_diff(t.ci_high, t.metric)}] "
                f"| {fmt_p(t.p_holm)} | {t.wins}/{t.ties}/{t.losses} | {verdict} |")
        lines += ["", "Method: " + " ".join(report.methods), ""]
    staged = [(s, t) for s in report.sets for t in s.stages]
    if staged:
        lines += ["## Rerankers against their retrievers", "",
                  "| query set | two-stage row | retriever | metric | difference | "
                  f"{o.confidence:.0%} CI | p (Holm) | wins/ties/losses | verdict |",
                  "|---|---|---|---|---:|---:|---:|---:|---|"]
        for s, t in staged:
            lines.append(
                f"| {_md(s.name)} | {_md(t.model)} | {_md(t.baseline)} | {t.metric} "
                f"| {fmt_diff(t.diff, t.metric)} "
                f"| [{fmt_diff(t.ci_low, t.metric)}, {fmt_diff(t.ci_high, t.metric)}] "
                f"| {fmt_p(t.p_holm)} | {t.wins}/{t.ties}/{t.losses} | {_verdict(t, o.alpha)} |")
        lines.append("")
    notes = [*report.notes, *(n for s in report.sets for n in s.notes)]
    if notes:
        lines += ["## Notes", "", *(f"- {_md(n)}" for n in notes), ""]
    return "\n".join(lines)


def _verdict(t: PairedComparison, alpha: float) -> str:
    if t.n == 0:
        return "no common queries"
    if t.significant(alpha):
        return "**better**" if t.diff > 0 else "**worse**"
    return "no significant difference"
